/** Field selectors as the API server supports them: metadata.name and metadata.namespace everywhere, a few per-kind fields (pods: spec.nodeName, status.phase); any other field is a 400. */

export interface FieldRequirement {
  field: string;
  negate: boolean;
  value: string;
}

/** Fields each resource's registry strategy exposes (pkg/registry/core/pod/strategy.go ToSelectableFields and kin). */
const EXTRA_FIELDS: Record<string, readonly string[]> = {
  pods: ['spec.nodeName', 'status.phase', 'spec.serviceAccountName', 'spec.restartPolicy', 'status.podIP'],
  events: ['involvedObject.kind', 'involvedObject.name', 'involvedObject.namespace', 'reason', 'type'],
  namespaces: ['status.phase'],
};

export class FieldSelectorError extends Error {}

export function parseFieldSelector(resource: string, text: string): FieldRequirement[] {
  if (text.trim() === '') return [];
  const allowed = new Set(['metadata.name', 'metadata.namespace', ...(EXTRA_FIELDS[resource] ?? [])]);
  return text.split(',').map((term) => {
    const m = /^\s*([^=!\s]+)\s*(==|=|!=)\s*(\S*)\s*$/.exec(term);
    if (m === null) throw new FieldSelectorError(`invalid selector: '${text}'; can't understand '${term}'`);
    const field = m[1] ?? '';
    if (!allowed.has(field)) throw new FieldSelectorError(`field label not supported: ${field}`);
    return { field, negate: m[2] === '!=', value: m[3] ?? '' };
  });
}

function fieldValue(obj: Record<string, unknown>, path: string): string {
  let v: unknown = obj;
  for (const part of path.split('.')) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
  return typeof v === 'string' ? v : '';
}

export function matchesFields(requirements: readonly FieldRequirement[], obj: Record<string, unknown>): boolean {
  return requirements.every((r) => (fieldValue(obj, r.field) === r.value) !== r.negate);
}
