/**
 * The proxy-wasm map serialization (u32 count, count × (u32 key_len, u32 value_len), then each key and value NUL-terminated,
 * all little-endian) between weft's header representation and guest memory or plain bytes.
 *
 * Headers are an ordered array of [name, value] pairs of byte strings: each char is one byte (latin1), which is how Node's
 * http module represents header values, so non-ASCII bytes round-trip exactly. Names are lower-case.
 */

export type HeaderPair = [name: string, value: string];
export type HeaderPairs = HeaderPair[];

/** cpp-host's caps on maps a plugin hands to the host (PROXY_WASM_HOST_PAIRS_MAX_BYTES/COUNT). */
export const MAX_MAP_BYTES = 1 << 20;
export const MAX_MAP_PAIRS = 1024;

export function serializedSize(pairs: HeaderPairs): number {
  let size = 4;
  for (let i = 0; i < pairs.length; i++) {
    const p = pairs[i]!;
    size += 10 + p[0].length + p[1].length;
  }
  return size;
}

/** Writes the serialized map at `ptr` of `buf` (which has room for serializedSize(pairs) bytes). */
export function writeMap(buf: Buffer, ptr: number, pairs: HeaderPairs): void {
  const n = pairs.length;
  buf.writeUInt32LE(n, ptr);
  let sizes = ptr + 4;
  let data = ptr + 4 + n * 8;
  for (let i = 0; i < n; i++) {
    const p = pairs[i]!;
    const k = p[0];
    const v = p[1];
    buf.writeUInt32LE(k.length, sizes);
    buf.writeUInt32LE(v.length, sizes + 4);
    sizes += 8;
    data += k.length === 0 ? 0 : buf.latin1Write(k, data, k.length);
    buf[data++] = 0;
    data += v.length === 0 ? 0 : buf.latin1Write(v, data, v.length);
    buf[data++] = 0;
  }
}

/** Parses a serialized map from `buf[ptr, ptr+len)`; undefined when malformed or over the caps. */
export function readMap(buf: Buffer, ptr: number, len: number): HeaderPairs | undefined {
  if (len === 0) return [];
  if (len < 4 || len > MAX_MAP_BYTES) return len < 4 && buf.subarray(ptr, ptr + len).every((b) => b === 0) ? [] : undefined;
  const n = buf.readUInt32LE(ptr);
  if (n > MAX_MAP_PAIRS || 4 + n * 8 > len) return undefined;
  const end = ptr + len;
  const out: HeaderPairs = new Array<HeaderPair>(n);
  let sizes = ptr + 4;
  let data = ptr + 4 + n * 8;
  for (let i = 0; i < n; i++) {
    const kl = buf.readUInt32LE(sizes);
    const vl = buf.readUInt32LE(sizes + 4);
    sizes += 8;
    if (data + kl + vl + 2 > end) return undefined;
    const k = buf.latin1Slice(data, data + kl);
    data += kl + 1;
    const v = buf.latin1Slice(data, data + vl);
    data += vl + 1;
    out[i] = [lowerAscii(k), v];
  }
  return out;
}

export function encodeHeaderMap(pairs: HeaderPairs): Buffer {
  const buf = Buffer.allocUnsafe(serializedSize(pairs));
  writeMap(buf, 0, pairs);
  return buf;
}

export function decodeHeaderMap(bytes: Uint8Array): HeaderPairs | undefined {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return readMap(buf, 0, buf.length);
}

const UPPER = /[A-Z]/;
/** ASCII-only lower-casing, so bytes above 0x7f are never altered. */
export function lowerAscii(name: string): string {
  return UPPER.test(name) ? name.replace(/[A-Z]+/g, (s) => s.toLowerCase()) : name;
}
