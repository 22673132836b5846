// Golden tests: the generated rule set, line by line, against hand-written transcriptions of the reference design (both drivers).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_NAMES, type TunnelDriver } from './cni-constants.js';
import { planNode, planPod, planRuntime, renderPlan, renderPodPlan, type RedirectInput } from './rule-plan.js';
import { planInpodPod } from './inpod-rule-plan.js';

const golden = (name: string): string[] =>
  readFileSync(new URL(`./testdata/${name}.golden`, import.meta.url), 'utf8')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'));

const input = (driver: TunnelDriver, dnsCapture: boolean): RedirectInput => ({
  names: { ...DEFAULT_NAMES },
  driver,
  tunnelPort: driver === 'geneve' ? 6081 : 4789,
  hostIp: '10.244.0.1',
  runtimeIp: '10.244.0.5',
  runtimeVeth: 'veth0zt',
  runtimeInterface: 'eth0',
  dnsCapture,
});

/** Line-by-line so a failure names the first differing step rather than a whole-file diff. */
function expectLines(actual: string[], expected: string[]): void {
  for (let i = 0; i < Math.max(actual.length, expected.length); i++) expect(actual[i], `line ${i + 1}`).toBe(expected[i]);
}

describe('rule generator (golden, reference/ambient-mesh.md §2.3–2.5)', () => {
  it('node rules, geneve driver with DNS capture', () => expectLines(renderPlan(planNode(input('geneve', true))), golden('node-geneve')));
  it('node rules, vxlan driver without DNS capture', () => expectLines(renderPlan(planNode(input('vxlan', false))), golden('node-vxlan')));
  it('runtime namespace rules, geneve driver', () => expectLines(renderPlan(planRuntime(input('geneve', false))), golden('runtime-geneve')));
  it('runtime namespace rules, vxlan driver', () => expectLines(renderPlan(planRuntime(input('vxlan', false))), golden('runtime-vxlan')));
  it('per-pod enrollment', () => {
    const plan = planPod({ ...DEFAULT_NAMES }, '10.244.0.1', ['10.244.0.17'], '2b1f6a4c-pod-uid', 'veth1a2b3c4d');
    expectLines(renderPodPlan(plan), golden('pod'));
  });

  it('uses configured names everywhere and leaves no default name behind', () => {
    const names = { ipset: 'mesh-ips', inboundTunnel: 'min', outboundTunnel: 'mout', runtimeInboundTunnel: 'pmin', runtimeOutboundTunnel: 'pmout', chainPrefix: 'MESH' };
    const text = [...renderPlan(planNode({ ...input('vxlan', true), names })), ...renderPlan(planRuntime({ ...input('vxlan', true), names }))].join('\n');
    expect(text).not.toMatch(/weft|WEFT/);
    expect(text).toContain('-A MESH_PREROUTING -p tcp -m set --match-set mesh-ips src -j MARK --set-mark 0x100/0x100');
    expect(text).toContain('ip link add pmout type vxlan id 1001');
  });
});

describe('in-pod rule generator (golden, reference/ambient-mesh.md §2.9)', () => {
  it('pod namespace rules with DNS capture, Istio 1.24+ REDIRECT form', () => expectLines(renderPlan(planInpodPod({ chainPrefix: 'WEFT', dnsCapture: true })), golden('inpod-pod-dns')));
  it('IPv6: the same rules with ::1, the IPv6 probe address and a local ::/0 route (applied through ip6tables and ip -6)', () => {
    const v4 = renderPlan(planInpodPod({ chainPrefix: 'WEFT', dnsCapture: true }));
    const v6 = renderPlan(planInpodPod({ chainPrefix: 'WEFT', dnsCapture: true, family: 6 }));
    const swapped = v4.map((l) =>
      l
        .replaceAll('127.0.0.1/32', '::1/128')
        .replaceAll('169.254.7.127/32', 'fd16:9254:7127:1337:ffff:ffff:ffff:ffff/128')
        .replace('local 0.0.0.0/0', 'local ::/0'),
    );
    expectLines(v6, swapped);
    expect(v6.join('\n')).not.toMatch(/127\.0\.0\.1|169\.254|0\.0\.0\.0/);
  });

  it('without DNS capture: no raw table and no port 53 redirect', () => {
    const text = renderPlan(planInpodPod({ chainPrefix: 'WEFT', dnsCapture: false })).join('\n');
    expect(text).not.toMatch(/-t raw|--dport 53|15053/);
    expect(text).toContain('-j REDIRECT --to-ports 15001');
  });
});
