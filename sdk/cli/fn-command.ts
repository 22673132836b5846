/** `weft fn build DIR` and `weft fn new NAME`: the function author's commands, loaded lazily by runtime/cli.ts. */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runSubcommands } from './subcommands.js';
import { buildJsComponent } from '../../runtime/functions/component-build.js';
import { scaffoldFunction } from './fn-scaffold.js';
import { scaffoldFilter } from './filter-scaffold.js';

export const FN_USAGE = `usage:
  weft fn build DIR [--entry FILE]         componentize DIR/handler.js (a function: it must export incomingHandler)
                                           into DIR/build/function.wasm, or DIR/filter.js (a component filter:
                                           it exports filter, and bodyFilter for bodies) into DIR/build/filter.wasm;
                                           prints the sha256 for weft.yaml
  weft fn new NAME [--dir PARENT]          scaffold PARENT/NAME with a JS function, its build script and a test
                                           that runs it through weft's own function host
  weft fn new --filter NAME [--dir PARENT] the same for a JS component filter (world weft:filter/http-filter),
                                           attached under plugins: like a proxy-wasm plugin
`;

async function build(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { entry: { type: 'string', short: 'e' } }, allowPositionals: true });
  const dir = positionals[0];
  if (dir === undefined || positionals.length > 1) {
    process.stderr.write(`weft fn build: exactly one DIR is required\n${FN_USAGE}`);
    return 2;
  }
  // A folder with filter.js (and no handler.js) holds a component filter; --entry names the file either way.
  const entry = values.entry ?? (!existsSync(join(dir, 'handler.js')) && existsSync(join(dir, 'filter.js')) ? 'filter.js' : 'handler.js');
  const source = join(dir, entry);
  const text = await readFile(source, 'utf8').catch(() => '');
  const isFilter = /\bexport\s+(const|let|var)\s+filter\b/.test(text);
  const world = !isFilter ? 'function' : /\bexport\s+(const|let|var)\s+bodyFilter\b/.test(text) ? 'http-body-filter' : 'http-filter';
  const { component, ms } = await buildJsComponent(source, world);
  await mkdir(join(dir, 'build'), { recursive: true });
  const out = join(dir, 'build', isFilter ? 'filter.wasm' : 'function.wasm');
  await writeFile(out, component);
  process.stdout.write(`${out} (${component.length} bytes, ${Math.round(ms)} ms)\nsha256: ${createHash('sha256').update(component).digest('hex')}\n`);
  return 0;
}

async function create(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { dir: { type: 'string', short: 'd' }, filter: { type: 'boolean' } }, allowPositionals: true });
  const name = positionals[0];
  if (name === undefined || positionals.length > 1) {
    process.stderr.write(`weft fn new: exactly one NAME is required\n${FN_USAGE}`);
    return 2;
  }
  if (values.filter === true) {
    const dir = await scaffoldFilter(name, values.dir ?? '.');
    process.stdout.write(`created ${dir}\nnext: cd ${dir} && npm test   (builds with componentize-js, then runs it through weft's filter host)\n`);
    return 0;
  }
  const dir = await scaffoldFunction(name, values.dir ?? '.');
  process.stdout.write(`created ${dir}\nnext: cd ${dir} && npm test   (builds with componentize-js, then serves it through weft's function host)\n`);
  return 0;
}

/** Runs `weft fn ...`; answers the exit code. Build and scaffold errors print their message, never a stack. */
export function fnCommand(argv: string[]): Promise<number> {
  return runSubcommands('fn', FN_USAGE, { build, new: create }, argv);
}
