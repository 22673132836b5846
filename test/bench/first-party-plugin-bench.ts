// The first-party plugins' realistic bench setup, shared by the in-process cost bench (plugin-cost.ts) and the wrk rows of the L7 bench (l7.ts, l7-bench-server.ts): each plugin's configuration, the request that exercises it (an allowed, CORS, authenticated, rate-limited but never refused request) and the host services it calls (shared state, crypto).
import { generateKeyPairSync, sign } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { rateLimitDomainSchema, type PluginConfig } from '../../runtime/config/config-schema.js';
import { createLogger } from '../../runtime/log.js';
import { registerSharedStateForeignFunctions } from '../../runtime/shared-state/foreign-functions.js';
import { createSharedState } from '../../runtime/shared-state/shared-state.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { registerCryptoForeignFunctions } from '../../runtime/wasm/crypto-foreign-functions.js';
import { ForeignFunctionRegistry } from '../../runtime/wasm/foreign-function.js';
import { ensurePluginBuilt } from '../../sdk/testing/ensure-plugin-built.js';
import { pluginConfig } from '../helpers/wasm-fixtures.js';
import { REPO_ROOT } from './bench-tools.js';

/** The first-party plugins measured one by one (header-rewrite has its own comparison with nginx doing its edits). */
export const FIRST_PARTY_BENCH_PLUGINS = ['authz', 'cors', 'fault-injection', 'jwt-authn', 'ratelimit'] as const;
export type FirstPartyBenchPlugin = (typeof FIRST_PARTY_BENCH_PLUGINS)[number];

/** An ES256 key set for jwt-authn and a token it accepts (valid for an hour). */
export interface JwtBenchFixture {
  jwks: unknown;
  token: string;
}

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

export function createJwtBenchFixture(): JwtBenchFixture {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const input = `${b64({ alg: 'ES256', kid: 'e' })}.${b64({ iss: 'i', sub: 'alice', exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  const token = `${input}.${sign('sha256', Buffer.from(input), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
  return { jwks: { keys: [{ ...ec.publicKey.export({ format: 'jwk' }), kid: 'e' }] }, token };
}

/** The peer's SPIFFE id, as mTLS/HBONE would give it: authz allows its namespace. */
export const BENCH_SOURCE_PRINCIPAL = 'spiffe://cluster.local/ns/default/sa/a';
/** The request's path: authz allows GET /api/*. */
export const BENCH_REQUEST_PATH = '/api/items?page=2';
/** The CORS origin the cors configuration allows; a GET with it is a simple CORS request. */
export const BENCH_ORIGIN = 'https://app.example.com';

/** Headers of the realistic request beyond host, user-agent and accept: an allowed Origin (cors) and the x-user ratelimit's descriptor reads. */
export const BENCH_REQUEST_HEADERS: readonly [string, string][] = [['origin', BENCH_ORIGIN], ['x-user', 'alice']];

/** The header jwt-authn verifies. */
export function bearerHeader(jwt: JwtBenchFixture): [string, string] {
  return ['authorization', `Bearer ${jwt.token}`];
}

/** The rate-limit domain ratelimit's configuration refers to: a limit no bench reaches. */
export const BENCH_RATE_LIMIT = rateLimitDomainSchema.parse({ domain: 'api', descriptors: [{ entries: [{ key: 'user' }], requestsPerUnit: 1_000_000_000, unit: 'second' }] });

/** Each plugin's realistic configuration: the request above passes it (allowed, CORS-decorated, authenticated, counted, not faulted). */
export function firstPartyBenchConfig(name: FirstPartyBenchPlugin, jwt: JwtBenchFixture): unknown {
  switch (name) {
    case 'authz':
      return {
        policies: [
          { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin/*'] } }] }] },
          { action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['default'] } }], to: [{ operation: { methods: ['GET'], paths: ['/api/*'] } }] }] },
        ],
      };
    case 'cors':
      return { allowOrigins: [BENCH_ORIGIN], exposeHeaders: ['x-a'] };
    case 'fault-injection':
      return { abort: { httpStatus: 503, percentage: 0 }, delay: { fixedDelay: '1s', percentage: 0 } };
    case 'jwt-authn':
      return { providers: [{ issuer: 'i', jwks: jwt.jwks, claimToHeaders: [{ claim: 'sub', header: 'x-user' }] }] };
    case 'ratelimit':
      return { domain: BENCH_RATE_LIMIT.domain, descriptors: [[{ key: 'user', fromHeader: 'x-user' }]] };
  }
}

/** A first-party plugin from plugins/ (built on first use) with `config`, as a `plugins:` entry. */
export async function firstPartyPluginConfig(name: string, config: unknown): Promise<PluginConfig> {
  const wasm = await ensurePluginBuilt(path.join(REPO_ROOT, 'plugins', name));
  return pluginConfig(name, pathToFileURL(wasm).href, { config, limits: { cpuMs: 1000, memoryMb: 64 } });
}

/** The host services the plugins call, as `weft run` registers them: rate limits on the memory backend, and weft.crypto.verify. */
export function createBenchForeignFunctions(): { foreign: ForeignFunctionRegistry; close(): Promise<void> } {
  const state = createSharedState(
    { backend: 'memory' },
    { metrics: new MetricsRegistry(), nodeName: 'bench', logger: createLogger('plugin-bench'), rateLimits: [BENCH_RATE_LIMIT] },
  );
  const foreign = new ForeignFunctionRegistry();
  registerSharedStateForeignFunctions(foreign, state);
  registerCryptoForeignFunctions(foreign);
  return { foreign, close: () => state.close() };
}
