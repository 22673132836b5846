/** Compiles weft.yaml `policies:` into L4 matchers with ztunnel's translation rules: only L4 fields enforce here, an ALLOW rule with L7 fields never matches, a DENY rule drops them. */
import { BlockList, isIP } from 'node:net';
import type { PolicyConfig, PolicyRuleConfig } from '../config/config-schema.js';
import type { Workload } from '../state/state-snapshot.js';
import { parseSpiffeId, principalOf } from '../identity/spiffe-id.js';

/** What L4 authorization sees of one connection. */
export interface ConnectionAttributes {
  /** Verified SPIFFE ID of the peer (HBONE); undefined for plaintext. */
  sourceIdentity?: string;
  sourceIp: string;
  destination: Workload;
  destinationIp: string;
  destinationPort: number;
}

type Matcher = (c: ConnectionAttributes) => boolean;

export interface CompiledPolicy {
  /** `namespace/name`, as ztunnel names it in its deny reasons. */
  key: string;
  action: 'ALLOW' | 'DENY';
  namespace: string;
  /** Mesh-wide (root namespace) policies apply to every workload. */
  global: boolean;
  selector: Record<string, string> | undefined;
  matches: Matcher;
  /** An ALLOW with L7 fields: only the L7 path can prove it (at L4 it never matches). */
  allowNeedsL7: boolean;
}

/** Istio's root namespace: a selector-less policy there applies mesh-wide. */
export const ROOT_NAMESPACE = 'istio-system';

/** Istio string match: exact, `prefix*`, `*suffix`, or `*` (presence). */
function stringMatcher(pattern: string): (value: string) => boolean {
  if (pattern === '*') return (v) => v.length > 0;
  if (pattern.endsWith('*')) {
    const prefix = pattern.slice(0, -1);
    return (v) => v.startsWith(prefix);
  }
  if (pattern.startsWith('*')) {
    const suffix = pattern.slice(1);
    return (v) => v.endsWith(suffix);
  }
  return (v) => v === pattern;
}

function anyOf(patterns: string[]): (value: string | undefined) => boolean {
  const ms = patterns.map(stringMatcher);
  return (v) => v !== undefined && ms.some((m) => m(v));
}

function ipMatcher(blocks: string[]): (ip: string) => boolean {
  const list = new BlockList();
  for (const block of blocks) {
    const [addr = '', len] = block.split('/');
    const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    if (isIP(addr) === 0) continue; // rejected by validation; never widen a policy on bad input
    if (len === undefined) list.addAddress(addr, family);
    else list.addSubnet(addr, Number(len), family);
  }
  return (ip) => isIP(ip) !== 0 && list.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4');
}

function portMatcher(ports: (number | string)[]): (port: number) => boolean {
  const set = new Set(ports.map((p) => Number(p)).filter((p) => Number.isInteger(p)));
  return (p) => set.has(p);
}

const principal = (c: ConnectionAttributes): string | undefined => (c.sourceIdentity === undefined ? undefined : principalOf(c.sourceIdentity));
const namespaceOf = (c: ConnectionAttributes): string | undefined => (c.sourceIdentity === undefined ? undefined : parseSpiffeId(c.sourceIdentity)?.namespace);

/** Every present field must match; each not-field must match nothing. */
function sourceMatcher(src: NonNullable<PolicyRuleConfig['from']>[number]['source']): Matcher {
  const checks: Matcher[] = [];
  if (src.principals !== undefined) { const m = anyOf(src.principals); checks.push((c) => m(principal(c))); }
  if (src.notPrincipals !== undefined) { const m = anyOf(src.notPrincipals); checks.push((c) => !m(principal(c))); }
  if (src.namespaces !== undefined) { const m = anyOf(src.namespaces); checks.push((c) => m(namespaceOf(c))); }
  if (src.notNamespaces !== undefined) { const m = anyOf(src.notNamespaces); checks.push((c) => !m(namespaceOf(c))); }
  if (src.ipBlocks !== undefined) { const m = ipMatcher(src.ipBlocks); checks.push((c) => m(c.sourceIp)); }
  if (src.notIpBlocks !== undefined) { const m = ipMatcher(src.notIpBlocks); checks.push((c) => !m(c.sourceIp)); }
  return (c) => checks.every((check) => check(c));
}

type Operation = NonNullable<PolicyRuleConfig['to']>[number]['operation'];
const L7_OPERATION_FIELDS = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;

