// Base64 (RFC 4648 §4) and base64url (§5) decoding and encoding; decoding accepts either alphabet, with or without
// padding, and answers null for anything else (JWT segments are base64url without padding).

function sextet(c: i32): i32 {
  if (c >= 0x41 && c <= 0x5a) return c - 0x41;
  if (c >= 0x61 && c <= 0x7a) return c - 0x61 + 26;
  if (c >= 0x30 && c <= 0x39) return c - 0x30 + 52;
  if (c == 0x2b || c == 0x2d) return 62;
  if (c == 0x2f || c == 0x5f) return 63;
  return -1;
}

/** The bytes of `s`, or null when it is not base64/base64url. */
export function base64Decode(s: string): ArrayBuffer | null {
  let n = s.length;
  while (n > 0 && s.charCodeAt(n - 1) == 0x3d) n--;
  if (s.length - n > 2 || n % 4 == 1) return null;
  const out = new ArrayBuffer((n * 3) >> 2);
  const p = changetype<usize>(out);
  let acc: u32 = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < n; i++) {
    const v = sextet(s.charCodeAt(i));
    if (v < 0) return null;
    acc = (acc << 6) | <u32>v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      store<u8>(p + o++, <u8>(acc >> bits));
    }
  }
  return out;
}

const URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** base64url without padding. */
export function base64UrlEncode(data: ArrayBuffer): string {
  const p = changetype<usize>(data);
  const n = data.byteLength;
  let out = "";
  let i = 0;
  for (; i + 2 < n; i += 3) {
    const v = (<u32>load<u8>(p + i) << 16) | (<u32>load<u8>(p + i + 1) << 8) | <u32>load<u8>(p + i + 2);
    out += URL_ALPHABET.charAt(v >> 18) + URL_ALPHABET.charAt((v >> 12) & 63) + URL_ALPHABET.charAt((v >> 6) & 63) + URL_ALPHABET.charAt(v & 63);
  }
  if (n - i == 1) {
    const v = <u32>load<u8>(p + i) << 16;
    out += URL_ALPHABET.charAt(v >> 18) + URL_ALPHABET.charAt((v >> 12) & 63);
  } else if (n - i == 2) {
    const v = (<u32>load<u8>(p + i) << 16) | (<u32>load<u8>(p + i + 1) << 8);
    out += URL_ALPHABET.charAt(v >> 18) + URL_ALPHABET.charAt((v >> 12) & 63) + URL_ALPHABET.charAt((v >> 6) & 63);
  }
  return out;
}
