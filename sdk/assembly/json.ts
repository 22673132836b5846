// A compact JSON (RFC 8259) parser and string quoting for plugin configuration and weft's foreign-function payloads.
// Errors are returned (with the offset), never thrown: AssemblyScript's throw is an abort that would kill the VM.
// Written here rather than depended on: json-as 1.6 works through a compiler transform (and SIMD), and
// assemblyscript-json 1.1 was built for AS 0.19; a dynamic-tree parser of ~400 lines keeps plugins small and builds plain.

export enum JsonKind {
  Null = 0,
  Bool = 1,
  Number = 2,
  String = 3,
  Array = 4,
  Object = 5,
}

export class JsonValue {
  constructor(public readonly kind: JsonKind) {}

  get isNull(): bool { return this.kind == JsonKind.Null; }
  get isBool(): bool { return this.kind == JsonKind.Bool; }
  get isNumber(): bool { return this.kind == JsonKind.Number; }
  get isString(): bool { return this.kind == JsonKind.String; }
  get isArray(): bool { return this.kind == JsonKind.Array; }
  get isObject(): bool { return this.kind == JsonKind.Object; }

  /** The string, or null when this is not a string. */
  asString(): string | null {
    return this.kind == JsonKind.String ? (<JsonString>this).value : null;
  }

  asNumber(fallback: f64 = 0): f64 {
    return this.kind == JsonKind.Number ? (<JsonNumber>this).value : fallback;
  }

  asBool(fallback: bool = false): bool {
    return this.kind == JsonKind.Bool ? (<JsonBool>this).value : fallback;
  }

  asArray(): JsonArray | null {
    return this.kind == JsonKind.Array ? <JsonArray>this : null;
  }

  asObject(): JsonObject | null {
    return this.kind == JsonKind.Object ? <JsonObject>this : null;
  }
}

export class JsonNull extends JsonValue {
  constructor() { super(JsonKind.Null); }
}

export class JsonBool extends JsonValue {
  constructor(public readonly value: bool) { super(JsonKind.Bool); }
}

export class JsonNumber extends JsonValue {
  constructor(public readonly value: f64) { super(JsonKind.Number); }
}

export class JsonString extends JsonValue {
  constructor(public readonly value: string) { super(JsonKind.String); }
}

export class JsonArray extends JsonValue {
  readonly items: Array<JsonValue> = new Array<JsonValue>();
  constructor() { super(JsonKind.Array); }

  get length(): i32 { return this.items.length; }
  at(i: i32): JsonValue { return this.items[i]; }
}

/** An object; keys keep their order, a repeated key keeps its last value. */
export class JsonObject extends JsonValue {
  readonly keys: Array<string> = new Array<string>();
  readonly entries: Map<string, JsonValue> = new Map<string, JsonValue>();
  constructor() { super(JsonKind.Object); }

  has(key: string): bool { return this.entries.has(key); }

  get(key: string): JsonValue | null {
    return this.entries.has(key) ? this.entries.get(key) : null;
  }

  getString(key: string): string | null {
    const v = this.get(key);
    return v === null ? null : v.asString();
  }

  getNumber(key: string, fallback: f64 = 0): f64 {
    const v = this.get(key);
    return v === null ? fallback : v.asNumber(fallback);
  }

  getBool(key: string, fallback: bool = false): bool {
    const v = this.get(key);
    return v === null ? fallback : v.asBool(fallback);
  }

  getArray(key: string): JsonArray | null {
    const v = this.get(key);
    return v === null ? null : v.asArray();
  }

  getObject(key: string): JsonObject | null {
    const v = this.get(key);
    return v === null ? null : v.asObject();
  }

  set(key: string, value: JsonValue): void {
    if (!this.entries.has(key)) this.keys.push(key);
    this.entries.set(key, value);
  }
}

export class JsonParseResult {
  constructor(public readonly value: JsonValue | null, public readonly error: string, public readonly position: i32) {}

  get ok(): bool { return this.value !== null; }

  /** The top-level object, or an empty one when parsing failed or the document is not an object. */
  object(): JsonObject {
    const v = this.value;
    if (v !== null) {
      const o = v.asObject();
      if (o !== null) return o;
    }
    return new JsonObject();
  }
}

const MAX_DEPTH = 64;

class Parser {
  pos: i32 = 0;
  error: string = "";
  constructor(public readonly s: string) {}

  fail(message: string): JsonValue | null {
    if (this.error.length == 0) this.error = message;
    return null;
  }

  ws(): void {
    const s = this.s;
    while (this.pos < s.length) {
      const c = s.charCodeAt(this.pos);
      if (c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d) this.pos++;
      else break;
    }
  }

