/**
 * Builds a JS function or component filter into a Wasm component with componentize-js (StarlingMonkey + Wizer),
 * against weft's worlds in sdk/wit and the WASI 0.2 packages jco bundles. What `weft fn build` runs.
 */
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WeftError } from '../errors.js';

/** WASI packages a weft world may use, by the folder name jco's bundled WIT gives them. */
const WASI_PACKAGES = ['cli', 'clocks', 'filesystem', 'http', 'io', 'random', 'sockets'];
const WASI_VERSION = '0.2.12';

/** weft's worlds: a function (sdk/wit/weft-function.wit) or a typed L7 filter, headers only or with bodies (weft-filter.wit). */
export type ComponentWorld = 'function' | 'http-filter' | 'http-body-filter';

/** The sdk/wit file that defines `world`. */
export function witFileOf(world: ComponentWorld): string {
  return world === 'function' ? 'weft-function.wit' : 'weft-filter.wit';
}

/** sdk/wit of this checkout (from the sources or from dist/). */
export function sdkWitDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'sdk', 'wit', 'weft-function.wit'))) return join(dir, 'sdk', 'wit');
    dir = dirname(dir);
  }
  throw new WeftError('WEFT_ERR_PLUGIN_BUILD', 'cannot find sdk/wit (weft-function.wit) above the runtime');
}

/** The folder of an installed package, found as Node would (node_modules upwards); its exports map hides package.json. */
export function packageDir(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    const up = dirname(dir);
    if (up === dir) throw new WeftError('WEFT_ERR_PLUGIN_BUILD', `${name} is not installed (npm install)`);
    dir = up;
  }
}

function jcoWitDir(): string {
  return join(packageDir('@bytecodealliance/jco'), 'lib', 'wit', 'builtin', WASI_VERSION);
}

/** A WIT folder for componentize: the world file plus deps/ with the WASI packages. */
async function witFolder(world: ComponentWorld): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-wit-'));
  await writeFile(join(dir, 'world.wit'), await readFile(join(sdkWitDir(), witFileOf(world))));
  const jco = jcoWitDir();
  if (world === 'function') for (const p of WASI_PACKAGES) await cp(join(jco, `wasi-${p}`), join(dir, 'deps', p), { recursive: true });
  return dir;
}

export interface BuildResult {
  component: Uint8Array;
  ms: number;
}

/** componentize-js of `sourcePath` for `world`; a function must export `incomingHandler` (the reference explains why not fetch events). */
export async function buildJsComponent(sourcePath: string, world: ComponentWorld): Promise<BuildResult> {
  const source = await readFile(sourcePath, 'utf8');
  if (world === 'function' && !/export\s+(const|let|var|function)\s+incomingHandler\b|export\s*\{[^}]*\bincomingHandler\b/.test(source)) {
    throw new WeftError('WEFT_ERR_PLUGIN_BUILD', `${sourcePath} does not export incomingHandler: a weft function exports it explicitly (addEventListener('fetch') handlers cannot serve a second request on the same instance)`);
  }
  const started = performance.now();
  // preview2-shim starts with no preopened directories, and componentize's splicer reads the WIT and the source through it.
  const shim = (await import('@bytecodealliance/preview2-shim/filesystem')) as unknown as { _setPreopens: (p: Record<string, string>) => void };
  shim._setPreopens({ '/': '/' });
  const cjs = (await import('@bytecodealliance/componentize-js')) as unknown as {
    componentize: (opts: { sourcePath: string; witPath: string; worldName: string; disableFeatures?: string[] }) => Promise<{ component: Uint8Array }>;
  };
  const componentize = cjs.componentize;
  const wit = await witFolder(world);
  try {
    const { component } = await componentize({
      sourcePath: resolve(sourcePath),
      witPath: wit,
      worldName: world,
      // A function serves many requests per instance, which fetch-event handlers cannot (StarlingMonkey#247); a filter has no I/O at all.
      disableFeatures: world === 'function' ? ['fetch-event'] : ['fetch-event', 'http', 'stdio', 'clocks', 'random'],
    });
    return { component, ms: performance.now() - started };
  } catch (err) {
    throw new WeftError('WEFT_ERR_PLUGIN_BUILD', `componentize-js failed for ${sourcePath}: ${(err as Error).message}`, { cause: err });
  } finally {
    await rm(wit, { recursive: true, force: true });
  }
}
