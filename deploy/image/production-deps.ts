/** The packages the runtime needs at run time: the closure of the root's dependencies through package-lock.json, resolved the way Node resolves them (nearest node_modules first). */

interface LockPackage {
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  link?: boolean;
}

export interface PackageLock {
  packages: Record<string, LockPackage>;
}

/** Lock keys (`node_modules/a`, `node_modules/a/node_modules/b`) of every package reachable from the root's dependencies. */
export function productionPackages(lock: PackageLock, installed: (key: string) => boolean = () => true): string[] {
  const root = lock.packages[''];
  if (root === undefined) throw new Error('package-lock.json has no root package entry (lockfileVersion 2 or later is needed)');
  const found = new Set<string>();
  const visit = (from: string, pkg: LockPackage): void => {
    const required = Object.keys(pkg.dependencies ?? {});
    const optional = [
      ...Object.keys(pkg.optionalDependencies ?? {}),
      ...Object.keys(pkg.peerDependencies ?? {}).filter((n) => pkg.peerDependenciesMeta?.[n]?.optional === true),
    ];
    const peers = Object.keys(pkg.peerDependencies ?? {}).filter((n) => pkg.peerDependenciesMeta?.[n]?.optional !== true);
    for (const name of [...required, ...peers, ...optional]) {
      const key = resolve(lock, from, name);
      // Optional packages for other platforms are in the lock but not on disk: Node never loads them here either.
      if (key === undefined || !installed(key)) {
        if (required.includes(name) || peers.includes(name)) throw new Error(`${from || 'the root package'} needs ${name}, which package-lock.json does not resolve (run npm ci)`);
        continue;
      }
      if (found.has(key)) continue;
      found.add(key);
      visit(key, lock.packages[key]!);
    }
  };
  visit('', root);
  return [...found].sort();
}

/** Node's lookup: `<from>/node_modules/<name>`, then each enclosing node_modules up to the root. */
function resolve(lock: PackageLock, from: string, name: string): string | undefined {
  let base = from;
  for (;;) {
    const key = base === '' ? `node_modules/${name}` : `${base}/node_modules/${name}`;
    if (lock.packages[key] !== undefined) return key;
    if (base === '') return undefined;
    const cut = base.lastIndexOf('/node_modules/');
    base = cut < 0 ? '' : base.slice(0, cut);
  }
}
