/** `weft plugin build DIR` and `weft plugin new NAME`: the plugin author's commands, loaded lazily by runtime/cli.ts. */
import { parseArgs } from 'node:util';
import { runSubcommands } from './subcommands.js';
import { BUILD_TARGETS, type BuildTarget, buildPlugin } from './plugin-build.js';
import { scaffoldPlugin } from './plugin-scaffold.js';

export const PLUGIN_USAGE = `usage:
  weft plugin build DIR [--target release|debug]   compile DIR/assembly/index.ts to DIR/build/release.wasm (optimized)
                                                   and DIR/build/debug.wasm (+ .wat and source map)
  weft plugin new NAME [--dir PARENT]              scaffold PARENT/NAME (default ./NAME) with a plugin, its README,
                                                   asconfig and a passing emulator test
`;

async function build(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { target: { type: 'string', short: 't', multiple: true } }, allowPositionals: true });
  const dir = positionals[0];
  if (dir === undefined || positionals.length > 1) {
    process.stderr.write(`weft plugin build: exactly one DIR is required\n${PLUGIN_USAGE}`);
    return 2;
  }
  const targets: string[] = values.target ?? [...BUILD_TARGETS];
  const bad = targets.find((t) => !(BUILD_TARGETS as readonly string[]).includes(t));
  if (bad !== undefined) {
    process.stderr.write(`weft plugin build: unknown target "${bad}" (release or debug)\n`);
    return 2;
  }
  const built = await buildPlugin(dir, targets as BuildTarget[]);
  for (const b of built) process.stdout.write(`${b.target}: ${b.file} (${b.bytes} bytes)\n`);
  return 0;
}

async function create(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { dir: { type: 'string', short: 'd' } }, allowPositionals: true });
  const name = positionals[0];
  if (name === undefined || positionals.length > 1) {
    process.stderr.write(`weft plugin new: exactly one NAME is required\n${PLUGIN_USAGE}`);
    return 2;
  }
  const dir = await scaffoldPlugin(name, values.dir ?? '.');
  process.stdout.write(
    `created ${dir}\nnext: inside a weft checkout (plugins/${name}): npm install at the root, then npx vitest run plugins/${name}\n` +
      `      elsewhere: cd ${dir} && npm install && npm run build && npm test\n`,
  );
  return 0;
}

/** Runs `weft plugin ...`; answers the exit code. Build and scaffold errors print their message, never a stack. */
export function pluginCommand(argv: string[]): Promise<number> {
  return runSubcommands('plugin', PLUGIN_USAGE, { build, new: create }, argv);
}
