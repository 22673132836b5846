/**
 * Resolves the relative imports between weft's own compiled modules (`./x.js` under dist/) straight to their URL, and
 * leaves every other import (packages, `node:` modules, JSON, the TypeScript sources under tsx) to Node's resolver.
 *
 * Why: Node's ESM resolver checks and realpaths each of the ~155 imports a start-up resolves, and that loop over path
 * strings is hot enough that V8 compiles `path.normalizeString` with TurboFan during start-up. That one compile touches
 * about 5 MB of the node binary's compiler code, which an idle node then keeps resident (test/bench/README.md, "Idle
 * memory"). With this resolver nothing reaches TurboFan before traffic does, and start-up makes ~300 fewer realpath
 * walks. Traffic tiers hot functions up as before.
 */
import module from 'node:module';

/** dist/: every `.js` file under it is an ES module (the package is `"type": "module"`) and none is a symlink. */
const ROOT = new URL('../', import.meta.url).href;

/** A relative `.js` specifier imported (not required) by a module under ROOT, landing under ROOT: its URL, else undefined. */
export function resolveOwnImport(specifier: string, parentUrl: string | undefined, conditions: readonly string[]): string | undefined {
  if (parentUrl === undefined || !parentUrl.startsWith(ROOT) || !specifier.endsWith('.js') || !conditions.includes('import')) return undefined;
  if (!specifier.startsWith('./') && !specifier.startsWith('../')) return undefined;
  const url = new URL(specifier, parentUrl).href;
  return url.startsWith(ROOT) ? url : undefined;
}

/**
 * Installs the resolver for this thread's later imports (each worker thread installs its own; hooks are per thread).
 * False where it does not apply: from TypeScript sources, whose `.js` specifiers name `.ts` files only tsx can map.
 */
export function installImportResolver(): boolean {
  if (!import.meta.url.endsWith('.js') || typeof module.registerHooks !== 'function') return false;
  module.registerHooks({
    resolve(specifier, context, nextResolve) {
      const url = resolveOwnImport(specifier, context.parentURL, context.conditions);
      // A parent's realpath joined with a relative specifier is the target's realpath: no symlinks under dist/.
      return url === undefined ? nextResolve(specifier, context) : { url, format: 'module', shortCircuit: true };
    },
  });
  return true;
}