  value(depth: i32): JsonValue | null {
    if (depth > MAX_DEPTH) return this.fail("nested deeper than " + MAX_DEPTH.toString() + " levels");
    this.ws();
    if (this.pos >= this.s.length) return this.fail("unexpected end of input");
    const c = this.s.charCodeAt(this.pos);
    if (c == 0x7b) return this.object(depth);
    if (c == 0x5b) return this.array(depth);
    if (c == 0x22) {
      const str = this.string();
      return str === null ? null : new JsonString(str);
    }
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    if (this.literal("true")) return new JsonBool(true);
    if (this.literal("false")) return new JsonBool(false);
    if (this.literal("null")) return new JsonNull();
    return this.fail("unexpected character '" + String.fromCharCode(c) + "'");
  }

  literal(word: string): bool {
    if (this.s.substr(this.pos, word.length) != word) return false;
    this.pos += word.length;
    return true;
  }

  object(depth: i32): JsonValue | null {
    const obj = new JsonObject();
    this.pos++;
    this.ws();
    if (this.peek() == 0x7d) { this.pos++; return obj; }
    while (true) {
      this.ws();
      if (this.peek() != 0x22) return this.fail("expected a string key");
      const key = this.string();
      if (key === null) return null;
      this.ws();
      if (this.peek() != 0x3a) return this.fail("expected ':' after key");
      this.pos++;
      const v = this.value(depth + 1);
      if (v === null) return null;
      obj.set(key, v);
      this.ws();
      const c = this.peek();
      this.pos++;
      if (c == 0x2c) continue;
      if (c == 0x7d) return obj;
      this.pos--;
      return this.fail("expected ',' or '}'");
    }
  }

  array(depth: i32): JsonValue | null {
    const arr = new JsonArray();
    this.pos++;
    this.ws();
    if (this.peek() == 0x5d) { this.pos++; return arr; }
    while (true) {
      const v = this.value(depth + 1);
      if (v === null) return null;
      arr.items.push(v);
      this.ws();
      const c = this.peek();
      this.pos++;
      if (c == 0x2c) continue;
      if (c == 0x5d) return arr;
      this.pos--;
      return this.fail("expected ',' or ']'");
    }
  }

  peek(): i32 {
    return this.pos < this.s.length ? this.s.charCodeAt(this.pos) : -1;
  }

  string(): string | null {
    const s = this.s;
    this.pos++;
    let start = this.pos;
    let out = "";
    while (true) {
      if (this.pos >= s.length) { this.fail("unterminated string"); return null; }
      const c = s.charCodeAt(this.pos);
      if (c == 0x22) {
        out += s.substring(start, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) { this.fail("control character in string"); return null; }
      if (c != 0x5c) { this.pos++; continue; }
      out += s.substring(start, this.pos);
      this.pos++;
      const e = this.peek();
      this.pos++;
      if (e == 0x22) out += "\"";
      else if (e == 0x5c) out += "\\";
      else if (e == 0x2f) out += "/";
      else if (e == 0x62) out += "\b";
      else if (e == 0x66) out += "\f";
      else if (e == 0x6e) out += "\n";
      else if (e == 0x72) out += "\r";
      else if (e == 0x74) out += "\t";
      else if (e == 0x75) {
        const u = this.hex4();
        if (u < 0) { this.fail("bad \\u escape"); return null; }
        out += String.fromCharCode(u);
      } else { this.pos--; this.fail("bad escape"); return null; }
      start = this.pos;
    }
  }

  hex4(): i32 {
    if (this.pos + 4 > this.s.length) return -1;
    let v = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.s.charCodeAt(this.pos + i);
      let d = -1;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
      if (d < 0) return -1;
      v = (v << 4) | d;
    }
    this.pos += 4;
    return v;
  }

  digits(): i32 {
    let n = 0;
    while (this.pos < this.s.length) {
      const c = this.s.charCodeAt(this.pos);
      if (c < 0x30 || c > 0x39) break;
      this.pos++;
      n++;
    }
    return n;
  }

  number(): JsonValue | null {
    const start = this.pos;
    if (!this.scanNumber()) return null;
    return new JsonNumber(numberValue(this.s, start, this.pos));
  }

