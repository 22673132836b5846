/**
 * Compiles a plugin folder (assembly/index.ts + asconfig.json extending the SDK's base) with the AssemblyScript
 * compiler API: an optimized release build (build/release.wasm) and a debug build with names, a .wat and a source map.
 */
import { mkdir, readFile, rename, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import asc from 'assemblyscript/asc';
import { WeftError } from '../../runtime/errors.js';

export const BUILD_TARGETS = ['release', 'debug'] as const;
export type BuildTarget = (typeof BUILD_TARGETS)[number];

export interface BuiltFile {
  target: BuildTarget;
  file: string;
  bytes: number;
}

/** Collects a compiler output stream into a string. */
function sink(): { write(chunk: string | Uint8Array): void; toString(): string } {
  const parts: string[] = [];
  const decoder = new TextDecoder();
  return {
    write(chunk) {
      parts.push(typeof chunk === 'string' ? chunk : decoder.decode(chunk));
    },
    toString: () => parts.join(''),
  };
}

async function checkPluginDir(dir: string): Promise<void> {
  for (const f of ['assembly/index.ts', 'asconfig.json']) {
    try {
      await stat(join(dir, f));
    } catch (err) {
      throw new WeftError('WEFT_ERR_PLUGIN_BUILD', `${dir} is not a plugin folder: ${f} is missing (create one with \`weft plugin new NAME\`)`, { cause: err });
    }
  }
}

/**
 * Builds `targets` of the plugin in `dir`; each output is written under a temporary name and renamed into place, so a
 * concurrent reader never sees half a module. Throws WEFT_ERR_PLUGIN_BUILD with the compiler's diagnostics.
 */
export async function buildPlugin(dir: string, targets: readonly BuildTarget[] = BUILD_TARGETS): Promise<BuiltFile[]> {
  const root = resolve(dir);
  await checkPluginDir(root);
  await mkdir(join(root, 'build'), { recursive: true });
  const built: BuiltFile[] = [];
  for (const target of targets) {
    const tmp = `build/.${target}-${process.pid}-${Date.now()}.wasm`;
    const args = ['assembly/index.ts', '--config', 'asconfig.json', '--target', target, '--baseDir', root, '--outFile', tmp];
    if (target === 'debug') args.push('--textFile', 'build/debug.wat', '--sourceMap');
    const stdout = sink();
    const stderr = sink();
    const result = await asc.main(args, { stdout, stderr });
    if (result.error !== null) {
      throw new WeftError('WEFT_ERR_PLUGIN_BUILD', `compiling ${root} (${target}) failed: ${result.error.message}\n${stderr.toString().trim()}`, { cause: result.error });
    }
    const file = join(root, 'build', `${target}.wasm`);
    await rename(join(root, tmp), file);
    if (target === 'debug') await renameIfPresent(join(root, `${tmp}.map`), `${file}.map`);
    built.push({ target, file, bytes: (await readFile(file)).length });
  }
  return built;
}

async function renameIfPresent(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
