// Each kind of bad weft.yaml gets its precise problem, with the path inside the file and its line.
import { describe, expect, it } from 'vitest';
import { parseConfigText } from './config-load.js';
import { formatProblem } from './config-problem.js';

function problems(text: string): string[] {
  const r = parseConfigText(text, 'weft.yaml');
  if (r.ok) throw new Error('expected the config to be rejected');
  return r.problems.map(formatProblem);
}

describe('parseConfigText', () => {
  it('accepts an empty file with every default', () => {
    const r = parseConfigText('', 'weft.yaml');
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.config).toMatchObject({ node: 'node-local', trustDomain: 'cluster.local', state: { backend: 'memory' }, workloads: [] });
  });

  it('reports YAML syntax errors with their line', () => {
    expect(problems('node: a\nservices: [\n  {name: x\n')[0]).toMatch(/^weft\.yaml:\d+:\d+: YAML syntax: /);
  });

  it('reports a wrong type with its path and line', () => {
    const text = ['node: a', 'services:', '  - name: reviews', '    ports:', '      - port: "ninety"'].join('\n');
    expect(problems(text)).toEqual([expect.stringMatching(/^weft\.yaml:5:15: services\[0\]\.ports\[0\]\.port: Invalid input: expected number/)]);
  });

  it('reports unknown fields (typos) by name', () => {
    const text = ['node: a', 'workloads:', '  - name: w', '    adresses: [10.0.0.1]'].join('\n');
    const out = problems(text);
    expect(out).toContain('weft.yaml:4:5: workloads[0].adresses: unknown field "adresses"');
    expect(out.some((p) => p.includes('workloads[0].addresses'))).toBe(true);
  });

  it('lists every problem at once, not just the first', () => {
    const text = ['workers: zero', 'workloads:', '  - name: Bad_Name', '    addresses: [not-an-ip]', 'state: { backend: etcd }'].join('\n');
    const out = problems(text);
    expect(out.length).toBeGreaterThanOrEqual(4);
    expect(out.find((p) => p.includes('workloads[0].name'))).toMatch(/:3:\d+: .*DNS-1123/);
    expect(out.find((p) => p.includes('workloads[0].addresses[0]'))).toMatch(/:4:\d+: .*IPv4 or IPv6/);
    expect(out.find((p) => p.startsWith('weft.yaml:5'))).toContain('state.backend');
  });

  it('checks cross references: duplicate addresses, unknown plugins, bad annotation JSON, localPorts targets', () => {
    const text = [
      'workloads:',
      '  - { name: a, addresses: [10.0.0.1] }',
      '  - { name: b, addresses: [10.0.0.1] }',
      'services:',
      '  - name: reviews',
      '    ports: [{ port: 9080 }]',
      '    annotations:',
      '      weft.dev/plugins: "nope"',
      "      weft.dev/plugin-config.nope: '{bad json'",
      'localPorts:',
      '  - { listen: "127.0.0.1:19080", service: ratings.default, port: 9080 }',
      '  - { listen: "127.0.0.1:19081", service: reviews.default, port: 1234 }',
    ].join('\n');
    const out = problems(text);
    expect(out).toContain('weft.yaml:3:28: workloads[1].addresses[0]: address 10.0.0.1 is already used by workloads[0]');
    expect(out.find((p) => p.includes('weft.dev/plugins'))).toMatch(/:8:\d+: .*plugin "nope" is not defined under plugins:/);
    expect(out.find((p) => p.includes('plugin-config.nope'))).toMatch(/:9:\d+: .*not valid JSON/);
    expect(out.find((p) => p.includes('localPorts[0].service'))).toMatch(/:11:\d+: .*no service "ratings\.default"/);
    expect(out.find((p) => p.includes('localPorts[1].port'))).toMatch(/:12:\d+: .*has no port 1234 \(it has 9080\)/);
  });

  it('rejects listener addresses that are not ip:port', () => {
    expect(problems('listeners:\n  outbound: { address: "localhost:15001" }')).toEqual([expect.stringMatching(/:2:\d+: listeners\.outbound\.address: expected "ip:port"/)]);
  });
});
