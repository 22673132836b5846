/**
 * A parsed response head's fields read by name from the received bytes (UndecodedFields for HeaderList.undecoded): a
 * filter that looks up a few fields, or none, costs no decode of the others; the whole list is decoded by the parser
 * itself (ResponseHead.headers) the first time something needs it.
 */
import type { UndecodedFields } from './header-list.js';
import { commonName, type ResponseHead } from './http1-head-parser.js';

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;
const COLON = 0x3a;

/** Byte to lower case: names are tchar, where only A-Z fold (OR-ing 0x20 would also fold `^` onto `~`). */
const LOWER = new Uint8Array(256);
for (let c = 0; c < 256; c++) LOWER[c] = c >= 0x41 && c <= 0x5a ? c + 0x20 : c;

export class ResponseHeadFields implements UndecodedFields {
  readonly count: number;
  readonly #res: ResponseHead;
  readonly #buf: Buffer;
  /** Where the head starts in #buf. */
  readonly #start: number;
  /**
   * Per field line: where its name starts, its colon, where its value starts and ends (trimmed); made on the first
   * lookup. A plain array of small integers: a typed array this size has its store off the heap, which cost more to make
   * than the lookups it serves.
   */
  #index: number[] | undefined;

  /** `res` was parsed from buf[start, ...) by parseResponseHead, which validated every line this reads. */
  constructor(res: ResponseHead, buf: Buffer, start: number) {
    this.count = res.fieldCount;
    this.#res = res;
    this.#buf = buf;
    this.#start = start;
    this.#index = undefined;
  }

  first(name: string): string | undefined {
    const k = this.#find(name, 0);
    return k < 0 ? undefined : this.#value(k);
  }

  joined(name: string): string | undefined {
    let k = this.#find(name, 0);
    if (k < 0) return undefined;
    let value = this.#value(k);
    while ((k = this.#find(name, k + 1)) >= 0) value = `${value}, ${this.#value(k)}`;
    return value;
  }

  countOf(name: string): number {
    let n = 0;
    for (let k = this.#find(name, 0); k >= 0; k = this.#find(name, k + 1)) n++;
    return n;
  }

  /**
   * The parser's list (ResponseHead.headers) made from the line index: the lines were validated when the head was
   * parsed, so they are only cut into strings here, from one decoded string of the head as the parser does, instead of
   * being parsed a second time.
   */
  decode(): string[] {
    const ix = (this.#index ??= this.#lines());
    const b = this.#buf;
    const base = this.#start;
    const text = b.latin1Slice(base, ix.length === 0 ? base : ix[ix.length - 1]!);
    const out: string[] = [];
    for (let k = 0; k < this.count; k++) {
      const n0 = ix[k * 4]!;
      const n1 = ix[k * 4 + 1]!;
      out.push(commonName(b, n0, n1) ?? lowerName(b, text.slice(n0 - base, n1 - base), n0, n1), text.slice(ix[k * 4 + 2]! - base, ix[k * 4 + 3]! - base));
    }
    this.#res.headers = out;
    return out;
  }

  /** The first field line at or after `from` named `name` (lower-case), or -1. */
  #find(name: string, from: number): number {
    const ix = (this.#index ??= this.#lines());
    const b = this.#buf;
    const len = name.length;
    next: for (let k = from; k < this.count; k++) {
      const n0 = ix[k * 4]!;
      if (ix[k * 4 + 1]! - n0 !== len) continue;
      for (let i = 0; i < len; i++) if (LOWER[b[n0 + i]!] !== name.charCodeAt(i)) continue next;
      return k;
    }
    return -1;
  }

  #value(k: number): string {
    const ix = this.#index!;
    return this.#buf.latin1Slice(ix[k * 4 + 2]!, ix[k * 4 + 3]!);
  }

  /**
   * One pass over the field lines. The parser accepted them: each is a tchar name, a colon, a value of field-vchar,
   * SP and HTAB, and CRLF; so the first colon ends the name and the first CR the value.
   */
  #lines(): number[] {
    const b = this.#buf;
    const ix: number[] = [];
    let p = this.#start;
    while (b[p] !== LF) p++;
    p++;
    for (let k = 0; k < this.count; k++) {
      const n0 = p;
      while (b[p] !== COLON) p++;
      const colon = p++;
      while (b[p] === SP || b[p] === HT) p++;
      const v0 = p;
      while (b[p] !== CR) p++;
      let v1 = p;
      while (v1 > v0 && (b[v1 - 1] === SP || b[v1 - 1] === HT)) v1--;
      ix.push(n0, colon, v0, v1);
      p += 2;
    }
    return ix;
  }
}

/** `name`, b[start, end), in lower case (the parser's spelling of a field name). */
function lowerName(b: Buffer, name: string, start: number, end: number): string {
  for (let i = start; i < end; i++) if (LOWER[b[i]!] !== b[i]) return name.toLowerCase();
  return name;
}
