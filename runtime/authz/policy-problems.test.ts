import { describe, expect, it } from 'vitest';
import { configSchema } from '../config/config-schema.js';
import { securityProblems } from './policy-problems.js';

describe('securityProblems', () => {
  it('rejects bad CIDRs, ports and identity combinations with their paths', () => {
    const config = configSchema.parse({
      policies: [
        {
          name: 'p',
          action: 'DENY',
          rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/8', '10.0.0.0/33', 'nope'] } }], to: [{ operation: { ports: [80, 'http'] } }], when: [{ key: 'source.ip', values: ['1.2.3.4/x'] }] }],
        },
      ],
      peerAuthentication: [{ mode: 'STRICT' }, { namespace: 'istio-system', mode: 'PERMISSIVE' }],
      identity: { rootCertFile: '/x.pem' },
    });
    expect(securityProblems(config)).toEqual([
      { path: ['policies', 0, 'rules', 0, 'from', 0, 'source', 'ipBlocks', 1], message: '"10.0.0.0/33" has an invalid prefix length' },
      { path: ['policies', 0, 'rules', 0, 'from', 0, 'source', 'ipBlocks', 2], message: '"nope" is not an IP address or CIDR block' },
      { path: ['policies', 0, 'rules', 0, 'to', 0, 'operation', 'ports', 1], message: '"http" is not a port number (1-65535)' },
      { path: ['policies', 0, 'rules', 0, 'when', 0, 'values', 0], message: '"1.2.3.4/x" has an invalid prefix length' },
      { path: ['peerAuthentication'], message: 'more than one mesh-wide peerAuthentication (no namespace and no selector)' },
      { path: ['identity'], message: 'identity.rootCertFile and identity.rootKeyFile must be given together' },
    ]);
  });

  it('accepts a valid configuration', () => {
    const config = configSchema.parse({ policies: [{ name: 'p', rules: [{ from: [{ source: { ipBlocks: ['fd00::/8', '192.168.1.1'] } }], to: [{ operation: { notPorts: ['8080'] } }] }] }], peerAuthentication: [{ mode: 'STRICT' }] });
    expect(securityProblems(config)).toEqual([]);
  });
});
