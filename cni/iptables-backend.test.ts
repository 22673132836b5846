// iptables-restore inputs: install declares our chains and inserts only missing hook jumps; remove deletes exactly ours.
import { describe, expect, it } from 'vitest';
import { parseIptablesSave, renderInstall, renderRemove } from './iptables-backend.js';
import { ruleMatches, sysctlPath } from './netns-applier.js';
import { firstFreePort } from './tunnel-driver.js';

const chains = [
  { table: 'mangle' as const, chain: 'WEFT_PREROUTING', hook: 'PREROUTING' },
  { table: 'nat' as const, chain: 'WEFT_PREROUTING', hook: 'PREROUTING' },
];
const rules = [{ table: 'mangle' as const, line: '-A WEFT_PREROUTING -p udp -j RETURN' }];

describe('iptables-restore input', () => {
  it('inserts the hook jump only when it is missing', () => {
    const fresh = renderInstall(chains, rules, new Map());
    expect(fresh).toBe('*mangle\n:WEFT_PREROUTING - [0:0]\n-I PREROUTING -j WEFT_PREROUTING\n-A WEFT_PREROUTING -p udp -j RETURN\nCOMMIT\n*nat\n:WEFT_PREROUTING - [0:0]\n-I PREROUTING -j WEFT_PREROUTING\nCOMMIT\n');
    const saved = parseIptablesSave('*mangle\n:PREROUTING ACCEPT [0:0]\n:WEFT_PREROUTING - [0:0]\n-A PREROUTING -j WEFT_PREROUTING\nCOMMIT\n');
    expect(renderInstall(chains, rules, saved)).not.toContain('-I PREROUTING -j WEFT_PREROUTING\n-A');
  });

  it('removes every copy of our jump and only our chains, and nothing when they are gone', () => {
    const saved = parseIptablesSave(
      '*mangle\n:PREROUTING ACCEPT [0:0]\n:WEFT_PREROUTING - [0:0]\n:OTHER - [0:0]\n-A PREROUTING -j WEFT_PREROUTING\n-A PREROUTING -j OTHER\n-A PREROUTING -j WEFT_PREROUTING\nCOMMIT\n',
    );
    expect(renderRemove(chains, saved)).toBe('*mangle\n-D PREROUTING -j WEFT_PREROUTING\n-D PREROUTING -j WEFT_PREROUTING\n-F WEFT_PREROUTING\n-X WEFT_PREROUTING\nCOMMIT\n');
    expect(renderRemove(chains, parseIptablesSave('*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n'))).toBe('');
  });
});

describe('helpers', () => {
  it('matches ip -j rule output by meaning', () => {
    expect(ruleMatches({ priority: 102, src: 'all', fwmark: '0x40', fwmask: '0x40', table: '102' }, { priority: 102, args: ['fwmark', '0x040/0x040', 'lookup', '102'] })).toBe(true);
    expect(ruleMatches({ priority: 100, src: 'all', fwmark: '0x200', fwmask: '0x200', goto: 32766 }, { priority: 100, args: ['fwmark', '0x200/0x200', 'goto', '32766'] })).toBe(true);
    expect(ruleMatches({ priority: 103, src: 'all', table: '100' }, { priority: 103, args: ['lookup', '101'] })).toBe(false);
    expect(ruleMatches({ priority: 103, src: 'all', fwmark: '0x1', table: '100' }, { priority: 103, args: ['lookup', '100'] })).toBe(false);
  });

  it('keeps dots inside interface names when writing a sysctl path', () => {
    expect(sysctlPath('net.ipv4.conf.eth0.5.rp_filter')).toBe('net/ipv4/conf/eth0.5/rp_filter');
    expect(sysctlPath('net.ipv4.conf.all.accept_local')).toBe('net/ipv4/conf/all/accept_local');
  });

  it('picks the first free tunnel port from the driver base', () => {
    expect(firstFreePort('geneve', new Set([6081, 6082]))).toBe(6083);
    expect(firstFreePort('vxlan', new Set([6081]))).toBe(4789);
  });
});
