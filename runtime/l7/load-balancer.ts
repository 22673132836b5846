/** Endpoint pickers: round robin, least request (power of two choices, as Envoy), random, and consistent hashing on a ring (Envoy's ring_hash) that skips ejected endpoints. */
import type { LoadBalancerConfig } from '../config/l7-config-schema.js';

/** What a picker needs to know about an endpoint. */
export interface Pickable {
  readonly key: string;
  activeRequests: number;
  /** Outlier ejection deadline (ms since epoch); 0 when healthy. */
  ejectedUntil: number;
}

export type LbKind = LoadBalancerConfig['kind'];

export interface LoadBalancer<E extends Pickable> {
  readonly kind: LbKind;
  /** `hash` is used by CONSISTENT_HASH only; undefined falls back to random. */
  pick(endpoints: readonly E[], now: number, hash: number | undefined): E | undefined;
}

function isAvailable(e: Pickable, now: number): boolean {
  return e.ejectedUntil <= now;
}

/** 32-bit FNV-1a: cheap, well spread for short keys, stable across processes (so every node agrees). */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // A final avalanche (murmur3 fmix32) so near-identical keys land far apart on the ring.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

class RoundRobin<E extends Pickable> implements LoadBalancer<E> {
  readonly kind = 'ROUND_ROBIN' as const;
  #next = 0;
  pick(endpoints: readonly E[], now: number): E | undefined {
    const n = endpoints.length;
    for (let i = 0; i < n; i++) {
      const e = endpoints[this.#next++ % n]!;
      if (isAvailable(e, now)) return e;
    }
    return undefined;
  }
}

class RandomPick<E extends Pickable> implements LoadBalancer<E> {
  readonly kind = 'RANDOM' as const;
  pick(endpoints: readonly E[], now: number): E | undefined {
    const n = endpoints.length;
    const start = (Math.random() * n) | 0;
    for (let i = 0; i < n; i++) {
      const e = endpoints[(start + i) % n]!;
      if (isAvailable(e, now)) return e;
    }
    return undefined;
  }
}

/** Envoy's LEAST_REQUEST with choice_count 2: pick two at random, keep the one with fewer active requests. */
class LeastRequest<E extends Pickable> implements LoadBalancer<E> {
  readonly kind = 'LEAST_REQUEST' as const;
  readonly #random = new RandomPick<E>();
  pick(endpoints: readonly E[], now: number): E | undefined {
    const a = this.#random.pick(endpoints, now);
    const b = this.#random.pick(endpoints, now);
    if (a === undefined || b === undefined) return a ?? b;
    return b.activeRequests < a.activeRequests ? b : a;
  }
}

/** Ring hash: each endpoint owns `ringSize` points (keyed by its address, so they do not move when others come and go); a key maps to the first point clockwise whose endpoint is available. */
class RingHash<E extends Pickable> implements LoadBalancer<E> {
  readonly kind = 'CONSISTENT_HASH' as const;
  readonly #ringSize: number;
  readonly #fallback = new RandomPick<E>();
  #builtFor: readonly E[] | undefined;
  #hashes = new Uint32Array(0);
  #owners: number[] = [];

  constructor(ringSize: number) {
    this.#ringSize = ringSize;
  }

  pick(endpoints: readonly E[], now: number, hash: number | undefined): E | undefined {
    if (hash === undefined || endpoints.length === 0) return this.#fallback.pick(endpoints, now);
    if (this.#builtFor !== endpoints) this.#build(endpoints);
    const hashes = this.#hashes;
    let lo = 0;
    let hi = hashes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (hashes[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    for (let i = 0; i < hashes.length; i++) {
      const e = endpoints[this.#owners[(lo + i) % hashes.length]!]!;
      if (isAvailable(e, now)) return e;
    }
    return undefined;
  }

  #build(endpoints: readonly E[]): void {
    const perEndpoint = this.#ringSize;
    const points: [number, number][] = [];
    endpoints.forEach((e, idx) => {
      for (let i = 0; i < perEndpoint; i++) points.push([fnv1a(`${e.key}_${i}`), idx]);
    });
    points.sort((x, y) => x[0] - y[0]);
    this.#hashes = Uint32Array.from(points, (p) => p[0]);
    this.#owners = points.map((p) => p[1]);
    this.#builtFor = endpoints;
  }
}

export function createLoadBalancer<E extends Pickable>(config: LoadBalancerConfig | undefined): LoadBalancer<E> {
  switch (config?.kind ?? 'ROUND_ROBIN') {
    case 'LEAST_REQUEST':
      return new LeastRequest<E>();
    case 'RANDOM':
      return new RandomPick<E>();
    case 'CONSISTENT_HASH':
      return new RingHash<E>(config?.ringSize ?? 160);
    default:
      return new RoundRobin<E>();
  }
}

/** The hash input of a request per `hashOn`: a header value, a cookie value or the source IP; undefined when absent. */
export function requestHash(hashOn: LoadBalancerConfig['hashOn'], header: (name: string) => string | undefined, sourceIp: string): number | undefined {
  if (hashOn === undefined) return undefined;
  if (hashOn.sourceIp === true) return fnv1a(sourceIp);
  if (hashOn.header !== undefined) {
    const v = header(hashOn.header.toLowerCase());
    return v === undefined ? undefined : fnv1a(v);
  }
  if (hashOn.cookie !== undefined) {
    const cookies = header('cookie');
    if (cookies === undefined) return undefined;
    for (const part of cookies.split(';')) {
      const eq = part.indexOf('=');
      if (eq !== -1 && part.slice(0, eq).trim() === hashOn.cookie) return fnv1a(part.slice(eq + 1).trim());
    }
  }
  return undefined;
}
