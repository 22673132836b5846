// Small process helpers for namespace tests: run a command (optionally inside a named netns) with an argument vector, and namespace create/delete.
import { execFile } from 'node:child_process';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(command: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args,
      { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: options.env ?? process.env, timeout: options.timeoutMs ?? 60_000 },
      (err, stdout, stderr) => {
        // A signal death (a test's SIGKILL fault injection) reads as the shell's 128+N exit status.
        if (err !== null && typeof err.code !== 'number' && err.signal == null) reject(new Error(`cannot run ${command}: ${err.message}`, { cause: err }));
        else resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 128 + 9, stdout, stderr });
      },
    );
    // A command that never reads stdin closes it early; that EPIPE is not an error of the command.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.input ?? '');
  });
}

/** Runs and throws with stderr on a non-zero exit. */
export async function must(command: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const r = await run(command, args, options);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/** `ip netns exec NS command args...` */
export function nsRun(ns: string, command: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return run('ip', ['netns', 'exec', ns, command, ...args], options);
}

export async function nsMust(ns: string, command: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return must('ip', ['netns', 'exec', ns, command, ...args], options);
}

let counter = 0;
/** A netns name unique to this process and call, short enough to prefix interface names. */
export function uniqueName(tag: string): string {
  counter += 1;
  return `wt${process.pid % 100000}${tag}${counter}`;
}

/**
 * IPv6 is off in test namespaces unless asked for: tunnel-mode redirection is IPv4-only and link-local addresses appearing
 * late would make snapshots race. With `ipv6`, duplicate address detection is off so addresses are usable at once.
 */
export async function createNetns(name: string, opts: { ipv6?: boolean } = {}): Promise<string> {
  await must('ip', ['netns', 'add', name]);
  const v6 = opts.ipv6 === true ? ['net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0'] : ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'];
  await must('ip', ['netns', 'exec', name, 'sysctl', '-q', '-w', ...v6]);
  await must('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return `/var/run/netns/${name}`;
}

export async function deleteNetns(name: string): Promise<void> {
  await run('ip', ['netns', 'del', name]);
}
