/**
 * `weft fn new NAME`: a JS function folder (handler.js exporting incomingHandler, package.json with build and test
 * scripts, a test that runs the built component through weft's own function host, and a README). Paths to weft are
 * relative, so the folder works inside a weft checkout (functions/NAME) or beside one.
 */
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { WeftError } from '../../runtime/errors.js';
import { sdkWitDir } from '../../runtime/functions/component-build.js';

const posix = (p: string): string => p.split(sep).join('/');

export function isFunctionName(name: string): boolean {
  return /^[a-z][a-z0-9-]{0,62}$/.test(name);
}

function files(name: string, toRepo: string): Record<string, string> {
  return {
    'handler.js': `// ${name}: a weft function (wasi:http/incoming-handler@0.2). Build: npm run build; test: npm test.
import { Fields, OutgoingBody, OutgoingResponse, ResponseOutparam } from 'wasi:http/types@0.2.12';

const enc = new TextEncoder();

// Exported explicitly: one instance serves many requests (a fetch-event handler could serve only one).
export const incomingHandler = {
  handle(request, responseOut) {
    const response = new OutgoingResponse(Fields.fromList([['content-type', enc.encode('text/plain')]]));
    const body = response.body();
    ResponseOutparam.set(responseOut, { tag: 'ok', val: response });
    const out = body.write();
    out.blockingWriteAndFlush(enc.encode(\`${name} answers \${request.pathWithQuery()}\\n\`));
    out[Symbol.dispose]();
    OutgoingBody.finish(body, undefined);
  },
};
`,
    'package.json': `${JSON.stringify(
      {
        name: `@weft-fn/${name}`,
        version: '0.1.0',
        private: true,
        type: 'module',
        scripts: { build: `node ${posix(join(toRepo, 'dist', 'runtime', 'cli.js'))} fn build .`, test: 'vitest run' },
      },
      null,
      2,
    )}\n`,
    'handler.test.ts': `// Runs the built component through weft's own function host: admission, a worker-thread instance, WASI 0.2.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { serveFunction, type FunctionUnderTest } from '${posix(join(toRepo, 'sdk', 'testing', 'function-harness.js'))}';

const dir = fileURLToPath(new URL('.', import.meta.url));
let fn: FunctionUnderTest;

beforeAll(async () => {
  execFileSync(process.execPath, ['${posix(join(toRepo, 'dist', 'runtime', 'cli.js'))}', 'fn', 'build', dir], { cwd: dir, stdio: 'inherit' });
  fn = await serveFunction(\`\${dir}build/function.wasm\`);
}, 600_000);

afterAll(() => fn?.close());

it('answers with its name and the path', async () => {
  expect(await fn.fetch('/hi?x=1')).toMatchObject({ status: 200, body: '${name} answers /hi?x=1\\n' });
});
`,
    'README.md': `# ${name}

A weft function: a \`wasi:http/incoming-handler@0.2\` component built from \`handler.js\` with componentize-js
(world: ${posix(relative(resolve('.'), join(sdkWitDir(), 'weft-function.wit')))}).

    npm run build     # build/function.wasm, and the sha256 to put in weft.yaml
    npm test          # builds, then serves it through weft's own function host

In weft.yaml:

\`\`\`yaml
functions:
  - { name: ${name}, namespace: default, url: file:///path/to/build/function.wasm, sha256: <printed by the build>,
      limits: { memoryMb: 128, cpuMs: 50, timeoutMs: 30000, maxInstances: 16, idleTimeoutMs: 30000 },
      env: {}, allowedOutboundHosts: [] }   # reachable as ${name}.default:80
\`\`\`
`,
  };
}

/** Writes PARENT/NAME with `files(name, pathToRepo)`; refuses a bad name or an existing folder. Returns the folder. */
export async function writeScaffold(what: 'function' | 'filter', name: string, parent: string, files: (name: string, toRepo: string) => Record<string, string>): Promise<string> {
  if (!isFunctionName(name)) throw new WeftError('WEFT_ERR_PLUGIN_BUILD', `"${name}" is not a ${what} name (lower-case letters, digits and "-", starting with a letter)`);
  const dir = resolve(parent, name);
  if (await stat(dir).then(() => true, () => false)) throw new WeftError('WEFT_ERR_PLUGIN_BUILD', `${dir} already exists`);
  const repo = resolve(sdkWitDir(), '..', '..');
  await mkdir(dir, { recursive: true });
  for (const [file, text] of Object.entries(files(name, relative(dir, repo) || '.'))) await writeFile(join(dir, file), text);
  return dir;
}

/** Writes PARENT/NAME; refuses an existing folder. Returns the folder. */
export function scaffoldFunction(name: string, parent: string): Promise<string> {
  return writeScaffold('function', name, parent, files);
}
