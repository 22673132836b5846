/**
 * A stream header map an embedder serves from its own header representation, built as [name, value] pairs only when a
 * plugin needs the whole list or edits an entry in place: lookups read the source, and entries appended (an add, or a
 * replace of a name the map lacks) are kept beside it. Most filters only look up a few headers and add or set new ones,
 * so most requests never build the pairs (and the embedder's write-back then only adds the appended entries). A remove
 * or an in-place replace of one of the source's plain fields is kept as a field edit beside it too (header-rewrite's
 * remove, jwt-authn dropping `authorization`), which the embedder applies to its own representation by name.
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
  /**
   * Plain source fields edited while the pairs are not built, flat [name, value]: a value replaced every source value
   * of the name at the first one's place, undefined removed them all. One entry per name; made on the first edit.
   */
  private declare _edits: (string | undefined)[] | undefined;
  /** Source entries the edits hide (what `length` no longer counts). */
  private declare _hidden: number;

  constructor() {
    this._appended = undefined;
    this._pairs = undefined;
    this._built = false;
    this._edits = undefined;
    this._hidden = 0;
  }

  /** Number of entries in the source (what `length` counts before the appended ones). */
  protected abstract get sourceLength(): number;
  /** Pushes the source entries, in map order, onto `out`. */
  protected abstract fillSource(out: HeaderPairs): void;
  /** The first source value of `name` (lower-case), or undefined. */
  protected abstract sourceFirst(name: string): string | undefined;
  /** Every source value of `name` joined with ", " (Envoy's get of a repeated header), or undefined. */
  protected abstract sourceJoined(name: string): string | undefined;
  /** Whether `name` is a plain field of the source (not a pseudo-header, nor one the map shows in another form). */
  protected abstract isSourceField(name: string): boolean;
  /** Number of source entries named `name` (a plain field). */
  protected abstract sourceCount(name: string): number;

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
    return this._built ? this._pairs!.length : this.sourceLength - this._hidden + this.appended.length;
  }

  /** Field edits made while unbuilt, flat [name, value | undefined] (see `_edits`); empty when none. */
  get fieldEdits(): readonly (string | undefined)[] {
    return this._edits ?? NO_EDITS;
  }

  /** The map as pairs, built on first call; hostcalls may then edit the array in place. */
  pairs(): HeaderPairs {
    if (this._built) return this._pairs!;
    const out = (this._pairs ??= []);
    out.length = 0;
    this.fillSource(out);
    const e = this._edits;
    if (e !== undefined && e.length > 0) {
      for (let i = 0; i < e.length; i += 2) {
        const value = e[i + 1];
        if (value === undefined) removeFrom(out, e[i]!, 0);
        else replaceIn(out, e[i]!, value);
      }
      e.length = 0;
      this._hidden = 0;
    }
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
    this.clearFieldEdits();
  }

  /** Forgets the field edits once the embedder applied them to its source. */
  protected clearFieldEdits(): void {
    if (this._edits !== undefined) this._edits.length = 0;
    this._hidden = 0;
  }

  first(name: string): string | undefined {
    if (this._built) return firstValue(this._pairs!, name);
    const a = this._appended;
    const e = this.#editAt(name);
    const s = e < 0 ? this.sourceFirst(name) : this._edits![e + 1];
    return s ?? (a === undefined ? undefined : firstValue(a, name));
  }

  /** The values of `name` joined with ", ", or undefined. */
  joined(name: string): string | undefined {
    if (this._built) return joinedValue(this._pairs!, name);
    const e = this.#editAt(name);
    const s = e < 0 ? this.sourceJoined(name) : this._edits![e + 1];
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

  /**
   * Envoy's setCopy: every value of `name` becomes one `value` at the first one's place, or `value` is appended when
   * the map has none. A plain source field is replaced as a field edit, without building the pairs.
   */
  replace(name: string, value: string): void {
    if (!this._built && !this.has(name)) {
      this.append([name, value]);
      return;
    }
    if (this._built || !this.isSourceField(name)) {
      replaceIn(this.pairs(), name, value);
      return;
    }
    const e = this.#editAt(name);
    const edits = this._edits;
    const count = e < 0 ? this.sourceCount(name) : 0;
    if (e >= 0 && edits![e + 1] !== undefined) edits![e + 1] = value;
    else if (count > 0) {
      this._hidden += count - 1;
      (this._edits ??= []).push(name, value);
    } else {
      // The source holds none (never, or removed): the first appended entry is the first value, as in the pairs.
      replaceIn((this._appended ??= []), name, value);
      return;
    }
    if (this._appended !== undefined) removeFrom(this._appended, name, 0);
  }

  /** Removes every value of `name`; a plain source field is removed as a field edit, without building the pairs. */
  remove(name: string): void {
    if (!this._built && !this.has(name)) return;
    if (this._built || !this.isSourceField(name)) {
      removeFrom(this.pairs(), name, 0);
      return;
    }
    if (this._appended !== undefined) removeFrom(this._appended, name, 0);
    const e = this.#editAt(name);
    const edits = this._edits;
    if (e >= 0) {
      if (edits![e + 1] !== undefined) this._hidden++;
      edits![e + 1] = undefined;
      return;
    }
    const count = this.sourceCount(name);
    if (count === 0) return;
    this._hidden += count;
    (this._edits ??= []).push(name, undefined);
  }

  /** Flat index of `name`'s field edit, or -1. */
  #editAt(name: string): number {
    const e = this._edits;
    if (e === undefined) return -1;
    for (let i = 0; i < e.length; i += 2) if (e[i] === name) return i;
    return -1;
  }
}

const NO_EDITS: readonly (string | undefined)[] = Object.freeze([]);

/** Envoy's setCopy on pairs: the first `name` entry takes `value`, later ones go; appended when there is none. */
export function replaceIn(map: HeaderPairs, name: string, value: string): void {
  let first = -1;
  for (let i = 0; i < map.length; i++) {
    if (map[i]![0] === name) {
      first = i;
      break;
    }
  }
  if (first < 0) {
    map.push([name, value]);
    return;
  }
  map[first] = [name, value];
  removeFrom(map, name, first + 1);
}

/** Drops every `name` entry at or after `from`, keeping the others' order. */
export function removeFrom(map: HeaderPairs, name: string, from: number): void {
  let w = from;
  for (let r = from; r < map.length; r++) {
    const p = map[r]!;
    if (p[0] !== name) map[w++] = p;
  }
  map.length = w;
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
