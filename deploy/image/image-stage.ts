/** The one definition of the image's weft files: lays out, under a staging directory, what both build paths copy to `/` (the runtime under /app, the weft and weft-cni commands, the host-side weft-cni bundle). */
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';
import { productionPackages, type PackageLock } from './production-deps.js';

export const IMAGE_LAYOUT = {
  /** The runtime: package.json (ESM), dist/, production node_modules, the native addon, first-party plugins. */
  app: '/app',
  /** weft-cni bundled into one ES module; the installer ships it to the host with the Node binary that runs it. */
  cniBundle: '/usr/local/lib/weft-cni/weft-cni.mjs',
  commands: '/usr/local/bin',
  /** The image's default config path (`weft run` with no flag); the DaemonSet mounts its ConfigMap here. */
  config: '/etc/weft/weft.yaml',
} as const;

/** Files of node_modules that Node never loads: types, sources, source maps, documents. */
const PRUNED_FILE = /(\.d\.[cm]?ts|\.ts|\.map|\.md|\.markdown)$/i;

/** Fills `out` (emptied first) from a checkout where `npm ci` has run (dist/, the addon and the plugins are built). */
export function stageImage(repo: string, out: string): void {
  for (const needed of ['dist/runtime/cli.js', 'dist/cni/main.js', 'runtime/native/build/Release']) {
    if (!existsSync(path.join(repo, needed))) throw new Error(`${needed} is missing: run npm ci (or npm run build) before building the image`);
  }
  rmSync(out, { recursive: true, force: true });
  const app = path.join(out, IMAGE_LAYOUT.app);
  mkdirSync(app, { recursive: true });

  const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as Record<string, unknown>;
  const { name, version, description, license, type, engines, dependencies } = pkg;
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name, version, description, license, type, engines, dependencies }, null, 2) + '\n');

  for (const dir of ['dist/runtime', 'dist/cni']) cpSync(path.join(repo, dir), path.join(app, dir), { recursive: true });
  for (const file of ['bin/weft.js', 'bin/weft-cni.js']) copyInto(path.join(repo, file), path.join(app, file));
  copyRuntimeAssets(path.join(repo, 'runtime'), path.join(app, 'runtime'));
  for (const addon of readdirSync(path.join(repo, 'runtime/native/build/Release')).filter((f) => f.endsWith('.node'))) {
    copyInto(path.join(repo, 'runtime/native/build/Release', addon), path.join(app, 'runtime/native/build/Release', addon));
  }
  for (const plugin of readdirSync(path.join(repo, 'plugins'))) {
    const wasm = path.join(repo, 'plugins', plugin, 'build/release.wasm');
    if (existsSync(wasm)) copyInto(wasm, path.join(app, 'plugins', plugin, 'build/release.wasm'));
  }
  copyProductionModules(repo, app);

  const commands = path.join(out, IMAGE_LAYOUT.commands);
  mkdirSync(commands, { recursive: true });
  symlinkSync(path.join(IMAGE_LAYOUT.app, 'bin/weft.js'), path.join(commands, 'weft'));
  symlinkSync(path.join(IMAGE_LAYOUT.app, 'bin/weft-cni.js'), path.join(commands, 'weft-cni'));
  mkdirSync(path.join(out, path.dirname(IMAGE_LAYOUT.config)), { recursive: true });
  bundleCni(repo, path.join(out, IMAGE_LAYOUT.cniBundle));
}

/** Non-TypeScript files the runtime reads beside its modules (the rate-limit service's protos, say); the native sources stay out. */
function copyRuntimeAssets(from: string, to: string): void {
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'native' && entry.name !== 'node_modules') copyRuntimeAssets(source, path.join(to, entry.name));
    } else if (!/\.(ts|md)$/.test(entry.name)) copyInto(source, path.join(to, entry.name));
  }
}

function copyProductionModules(repo: string, app: string): void {
  const lock = JSON.parse(readFileSync(path.join(repo, 'package-lock.json'), 'utf8')) as PackageLock;
  for (const key of productionPackages(lock, (k) => existsSync(path.join(repo, k)))) {
    // Type-only packages (protobufjs lists @types/node as a dependency) have nothing to load.
    if (/(^|\/)node_modules\/@types\//.test(key)) continue;
    // 93 MB that jco-transpile resolves only for its optimize and asm.js modes, which weft's admission never uses.
    if (/(^|\/)node_modules\/binaryen$/.test(key)) continue;
    cpSync(path.join(repo, key), path.join(app, key), {
      recursive: true,
      // A package's own node_modules holds its nested dependencies, each copied only if it is in the closure.
      filter: (src) => !(path.basename(src) === 'node_modules' && src !== path.join(repo, key)) && !(PRUNED_FILE.test(src) && statSync(src).isFile()),
    });
  }
}

/** weft-cni and everything it imports in one ES module, so the host needs only Node to run it. */
function bundleCni(repo: string, outfile: string): void {
  buildSync({
    entryPoints: [path.join(repo, 'cni/main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    outfile,
    logLevel: 'warning',
    // CommonJS dependencies inside an ES module bundle call require() for Node built-ins.
    banner: { js: "import { createRequire as __weftRequire } from 'node:module'; const require = __weftRequire(import.meta.url);" },
  });
}

function copyInto(source: string, target: string): void {
  mkdirSync(path.dirname(target), { recursive: true });
  copyFileSync(source, target);
}

/** `node dist/deploy/image/image-stage.js OUT`: the registry Dockerfile's build stage lays the files out with this. */
function main(): void {
  const out = process.argv[2];
  if (out === undefined) throw new Error('usage: image-stage.js OUT_DIR');
  stageImage(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..'), path.resolve(out));
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) main();
