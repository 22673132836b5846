/** Validation of the security sections of weft.yaml (policies, peerAuthentication, identity) beyond their shapes: a bad CIDR or port must be rejected, never silently dropped from a DENY. */
import { isIP } from 'node:net';
import type { WeftConfig } from '../config/config-schema.js';

export interface SecurityProblem {
  path: (string | number)[];
  message: string;
}

function cidrProblem(value: string): string | undefined {
  const [addr = '', len, extra] = value.split('/');
  const family = isIP(addr);
  if (family === 0 || extra !== undefined) return `"${value}" is not an IP address or CIDR block`;
  if (len === undefined) return undefined;
  const bits = Number(len);
  if (!/^\d+$/.test(len) || bits > (family === 4 ? 32 : 128)) return `"${value}" has an invalid prefix length`;
  return undefined;
}

const IP_CONDITION_KEYS = new Set(['source.ip', 'remote.ip', 'destination.ip']);

export function securityProblems(config: WeftConfig): SecurityProblem[] {
  const problems: SecurityProblem[] = [];
  config.policies.forEach((p, i) => {
    p.rules.forEach((rule, r) => {
      rule.from?.forEach((f, j) => {
        for (const field of ['ipBlocks', 'notIpBlocks'] as const) {
          f.source[field]?.forEach((v, k) => {
            const m = cidrProblem(v);
            if (m !== undefined) problems.push({ path: ['policies', i, 'rules', r, 'from', j, 'source', field, k], message: m });
          });
        }
      });
      rule.to?.forEach((t, j) => {
        for (const field of ['ports', 'notPorts'] as const) {
          t.operation[field]?.forEach((v, k) => {
            const n = Number(v);
            if (!Number.isInteger(n) || n < 1 || n > 65535) problems.push({ path: ['policies', i, 'rules', r, 'to', j, 'operation', field, k], message: `"${String(v)}" is not a port number (1-65535)` });
          });
        }
      });
      rule.when?.forEach((w, j) => {
        if (!IP_CONDITION_KEYS.has(w.key)) return;
        for (const field of ['values', 'notValues'] as const) {
          w[field]?.forEach((v, k) => {
            const m = cidrProblem(v);
            if (m !== undefined) problems.push({ path: ['policies', i, 'rules', r, 'when', j, field, k], message: m });
          });
        }
      });
    });
  });
  const meshWide = config.peerAuthentication.filter((p) => (p.namespace === undefined || p.namespace === 'istio-system') && p.selector === undefined);
  if (meshWide.length > 1) problems.push({ path: ['peerAuthentication'], message: 'more than one mesh-wide peerAuthentication (no namespace and no selector)' });
  const id = config.identity;
  if ((id.rootCertFile === undefined) !== (id.rootKeyFile === undefined)) problems.push({ path: ['identity'], message: 'identity.rootCertFile and identity.rootKeyFile must be given together' });
  if (id.caAddress !== undefined && (id.rootCertFile !== undefined || id.caDir !== undefined)) {
    problems.push({ path: ['identity', 'caAddress'], message: 'caAddress selects an external CA; caDir/rootCertFile/rootKeyFile configure the built-in one: set one or the other' });
  }
  return problems;
}