  /** Moves past a number; false (and failed) when it is malformed. */
  scanNumber(): bool {
    if (this.peek() == 0x2d) this.pos++;
    if (this.peek() == 0x30) this.pos++;
    else if (this.digits() == 0) { this.fail("bad number"); return false; }
    if (this.peek() == 0x2e) {
      this.pos++;
      if (this.digits() == 0) { this.fail("bad number: digits expected after '.'"); return false; }
    }
    const e = this.peek();
    if (e == 0x65 || e == 0x45) {
      this.pos++;
      const sign = this.peek();
      if (sign == 0x2b || sign == 0x2d) this.pos++;
      if (this.digits() == 0) { this.fail("bad number: digits expected in exponent"); return false; }
    }
    return true;
  }
}

/**
 * Pull reader over one JSON document for hot answers whose few fields are known (no tree, no per-object Map):
 * the caller walks objects and arrays and reads or skips each value. Malformed input sets `failed`.
 * @example
 *   const r = new JsonReader(text);
 *   if (r.enter(0x7b)) do { const k = r.key(); if (k === null) break; if (k == "code") code = r.readString(); else r.skip(); } while (r.more(0x7d));
 *   if (r.failed) ...
 */
export class JsonReader extends Parser {
  get failed(): bool {
    return this.error.length > 0;
  }

  /** True when the next value is an object. */
  peekObject(): bool {
    this.ws();
    return this.peek() == 0x7b;
  }

  /** Consumes `open` ('{' 0x7b or '[' 0x5b); false when the container is empty or the value is of another kind (then skipped). */
  enter(open: i32): bool {
    this.ws();
    if (this.peek() != open) {
      this.skip();
      return false;
    }
    this.pos++;
    this.ws();
    if (this.peek() == open + 2) { this.pos++; return false; }
    return true;
  }

  /** The next member's key, its ':' consumed; null (and failed) when malformed. */
  key(): string | null {
    this.ws();
    if (this.peek() != 0x22) { this.fail("expected a string key"); return null; }
    const k = this.string();
    if (k === null) return null;
    this.ws();
    if (this.peek() != 0x3a) { this.fail("expected ':' after key"); return null; }
    this.pos++;
    return k;
  }

  /**
   * The next member's key as its index in `names` (-1: another key), its ':' consumed; -2 (and failed) when
   * malformed. An unescaped key is compared in place, so known keys cost no string.
   */
  keyIndex(names: StaticArray<string>): i32 {
    this.ws();
    if (this.peek() != 0x22) { this.fail("expected a string key"); return -2; }
    const s = this.s;
    const start = this.pos + 1;
    let end = start;
    while (end < s.length) {
      const c = s.charCodeAt(end);
      if (c == 0x22 || c == 0x5c || c < 0x20) break;
      end++;
    }
    let found = -1;
    if (end < s.length && s.charCodeAt(end) == 0x22) {
      const len = end - start;
      const at = changetype<usize>(s) + (<usize>start << 1);
      for (let i = 0; i < names.length; i++) {
        const n = unchecked(names[i]);
        if (n.length == len && memory.compare(at, changetype<usize>(n), <usize>len << 1) == 0) { found = i; break; }
      }
      this.pos = end + 1;
    } else {
      const k = this.string();
      if (k === null) return -2;
      for (let i = 0; i < names.length; i++) if (unchecked(names[i]) == k) { found = i; break; }
    }
    this.ws();
    if (this.peek() != 0x3a) { this.fail("expected ':' after key"); return -2; }
    this.pos++;
    return found;
  }

  /** After a member or item: true when ',' follows, false at `close` ('}' 0x7d or ']' 0x5d) or on malformed input. */
  more(close: i32): bool {
    if (this.failed) return false;
    this.ws();
    const c = this.peek();
    this.pos++;
    if (c == 0x2c) return true;
    if (c == close) return false;
    this.pos--;
    this.fail("expected ',' or a closing bracket");
    return false;
  }

  /** A string value, or null when the value is another kind (skipped). */
  readString(): string | null {
    this.ws();
    if (this.peek() == 0x22) return this.string();
    this.skip();
    return null;
  }

  /** A number value, or `fallback` when the value is another kind (skipped). */
  readNumber(fallback: f64 = 0): f64 {
    this.ws();
    const c = this.peek();
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) {
      const start = this.pos;
      return this.scanNumber() ? numberValue(this.s, start, this.pos) : fallback;
    }
    this.skip();
    return fallback;
  }

  /** A boolean value, or `fallback` when the value is another kind (skipped). */
  readBool(fallback: bool = false): bool {
    this.ws();
    if (this.literal("true")) return true;
    if (this.literal("false")) return false;
    this.skip();
    return fallback;
  }

  /** Skips one value of any kind (a number without building it). */
  skip(): void {
    this.ws();
    const c = this.peek();
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) this.scanNumber();
    else this.value(1);
  }

  /** True when only whitespace is left and nothing failed. */
  done(): bool {
    this.ws();
    return !this.failed && this.pos == this.s.length;
  }
}

