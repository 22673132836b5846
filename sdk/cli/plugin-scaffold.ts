/**
 * `weft plugin new NAME`: writes a complete plugin folder (package.json, asconfig extending the SDK's base,
 * assembly/index.ts, README with its config schema, and an emulator test that passes as generated). Paths to the SDK
 * are relative, so the folder works inside a weft checkout (plugins/NAME, picked up by the root test run) or beside it.
 */
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WeftError } from '../../runtime/errors.js';

/** The SDK folder (this file is sdk/cli/plugin-scaffold.ts, or dist/sdk/cli/plugin-scaffold.js once built). */
function sdkDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const parts = here.split(sep);
  const dist = parts.lastIndexOf('dist');
  // From dist/sdk/cli, the sources live at <repo>/sdk.
  return dist >= 0 ? join(parts.slice(0, dist).join(sep) || sep, 'sdk') : resolve(here, '..');
}

const posix = (p: string): string => p.split(sep).join('/');

export function isPluginName(name: string): boolean {
  return /^[a-z][a-z0-9-]{0,62}$/.test(name);
}

function files(name: string, toSdk: string): Record<string, string> {
  const className = name.replace(/(^|-)([a-z0-9])/g, (_m, _d, c: string) => c.toUpperCase());
  return {
    'package.json': `${JSON.stringify(
      {
        name: `@weft/plugin-${name}`,
        version: '0.1.0',
        private: true,
        description: `weft plugin ${name}`,
        type: 'module',
        scripts: {
          build:
            'asc assembly/index.ts --config asconfig.json --target release --outFile build/release.wasm && ' +
            'asc assembly/index.ts --config asconfig.json --target debug --outFile build/debug.wasm --textFile build/debug.wat',
          test: 'vitest run test',
        },
        dependencies: { '@weft/sdk': `file:${toSdk}` },
        devDependencies: { assemblyscript: '~0.28.20', vitest: '^4.1.12' },
      },
      null,
      2,
    )}\n`,
    'asconfig.json': `${JSON.stringify({ extends: `${toSdk}/asconfig.base.json` }, null, 2)}\n`,
    'assembly/tsconfig.json': `${JSON.stringify({ extends: 'assemblyscript/std/assembly.json', include: ['./**/*.ts'] }, null, 2)}\n`,
    'assembly/index.ts': `// ${name}: adds a configured response header to every response. Configuration: see README.md.
import {
  HeadersAction, HttpContext, RootContext, logError, parseJson, pluginConfiguration, registerRootContext, responseHeaders,
} from "@weft/sdk/assembly/index";
// Header-only: without body callbacks hosts stream bodies past this plugin (use "exports" to see bodies).
export * from "@weft/sdk/assembly/exports-headers-only";

class ${className}Root extends RootContext {
  header: string = "x-${name}";
  value: string = "on";

  onConfigure(configurationSize: u32): bool {
    const text = pluginConfiguration.text();
    if (text.length == 0) return true;
    const parsed = parseJson(text);
    if (!parsed.ok) {
      logError("${name}: configuration is not JSON: " + parsed.error);
      return false;
    }
    const config = parsed.value!.asObject();
    if (config === null) {
      logError("${name}: configuration must be a JSON object");
      return false;
    }
    const header = config.getString("header");
    const value = config.getString("value");
    if (header !== null) this.header = header;
    if (value !== null) this.value = value;
    return true;
  }

  newHttpContext(contextId: u32): HttpContext {
    return new ${className}(contextId, this);
  }
}

class ${className} extends HttpContext {
  onResponseHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    const root = <${className}Root>this.root;
    responseHeaders.replace(root.header, root.value);
    return HeadersAction.Continue;
  }
}

registerRootContext((id: u32): RootContext => new ${className}Root(id));
`,
    [`test/${name}.test.ts`]: `// ${name} through the weft plugin emulator (the runtime's own proxy-wasm host).
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, expect, it } from 'vitest';
import { EmulatorLoadError, PluginEmulator, ensurePluginBuilt } from '${toSdk}/testing/index.js';

let wasm: string;
let emu: PluginEmulator | undefined;

beforeAll(async () => {
  wasm = await ensurePluginBuilt(fileURLToPath(new URL('..', import.meta.url)));
});

afterEach(async () => {
  await emu?.close();
  emu = undefined;
});

it('adds the configured response header', async () => {
  emu = await PluginEmulator.create({ wasm, config: { header: 'x-hello', value: 'world' } });
  const stream = emu.stream();
  expect(stream.sendRequestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'example' }).action).toBe('continue');
  expect(stream.sendResponseHeaders({ ':status': '200' }).action).toBe('continue');
  expect(stream.responseHeader('x-hello')).toBe('world');
  stream.end();
});

it('refuses a configuration that is not JSON', async () => {
  await expect(PluginEmulator.create({ wasm, config: 'not json' })).rejects.toBeInstanceOf(EmulatorLoadError);
});
`,
    'README.md': `# ${name}

A weft plugin built with \`@weft/sdk\` (proxy-wasm ABI 0.2.1, so it also runs in Envoy).

## Configuration

| field | type | default | meaning |
|---|---|---|---|
| \`header\` | string | \`x-${name}\` | response header to set |
| \`value\` | string | \`on\` | its value |

A configuration that is not a JSON object is refused in \`onConfigure\`; the host keeps the previous one.

## Build and test

    npm run build        # or: weft plugin build .
    npx vitest run test  # runs the emulator test against build/release.wasm
`,
  };
}

/** Creates `parent/name`; refuses a bad name or an existing folder. Answers the folder's path. */
export async function scaffoldPlugin(name: string, parent: string): Promise<string> {
  if (!isPluginName(name)) {
    throw new WeftError('WEFT_ERR_PLUGIN_BUILD', `"${name}" is not a plugin name: use lower-case letters, digits and dashes, starting with a letter`);
  }
  const dir = resolve(parent, name);
  const exists = await stat(dir).then(
    () => true,
    () => false,
  );
  if (exists) throw new WeftError('WEFT_ERR_PLUGIN_BUILD', `${dir} already exists; pick another name or remove it`);
  const toSdk = posix(relative(dir, sdkDir()));
  for (const [file, text] of Object.entries(files(name, toSdk))) {
    const path = join(dir, file);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, text);
  }
  return dir;
}