function operationHasL7(op: Operation): boolean {
  return L7_OPERATION_FIELDS.some((f) => op[f] !== undefined);
}

function operationMatcher(op: Operation): Matcher {
  const checks: Matcher[] = [];
  if (op.ports !== undefined) { const m = portMatcher(op.ports); checks.push((c) => m(c.destinationPort)); }
  if (op.notPorts !== undefined) { const m = portMatcher(op.notPorts); checks.push((c) => !m(c.destinationPort)); }
  return (c) => checks.every((check) => check(c));
}

/** `when` keys ztunnel can evaluate at L4; anything else (request.*, JWT claims) is L7. */
const L4_CONDITIONS: Record<string, (c: ConnectionAttributes) => string | undefined> = {
  'source.ip': (c) => c.sourceIp,
  'remote.ip': (c) => c.sourceIp,
  'source.namespace': namespaceOf,
  'source.principal': principal,
  'destination.ip': (c) => c.destinationIp,
  'destination.port': (c) => String(c.destinationPort),
};
const IP_KEYS = new Set(['source.ip', 'remote.ip', 'destination.ip']);

function conditionMatcher(cond: NonNullable<PolicyRuleConfig['when']>[number]): Matcher {
  const get = L4_CONDITIONS[cond.key] ?? (() => undefined);
  const isIpKey = IP_KEYS.has(cond.key);
  const make = (values: string[]): ((c: ConnectionAttributes) => boolean) => {
    if (isIpKey) {
      const m = ipMatcher(values);
      return (c) => m(get(c) ?? '');
    }
    const m = anyOf(values);
    return (c) => m(get(c));
  };
  const checks: Matcher[] = [];
  if (cond.values !== undefined) { const m = make(cond.values); checks.push(m); }
  if (cond.notValues !== undefined) { const m = make(cond.notValues); checks.push((c) => !m(c)); }
  return (c) => checks.every((check) => check(c));
}

function ruleHasL7(rule: PolicyRuleConfig): boolean {
  return (rule.to ?? []).some((t) => operationHasL7(t.operation)) || (rule.when ?? []).some((w) => L4_CONDITIONS[w.key] === undefined);
}

function ruleMatcher(rule: PolicyRuleConfig, action: 'ALLOW' | 'DENY'): Matcher {
  const ops = rule.to ?? [];
  const conds = rule.when ?? [];
  const hasL7 = ruleHasL7(rule);
  // Istio's "fail closed": an ALLOW that needs L7 attributes cannot be proven at L4, so it never matches here.
  if (hasL7 && action === 'ALLOW') return () => false;
  const from = (rule.from ?? []).map((f) => sourceMatcher(f.source));
  // For DENY, L7 parts are dropped (a broader deny is the safe direction); L7-only operations match every port.
  const to = ops.map((t) => operationMatcher(t.operation));
  const when = conds.filter((w) => L4_CONDITIONS[w.key] !== undefined).map(conditionMatcher);
  return (c) => (from.length === 0 || from.some((m) => m(c))) && (to.length === 0 || to.some((m) => m(c))) && when.every((m) => m(c));
}

/** Policies with a targetRef belong to the waypoint (L7) and are not enforced at L4, as istiod does for ztunnel. */
export function compilePolicy(policy: PolicyConfig): CompiledPolicy | undefined {
  if (policy.targetRef !== undefined) return undefined;
  const rules = policy.rules.map((r) => ruleMatcher(r, policy.action));
  return {
    key: `${policy.namespace}/${policy.name}`,
    action: policy.action,
    namespace: policy.namespace,
    global: policy.namespace === ROOT_NAMESPACE && policy.selector === undefined,
    selector: policy.selector?.matchLabels,
    // No rules: an ALLOW matches nothing ("allow-nothing"), and so does a DENY.
    matches: (c) => rules.some((m) => m(c)),
    allowNeedsL7: policy.action === 'ALLOW' && policy.rules.some(ruleHasL7),
  };
}

/** Does the policy select this workload (its namespace and labels, or mesh-wide)? */
export function appliesTo(p: CompiledPolicy, w: Workload): boolean {
  if (p.global) return true;
  if (p.namespace !== w.namespace && p.namespace !== ROOT_NAMESPACE) return false;
  if (p.selector === undefined) return p.namespace === w.namespace;
  for (const [k, v] of Object.entries(p.selector)) if (w.labels[k] !== v) return false;
  return true;
}
