// envoy.service.ratelimit.v3.RateLimitService over real gRPC (grpc-js client on loopback), backed by weft's limiter.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rateLimitDomainSchema } from '../../runtime/config/config-schema.js';
import { createLogger } from '../../runtime/log.js';
import { loadRlsPackage, startRateLimitGrpcServer, type RateLimitGrpcServer } from '../../runtime/shared-state/ratelimit-grpc-service.js';
import { createSharedState, type SharedState } from '../../runtime/shared-state/shared-state.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';

type Call = (req: object, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void;

describe('RateLimitService/ShouldRateLimit', () => {
  let state: SharedState;
  let server: RateLimitGrpcServer;
  let client: grpc.Client & { ShouldRateLimit: Call };
  const ask = (req: object): Promise<Record<string, unknown>> => new Promise((resolve, reject) => client.ShouldRateLimit(req, (err, res) => (err === null ? resolve(res) : reject(err))));

  beforeAll(async () => {
    const logger = createLogger('rls-test');
    state = createSharedState(
      { backend: 'memory' },
      {
        metrics: new MetricsRegistry(),
        nodeName: 'n',
        logger,
        rateLimits: [
          rateLimitDomainSchema.parse({
            domain: 'envoy',
            descriptors: [
              { name: 'per-user', entries: [{ key: 'user' }], requestsPerUnit: 2, unit: 'minute' },
              { entries: [{ key: 'generic_key', value: 'free' }], requestsPerUnit: 1, unit: 'second', unlimited: true },
            ],
          }),
        ],
      },
    );
    server = await startRateLimitGrpcServer(state.rateLimiter, '127.0.0.1:0', logger);
    const pkg = loadRlsPackage();
    const Ctor = ((((pkg.envoy as grpc.GrpcObject).service as grpc.GrpcObject).ratelimit as grpc.GrpcObject).v3 as grpc.GrpcObject).RateLimitService as grpc.ServiceClientConstructor;
    client = new Ctor(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure()) as unknown as typeof client;
  });
  afterAll(async () => {
    client?.close();
    await server?.close();
    await state?.close();
  });

  it('answers OK then OVER_LIMIT with limit, remaining, reset and RateLimit headers', async () => {
    const req = { domain: 'envoy', descriptors: [{ entries: [{ key: 'user', value: 'alice' }] }] };
    const first = await ask(req);
    expect(first.overallCode).toBe('OK');
    expect(first.statuses).toEqual([
      expect.objectContaining({ code: 'OK', limitRemaining: 1, currentLimit: { name: 'per-user', requestsPerUnit: 2, unit: 'MINUTE' } }),
    ]);
    const reset = (first.statuses as { durationUntilReset: { seconds: number } }[])[0]!.durationUntilReset.seconds;
    expect(reset).toBeGreaterThanOrEqual(0);
    expect(reset).toBeLessThanOrEqual(60);
    await ask(req);
    const over = await ask(req);
    expect(over.overallCode).toBe('OVER_LIMIT');
    const headers = Object.fromEntries((over.responseHeadersToAdd as { key: string; value: string }[]).map((h) => [h.key, h.value]));
    expect(headers['ratelimit-policy']).toBe('"per-user";q=2;w=60');
    expect(headers['retry-after']).toBeDefined();
  });

  it('limits on all descriptors, honours hits_addend and per-descriptor overrides', async () => {
    const both = await ask({
      domain: 'envoy',
      hitsAddend: 2,
      descriptors: [{ entries: [{ key: 'user', value: 'bob' }] }, { entries: [{ key: 'generic_key', value: 'free' }] }],
    });
    expect(both.overallCode).toBe('OK');
    expect((both.statuses as { limitRemaining: number }[]).map((s) => s.limitRemaining)).toEqual([0, 0xffffffff]);
    const override = { domain: 'envoy', descriptors: [{ entries: [{ key: 'ip', value: '10.0.0.1' }], limit: { requestsPerUnit: 1, unit: 'HOUR' } }] };
    expect((await ask(override)).overallCode).toBe('OK');
    expect((await ask(override)).overallCode).toBe('OVER_LIMIT');
    const check = await ask({ domain: 'envoy', descriptors: [{ entries: [{ key: 'user', value: 'carol' }], hitsAddend: { value: 0 } }] });
    expect((check.statuses as { limitRemaining: number }[])[0]!.limitRemaining).toBe(2);
  });

  it('rejects malformed requests with INVALID_ARGUMENT and keeps serving', async () => {
    await expect(ask({ domain: '', descriptors: [{ entries: [{ key: 'k', value: 'v' }] }] })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    await expect(ask({ domain: 'envoy', descriptors: [] })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    await expect(ask({ domain: 'envoy', descriptors: [{ entries: [{ key: 'ip', value: 'x' }], limit: { requestsPerUnit: 1, unit: 'YEAR' } }] })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
    });
    expect((await ask({ domain: 'envoy', descriptors: [{ entries: [{ key: 'nothing', value: 'matches' }] }] })).overallCode).toBe('OK');
  });
});
