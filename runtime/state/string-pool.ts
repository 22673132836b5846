/** One copy of each repeated string (namespaces, service accounts, node names, label values, SPIFFE IDs) across 150,000 pods instead of one per object; bounded, so unique values cannot grow it forever. */

/** Distinct strings kept at most; past this the pool starts over (old copies stay valid, they are just no longer shared). */
const MAX_STRINGS = 65_536;

let pool = new Map<string, string>();
let pooling = true;

/** A thread whose objects go to another thread (the Kubernetes list thread) pools nothing: the receiver pools on arrival. */
export function setPooling(enabled: boolean): void {
  pooling = enabled;
  if (!enabled) pool = new Map();
}

export function intern(s: string): string {
  if (!pooling) return s;
  const hit = pool.get(s);
  if (hit !== undefined) return hit;
  if (pool.size >= MAX_STRINGS) pool = new Map();
  pool.set(s, s);
  return s;
}

/** A string map with its keys and values interned (labels: a few keys, values repeated across a Deployment's pods). */
export function internMap(m: Record<string, string>): Record<string, string> {
  if (!pooling) return m;
  const out: Record<string, string> = {};
  for (const k in m) {
    const v = m[k];
    if (typeof v === 'string') out[intern(k)] = intern(v);
  }
  return out;
}
