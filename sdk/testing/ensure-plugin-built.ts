/**
 * Makes sure a plugin's build/release.wasm exists and is newer than its sources and the SDK's, compiling it when not:
 * `npm ci` builds every plugin at install, and this covers edits made since (and a clone where the build was skipped).
 */
import { readdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SDK_ASSEMBLY = resolve(dirname(fileURLToPath(import.meta.url)), '../assembly');

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (!e.isFile() || !e.name.endsWith('.ts')) continue;
    const s = await stat(join(e.parentPath, e.name));
    newest = Math.max(newest, s.mtimeMs);
  }
  return newest;
}

async function mtime(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).mtimeMs;
  } catch {
    return undefined;
  }
}

/** The path of the plugin's up-to-date release build. */
export async function ensurePluginBuilt(pluginDir: string): Promise<string> {
  const dir = resolve(pluginDir);
  const out = join(dir, 'build', 'release.wasm');
  const built = await mtime(out);
  const sources = Math.max(await newestMtime(join(dir, 'assembly')), await newestMtime(SDK_ASSEMBLY), (await mtime(join(dir, 'asconfig.json'))) ?? 0);
  if (built === undefined || built < sources) {
    // Loaded only when a build is needed: the AssemblyScript compiler is large and most runs find the build fresh.
    const { buildPlugin } = await import('../cli/plugin-build.js');
    await buildPlugin(dir, ['release']);
  }
  return out;
}
