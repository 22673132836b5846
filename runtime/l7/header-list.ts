/** An ordered, mutable list of HTTP fields with lower-case names, stored flat ([name, value, ...]) so the parser's output is used without copying. */

/** RFC 9110 token characters for names; values may not carry CR, LF or NUL (header injection). */
const NAME_RE = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const BAD_VALUE_RE = /[\r\n\0]/;

export class HeaderList {
  /** Invariant: even length; names lower-case. */
  readonly flat: string[];
  /** Length of `flat` when the list was made: those entries are the original fields, unless #originalChanged. */
  #original: number;
  /** A field of the original list was changed or removed. */
  #originalChanged = false;

  constructor(flat: string[] = []) {
    this.flat = flat;
    this.#original = flat.length;
  }

  /** Some field was set, added or removed since the list was made (an unedited head may be forwarded as it came). */
  get edited(): boolean {
    return this.#originalChanged || this.flat.length !== this.#original;
  }

  /**
   * Where in `flat` the fields added since the list was made begin, when the original fields are all still there,
   * unchanged and in order (so a head may be forwarded as it came with the added fields after it); -1 otherwise.
   */
  get appendedFrom(): number {
    return this.#originalChanged ? -1 : this.#original;
  }

  get size(): number {
    return this.flat.length >> 1;
  }

  get(name: string): string | undefined {
    const f = this.flat;
    for (let i = 0; i < f.length; i += 2) if (f[i] === name) return f[i + 1];
    return undefined;
  }

  getAll(name: string): string[] {
    const out: string[] = [];
    const f = this.flat;
    for (let i = 0; i < f.length; i += 2) if (f[i] === name) out.push(f[i + 1]!);
    return out;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Replaces every value of `name` with one value (appends when absent). */
  set(name: string, value: string): void {
    const n = checkName(name);
    checkValue(value);
    const f = this.flat;
    let found = false;
    for (let i = 0; i < f.length; ) {
      if (f[i] === n) {
        if (i < this.#original) this.#originalChanged = true;
        if (!found) {
          f[i + 1] = value;
          found = true;
          i += 2;
        } else this.#splice(i);
      } else i += 2;
    }
    if (!found) f.push(n, value);
  }

  add(name: string, value: string): void {
    const n = checkName(name);
    checkValue(value);
    this.flat.push(n, value);
  }

  remove(name: string): void {
    const n = name.toLowerCase();
    const f = this.flat;
    for (let i = 0; i < f.length; ) {
      if (f[i] === n) this.#splice(i);
      else i += 2;
    }
  }

  /** Drops the field at flat index `i`, keeping the count of original entries in step. */
  #splice(i: number): void {
    this.flat.splice(i, 2);
    if (i < this.#original) {
      this.#originalChanged = true;
      this.#original -= 2;
    }
  }

  /** Pairs for APIs that want them (Wasm host, http2). */
  pairs(): [string, string][] {
    const out: [string, string][] = [];
    const f = this.flat;
    for (let i = 0; i < f.length; i += 2) out.push([f[i]!, f[i + 1]!]);
    return out;
  }

  /** Replaces the whole list (a Wasm plugin's set_header_map). */
  replaceAll(pairs: readonly (readonly [string, string])[]): void {
    this.flat.length = 0;
    this.#original = 0;
    this.#originalChanged = true;
    for (const [n, v] of pairs) this.add(n, v);
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

/** Short values already validated (filters set the same literals on every request); bounded like validNames. */
const validValues = new Set<string>();

function checkValue(value: string): void {
  if (validValues.has(value)) return;
  if (BAD_VALUE_RE.test(value)) throw new TypeError('invalid header value: CR, LF and NUL are not allowed');
  if (value.length <= 64) remember(validValues, value);
}

function remember(cache: Set<string>, s: string): void {
  if (cache.size >= VALIDATED_CACHE_SIZE) cache.clear();
  cache.add(s);
}
