// The runtime's package closure: Node's nearest-node_modules resolution, optional packages absent on this platform
// skipped, a missing required one refused, and against the real lock file the dependencies but no dev tool.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { productionPackages, type PackageLock } from './production-deps.js';

const lock: PackageLock = {
  packages: {
    '': { dependencies: { a: '^1', c: '^1' } },
    'node_modules/a': { dependencies: { b: '^2' }, optionalDependencies: { 'a-linux': '1', 'a-darwin': '1' } },
    'node_modules/a/node_modules/b': { dependencies: { shared: '^1' } },
    'node_modules/b': { dependencies: {} },
    'node_modules/a-linux': {},
    'node_modules/a-darwin': {},
    'node_modules/c': { peerDependencies: { a: '^1', maybe: '^1' }, peerDependenciesMeta: { maybe: { optional: true } } },
    'node_modules/shared': {},
    'node_modules/dev-only': {},
  },
};

describe('productionPackages', () => {
  it('resolves nested copies first, follows peers, and skips optional packages that are not installed', () => {
    const installed = (key: string): boolean => key !== 'node_modules/a-darwin';
    expect(productionPackages(lock, installed)).toEqual(['node_modules/a', 'node_modules/a-linux', 'node_modules/a/node_modules/b', 'node_modules/c', 'node_modules/shared']);
  });

  it('refuses a lock file that does not resolve a required dependency', () => {
    const broken: PackageLock = { packages: { '': { dependencies: { gone: '^1' } } } };
    expect(() => productionPackages(broken)).toThrow(/needs gone/);
  });

  it("takes the real lock file's runtime dependencies and none of the build tools", () => {
    const real = JSON.parse(readFileSync(new URL('../../package-lock.json', import.meta.url), 'utf8')) as PackageLock;
    const keys = productionPackages(real);
    for (const dep of ['node_modules/zod', 'node_modules/undici', 'node_modules/@grpc/grpc-js', 'node_modules/ioredis']) expect(keys).toContain(dep);
    for (const dev of ['node_modules/vitest', 'node_modules/typescript', 'node_modules/assemblyscript', 'node_modules/esbuild']) expect(keys).not.toContain(dev);
  });
});
