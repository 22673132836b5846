/**
 * A stream header map an embedder serves from its own header representation, built as [name, value] pairs only when a
 * plugin needs the whole list or edits an entry in place: lookups read the source, and entries appended (an add, or a
 * replace of a name the map lacks) are kept beside it. Most filters only look up a few headers and add or set new ones,
 * so most requests never build the pairs (and the embedder's write-back then only adds the appended entries).
 */
import type { HeaderPair, HeaderPairs } from './header-map-codec.js';

/** What `appended` answers before the first append; frozen, so a write meant for a map's own array fails loudly. */
const NONE: HeaderPairs = Object.freeze([]) as unknown as HeaderPairs;

/**
 * The state lives in TypeScript-private fields set by the constructor (`declare`d, so no class field definitions are
 * emitted), not in `#` fields with initializers: a base class with field initializers made each subclass construction
 * ~20 ns slower (measured on Node 24: V8 runs the field initializers as a separate call behind `super()`), and the L7
 * path constructs two of these per request. Subclasses declare their fields the same way.
 */
export abstract class LazyHeaderMap {
  /** Made on the first append: most maps get none, and two arrays per request were a share of the L7 Wasm path's garbage. */
  private declare _appended: HeaderPairs | undefined;
  /** Made on the first build (most maps never need it), then reused across resets. */
  private declare _pairs: HeaderPairs | undefined;
  private declare _built: boolean;

  constructor() {
    this._appended = undefined;
    this._pairs = undefined;
    this._built = false;
  }

  /** Number of entries in the source (what `length` counts before the appended ones). */
  protected abstract get sourceLength(): number;
  /** Pushes the source entries, in map order, onto `out`. */
  protected abstract fillSource(out: HeaderPairs): void;
  /** The first source value of `name` (lower-case), or undefined. */
  protected abstract sourceFirst(name: string): string | undefined;
  /** Every source value of `name` joined with ", " (Envoy's get of a repeated header), or undefined. */
  protected abstract sourceJoined(name: string): string | undefined;

  /** Entries appended while the pairs are not built; after a build they are part of the pairs. */
  get appended(): HeaderPairs {
    return this._appended ?? NONE;
  }

  /** Whether a plugin needed the pairs: they (not the source plus `appended`) are then the map. */
  get built(): boolean {
    return this._built;
  }

  /** Entry count, as a pair array's length: what on_*_headers gets as num_headers. */
  get length(): number {
    return this._built ? this._pairs!.length : this.sourceLength + this.appended.length;
  }

  /** The map as pairs, built on first call; hostcalls may then edit the array in place. */
  pairs(): HeaderPairs {
    if (this._built) return this._pairs!;
    const out = (this._pairs ??= []);
    out.length = 0;
    this.fillSource(out);
    const a = this._appended;
    if (a !== undefined) {
      for (let i = 0; i < a.length; i++) out.push(a[i]!);
      a.length = 0;
    }
    this._built = true;
    return out;
  }

  /** Back to the source alone (the embedder's source changed, or its edits were applied to it). */
  protected resetMap(): void {
    this._built = false;
    if (this._pairs !== undefined) this._pairs.length = 0;
    if (this._appended !== undefined) this._appended.length = 0;
  }

  first(name: string): string | undefined {
    if (this._built) return firstValue(this._pairs!, name);
    const a = this._appended;
    return this.sourceFirst(name) ?? (a === undefined ? undefined : firstValue(a, name));
  }

  /** The values of `name` joined with ", ", or undefined. */
  joined(name: string): string | undefined {
    if (this._built) return joinedValue(this._pairs!, name);
    const s = this.sourceJoined(name);
    const a = this._appended === undefined ? undefined : joinedValue(this._appended, name);
    return s === undefined ? a : a === undefined ? s : `${s}, ${a}`;
  }

  has(name: string): boolean {
    return this.first(name) !== undefined;
  }

  /** Appends an entry; on built pairs this is a plain push. */
  append(pair: HeaderPair): void {
    if (this._built) this._pairs!.push(pair);
    else (this._appended ??= []).push(pair);
  }
}

/** A stream's header map as hostcalls find it: plain pairs (tests, the emulator, trailers) or a lazy map. */
export type HeaderMapSlot = HeaderPairs | LazyHeaderMap;

/** The slot as pairs (building a lazy map). */
export function pairsOf(slot: HeaderMapSlot): HeaderPairs {
  return slot instanceof LazyHeaderMap ? slot.pairs() : slot;
}

export function firstValue(map: HeaderPairs, name: string): string | undefined {
  for (let i = 0; i < map.length; i++) if (map[i]![0] === name) return map[i]![1];
  return undefined;
}

/** Repeated headers come back joined, as Envoy's header map and GCP's conformance tests expect. */
export function joinedValue(map: HeaderPairs, name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < map.length; i++) {
    const p = map[i]!;
    if (p[0] === name) value = value === undefined ? p[1] : `${value}, ${p[1]}`;
  }
  return value;
}
