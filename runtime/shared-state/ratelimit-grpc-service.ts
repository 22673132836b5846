/** envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit on @grpc/grpc-js, so Envoy gateways in the mesh share weft's limits; decisions come from the RateLimiter. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Logger } from '../log.js';
import type { RateLimiter, RateLimitDescriptor, RateLimitResponse } from './rate-limiter.js';
import type { RateLimitUnit } from './rate-limit-rules.js';

const here = dirname(fileURLToPath(import.meta.url));
/** Source tree (tsx, tests) or, from dist/runtime/shared-state, the sources the protos ship in. */
export const RLS_PROTO_DIR = [join(here, 'proto'), join(here, '..', '..', '..', 'runtime', 'shared-state', 'proto')].find((d) => existsSync(d)) ?? join(here, 'proto');
const RLS_PROTO = 'envoy/service/ratelimit/v3/rls.proto';
export const SHOULD_RATE_LIMIT_PATH = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit';

/** The wire shapes as proto-loader decodes them (camelCase, enums as strings, longs as numbers). */
interface WireRequest {
  domain: string;
  descriptors: { entries: { key: string; value: string }[]; limit: { requestsPerUnit: number; unit: string } | null; hitsAddend: { value: number } | null }[];
  hitsAddend: number;
}

interface WireResponse {
  overallCode: 'OK' | 'OVER_LIMIT';
  statuses: {
    code: 'OK' | 'OVER_LIMIT';
    currentLimit: { name: string; requestsPerUnit: number; unit: string } | null;
    limitRemaining: number;
    durationUntilReset: { seconds: number; nanos: number } | null;
  }[];
  responseHeadersToAdd: { key: string; value: string }[];
}

const UNITS: Record<string, RateLimitUnit> = { SECOND: 'second', MINUTE: 'minute', HOUR: 'hour', DAY: 'day' };
const MAX_UINT32 = 0xffffffff;

export function loadRlsPackage(): grpc.GrpcObject {
  const definition = protoLoader.loadSync(RLS_PROTO, { includeDirs: [RLS_PROTO_DIR], keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
  return grpc.loadPackageDefinition(definition);
}

function serviceDefinition(pkg: grpc.GrpcObject): grpc.ServiceDefinition {
  const v3 = ((pkg.envoy as grpc.GrpcObject).service as grpc.GrpcObject).ratelimit as grpc.GrpcObject;
  return ((v3.v3 as grpc.GrpcObject).RateLimitService as grpc.ServiceClientConstructor).service;
}

class BadRequest extends Error {}

/** Envoy request → limiter request; rejects what envoyproxy/ratelimit's proto validation would reject. */
export function toLimiterRequest(req: WireRequest): { domain: string; descriptors: RateLimitDescriptor[]; hitsAddend: number } {
  if (req.domain === '') throw new BadRequest('domain must not be empty');
  if (req.descriptors.length === 0) throw new BadRequest('at least one descriptor is required');
  const descriptors = req.descriptors.map((d, i): RateLimitDescriptor => {
    if (d.entries.length === 0) throw new BadRequest(`descriptor ${i} has no entries`);
    for (const e of d.entries) if (e.key === '') throw new BadRequest(`descriptor ${i} has an entry with an empty key`);
    let limit: RateLimitDescriptor['limit'];
    if (d.limit !== null) {
      const unit = UNITS[d.limit.unit];
      if (unit === undefined) throw new BadRequest(`descriptor ${i}: override unit ${d.limit.unit} is not supported (SECOND, MINUTE, HOUR, DAY)`);
      limit = { requestsPerUnit: d.limit.requestsPerUnit, unit };
    }
    return {
      entries: d.entries.map((e) => ({ key: e.key, value: e.value })),
      ...(limit === undefined ? {} : { limit }),
      ...(d.hitsAddend === null ? {} : { hitsAddend: d.hitsAddend.value }),
    };
  });
  return { domain: req.domain, descriptors, hitsAddend: req.hitsAddend };
}

export function toWireResponse(r: RateLimitResponse): WireResponse {
  return {
    overallCode: r.overallCode,
    statuses: r.statuses.map((s) => ({
      code: s.code,
      currentLimit:
        s.rule === undefined || s.rule.unlimited ? null : { name: s.rule.name, requestsPerUnit: Math.min(s.rule.requestsPerUnit, MAX_UINT32), unit: s.rule.unit.toUpperCase() },
      limitRemaining: Math.max(0, Math.min(MAX_UINT32, Math.floor(s.remaining))),
      durationUntilReset: s.rule === undefined ? null : { seconds: Math.floor(s.resetMs / 1000), nanos: Math.round((s.resetMs % 1000) * 1e6) },
    })),
    responseHeadersToAdd: Object.entries(r.headers).map(([key, value]) => ({ key, value })),
  };
}

export interface RateLimitGrpcServer {
  readonly port: number;
  readonly server: grpc.Server;
  close(): Promise<void>;
}

/** Adds the service to `server` (so it can share a gRPC server with other services). */
export function addRateLimitService(server: grpc.Server, limiter: RateLimiter, logger: Logger): void {
  server.addService(serviceDefinition(loadRlsPackage()), {
    ShouldRateLimit: (call: grpc.ServerUnaryCall<WireRequest, WireResponse>, callback: grpc.sendUnaryData<WireResponse>) => {
      let request: ReturnType<typeof toLimiterRequest>;
      try {
        request = toLimiterRequest(call.request);
      } catch (err) {
        callback({ code: grpc.status.INVALID_ARGUMENT, details: err instanceof Error ? err.message : String(err) });
        return;
      }
      limiter.shouldRateLimit(request).then(
        (r) => callback(null, toWireResponse(r)),
        (err: unknown) => {
          logger.error({ err, domain: request.domain }, 'ShouldRateLimit failed');
          callback({ code: grpc.status.INTERNAL, details: 'rate limit decision failed' });
        },
      );
    },
  });
}

/** Starts a gRPC server with only the rate-limit service on `address` (e.g. "127.0.0.1:0"); plaintext, as Envoy's RLS cluster usually is inside a mesh node. */
export async function startRateLimitGrpcServer(limiter: RateLimiter, address: string, logger: Logger): Promise<RateLimitGrpcServer> {
  const server = new grpc.Server();
  addRateLimitService(server, limiter, logger);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => (err === null ? resolve(p) : reject(err))),
  );
  return {
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
      }),
  };
}
