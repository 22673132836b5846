/**
 * `weft fn new --filter NAME`: a JS component filter folder (filter.js for the weft:filter/http-filter world,
 * package.json with build and test scripts, a test that runs the built component through weft's own filter host, and a
 * README). Paths to weft are relative, as for functions (fn-scaffold.ts).
 */
import { join, relative, resolve, sep } from 'node:path';
import { sdkWitDir } from '../../runtime/functions/component-build.js';
import { writeScaffold } from './fn-scaffold.js';

const posix = (p: string): string => p.split(sep).join('/');

function files(name: string, toRepo: string): Record<string, string> {
  const cli = posix(join(toRepo, 'dist', 'runtime', 'cli.js'));
  return {
    'filter.js': `// ${name}: a weft component filter (world weft:filter/http-filter). Build: npm run build; test: npm test.
// Runs in weft's L7 chain next to proxy-wasm plugins, on the event loop: no I/O, only the host's header functions.
import { log, property, setHeader } from 'weft:filter/host@0.1.0';

const enc = new TextEncoder();
const dec = new TextDecoder();
let denyPrefix = '/admin';

export const filter = {
  // The plugin's \`config\` from weft.yaml, as JSON bytes; throwing refuses the configuration.
  configure(config) {
    if (config.length > 0) denyPrefix = JSON.parse(dec.decode(config)).denyPrefix ?? denyPrefix;
  },
  onRequestHeaders(endOfStream) {
    const path = dec.decode(property('request.path') ?? new Uint8Array());
    if (path.startsWith(denyPrefix)) {
      log(2, \`${name} denied \${path}\`);
      return { tag: 'respond', val: { status: 403, headers: [['content-type', enc.encode('text/plain')]], body: enc.encode('forbidden\\n') } };
    }
    setHeader('x-filtered', enc.encode('${name}'));
    return { tag: 'continue' };
  },
  onResponseHeaders(endOfStream) {
    setHeader('x-filtered-by', enc.encode('${name}'));
    return { tag: 'continue' };
  },
};
`,
    'package.json': `${JSON.stringify(
      { name: `@weft-filter/${name}`, version: '0.1.0', private: true, type: 'module', scripts: { build: `node ${cli} fn build .`, test: 'vitest run' } },
      null,
      2,
    )}\n`,
    'filter.test.ts': `// Runs the built component through weft's own filter host and L7 adapter (the code the proxy runs).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { serveFilter, type FilterUnderTest } from '${posix(join(toRepo, 'sdk', 'testing', 'filter-harness.js'))}';

const dir = fileURLToPath(new URL('.', import.meta.url));
let filter: FilterUnderTest;

beforeAll(async () => {
  execFileSync(process.execPath, ['${cli}', 'fn', 'build', dir], { cwd: dir, stdio: 'inherit' });
  filter = await serveFilter(\`\${dir}build/filter.wasm\`, { config: { denyPrefix: '/private' } });
}, 600_000);

afterAll(() => filter?.close());

it('marks requests and responses', async () => {
  const r = await filter.request({ path: '/hello', headers: [['accept', '*/*']] });
  expect(r.reply).toBeUndefined();
  expect(r.headers).toContainEqual(['x-filtered', '${name}']);
  expect((await r.response(200)).headers).toContainEqual(['x-filtered-by', '${name}']);
});

it('answers 403 under the configured prefix', async () => {
  const r = await filter.request({ path: '/private/x' });
  expect(r.reply).toMatchObject({ status: 403 });
});
`,
    'README.md': `# ${name}

A weft component filter: an L7 filter built from \`filter.js\` with componentize-js for the
\`weft:filter/http-filter\` world (${posix(relative(resolve('.'), join(sdkWitDir(), 'weft-filter.wit')))}). Export
\`bodyFilter\` as well to get the \`http-body-filter\` world (whole bodies and trailers).

    npm run build     # build/filter.wasm, and the sha256 to put in weft.yaml
    npm test          # builds, then runs it through weft's own filter host

In weft.yaml it is attached like any proxy-wasm plugin (same phase, priority, failStrategy and limits):

\`\`\`yaml
plugins:
  - { name: ${name}, url: file:///path/to/build/filter.wasm, sha256: <printed by the build>, kind: component,
      phase: AUTHZ, failStrategy: FAIL_CLOSE, config: { denyPrefix: /admin }, limits: { cpuMs: 50, memoryMb: 64 } }
services:
  - { name: reviews, ..., annotations: { weft.dev/plugins: ${name} } }
\`\`\`
`,
  };
}

/** Writes PARENT/NAME; refuses an existing folder. Returns the folder. */
export function scaffoldFilter(name: string, parent: string): Promise<string> {
  return writeScaffold('filter', name, parent, files);
}
