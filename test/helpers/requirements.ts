// Test prerequisites (root, a Debian package's command, a kernel feature): a test that lacks one skips
// itself with the reason as its note; the skip-policy reporter lets only kernel-feature skips pass in CI.
import { execFileSync, spawnSync } from 'node:child_process';

export const KERNEL_FEATURE_SKIP_PREFIX = 'kernel feature missing:';

interface SkipContext {
  skip(note?: string): never;
}

export const isRoot = (): boolean => process.getuid?.() === 0;

export function hasCommand(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** Call first thing in a test body: `requireRoot(ctx)`. */
export function requireRoot(ctx: SkipContext): void {
  if (!isRoot()) ctx.skip('requires root (CAP_NET_ADMIN): run as root, as CI does');
}

export function requireCommands(ctx: SkipContext, ...commands: string[]): void {
  const missing = commands.filter((c) => !hasCommand(c));
  if (missing.length > 0) ctx.skip(`requires ${missing.join(', ')} (install the Debian packages listed in .ci/run)`);
}

const kernelFeatureCache = new Map<string, boolean>();

/** True when `ip link add` accepts the link type (geneve, vxlan, ...) in a scratch namespace. */
export function kernelHasLinkType(type: 'geneve' | 'vxlan'): boolean {
  const cached = kernelFeatureCache.get(type);
  if (cached !== undefined) return cached;
  const ns = `weft-probe-${process.pid}-${type}`;
  let ok = false;
  try {
    execFileSync('ip', ['netns', 'add', ns], { stdio: 'ignore' });
    const args = type === 'geneve' ? ['id', '1', 'remote', '127.0.0.1'] : ['id', '1', 'dstport', '4789', 'local', '127.0.0.1'];
    ok = spawnSync('ip', ['-n', ns, 'link', 'add', 'probe0', 'type', type, ...args], { stdio: 'ignore' }).status === 0;
  } catch {
    ok = false;
  } finally {
    spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  }
  kernelFeatureCache.set(type, ok);
  return ok;
}

/** The only skip CI accepts: the running kernel lacks `feature` (the note names it). */
export function requireKernelFeature(ctx: SkipContext, feature: string, present: boolean): void {
  if (!present) ctx.skip(`${KERNEL_FEATURE_SKIP_PREFIX} ${feature} (this kernel was built without it)`);
}
