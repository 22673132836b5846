// jwt-authn through the emulator: RS256/ES256 tokens against inline and fetched JWKS, claims to headers, every
// rejection with its 401 and WWW-Authenticate, a JWKS endpoint that fails or times out, malformed tokens, and bad
// configurations refused with the previous one kept.
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type PendingHttpCall, PluginEmulator, ensurePluginBuilt } from '../../../sdk/testing/index.js';

const PLUGIN_DIR = fileURLToPath(new URL('..', import.meta.url));
const ISSUER = 'https://issuer.example.com';
let wasm: string;
let emu: PluginEmulator | undefined;

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });
const JWKS = { keys: [{ ...rsa.publicKey.export({ format: 'jwk' }), kid: 'rsa-1', alg: 'RS256' }, { ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec-1' }] };

const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const now = (): number => Math.floor(Date.now() / 1000);

function token(claims: Record<string, unknown>, opts: { alg?: 'RS256' | 'ES256'; kid?: string; key?: KeyObject } = {}): string {
  const alg = opts.alg ?? 'RS256';
  const input = `${b64({ alg, typ: 'JWT', kid: opts.kid ?? (alg === 'RS256' ? 'rsa-1' : 'ec-1') })}.${b64({ iss: ISSUER, exp: now() + 600, ...claims })}`;
  const key = opts.key ?? (alg === 'RS256' ? rsa.privateKey : ec.privateKey);
  const sig = sign('sha256', Buffer.from(input), alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key);
  return `${input}.${sig.toString('base64url')}`;
}

const PROVIDER = {
  issuer: ISSUER,
  audiences: ['reviews'],
  jwks: JSON.stringify(JWKS),
  forwardPayloadHeader: 'x-jwt-payload',
  claimToHeaders: [{ claim: 'sub', header: 'x-user' }, { claim: 'org.id', header: 'x-org' }, { claim: 'admin', header: 'x-admin' }],
};

beforeAll(async () => {
  wasm = await ensurePluginBuilt(PLUGIN_DIR);
});

afterEach(async () => {
  await emu?.close();
  emu = undefined;
});

function request(e: PluginEmulator, headers: Record<string, string>, path = '/items?page=2') {
  const s = e.stream();
  const r = s.sendRequestHeaders({ ':method': 'GET', ':path': path, ':authority': 'api.example', ...headers }, true);
  return { s, r };
}

function expect401(s: ReturnType<typeof request>['s'], message: string, invalidToken = true): void {
  expect(s.localResponse?.status).toBe(401);
  expect(s.localResponseText).toBe(message);
  expect(s.localResponseHeader('www-authenticate')).toBe(`Bearer realm="http://api.example/items"${invalidToken ? ', error="invalid_token"' : ''}`);
}

describe('jwt-authn with inline JWKS', () => {
  it('accepts RS256 and ES256 tokens, copies claims to headers and drops the Authorization header', async () => {
    emu = await PluginEmulator.create({ wasm, config: { providers: [PROVIDER] } });
    for (const alg of ['RS256', 'ES256'] as const) {
      const jwt = token({ sub: 'alice', aud: ['other', 'reviews'], org: { id: 42 }, admin: true }, { alg });
      const { s, r } = request(emu, { authorization: `Bearer ${jwt}` });
      expect(r.action).toBe('continue');
      expect(s.requestHeader('x-user')).toBe('alice');
      expect(s.requestHeader('x-org')).toBe('42');
      expect(s.requestHeader('x-admin')).toBe('true');
      expect(s.requestHeader('x-jwt-payload')).toBe(jwt.split('.')[1]);
      expect(s.requestHeader('authorization')).toBeUndefined();
      s.end();
    }
    expect(await emu.metricValue('jwt_authn_allowed_total')).toBe(2);
  });

  it('starts every stream clean although contexts are reused: an allowed token, then none, a bad one and another token', async () => {
    emu = await PluginEmulator.create({ wasm, config: { providers: [PROVIDER] } });
    for (let round = 0; round < 2; round++) {
      const ok = request(emu, { authorization: `Bearer ${token({ aud: 'reviews', sub: 'alice' })}` });
      expect(ok.r.action).toBe('continue');
      expect(ok.s.requestHeader('x-user')).toBe('alice');
      ok.s.end();
      const none = request(emu, {});
      expect401(none.s, 'Jwt is missing', false);
      none.s.end();
      const bad = request(emu, { authorization: `Bearer ${token({ aud: 'reviews', sub: 'mallory' }, { key: stranger.privateKey })}` });
      expect401(bad.s, 'Jwt verification fails');
      bad.s.end();
      const other = request(emu, { authorization: `Bearer ${token({ aud: 'reviews', sub: 'bob' }, { alg: 'ES256' })}` });
      expect(other.r.action).toBe('continue');
      expect(other.s.requestHeader('x-user')).toBe('bob');
      expect(other.s.requestHeader('x-org')).toBeUndefined();
      other.s.end();
    }
  });

  it('answers 401 "Jwt is missing" without a token, or lets it through with allowMissing', async () => {
    emu = await PluginEmulator.create({ wasm, config: { providers: [PROVIDER] } });
    const { s } = request(emu, {});
    expect401(s, 'Jwt is missing', false);
    s.end();
    expect((await emu.reconfigure({ providers: [PROVIDER], allowMissing: true })).ok).toBe(true);
    expect(request(emu, {}).r.action).toBe('continue');
  });

  it.each([
    ['a token signed by another key', () => token({ aud: 'reviews' }, { key: stranger.privateKey }), 'Jwt verification fails'],
    ['a token whose kid names the other key type', () => token({ aud: 'reviews' }, { kid: 'ec-1' }), 'Jwt verification fails'],
    ['a tampered payload', () => { const [h, , sig] = token({ aud: 'reviews' }).split('.'); return `${h}.${b64({ iss: ISSUER, aud: 'reviews', sub: 'root' })}.${sig}`; }, 'Jwt verification fails'],
    ['an expired token', () => token({ aud: 'reviews', exp: now() - 3600 }), 'Jwt is expired'],
    ['a token not valid yet', () => token({ aud: 'reviews', nbf: now() + 3600 }), 'Jwt not yet valid'],
    ['an unknown issuer', () => token({ aud: 'reviews', iss: 'https://evil.example' }), 'Jwt issuer is not configured'],
    ['a wrong audience', () => token({ aud: 'ratings' }), 'Audiences in Jwt are not allowed'],
    ['no audience', () => token({}), 'Audiences in Jwt are not allowed'],
  ])('refuses %s with 401 and the reason', async (_what, make, message) => {
    emu = await PluginEmulator.create({ wasm, config: { providers: [PROVIDER] } });
    const { s, r } = request(emu, { authorization: `Bearer ${make()}` });
    expect(r.action).toBe('localResponse');
    expect401(s, message);
    s.end();
  });

  it.each([
    ['one segment', 'abc', 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
    ['two segments', 'abc.def', 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
    ['four segments', 'a.b.c.d', 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
    ['an empty signature', `${b64({ alg: 'RS256' })}.${b64({ iss: ISSUER })}.`, 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
    ['a header that is not base64url', `!!!.${b64({})}.sig`, 'Jwt header is an invalid JSON'],
    ['a header that is not JSON', `${b64('{"alg":')}.${b64({})}.c2ln`, 'Jwt header is an invalid JSON'],
    ['a payload that is not JSON', `${b64({ alg: 'RS256' })}.${b64('[1,')}.c2ln`, 'Jwt payload is an invalid JSON'],
    ['alg none', `${b64({ alg: 'none' })}.${b64({ iss: ISSUER })}.c2ln`, 'Jwt algorithm is not supported'],
    ['alg HS256', `${b64({ alg: 'HS256' })}.${b64({ iss: ISSUER })}.c2ln`, 'Jwt algorithm is not supported'],
    ['a signature that is not base64url', `${b64({ alg: 'RS256' })}.${b64({ iss: ISSUER })}.@@@`, 'Jwt signature is not base64url'],
    ['binary garbage', '\xff\xfe.\x00\x01.\x80', 'Jwt header is an invalid JSON'],
  ])('refuses a malformed token (%s) with 401, and the VM keeps running', async (_what, jwt, message) => {
    emu = await PluginEmulator.create({ wasm, config: { providers: [PROVIDER] } });
    const { s } = request(emu, { authorization: `Bearer ${jwt}` });
    expect401(s, message);
    s.end();
    expect(emu.vm.state).toBe('ready');
  });

  it('reads the token from a query parameter and keeps the header when forward is set', async () => {
    emu = await PluginEmulator.create({ wasm, config: { providers: [{ ...PROVIDER, fromHeaders: [{ name: 'x-token' }], fromParams: ['access_token'], forward: true }] } });
    const jwt = token({ aud: 'reviews', sub: 'bob' });
    const q = request(emu, {}, `/items?x=1&access_token=${jwt}`);
    expect(q.r.action).toBe('continue');
    expect(q.s.requestHeader('x-user')).toBe('bob');
    const h = request(emu, { 'x-token': jwt });
    expect(h.r.action).toBe('continue');
    expect(h.s.requestHeader('x-token')).toBe(jwt);
  });
});

describe('jwt-authn with a remote JWKS', () => {
  const REMOTE = { issuer: ISSUER, remoteJwks: { cluster: 'outbound|443||issuer.example.com', authority: 'issuer.example.com', path: '/.well-known/jwks.json', timeoutMs: 150, cacheSeconds: 300 } };

  it('fetches the JWKS once while requests wait, then verifies from the cache', async () => {
    emu = await PluginEmulator.create({ wasm, config: { providers: [REMOTE] } });
    const a = request(emu, { authorization: `Bearer ${token({ sub: 'a' })}` });
    const b = request(emu, { authorization: `Bearer ${token({ sub: 'b' }, { alg: 'ES256' })}` });
    expect([a.r.action, b.r.action]).toEqual(['pause', 'pause']);
    expect(emu.httpCalls.calls).toHaveLength(1);
    const call = emu.httpCalls.calls[0]!;
    expect(call.cluster).toBe('outbound|443||issuer.example.com');
    expect([call.header(':method'), call.header(':path'), call.header(':authority')]).toEqual(['GET', '/.well-known/jwks.json', 'issuer.example.com']);
    call.respond({ status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(JWKS) });
    expect((await a.r.resume!).action).toBe('continue');
    expect((await b.r.resume!).action).toBe('continue');
    const c = request(emu, { authorization: `Bearer ${token({ sub: 'c' })}` });
    expect(c.r.action).toBe('continue');
    expect(emu.httpCalls.calls).toHaveLength(1);
  });

  it('answers 401 "Jwks remote fetch is failed" when the JWKS endpoint times out, fails fast for retryMs, then fetches again', async () => {
    emu = await PluginEmulator.create({ wasm, config: { providers: [{ ...REMOTE, remoteJwks: { ...REMOTE.remoteJwks, retryMs: 300 } }] } });
    const started = performance.now();
    const a = request(emu, { authorization: `Bearer ${token({})}` });
    expect(a.r.action).toBe('pause');
    const after = await a.r.resume!;
    expect(after.action).toBe('localResponse');
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect401(a.s, 'Jwks remote fetch is failed');
    expect(emu.logs.some((l) => l.message.includes('JWKS fetch for providers[0] failed (no response or timeout)'))).toBe(true);
    const fast = request(emu, { authorization: `Bearer ${token({})}` });
    expect(fast.r.action).toBe('localResponse');
    expect401(fast.s, 'Jwks remote fetch is failed');
    expect(emu.httpCalls.calls).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 320));
    const b = request(emu, { authorization: `Bearer ${token({})}` });
    expect(b.r.action).toBe('pause');
    expect(emu.httpCalls.calls).toHaveLength(2);
    emu.httpCalls.calls[1]!.respond({ status: 200, body: JSON.stringify(JWKS) });
    expect((await b.r.resume!).action).toBe('continue');
  });

  it('a stream deleted while it waits is forgotten: the context its next stream reuses is resumed once, with its own token', async () => {
    emu = await PluginEmulator.create({ wasm, config: { providers: [{ ...REMOTE, claimToHeaders: [{ claim: 'sub', header: 'x-user' }] }] } });
    const gone = request(emu, { authorization: `Bearer ${token({ sub: 'gone' })}` });
    expect(gone.r.action).toBe('pause');
    gone.s.end();
    // Deleted contexts are reused for new streams: this one may be the deleted stream's, and must wait as itself.
    const next = request(emu, { authorization: `Bearer ${token({ sub: 'next' }, { alg: 'ES256' })}` });
    expect(next.r.action).toBe('pause');
    expect(emu.httpCalls.calls).toHaveLength(1);
    emu.httpCalls.calls[0]!.respond({ status: 200, body: JSON.stringify(JWKS) });
    expect((await next.r.resume!).action).toBe('continue');
    expect(next.s.requestHeader('x-user')).toBe('next');
    const missing = request(emu, {});
    expect(missing.r.action).toBe('localResponse');
    expect401(missing.s, 'Jwt is missing', false);
  });

  it('answers 401 when the endpoint fails, answers an error status or something that is not a JWKS', async () => {
    emu = await PluginEmulator.create({ wasm, config: { providers: [{ ...REMOTE, remoteJwks: { ...REMOTE.remoteJwks, retryMs: 0 } }] } });
    const answers = [(c: PendingHttpCall) => c.fail(), (c: PendingHttpCall) => c.respond({ status: 503 }), (c: PendingHttpCall) => c.respond({ body: '<html>' })];
    for (const [i, answer] of answers.entries()) {
      const a = request(emu, { authorization: `Bearer ${token({})}` });
      answer(emu.httpCalls.calls[i]!);
      expect((await a.r.resume!).action).toBe('localResponse');
      expect401(a.s, 'Jwks remote fetch is failed');
    }
  });
});

describe('jwt-authn configuration', () => {
  it.each([
    ['not JSON', 'providers'],
    ['no providers', { providers: [] }],
    ['a provider without keys', { providers: [{ issuer: ISSUER }] }],
    ['jwks that are not JSON', { providers: [{ issuer: ISSUER, jwks: '{keys' }] }],
    ['jwks without RSA or EC keys', { providers: [{ issuer: ISSUER, jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } }] }],
    ['a remote JWKS with a relative path', { providers: [{ issuer: ISSUER, remoteJwks: { cluster: 'c', path: 'jwks' } }] }],
    ['a negative retryMs', { providers: [{ issuer: ISSUER, remoteJwks: { cluster: 'c', path: '/jwks', retryMs: -1 } }] }],
    ['an unknown field', { providers: [PROVIDER], requireAll: true }],
  ])('rejects %s and keeps the previous configuration', async (_what, bad) => {
    emu = await PluginEmulator.create({ wasm, config: { providers: [PROVIDER] } });
    expect((await emu.reconfigure(bad)).ok).toBe(false);
    expect(emu.logs.some((l) => l.message.startsWith('jwt-authn: rejected configuration:'))).toBe(true);
    expect(request(emu, { authorization: `Bearer ${token({ aud: 'reviews' })}` }).r.action).toBe('continue');
  });
});
