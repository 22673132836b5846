/** Dispatches `weft <group> build|new|help` to its handlers; a WeftError prints its message (never a stack) and exits 1. */
import { weftErrorOf } from '../../runtime/errors.js';

export type Subcommand = (argv: string[]) => Promise<number>;

export async function runSubcommands(group: string, usage: string, handlers: Record<string, Subcommand>, argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub === undefined || sub === 'help' || sub === '--help') {
      process.stdout.write(usage);
      return sub === undefined ? 2 : 0;
    }
    const handler = Object.hasOwn(handlers, sub) ? handlers[sub] : undefined;
    if (handler === undefined) {
      process.stderr.write(`weft ${group}: unknown command "${sub}"\n${usage}`);
      return 2;
    }
    return await handler(rest);
  } catch (err) {
    const known = weftErrorOf(err);
    if (known === undefined) throw err;
    process.stderr.write(`weft ${group} ${sub}: ${known.message}\n`);
    return 1;
  }
}
