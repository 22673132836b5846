/** The side-effect seam: runs `ip`, `iptables-restore`, `ipset`, `sysctl` ... with execFile (argument vectors, never a shell), optionally inside another network namespace. */
import { execFile } from 'node:child_process';
import { WeftError } from '../runtime/errors.js';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandRunner {
  /** The namespace path commands run in, or undefined for the caller's own. */
  readonly netns: string | undefined;
  /** Runs and resolves with the exit code; never rejects for a non-zero exit. */
  exec(command: string, args: string[], input?: string): Promise<CommandResult>;
  /** Runs and rejects with WEFT_ERR_CNI (naming the command and its stderr) on a non-zero exit. */
  run(command: string, args: string[], input?: string): Promise<string>;
}

const MAX_OUTPUT = 16 * 1024 * 1024;

/** `nsenter --net=PATH` keeps the caller's mount namespace, so /var/run files and /usr/lib binaries stay visible. */
export function createCommandRunner(netns?: string): CommandRunner {
  const exec = (command: string, args: string[], input?: string): Promise<CommandResult> =>
    new Promise((resolve, reject) => {
      const [file, argv] = netns === undefined ? [command, args] : ['nsenter', [`--net=${netns}`, '--', command, ...args]];
      const child = execFile(file, argv, { maxBuffer: MAX_OUTPUT, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err !== null && typeof err.code !== 'number') {
          reject(new WeftError('WEFT_ERR_CNI', `cannot run ${command}: ${err.message} (is it installed?)`, { cause: err }));
          return;
        }
        resolve({ code: err === null ? 0 : (err.code as number), stdout, stderr });
      });
      // A command that never reads stdin closes it early; that EPIPE is not an error of the command.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(input ?? '');
    });
  return {
    netns,
    exec,
    async run(command, args, input) {
      const r = await exec(command, args, input);
      if (r.code !== 0) {
        const where = netns === undefined ? '' : ` in ${netns}`;
        throw new WeftError('WEFT_ERR_CNI', `${command} ${args.join(' ')}${where} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
      }
      return r.stdout;
    },
  };
}
