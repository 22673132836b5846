/**
 * Istio `AuthorizationPolicy` (security.istio.io/v1) to weft policies, with istiod's translation for ztunnel: selector or
 * namespace scope (mesh-wide from the root namespace), targetRefs to Services; serviceAccounts become principals; fields
 * weft cannot evaluate (requestPrincipals, remoteIpBlocks) make an ALLOW rule never match and are dropped from a DENY;
 * AUDIT and CUSTOM are rejected with a reason.
 */
import type { PolicyConfig } from '../config/config-schema.js';
import { policySchema } from '../config/config-schema.js';
import type { SlimCustom } from './kube-objects.js';

type StringList = string[] | undefined;

interface IstioSource {
  principals?: StringList; notPrincipals?: StringList; namespaces?: StringList; notNamespaces?: StringList; ipBlocks?: StringList; notIpBlocks?: StringList;
  serviceAccounts?: StringList; notServiceAccounts?: StringList; requestPrincipals?: StringList; notRequestPrincipals?: StringList; remoteIpBlocks?: StringList; notRemoteIpBlocks?: StringList;
}

interface IstioRule {
  from?: { source?: IstioSource }[];
  to?: { operation?: Record<string, StringList> }[];
  when?: { key: string; values?: StringList; notValues?: StringList }[];
}

/** Request-level attributes weft has no source for (no JWT validation): present in a rule, they decide its fate as in ztunnel. */
const UNSUPPORTED_SOURCE_FIELDS = ['requestPrincipals', 'notRequestPrincipals', 'remoteIpBlocks', 'notRemoteIpBlocks'] as const;
const OPERATION_FIELDS = ['ports', 'notPorts', 'hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;

/** `ns/sa` (Istio's serviceAccounts form) to the principal `<td>/ns/<ns>/sa/<sa>`. */
function saPrincipals(list: StringList, trustDomain: string): StringList {
  return list?.map((s) => {
    const [ns, sa] = s.includes('/') ? s.split('/', 2) : ['*', s];
    return `${trustDomain}/ns/${ns}/sa/${sa}`;
  });
}

function mapRule(rule: IstioRule, action: 'ALLOW' | 'DENY', trustDomain: string): PolicyConfig['rules'][number] | undefined {
  const from: NonNullable<PolicyConfig['rules'][number]['from']> = [];
  for (const f of rule.from ?? []) {
    const s = f.source ?? {};
    if (UNSUPPORTED_SOURCE_FIELDS.some((k) => s[k] !== undefined) && action === 'ALLOW') return undefined;
    const principals = [...(s.principals ?? []), ...(saPrincipals(s.serviceAccounts, trustDomain) ?? [])];
    const notPrincipals = [...(s.notPrincipals ?? []), ...(saPrincipals(s.notServiceAccounts, trustDomain) ?? [])];
    const source = {
      ...(principals.length === 0 ? {} : { principals }),
      ...(notPrincipals.length === 0 ? {} : { notPrincipals }),
      ...(s.namespaces === undefined ? {} : { namespaces: s.namespaces }),
      ...(s.notNamespaces === undefined ? {} : { notNamespaces: s.notNamespaces }),
      ...(s.ipBlocks === undefined ? {} : { ipBlocks: s.ipBlocks }),
      ...(s.notIpBlocks === undefined ? {} : { notIpBlocks: s.notIpBlocks }),
    };
    from.push({ source });
  }
  const to = (rule.to ?? []).map((t) => {
    const operation: Record<string, unknown> = {};
    for (const k of OPERATION_FIELDS) if (t.operation?.[k] !== undefined) operation[k] = t.operation[k];
    return { operation };
  });
  return {
    ...(rule.from === undefined ? {} : { from }),
    ...(rule.to === undefined ? {} : { to: to }),
    ...(rule.when === undefined ? {} : { when: rule.when.map((w) => ({ key: w.key, ...(w.values === undefined ? {} : { values: w.values }), ...(w.notValues === undefined ? {} : { notValues: w.notValues }) })) }),
  };
}

export function mapAuthorizationPolicy(obj: SlimCustom, trustDomain: string): { ok: true; value: PolicyConfig[] } | { ok: false; reason: string } {
  const spec = obj.spec as { action?: string; selector?: { matchLabels?: Record<string, string> }; targetRef?: { kind?: string; name?: string }; targetRefs?: { kind?: string; name?: string }[]; rules?: IstioRule[] };
  const action = spec.action ?? 'ALLOW';
  if (action !== 'ALLOW' && action !== 'DENY') return { ok: false, reason: `action ${action} is not supported (weft enforces ALLOW and DENY; AUDIT and CUSTOM need an external provider)` };
  const refs = [...(spec.targetRefs ?? []), ...(spec.targetRef === undefined ? [] : [spec.targetRef])];
  if (spec.selector !== undefined && refs.length > 0) return { ok: false, reason: 'spec.selector and spec.targetRefs are mutually exclusive' };
  const bad = refs.filter((r) => r.kind !== 'Service' || r.name === undefined);
  if (bad.length > 0) return { ok: false, reason: `targetRefs of kind ${bad.map((r) => r.kind).join(', ')} are not supported (weft attaches policies to Services)` };
  // A dropped ALLOW rule is one that can never match: the policy keeps its other rules (and, with none, allows nothing).
  const rules = (spec.rules ?? []).map((r) => mapRule(r, action, trustDomain)).filter((r) => r !== undefined);
  const base = {
    name: obj.name,
    namespace: obj.namespace ?? 'default',
    action,
    rules,
    ...(spec.selector === undefined ? {} : { selector: { matchLabels: spec.selector.matchLabels ?? {} } }),
  };
  const raws = refs.length === 0 ? [base] : refs.map((r) => ({ ...base, targetRef: { kind: 'Service', name: r.name } }));
  const out: PolicyConfig[] = [];
  for (const raw of raws) {
    const parsed = policySchema.safeParse(raw);
    if (!parsed.success) return { ok: false, reason: parsed.error.issues.map((i) => `spec.${i.path.join('.')}: ${i.message}`).join('; ') };
    out.push(parsed.data);
  }
  return { ok: true, value: out };
}
