/**
 * An ordered, mutable list of HTTP fields with lower-case names, stored flat ([name, value, ...]) so the parser's output
 * is used without copying. It remembers which of the fields it was made with (the parsed head's, one per field line, in
 * order) were since removed or given a new value, so a forwarder can splice those lines in the head's own bytes instead
 * of writing the head anew (http1-head-splice.ts). A list may also start from fields still undecoded in the head's bytes
 * (UndecodedFields): lookups by name and fields added then leave them undecoded; anything else decodes them first.
 */

/** RFC 9110 token characters for names; values may not carry CR, LF or NUL (header injection), nor a character a latin1 write would truncate into one (U+010A is written as LF). */
const NAME_RE = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const BAD_VALUE_RE = /[\r\n\0\u0100-\uffff]/;

/** What happened to an original field (HeaderList.originalEdits). */
export const FIELD_KEPT = 0;
export const FIELD_REMOVED = 1;
export const FIELD_REPLACED = 2;

/**
 * The fields a list is made with, read from where they were received without decoding them all (a response head's
 * field lines, response-head-fields.ts). Names asked for are lower-case.
 */
export interface UndecodedFields {
  /** How many fields there are. */
  readonly count: number;
  /** The first value of `name`, or undefined. */
  first(name: string): string | undefined;
  /** Every value of `name` joined with ", ", or undefined. */
  joined(name: string): string | undefined;
  /** How many fields are named `name`. */
  countOf(name: string): number;
  /** All of them, flat [name, value, ...] with lower-case names; the list takes the array over. */
  decode(): string[];
}

export class HeaderList {
  /**
   * Invariant: even length; names lower-case. While `#source` is set it holds only the fields added since the list was
   * made (the original ones are the source's); once decoded, all of them.
   */
  #flat: string[];
  /** The original fields while still undecoded; unset on the first need for them as strings. */
  #source: UndecodedFields | undefined;
  /** Fields the list was made with. */
  readonly #fields: number;
  /**
   * Length of the prefix of `flat` that holds the original fields still there, in their original order (some with a new
   * value); fields added since follow it.
   */
  #original: number;
  /** Per original field, FIELD_KEPT, FIELD_REMOVED or FIELD_REPLACED; made on the first edit of one (most lists get none). */
  #edits: Uint8Array | undefined;

  constructor(flat: string[] = [], source?: UndecodedFields) {
    this.#flat = flat;
    this.#source = source;
    this.#fields = source === undefined ? flat.length >> 1 : source.count;
    this.#original = this.#fields * 2;
    this.#edits = undefined;
  }

  /** A list of `source`'s fields, decoded when something needs more of them than a lookup by name. */
  static undecoded(source: UndecodedFields): HeaderList {
    return new HeaderList([], source);
  }

  /** Invariant: even length; names lower-case. Decodes undecoded original fields. */
  get flat(): string[] {
    const s = this.#source;
    if (s !== undefined) this.#decode(s);
    return this.#flat;
  }

  /** Whether the original fields were decoded into strings (always, for a list made from strings). */
  get decoded(): boolean {
    return this.#source === undefined;
  }

  /**
   * While the original fields are undecoded, the fields added since, flat: what `flat` holds from addedFrom on, without
   * decoding the rest. Undefined once decoded.
   */
  get addedUndecoded(): readonly string[] | undefined {
    return this.#source === undefined ? undefined : this.#flat;
  }

