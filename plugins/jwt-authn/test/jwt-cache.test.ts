// jwt-authn's verified-token cache (Envoy's jwt_cache_config) through the emulator: a repeated token is served without
// a signature check, exp and nbf still apply to it, failures are never cached, the size bound evicts the least recently
// used token, a token over jwtMaxTokenSize is not kept, and a new configuration or a JWKS whose keys changed empties it.
import { generateKeyPairSync, sign } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { CRYPTO_VERIFY_FUNCTION, registerCryptoForeignFunctions } from '../../../runtime/wasm/crypto-foreign-functions.js';
import { ForeignFunctionRegistry } from '../../../runtime/wasm/foreign-function.js';
import { PluginEmulator, ensurePluginBuilt } from '../../../sdk/testing/index.js';

const PLUGIN_DIR = fileURLToPath(new URL('..', import.meta.url));
const ISSUER = 'https://issuer.example.com';
let wasm: string;
let emu: PluginEmulator | undefined;
let verifyCalls = 0;

const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwks = (key = ec.publicKey) => ({ keys: [{ ...key.export({ format: 'jwk' }), kid: 'ec-1' }] });

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
const nowSeconds = (): number => Math.floor(Date.now() / 1000);

function token(claims: Record<string, unknown>, key = ec.privateKey): string {
  const input = `${b64({ alg: 'ES256', typ: 'JWT', kid: 'ec-1' })}.${b64({ iss: ISSUER, aud: 'reviews', exp: nowSeconds() + 600, ...claims })}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

const PROVIDER = {
  issuer: ISSUER,
  audiences: ['reviews'],
  jwks: jwks(),
  forwardPayloadHeader: 'x-jwt-payload',
  claimToHeaders: [{ claim: 'sub', header: 'x-user' }, { claim: 'org', header: 'x-org' }],
};

/** An emulator whose weft.crypto.verify (the real one) counts its calls. */
async function emulator(config: unknown): Promise<PluginEmulator> {
  const foreignFunctions = new ForeignFunctionRegistry();
  registerCryptoForeignFunctions(foreignFunctions);
  const real = foreignFunctions.lookup(CRYPTO_VERIFY_FUNCTION)!.fn;
  foreignFunctions.register(CRYPTO_VERIFY_FUNCTION, (args, ctx) => {
    verifyCalls++;
    return real(args, ctx);
  });
  verifyCalls = 0;
  return PluginEmulator.create({ wasm, config, foreignFunctions, logLevel: 'error' });
}

function request(e: PluginEmulator, jwt: string) {
  const s = e.stream();
  const r = s.sendRequestHeaders({ ':method': 'GET', ':path': '/items', ':authority': 'api.example', authorization: `Bearer ${jwt}`, 'x-user': 'forged' }, true);
  return { s, r };
}

function expectAllowed(e: PluginEmulator, jwt: string, user: string): void {
  const { s, r } = request(e, jwt);
  expect(r.action).toBe('continue');
  expect(s.requestHeader('x-user')).toBe(user);
  expect(s.requestHeader('x-jwt-payload')).toBe(jwt.split('.')[1]);
  expect(s.requestHeader('authorization')).toBeUndefined();
  s.end();
}

function expectDenied(e: PluginEmulator, jwt: string, message: string): void {
  const { s, r } = request(e, jwt);
  expect(r.action).toBe('localResponse');
  expect(s.localResponse?.status).toBe(401);
  expect(s.localResponseText).toBe(message);
  s.end();
}

beforeAll(async () => {
  wasm = await ensurePluginBuilt(PLUGIN_DIR);
});

afterEach(async () => {
  vi.useRealTimers();
  await emu?.close();
  emu = undefined;
});

describe('jwt-authn verified-token cache', () => {
  it('serves a repeated token from the cache: same headers and metrics, one signature check', async () => {
    emu = await emulator({ providers: [PROVIDER] });
    const jwt = token({ sub: 'alice', org: { id: 7 } });
    for (let i = 0; i < 3; i++) {
      const { s, r } = request(emu, jwt);
      expect(r.action).toBe('continue');
      expect(s.requestHeader('x-user')).toBe('alice');
      expect(s.requestHeader('x-org')).toBe('{"id":7}');
      expect(s.requestHeader('x-jwt-payload')).toBe(jwt.split('.')[1]);
      expect(s.requestHeader('authorization')).toBeUndefined();
      s.end();
    }
    expect(verifyCalls).toBe(1);
    expect(await emu.metricValue('jwt_authn_allowed_total')).toBe(3);
    // Leading and trailing white space and the prefix's case do not make it another token.
    const s = emu.stream();
    expect(s.sendRequestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'a', authorization: `bearer  ${jwt} ` }, true).action).toBe('continue');
    expect(s.requestHeader('x-user')).toBe('alice');
    expect(verifyCalls).toBe(1);
    expect(await emu.metricValue('jwt_authn_jwt_cache_hit_total')).toBe(3);
    expect(await emu.metricValue('jwt_authn_jwt_cache_miss_total')).toBe(1);
  });

  it('refuses a cached token once it expires; one not valid yet is refused until nbf, then cached', async () => {
    vi.useFakeTimers({ toFake: ['performance', 'Date'] });
    emu = await emulator({ providers: [PROVIDER] });
    const jwt = token({ sub: 'alice', exp: nowSeconds() + 30 });
    const early = token({ sub: 'bob', nbf: nowSeconds() + 100 });
    expectAllowed(emu, jwt, 'alice');
    expectAllowed(emu, jwt, 'alice');
    expectDenied(emu, early, 'Jwt not yet valid');
    expectDenied(emu, early, 'Jwt not yet valid');
    expect(verifyCalls).toBe(1);
    // exp + 60 s of clock skew, as on the full path (and nbf - 60 s).
    vi.advanceTimersByTime(89_000);
    expectAllowed(emu, jwt, 'alice');
    expectAllowed(emu, early, 'bob');
    expectAllowed(emu, early, 'bob');
    expect(verifyCalls).toBe(2);
    vi.advanceTimersByTime(3_000);
    expectDenied(emu, jwt, 'Jwt is expired');
    expectDenied(emu, jwt, 'Jwt is expired');
    expect(await emu.metricValue('jwt_authn_denied_total')).toBe(4);
  });

  it('never caches a token that failed: each request checks it again', async () => {
    emu = await emulator({ providers: [PROVIDER] });
    const forged = token({ sub: 'mallory' }, other.privateKey);
    expectDenied(emu, forged, 'Jwt verification fails');
    expectDenied(emu, forged, 'Jwt verification fails');
    expect(verifyCalls).toBe(2);
    const wrongAudience = token({ sub: 'bob', aud: 'ratings' });
    expectDenied(emu, wrongAudience, 'Audiences in Jwt are not allowed');
    expectDenied(emu, wrongAudience, 'Audiences in Jwt are not allowed');
    // A good token with the forged one's payload is still its own token.
    const good = token({ sub: 'mallory' });
    expectAllowed(emu, good, 'mallory');
    expectDenied(emu, forged, 'Jwt verification fails');
  });

  it('holds at most jwtCacheSize tokens, evicting the least recently used', async () => {
    emu = await emulator({ providers: [{ ...PROVIDER, jwtCacheConfig: { jwtCacheSize: 2 } }] });
    const [a, b, c] = ['a', 'b', 'c'].map((sub) => token({ sub }));
    expectAllowed(emu, a!, 'a');
    expectAllowed(emu, b!, 'b');
    expectAllowed(emu, a!, 'a');
    expect(verifyCalls).toBe(2);
    expectAllowed(emu, c!, 'c');
    expect(verifyCalls).toBe(3);
    // a was used after b, so b went.
    expectAllowed(emu, a!, 'a');
    expectAllowed(emu, c!, 'c');
    expect(verifyCalls).toBe(3);
    expectAllowed(emu, b!, 'b');
    expect(verifyCalls).toBe(4);
  });

  it('keeps no token longer than jwtMaxTokenSize, and none with jwtCacheConfig false', async () => {
    const jwt = token({ sub: 'alice' });
    emu = await emulator({ providers: [{ ...PROVIDER, jwtCacheConfig: { jwtMaxTokenSize: jwt.length - 1 } }] });
    for (let i = 0; i < 3; i++) expectAllowed(emu, jwt, 'alice');
    expect(verifyCalls).toBe(3);
    await emu.close();
    emu = await emulator({ providers: [{ ...PROVIDER, jwtCacheConfig: false }] });
    for (let i = 0; i < 3; i++) expectAllowed(emu, jwt, 'alice');
    expect(verifyCalls).toBe(3);
  });

  it('starts empty under a new configuration: new keys and audiences apply to a token verified before', async () => {
    emu = await emulator({ providers: [PROVIDER] });
    const jwt = token({ sub: 'alice' });
    expectAllowed(emu, jwt, 'alice');
    expect((await emu.reconfigure({ providers: [{ ...PROVIDER, audiences: ['ratings'] }] })).ok).toBe(true);
    expectDenied(emu, jwt, 'Audiences in Jwt are not allowed');
    expect((await emu.reconfigure({ providers: [{ ...PROVIDER, jwks: jwks(other.publicKey) }] })).ok).toBe(true);
    expectDenied(emu, jwt, 'Jwt verification fails');
    expect((await emu.reconfigure({ providers: [PROVIDER] })).ok).toBe(true);
    expectAllowed(emu, jwt, 'alice');
  });

  it('serves a cached token without a JWKS fetch, and empties the cache when a fetch brings other keys', async () => {
    const remote = { cluster: 'outbound|443||issuer.example.com', path: '/jwks', timeoutMs: 2000, cacheSeconds: 0 };
    emu = await emulator({ providers: [{ ...PROVIDER, jwks: undefined, remoteJwks: remote }] });
    const alice = token({ sub: 'alice' });
    const first = request(emu, alice);
    expect(first.r.action).toBe('pause');
    emu.httpCalls.calls[0]!.respond({ status: 200, body: JSON.stringify(jwks()) });
    expect((await first.r.resume!).action).toBe('continue');
    first.s.end();
    // cacheSeconds 0 makes every verification fetch; a cached token needs none (Envoy's order: cache before JWKS).
    expectAllowed(emu, alice, 'alice');
    expect(emu.httpCalls.calls).toHaveLength(1);
    // The same keys again keep the cache.
    const bob = request(emu, token({ sub: 'bob' }));
    emu.httpCalls.calls[1]!.respond({ status: 200, body: JSON.stringify(jwks()) });
    expect((await bob.r.resume!).action).toBe('continue');
    bob.s.end();
    expectAllowed(emu, alice, 'alice');
    expect(emu.httpCalls.calls).toHaveLength(2);
    // The key was withdrawn: the cache empties, and alice's token is checked against the new keys.
    const carol = request(emu, token({ sub: 'carol' }));
    emu.httpCalls.calls[2]!.respond({ status: 200, body: JSON.stringify(jwks(other.publicKey)) });
    expect((await carol.r.resume!).action).toBe('localResponse');
    carol.s.end();
    const again = request(emu, alice);
    expect(again.r.action).toBe('pause');
    emu.httpCalls.calls[3]!.respond({ status: 200, body: JSON.stringify(jwks(other.publicKey)) });
    expect((await again.r.resume!).action).toBe('localResponse');
    expect(again.s.localResponseText).toBe('Jwt verification fails');
  });

  it('never serves a token that ends like a cached one (the bytes its hash reads) but differs before', async () => {
    emu = await emulator({ providers: [PROVIDER] });
    const jwt = token({ sub: 'alice' });
    expectAllowed(emu, jwt, 'alice');
    // Same length, same signature (so the same last bytes and the same hash), another payload: a forgery.
    const [head, , signature] = jwt.split('.');
    const forged = `${head}.${b64({ iss: ISSUER, aud: 'reviews', exp: nowSeconds() + 600, sub: 'alicf' })}.${signature}`;
    expect(forged).toHaveLength(jwt.length);
    expect(forged).not.toBe(jwt);
    expectDenied(emu, forged, 'Jwt verification fails');
    expectDenied(emu, forged, 'Jwt verification fails');
    expectAllowed(emu, jwt, 'alice');
    expect(verifyCalls).toBe(3);
    expect(await emu.metricValue('jwt_authn_jwt_cache_hit_total')).toBe(1);
  });

  it('reads a header value that is not ASCII as text: Unicode white space around a cached token still finds it', async () => {
    emu = await emulator({ providers: [PROVIDER] });
    const jwt = token({ sub: 'alice' });
    expectAllowed(emu, jwt, 'alice');
    // Header values are bytes (latin1 strings here): U+00A0 and U+3000 as UTF-8, which String#trim removes.
    const nbsp = Buffer.from('\u00a0').toString('latin1');
    const ideographic = Buffer.from('\u3000').toString('latin1');
    for (const value of [`Bearer ${jwt}${nbsp}`, `Bearer ${ideographic}${jwt}`]) {
      const s = emu.stream();
      expect(s.sendRequestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'a', authorization: value }, true).action).toBe('continue');
      expect(s.requestHeader('x-user')).toBe('alice');
      s.end();
    }
    expect(verifyCalls).toBe(1);
    expect(await emu.metricValue('jwt_authn_jwt_cache_hit_total')).toBe(2);
    expect(await emu.metricValue('jwt_authn_jwt_cache_miss_total')).toBe(1);
    // Not white space: a different token, refused (and never cached).
    const e = Buffer.from('é').toString('latin1');
    for (let i = 0; i < 2; i++) {
      const s = emu.stream();
      expect(s.sendRequestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'a', authorization: `Bearer ${jwt}${e}` }, true).action).toBe('localResponse');
      expect(s.localResponse?.status).toBe(401);
      s.end();
    }
    expect(await emu.metricValue('jwt_authn_jwt_cache_miss_total')).toBe(3);
  });

  it.each([
    ['not an object', true, 'jwtCacheConfig must be an object or false'],
    ['an unknown field', { size: 1 }, 'jwtCacheConfig: unknown field "size"'],
    ['a negative size', { jwtCacheSize: -1 }, 'jwtCacheSize must be an integer'],
    ['a fractional size', { jwtCacheSize: 1.5 }, 'jwtCacheSize must be an integer'],
    ['a size as a string', { jwtCacheSize: '10' }, 'jwtCacheSize must be a number'],
    ['a huge max token size', { jwtMaxTokenSize: 1e9 }, 'jwtMaxTokenSize must be an integer'],
  ])('rejects a jwtCacheConfig that is %s', async (_what, jwtCacheConfig, reason) => {
    emu = await emulator({ providers: [PROVIDER] });
    expect((await emu.reconfigure({ providers: [{ ...PROVIDER, jwtCacheConfig }] })).ok).toBe(false);
    expect(emu.logs.some((l) => l.message.startsWith('jwt-authn: rejected configuration:') && l.message.includes(reason))).toBe(true);
  });
});
