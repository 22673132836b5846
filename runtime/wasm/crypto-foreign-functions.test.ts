// weft.crypto.verify: RS256 and ES256 JWS signatures, wrong keys and data, and bad payloads answered as errors.
import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ForeignFunctionRegistry } from './foreign-function.js';
import { CRYPTO_VERIFY_FUNCTION, VerifyCache, registerCryptoForeignFunctions, verifyPayload } from './crypto-foreign-functions.js';

const enc = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
const dec = (b: Uint8Array): unknown => JSON.parse(new TextDecoder().decode(b));

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rsaJwk = rsa.publicKey.export({ format: 'jwk' });
const ecJwk = ec.publicKey.export({ format: 'jwk' });
const data = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9';

describe('weft.crypto.verify', () => {
  it('accepts RS256 and ES256 signatures made by the key, and rejects other data or keys', () => {
    const rs = sign('sha256', Buffer.from(data), rsa.privateKey).toString('base64url');
    const es = sign('sha256', Buffer.from(data), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
    expect(dec(verifyPayload(enc({ alg: 'RS256', jwk: rsaJwk, data, signature: rs })))).toEqual({ valid: true });
    expect(dec(verifyPayload(enc({ alg: 'ES256', jwk: ecJwk, data, signature: es })))).toEqual({ valid: true });
    expect(dec(verifyPayload(enc({ alg: 'RS256', jwk: rsaJwk, data: data + 'x', signature: rs })))).toEqual({ valid: false });
    expect(dec(verifyPayload(enc({ alg: 'ES256', jwk: ecJwk, data, signature: 'AAAA' })))).toEqual({ valid: false });
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
    expect(dec(verifyPayload(enc({ alg: 'RS256', jwk: other, data, signature: rs })))).toEqual({ valid: false });
  });

  it.each([
    ['not JSON', 'nope'],
    ['alg none', { alg: 'none', jwk: rsaJwk, data, signature: '' }],
    ['HS256 (no shared secrets)', { alg: 'HS256', jwk: rsaJwk, data, signature: '' }],
    ['a key of the wrong type', { alg: 'ES256', jwk: rsaJwk, data, signature: '' }],
    ['a broken key', { alg: 'RS256', jwk: { kty: 'RSA', e: 'AQAB' }, data, signature: '' }],
    ['a missing signature', { alg: 'RS256', jwk: rsaJwk, data }],
  ])('answers an error for %s', (_what, payload) => {
    const out = dec(verifyPayload(enc(payload))) as { code?: string };
    expect(out.code).toBe('WEFT_ERR_BAD_REQUEST');
  });

  it('answers a payload it verified before from its cache, and verifies any other payload (another signature, key or data)', () => {
    const cache = new VerifyCache();
    const es = sign('sha256', Buffer.from(data), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
    const good = { alg: 'ES256', jwk: ecJwk, data, signature: es };
    expect(dec(cache.verify(enc(good)))).toEqual({ valid: true });
    expect(dec(cache.verify(enc(good)))).toEqual({ valid: true });
    expect(cache.size).toBe(1);
    const flipped = `${es.slice(0, 10)}${es[10] === 'A' ? 'B' : 'A'}${es.slice(11)}`;
    expect(dec(cache.verify(enc({ ...good, signature: flipped })))).toEqual({ valid: false });
    expect(dec(cache.verify(enc({ ...good, data: data + 'x' })))).toEqual({ valid: false });
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
    expect(dec(cache.verify(enc({ ...good, jwk: other })))).toEqual({ valid: false });
    expect(dec(cache.verify(enc({ ...good, alg: 'HS256' }))) as { code?: string }).toMatchObject({ code: 'WEFT_ERR_BAD_REQUEST' });
    expect(cache.size).toBe(5);
    // The answer for the good token is still the cached one.
    expect(dec(cache.verify(enc(good)))).toEqual({ valid: true });
    expect(cache.size).toBe(5);
  });

  it('registers under its name', () => {
    const registry = new ForeignFunctionRegistry();
    const id = registerCryptoForeignFunctions(registry);
    expect(registry.lookup(CRYPTO_VERIFY_FUNCTION)?.id).toBe(id);
  });
});