  #decode(s: UndecodedFields): void {
    const f = s.decode();
    const added = this.#flat;
    for (let i = 0; i < added.length; i++) f.push(added[i]!);
    this.#flat = f;
    this.#source = undefined;
  }

  /** Some field was set, added or removed since the list was made (an unedited head may be forwarded as it came). */
  get edited(): boolean {
    // Undecoded original fields were neither removed nor replaced (an edit of one decodes them first).
    if (this.#source !== undefined) return this.#flat.length !== 0;
    return this.#edits !== undefined || this.#flat.length !== this.#original;
  }

  /**
   * Where in `flat` the fields added since the list was made begin, when the original fields are all still there,
   * unchanged and in order (so a head may be forwarded as it came with the added fields after it); -1 otherwise.
   */
  get appendedFrom(): number {
    return this.#edits === undefined ? this.#original : -1;
  }

  /** Where in `flat` the fields added since the list was made begin, whatever happened to the original ones. */
  get addedFrom(): number {
    return this.#original;
  }

  /**
   * What happened to each field the list was made with (FIELD_KEPT, FIELD_REMOVED, FIELD_REPLACED, by original
   * position), or undefined when none was removed or replaced. The original fields not removed are `flat`'s first
   * entries, in their original order; a replaced one's entry holds its new value.
   */
  get originalEdits(): Uint8Array | undefined {
    return this.#edits;
  }

  get size(): number {
    const s = this.#source;
    return (s === undefined ? 0 : s.count) + (this.#flat.length >> 1);
  }

  /** The first value of `name` (lower-case), or undefined. */
  get(name: string): string | undefined {
    const s = this.#source;
    if (s !== undefined) {
      const v = s.first(name);
      if (v !== undefined) return v;
    }
    const f = this.#flat;
    for (let i = 0; i < f.length; i += 2) if (f[i] === name) return f[i + 1];
    return undefined;
  }

  getAll(name: string): string[] {
    const out: string[] = [];
    const f = this.flat;
    for (let i = 0; i < f.length; i += 2) if (f[i] === name) out.push(f[i + 1]!);
    return out;
  }

  /** Every value of `name` (lower-case) joined with ", " (Envoy's get of a repeated header), or undefined. */
  joined(name: string): string | undefined {
    const s = this.#source;
    let value = s === undefined ? undefined : s.joined(name);
    const f = this.#flat;
    for (let i = 0; i < f.length; i += 2) if (f[i] === name) value = value === undefined ? f[i + 1]! : `${value}, ${f[i + 1]!}`;
    return value;
  }

  /** How many fields are named `name` (lower-case). */
  count(name: string): number {
    const s = this.#source;
    let n = s === undefined ? 0 : s.countOf(name);
    const f = this.#flat;
    for (let i = 0; i < f.length; i += 2) if (f[i] === name) n++;
    return n;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Replaces every value of `name` with one value, at the first one's place (appends when absent), as Envoy's setCopy does. */
  set(name: string, value: string): void {
    const n = checkName(name);
    checkValue(value);
    // Edits of original fields are recorded by position, so those need them decoded; added ones do not.
    const s = this.#source;
    if (s !== undefined && s.countOf(n) > 0) this.#decode(s);
    const f = this.#flat;
    const added = this.#source !== undefined;
    let found = false;
    for (let i = 0; i < f.length; ) {
      if (f[i] === n) {
        if (!found) {
          if (!added && i < this.#original) this.#mark(i, FIELD_REPLACED);
          f[i + 1] = value;
          found = true;
          i += 2;
        } else this.#splice(i, added);
      } else i += 2;
    }
    if (!found) f.push(n, value);
  }

  add(name: string, value: string): void {
    const n = checkName(name);
    checkValue(value);
    this.#flat.push(n, value);
  }

  remove(name: string): void {
    const n = name.toLowerCase();
    const s = this.#source;
    if (s !== undefined && s.countOf(n) > 0) this.#decode(s);
    const f = this.#flat;
    const added = this.#source !== undefined;
    for (let i = 0; i < f.length; ) {
      if (f[i] === n) this.#splice(i, added);
      else i += 2;
    }
  }

  /** Drops the field at `#flat` index `i`, keeping the count of original entries in step (`added`: `#flat` holds only added fields). */
  #splice(i: number, added: boolean): void {
    if (!added && i < this.#original) {
      this.#mark(i, FIELD_REMOVED);
      this.#original -= 2;
    }
    this.#flat.splice(i, 2);
  }

  /** Records what happened to the original field at flat index `i` (before it is removed from `flat`). */
  #mark(i: number, edit: typeof FIELD_REMOVED | typeof FIELD_REPLACED): void {
    const edits = (this.#edits ??= new Uint8Array(this.#fields));
    // The (i/2)-th original field still in `flat` is the original field `k` past the removed ones before it.
    let left = i >> 1;
    let k = 0;
    for (; ; k++) {
      if (edits[k] === FIELD_REMOVED) continue;
      if (left === 0) break;
      left--;
    }
    edits[k] = edit;
  }

  /** Pairs for APIs that want them (Wasm host, http2). */
  pairs(): [string, string][] {
    const out: [string, string][] = [];
    const f = this.flat;
    for (let i = 0; i < f.length; i += 2) out.push([f[i]!, f[i + 1]!]);
    return out;
  }

  /**
   * Replaces the whole list (a Wasm plugin's set_header_map, or a map it edited in place), recorded as the least it
   * can be said with: the original fields the pairs still begin with stay (with a new value if it changed), the ones
   * that are not matched in order are removed, and the rest of the pairs are added after them. The list ends up equal
   * to the pairs either way; a plugin that removed or replaced fields then still lets the head be spliced rather than
   * written anew. Every new pair is validated before anything changes (one equal to the field it matches was when the
   * list got it: a bearer token is not scanned again).
   */
  replaceAll(pairs: readonly (readonly [string, string])[]): void {
    const f = this.flat;
    const original = this.#original;
    let p = 0;
    for (let r = 0; r < original && p < pairs.length; r += 2) {
      const pair = pairs[p]!;
      // A name equal to the list's is valid; most pairs are the list's own strings (a map built from it).
      if (pair[0] !== f[r] && checkName(pair[0]) !== f[r]) continue;
      if (pair[1] !== f[r + 1]) checkValue(pair[1]);
      p++;
    }
    for (let i = p; i < pairs.length; i++) {
      checkName(pairs[i]![0]);
      checkValue(pairs[i]![1]);
    }
    p = 0;
    let w = 0;
    for (let r = 0; r < original; r += 2) {
      const pair = p < pairs.length ? pairs[p]! : undefined;
      if (pair !== undefined && (pair[0] === f[r] || checkName(pair[0]) === f[r])) {
        // Marks take positions among the original fields still listed: `w` is this field's now.
        if (pair[1] !== f[r + 1]) this.#mark(w, FIELD_REPLACED);
        f[w] = f[r]!;
        f[w + 1] = pair[1];
        w += 2;
        p++;
      } else {
        this.#mark(w, FIELD_REMOVED);
        this.#original -= 2;
      }
    }
    f.length = w;
    for (; p < pairs.length; p++) f.push(checkName(pairs[p]![0]), pairs[p]![1]);
  }
}

/** Names already validated (filters set the same few names on every request); emptied when full, so neither hostile input nor per-request values (a rate-limit header's count) can grow it or crowd the literals out for good. */
const VALIDATED_CACHE_SIZE = 4096;
const validNames = new Set<string>();

function checkName(name: string): string {
  if (validNames.has(name)) return name;
  const n = name.toLowerCase();
  if (!NAME_RE.test(n)) throw new TypeError(`invalid header name ${JSON.stringify(name)}: use RFC 9110 token characters`);
  if (n === name) remember(validNames, n);
  return n;
}

/**
 * Values are scanned every time, never cached: a value a filter makes per request (a rate-limit header's count, an
 * echoed Origin, a claim) missed any cache, and inserting it cost ~0.2 µs in a tight loop and ~0.9 µs per request under
 * wrk (hashing a fresh string, growing and emptying a 4,096-entry Set, promoting it and its strings to the old space),
 * where the scan of a literal the cache saved is ~10 ns.
 */
function checkValue(value: string): void {
  if (BAD_VALUE_RE.test(value)) throw new TypeError('invalid header value: CR, LF, NUL and characters above U+00FF are not allowed');
}

function remember(cache: Set<string>, s: string): void {
  if (cache.size >= VALIDATED_CACHE_SIZE) cache.clear();
  cache.add(s);
}
