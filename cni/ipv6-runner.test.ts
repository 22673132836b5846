// The IPv6 twin of a command runner: each command the in-pod applier issues is swapped for its IPv6 counterpart, and nft's
// ip6 table listing reads back in the form the applier parses.
import { describe, expect, it } from 'vitest';
import type { CommandRunner } from './command-runner.js';
import { ipv6Runner } from './ipv6-runner.js';

function recording(stdout = ''): CommandRunner & { seen: string[] } {
  const seen: string[] = [];
  return {
    seen,
    netns: '/var/run/netns/pod',
    exec: (c, a) => {
      seen.push([c, ...a].join(' '));
      return Promise.resolve({ code: 0, stdout, stderr: '' });
    },
    run: (c, a) => {
      seen.push([c, ...a].join(' '));
      return Promise.resolve(stdout);
    },
  };
}

describe('ipv6Runner', () => {
  it('runs ip6tables, ip -6 and nft family ip6 in place of their IPv4 forms, in the same namespace', async () => {
    const inner = recording();
    const v6 = ipv6Runner(inner);
    expect(v6.netns).toBe('/var/run/netns/pod');
    await v6.run('iptables-nft-save', []);
    await v6.exec('iptables-nft-restore', ['--noflush'], '*nat\nCOMMIT\n');
    await v6.exec('iptables-legacy-save', []);
    await v6.run('ip', ['route', 'replace', 'table', '100', 'local', '::/0', 'dev', 'lo']);
    await v6.run('ip', ['-j', 'rule', 'show']);
    await v6.exec('nft', ['list', 'table', 'ip', 'nat']);
    await v6.run('nft', ['delete', 'table', 'ip', 'nat']);
    await v6.exec('sysctl', ['-n', 'net/ipv6/conf/all/forwarding']);
    expect(inner.seen).toEqual([
      'ip6tables-nft-save',
      'ip6tables-nft-restore --noflush',
      'ip6tables-legacy-save',
      'ip -6 route replace table 100 local ::/0 dev lo',
      'ip -6 -j rule show',
      'nft list table ip6 nat',
      'nft delete table ip6 nat',
      'sysctl -n net/ipv6/conf/all/forwarding',
    ]);
  });

  it('reads nft ip6 table listings back as the applier parses them', async () => {
    const v6 = ipv6Runner(recording('table ip6 mangle\ntable ip6 nat\n'));
    expect((await v6.exec('nft', ['list', 'tables', 'ip'])).stdout).toBe('table ip mangle\ntable ip nat\n');
  });
});
