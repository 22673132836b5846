/** `npm run image`: builds the weft image with podman from the cached Debian base, the build machine's Node 24 and the staged weft files, and reports its size and build time. */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, renameSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { debianBaseKey, defaultCacheDir, ensureDebianBase } from './debian-base.js';
import { stageImage } from './image-stage.js';
import { podman, podmanEnv } from './podman-env.js';

export const DEFAULT_IMAGE = 'ghcr.io/weft/weft:0.1.0';

export interface ImageBuildResult {
  image: string;
  id: string;
  sizeBytes: number;
  seconds: number;
}

export interface ImageBuildOptions {
  repo: string;
  tag?: string;
  cacheDir?: string;
  log?: (line: string) => void;
}

export function buildImage(options: ImageBuildOptions): ImageBuildResult {
  const started = process.hrtime.bigint();
  const log = options.log ?? (() => undefined);
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const tag = options.tag ?? DEFAULT_IMAGE;
  const env = podmanEnv(cacheDir);

  const base = `localhost/weft-base:debian-${debianBaseKey()}`;
  if (!imageExists(base, env)) {
    const tarball = ensureDebianBase({ cacheDir, log });
    log(`podman import ${path.basename(tarball)} as ${base}`);
    podman(['import', '--quiet', tarball, base], { env });
  }

  // One context per tag, so `npm run image` and the image tests can build side by side.
  const context = path.join(options.repo, 'build/image', tag.replace(/[^\w.-]+/g, '_'));
  stageImage(options.repo, path.join(context, 'stage'));
  copyFileSync(strippedNode(cacheDir), path.join(context, 'node'));
  copyFileSync(path.join(options.repo, 'deploy/image/Containerfile'), path.join(context, 'Containerfile'));

  const previous = imageExists(tag, env) ? podman(['image', 'inspect', '--format', '{{.Id}}', tag], { env }).trim() : undefined;
  log(`podman build -t ${tag}`);
  podman(['build', '--quiet', '--layers', '--pull=never', '--build-arg', `BASE=${base}`, '-t', tag, '-f', path.join(context, 'Containerfile'), context], { env });
  const [id = '', size = '0'] = podman(['image', 'inspect', '--format', '{{.Id}} {{.Size}}', tag], { env }).trim().split(' ');
  // A rebuild leaves the old image untagged; drop it unless a container still uses it.
  if (previous !== undefined && previous !== id) {
    try {
      podman(['rmi', previous], { env });
    } catch {
      log(`kept the previous image ${previous.slice(0, 12)}: a container still uses it`);
    }
  }
  return { image: tag, id, sizeBytes: Number(size), seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

function imageExists(image: string, env: NodeJS.ProcessEnv): boolean {
  try {
    podman(['image', 'exists', image], { env });
    return true;
  } catch {
    return false;
  }
}

/**
 * The Node binary running this build (scripts/node24.sh puts Node 24 first in PATH), without its 18 MB of symbols;
 * the dynamic symbol table that native addons link against stays. Cached per Node version.
 */
function strippedNode(cacheDir: string): string {
  const out = path.join(cacheDir, `node-${process.version}-${process.arch}-stripped`);
  if (existsSync(out)) return out;
  if (!process.version.startsWith('v24.')) throw new Error(`the image ships the Node that builds it, and this is ${process.version}: run eval "$(scripts/node24.sh)" first`);
  mkdirSync(cacheDir, { recursive: true });
  const partial = `${out}.${process.pid}.partial`;
  copyFileSync(process.execPath, partial);
  execFileSync('strip', ['--strip-debug', '--strip-unneeded', partial]);
  renameSync(partial, out);
  return out;
}

function main(): void {
  const { values } = parseArgs({ options: { tag: { type: 'string', short: 't' } } });
  const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
  const result = buildImage({ repo, tag: values.tag, log: (line) => process.stderr.write(`image: ${line}\n`) });
  process.stdout.write(`${result.image} ${result.id.slice(0, 12)}: ${(result.sizeBytes / 1e6).toFixed(1)} MB, built in ${result.seconds.toFixed(1)} s\n`);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) main();
