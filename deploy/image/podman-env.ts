/** How podman and buildah run on these machines (no systemd, no raising RLIMIT_NPROC): runc with cgroupfs and no default ulimits, through a containers.conf of our own. */
import { execFile, execFileSync, type ExecFileOptions } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { defaultCacheDir } from './debian-base.js';

const CONTAINERS_CONF = `# Written by weft's image tooling (deploy/image/podman-env.ts).
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
`;

/** process.env plus CONTAINERS_CONF pointing at the file above (written once into the image cache directory). */
export function podmanEnv(cacheDir = defaultCacheDir()): NodeJS.ProcessEnv {
  const file = path.join(cacheDir, 'containers.conf');
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(file, CONTAINERS_CONF);
  return { ...process.env, CONTAINERS_CONF: file };
}

/** Runs podman with the environment above; returns stdout, throws with podman's stderr on failure. */
export function podman(args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): string {
  return execFileSync('podman', args, { env: options.env ?? podmanEnv(), encoding: 'utf8', input: options.input, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
}

const execFileAsync = promisify(execFile);

export async function podmanAsync(args: string[], options: ExecFileOptions = {}): Promise<{ stdout: string; stderr: string }> {
  const { stdout, stderr } = await execFileAsync('podman', args, { env: podmanEnv(), encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  return { stdout: String(stdout), stderr: String(stderr) };
}
