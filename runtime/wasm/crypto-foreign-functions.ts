/**
 * `weft.crypto.verify`: signature verification for plugins (JWT RS256/RS384/RS512/ES256/ES384/PS256), answered at once
 * by node:crypto so a plugin needs no bignum or elliptic-curve code in Wasm. Payloads are JSON in UTF-8:
 *
 *   in:  {"alg": "RS256", "jwk": {"kty": "RSA", "n": "...", "e": "AQAB"}, "data": "<signed text>", "signature": "<base64url>"}
 *   out: {"valid": true|false}  or  {"error": "<why>", "code": "WEFT_ERR_BAD_REQUEST"} for a bad key, algorithm or payload.
 *
 * Keys are parsed once and kept in a small LRU keyed by their JWK text. ES* signatures are JWS raw r||s (IEEE P1363).
 * Answers are kept in an LRU keyed by the whole payload: verification is a pure function of alg, key, data and
 * signature, and a plugin verifies the same token on every request of a session (Envoy's jwt_authn caches verified
 * tokens for the same reason); a rotated key or another token is another payload.
 */
import { type KeyObject, createPublicKey, verify } from 'node:crypto';
import type { ForeignFunctionRegistry } from './foreign-function.js';

export const CRYPTO_VERIFY_FUNCTION = 'weft.crypto.verify';

const MAX_PAYLOAD_BYTES = 64 * 1024;
const MAX_CACHED_KEYS = 256;
const MAX_CACHED_ANSWERS = 1024;
/** Longer payloads are verified every time, so the answer cache holds at most ~4 MiB of keys. */
const MAX_CACHED_PAYLOAD_BYTES = 4096;

const ALGORITHMS: Record<string, { hash: string; kty: string; pss?: boolean; ec?: boolean }> = {
  RS256: { hash: 'sha256', kty: 'RSA' },
  RS384: { hash: 'sha384', kty: 'RSA' },
  RS512: { hash: 'sha512', kty: 'RSA' },
  PS256: { hash: 'sha256', kty: 'RSA', pss: true },
  ES256: { hash: 'sha256', kty: 'EC', ec: true },
  ES384: { hash: 'sha384', kty: 'EC', ec: true },
};

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
const answer = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));
const bad = (error: string): Uint8Array => answer({ error, code: 'WEFT_ERR_BAD_REQUEST' });

class KeyCache {
  readonly #keys = new Map<string, KeyObject>();

  get(jwk: Record<string, unknown>): KeyObject {
    const id = JSON.stringify(jwk);
    const hit = this.#keys.get(id);
    if (hit !== undefined) {
      this.#keys.delete(id);
      this.#keys.set(id, hit);
      return hit;
    }
    const key = createPublicKey({ key: jwk, format: 'jwk' });
    if (this.#keys.size >= MAX_CACHED_KEYS) this.#keys.delete(this.#keys.keys().next().value!);
    this.#keys.set(id, key);
    return key;
  }
}

/** Verifies one request payload; never throws (bad input is an error answer). */
export function verifyPayload(args: Uint8Array, keys: KeyCache = new KeyCache()): Uint8Array {
  if (args.length > MAX_PAYLOAD_BYTES) return bad(`payload of ${args.length} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  let p: { alg?: unknown; jwk?: unknown; data?: unknown; signature?: unknown };
  try {
    p = JSON.parse(decoder.decode(args)) as typeof p;
  } catch {
    return bad('payload is not UTF-8 JSON');
  }
  if (typeof p !== 'object' || p === null) return bad('payload must be a JSON object');
  const alg = typeof p.alg === 'string' ? ALGORITHMS[p.alg] : undefined;
  if (alg === undefined) return bad(`"alg" must be one of ${Object.keys(ALGORITHMS).join(', ')}`);
  if (typeof p.jwk !== 'object' || p.jwk === null || Array.isArray(p.jwk)) return bad('"jwk" must be a JWK object');
  const jwk = p.jwk as Record<string, unknown>;
  if (jwk.kty !== alg.kty) return bad(`key type ${String(jwk.kty)} cannot verify ${String(p.alg)}`);
  if (typeof p.data !== 'string' || typeof p.signature !== 'string') return bad('"data" and "signature" must be strings');
  let key: KeyObject;
  try {
    key = keys.get(jwk);
  } catch (err) {
    return bad(`unusable key: ${(err as Error).message}`);
  }
  const signature = Buffer.from(p.signature, 'base64url');
  try {
    const valid = verify(alg.hash, Buffer.from(p.data, 'utf8'), {
      key,
      ...(alg.ec === true ? { dsaEncoding: 'ieee-p1363' as const } : {}),
      ...(alg.pss === true ? { padding: 6, saltLength: 32 } : {}),
    }, signature);
    return answer({ valid });
  } catch {
    // A malformed signature (wrong length for the curve) is simply not valid.
    return answer({ valid: false });
  }
}

/** verifyPayload behind an LRU of answers keyed by the payload's bytes. */
export class VerifyCache {
  readonly #keys = new KeyCache();
  readonly #answers = new Map<string, Uint8Array>();

  get size(): number {
    return this.#answers.size;
  }

  verify(args: Uint8Array): Uint8Array {
    if (args.length > MAX_CACHED_PAYLOAD_BYTES) return verifyPayload(args, this.#keys);
    const id = Buffer.from(args.buffer, args.byteOffset, args.byteLength).latin1Slice(0, args.byteLength);
    const hit = this.#answers.get(id);
    if (hit !== undefined) {
      this.#answers.delete(id);
      this.#answers.set(id, hit);
      return hit;
    }
    const out = verifyPayload(args, this.#keys);
    if (this.#answers.size >= MAX_CACHED_ANSWERS) this.#answers.delete(this.#answers.keys().next().value!);
    this.#answers.set(id, out);
    return out;
  }
}

/** Registers weft.crypto.verify; answers its function id. */
export function registerCryptoForeignFunctions(registry: ForeignFunctionRegistry): number {
  const cache = new VerifyCache();
  return registry.register(CRYPTO_VERIFY_FUNCTION, (args) => cache.verify(args));
}
