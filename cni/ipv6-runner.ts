/** The IPv6 twin of a CommandRunner: the in-pod applier and undo run unchanged for a pod's IPv6 rules, with each command swapped for its IPv6 counterpart (ip6tables-*, `ip -6`, nft family ip6). */
import type { CommandResult, CommandRunner } from './command-runner.js';

/** iptables tools per family: the IPv6 ones read and write the ip6 tables only. */
const IPTABLES_V6: Record<string, string> = {
  'iptables-nft-save': 'ip6tables-nft-save',
  'iptables-nft-restore': 'ip6tables-nft-restore',
  'iptables-legacy-save': 'ip6tables-legacy-save',
  'iptables-legacy-restore': 'ip6tables-legacy-restore',
};

function translate(command: string, args: string[]): [string, string[]] {
  const v6 = IPTABLES_V6[command];
  if (v6 !== undefined) return [v6, args];
  // ip rule / ip route (and `ip -j rule`): the -6 table of the same name.
  if (command === 'ip') return ['ip', ['-6', ...args]];
  // nft list tables ip / list table ip T / delete table ip T: iptables-nft keeps IPv6 rules in family ip6.
  if (command === 'nft') return ['nft', args.map((a, i) => (a === 'ip' && i > 0 && (args[i - 1] === 'tables' || args[i - 1] === 'table') ? 'ip6' : a))];
  return [command, args];
}

/** `nft list tables ip6` prints `table ip6 NAME`; the applier parses the IPv4 form. */
const untranslate = (command: string, r: CommandResult): CommandResult => (command === 'nft' ? { ...r, stdout: r.stdout.replace(/^table ip6 /gm, 'table ip ') } : r);

export function ipv6Runner(runner: CommandRunner): CommandRunner {
  return {
    netns: runner.netns,
    exec: async (command, args, input) => {
      const [c, a] = translate(command, args);
      return untranslate(command, await runner.exec(c, a, input));
    },
    run: async (command, args, input) => {
      const [c, a] = translate(command, args);
      const out = await runner.run(c, a, input);
      return untranslate(command, { code: 0, stdout: out, stderr: '' }).stdout;
    },
  };
}