/**
 * The value of a validated JSON number. Exact for integers up to 2^53 and for the decimals configuration uses;
 * avoids the standard strtod, which alone would be a quarter of a small plugin.
 */
function numberValue(s: string, start: i32, end: i32): f64 {
  let i = start;
  let neg = false;
  if (s.charCodeAt(i) == 0x2d) { neg = true; i++; }
  let mant: f64 = 0;
  let scale: i32 = 0;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) break;
    mant = mant * 10 + <f64>(c - 0x30);
    i++;
  }
  if (i < end && s.charCodeAt(i) == 0x2e) {
    i++;
    while (i < end) {
      const c = s.charCodeAt(i);
      if (c < 0x30 || c > 0x39) break;
      mant = mant * 10 + <f64>(c - 0x30);
      scale--;
      i++;
    }
  }
  if (i < end) {
    i++;
    let eneg = false;
    const sign = s.charCodeAt(i);
    if (sign == 0x2b || sign == 0x2d) { eneg = sign == 0x2d; i++; }
    let e: i32 = 0;
    while (i < end && e < 100000) { e = e * 10 + (s.charCodeAt(i) - 0x30); i++; }
    scale += eneg ? -e : e;
  }
  let v = mant;
  let p: f64 = 1;
  let k = scale < 0 ? -scale : scale;
  if (k > 400) k = 400;
  for (let j = 0; j < k; j++) p *= 10;
  if (scale > 0) v *= p;
  else if (scale < 0) v /= p;
  return neg ? -v : v;
}

/**
 * Parses a JSON document.
 * @example
 *   const parsed = parseJson(pluginConfiguration.text());
 *   if (!parsed.ok) { logError("config is not JSON: " + parsed.error); return false; }
 *   const limit = parsed.object().getNumber("limit", 100);
 */
export function parseJson(text: string): JsonParseResult {
  const p = new Parser(text);
  const v = p.value(0);
  if (v === null) return new JsonParseResult(null, p.error + " at offset " + p.pos.toString(), p.pos);
  p.ws();
  if (p.pos != text.length) return new JsonParseResult(null, "unexpected data after the document at offset " + p.pos.toString(), p.pos);
  return new JsonParseResult(v, "", p.pos);
}

/** `s` as a JSON string literal, quotes included. */
export function jsonQuote(s: string): string {
  let out = "\"";
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    out += s.substring(start, i);
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else {
      const h = c.toString(16);
      out += "\\u" + "0000".substring(h.length) + h;
    }
    start = i + 1;
  }
  return out + s.substring(start) + "\"";
}

/** The strings of a JSON array of strings; null when `v` is not one (an absent value is the caller's business). */
export function stringArray(v: JsonValue | null): Array<string> | null {
  if (v === null) return null;
  const a = v.asArray();
  if (a === null) return null;
  const out = new Array<string>(a.length);
  for (let i = 0; i < a.length; i++) {
    const s = a.at(i).asString();
    if (s === null) return null;
    out[i] = s;
  }
  return out;
}

/** The first key of `obj` not in `allowed`, or null: configurations reject unknown fields instead of ignoring typos. */
export function unknownKey(obj: JsonObject, allowed: Array<string>): string | null {
  for (let i = 0; i < obj.keys.length; i++) if (!allowed.includes(obj.keys[i])) return obj.keys[i];
  return null;
}

/** Serializes a JSON value (integers without a fraction; object keys in their original order). */
export function stringifyJson(v: JsonValue): string {
  switch (v.kind) {
    case JsonKind.Null: return "null";
    case JsonKind.Bool: return v.asBool() ? "true" : "false";
    case JsonKind.Number: {
      const n = v.asNumber();
      if (n == Math.floor(n) && Math.abs(n) < 9007199254740992) return (<i64>n).toString();
      return isFinite(n) ? n.toString() : "null";
    }
    case JsonKind.String: return jsonQuote(v.asString()!);
    case JsonKind.Array: {
      const a = <JsonArray>v;
      let s = "[";
      for (let i = 0; i < a.length; i++) {
        if (i > 0) s += ",";
        s += stringifyJson(a.at(i));
      }
      return s + "]";
    }
    default: {
      const o = <JsonObject>v;
      let s = "{";
      for (let i = 0; i < o.keys.length; i++) {
        if (i > 0) s += ",";
        s += jsonQuote(o.keys[i]) + ":" + stringifyJson(o.entries.get(o.keys[i]));
      }
      return s + "}";
    }
  }
}
