/** L7 authorization (Istio AuthorizationPolicy semantics) for policies targeting a destination: any matching DENY denies, then ALLOW policies must match one rule; a denial is 403 with flag UAEX-like "RBAC". */
import type { PolicyConfig, PolicyRuleConfig } from '../config/config-schema.js';
import type { StateSnapshot } from '../state/state-snapshot.js';
import type { L7Target } from './l7-context.js';
import type { FilterRequestInfo, L7Filter } from './l7-filter.js';
import { L7_ERROR } from './local-reply.js';

/** Istio string match: exact, `prefix*`, `*suffix`, or `*` (presence). */
function matchesValue(pattern: string, value: string): boolean {
  if (pattern === '*') return value !== '';
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return value === pattern;
}

function anyMatch(patterns: string[] | undefined, value: string | undefined): boolean | undefined {
  if (patterns === undefined) return undefined;
  if (value === undefined) return false;
  return patterns.some((p) => matchesValue(p, value));
}

function ipInBlock(block: string, ip: string): boolean {
  const [base, lenText] = block.split('/');
  if (lenText === undefined) return base === ip;
  const toInt = (s: string): number | undefined => {
    const parts = s.split('.').map(Number);
    if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return undefined;
    return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
  };
  const a = toInt(base ?? '');
  const b = toInt(ip);
  const len = Number(lenText);
  if (a === undefined || b === undefined || !(len >= 0 && len <= 32)) return false;
  const mask = len === 0 ? 0 : (~0 << (32 - len)) >>> 0;
  return (a & mask) === (b & mask);
}

/** One field group: all present conditions must hold; `not*` lists must not match. */
function ruleMatches(rule: PolicyRuleConfig, info: FilterRequestInfo, port: number): boolean {
  const principal = info.sourceIdentity?.replace(/^spiffe:\/\//, '');
  const ns = /\/ns\/([^/]+)\//.exec(info.sourceIdentity ?? '')?.[1];
  const fromOk =
    rule.from === undefined ||
    rule.from.some(({ source: s }) => {
      if (anyMatch(s.principals, principal) === false || anyMatch(s.notPrincipals, principal) === true) return false;
      if (anyMatch(s.namespaces, ns) === false || anyMatch(s.notNamespaces, ns) === true) return false;
      if (s.ipBlocks !== undefined && !s.ipBlocks.some((b) => ipInBlock(b, info.sourceAddress))) return false;
      if (s.notIpBlocks !== undefined && s.notIpBlocks.some((b) => ipInBlock(b, info.sourceAddress))) return false;
      return true;
    });
  if (!fromOk) return false;
  const path = info.path.split('?')[0] ?? info.path;
  const toOk =
    rule.to === undefined ||
    rule.to.some(({ operation: o }) => {
      if (anyMatch(o.methods, info.method) === false || anyMatch(o.notMethods, info.method) === true) return false;
      if (anyMatch(o.paths, path) === false || anyMatch(o.notPaths, path) === true) return false;
      if (anyMatch(o.hosts, info.authority) === false || anyMatch(o.notHosts, info.authority) === true) return false;
      if (o.ports !== undefined && !o.ports.map(String).includes(String(port))) return false;
      if (o.notPorts !== undefined && o.notPorts.map(String).includes(String(port))) return false;
      return true;
    });
  return toOk;
}

function policyMatches(p: PolicyConfig, info: FilterRequestInfo, port: number): boolean {
  // An empty rule list: ALLOW matches nothing, DENY matches nothing (Istio: "rules: [{}]" matches all).
  return p.rules.some((r) => ruleMatches(r, info, port));
}

/** Policies that name this destination by targetRef (Service or Workload) or select its workload by labels. */
export function policiesFor(snapshot: StateSnapshot, target: L7Target): PolicyConfig[] {
  const svc = target.service;
  const w = target.workload;
  return snapshot.policies.filter((p) => {
    if (p.targetRef !== undefined) {
      if (p.targetRef.kind === 'Service') return svc !== undefined && p.targetRef.name === svc.name && p.namespace === svc.namespace;
      return w !== undefined && p.targetRef.name === w.name && p.namespace === w.namespace;
    }
    if (p.selector !== undefined && w !== undefined) {
      return p.namespace === w.namespace && Object.entries(p.selector.matchLabels).every(([k, v]) => w.labels[k] === v);
    }
    return false;
  });
}

export function createL7AuthzFilter(snapshot: StateSnapshot, target: L7Target): L7Filter | undefined {
  const policies = policiesFor(snapshot, target);
  if (policies.length === 0) return undefined;
  const deny = policies.filter((p) => p.action === 'DENY');
  const allow = policies.filter((p) => p.action === 'ALLOW');
  const port = target.servicePort?.port ?? target.originalDst.port;
  const denied = { status: 403, code: L7_ERROR.denied, flag: 'UAEX', body: 'RBAC: access denied\n' };
  return {
    name: 'l7-authorization',
    start(info) {
      const decision = deny.some((p) => policyMatches(p, info, port)) || (allow.length > 0 && !allow.some((p) => policyMatches(p, info, port)));
      if (!decision) return undefined;
      return { onRequestHeaders: () => denied };
    },
  };
}
