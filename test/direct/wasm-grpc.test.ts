// gRPC callouts from a plugin through @grpc/grpc-js against a real grpc-js server on loopback: a unary call and a
// bidirectional stream, with initial/trailing metadata, message bytes and the close status delivered to the root context.
import { Metadata, Server, ServerCredentials, status as GrpcStatus, type ServerDuplexStream, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { Status } from '../../runtime/wasm/abi-constants.js';
import { grpcUpstreamCluster } from '../../runtime/wasm/host-functions/grpc.js';
import { decodeHeaderMap, encodeHeaderMap } from '../../runtime/wasm/header-map-codec.js';
import { Cb } from '../helpers/wasm-fixtures.js';
import { type TestHost, SCRATCH, call, createTestHost, loadProbe, put, records, returned, u32 } from '../helpers/wasm-host.js';

const identity = (b: Buffer): Buffer => b;
let t: TestHost | undefined;
let server: Server | undefined;
afterEach(async () => {
  t?.host.close();
  t = undefined;
  await new Promise<void>((resolve) => (server === undefined ? resolve() : server.tryShutdown(() => resolve())));
  server = undefined;
});

async function startServer(): Promise<string> {
  server = new Server();
  server.addService(
    {
      Reverse: { path: '/test.Echo/Reverse', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
      Chat: { path: '/test.Echo/Chat', requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
      Fail: { path: '/test.Echo/Fail', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
    },
    {
      Reverse: (callObj: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => {
        const md = new Metadata();
        md.set('x-seen', String(callObj.metadata.get('x-token')[0] ?? ''));
        callObj.sendMetadata(md);
        cb(null, Buffer.from(callObj.request).reverse());
      },
      Chat: (stream: ServerDuplexStream<Buffer, Buffer>) => {
        stream.on('data', (m: Buffer) => stream.write(Buffer.concat([Buffer.from('echo:'), m])));
        stream.on('end', () => stream.end());
      },
      Fail: (_c: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => cb({ code: GrpcStatus.PERMISSION_DENIED, details: 'nope' }),
    },
  );
  const port = await new Promise<number>((resolve, reject) => server!.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return `127.0.0.1:${port}`;
}

async function until(predicate: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !predicate(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(predicate()).toBe(true);
}

describe('gRPC callouts', () => {
  it('unary call: metadata, message and OK close reach the root context; unknown upstreams are PARSE_FAILURE', async () => {
    const address = await startServer();
    t = createTestHost({ grpc: (cluster) => (cluster === 'echo' ? { address } : undefined) });
    const vm = await loadProbe(t);
    const args = (cluster: string, method: string, message: string): number[] => {
      const [up, ul] = put(vm, SCRATCH, cluster);
      const [sp, sl] = put(vm, SCRATCH + 64, 'test.Echo');
      const [mp, ml] = put(vm, SCRATCH + 128, method);
      const [hp, hl] = put(vm, SCRATCH + 192, encodeHeaderMap([['x-token', 't1']]));
      const [bp, bl] = put(vm, SCRATCH + 512, message);
      return [up, ul, sp, sl, mp, ml, hp, hl, bp, bl, 5000, SCRATCH + 1024];
    };
    expect(call(vm, vm.root, 'proxy_grpc_call', ...args('nowhere', 'Reverse', 'x'))).toBe(Status.ParseFailure);
    expect(call(vm, vm.root, 'proxy_grpc_call', ...args('echo', 'Reverse', 'abc'))).toBe(Status.Ok);
    const token = u32(vm, SCRATCH + 1024);
    await until(() => records(vm).some((r) => r[0] === Cb.grpcClose));
    const grpc = records(vm).filter((r) => r[0] >= Cb.grpcInitialMetadata && r[0] <= Cb.grpcClose);
    expect(grpc.map((r) => r[0])).toContain(Cb.grpcReceive);
    expect(grpc.find((r) => r[0] === Cb.grpcReceive)).toEqual([Cb.grpcReceive, 1, token, 3]);
    expect(grpc.at(-1)).toEqual([Cb.grpcClose, 1, token, 0]);
    expect(returned(vm, 48).toString()).toBe('cba');
    expect(grpc.find((r) => r[0] === Cb.grpcInitialMetadata)?.[2]).toBe(token);
    expect(decodeHeaderMap(returned(vm, 64))).toContainEqual(['x-seen', 't1']); // our initial metadata reached the server
    expect(vm.pendingAsync).toBe(0);

    expect(call(vm, vm.root, 'proxy_grpc_call', ...args('echo', 'Fail', 'x'))).toBe(Status.Ok);
    const failed = u32(vm, SCRATCH + 1024);
    await until(() => records(vm).some((r) => r[0] === Cb.grpcClose && r[2] === failed));
    expect(records(vm).find((r) => r[0] === Cb.grpcClose && r[2] === failed)).toEqual([Cb.grpcClose, 1, failed, GrpcStatus.PERMISSION_DENIED]);
    expect(call(vm, vm.root, 'proxy_grpc_cancel', 99999)).toBe(Status.NotFound);
  });

  it('bidirectional stream: send, receive each reply, half-close, then OK', async () => {
    const address = await startServer();
    t = createTestHost({ grpc: () => ({ address }) });
    const vm = await loadProbe(t);
    const [up, ul] = put(vm, SCRATCH, 'echo');
    const [sp, sl] = put(vm, SCRATCH + 64, 'test.Echo');
    const [mp, ml] = put(vm, SCRATCH + 128, 'Chat');
    expect(call(vm, vm.root, 'proxy_grpc_stream', up, ul, sp, sl, mp, ml, 0, 0, SCRATCH + 1024)).toBe(Status.Ok);
    const token = u32(vm, SCRATCH + 1024);
    const [m1, l1] = put(vm, SCRATCH + 256, 'one');
    expect(call(vm, vm.root, 'proxy_grpc_send', token, m1, l1, 0)).toBe(Status.Ok);
    await until(() => records(vm).some((r) => r[0] === Cb.grpcReceive && r[2] === token));
    expect(returned(vm, 48).toString()).toBe('echo:one');
    const [m2, l2] = put(vm, SCRATCH + 256, 'two');
    expect(call(vm, vm.root, 'proxy_grpc_send', token, m2, l2, 1)).toBe(Status.Ok); // end_stream: half-close
    await until(() => records(vm).some((r) => r[0] === Cb.grpcClose && r[2] === token));
    expect(records(vm).filter((r) => r[0] === Cb.grpcReceive && r[2] === token)).toHaveLength(2);
    expect(records(vm).find((r) => r[0] === Cb.grpcClose && r[2] === token)).toEqual([Cb.grpcClose, 1, token, 0]);
    expect(call(vm, vm.root, 'proxy_grpc_send', token, m2, l2, 0)).toBe(Status.NotFound); // closed
  });
});

describe('gRPC upstream naming', () => {
  it('accepts a plain cluster name (Rust/Go SDKs) and a serialized GrpcService with envoy_grpc.cluster_name (C++ SDK)', () => {
    expect(grpcUpstreamCluster(Buffer.from('outbound|9000||authz.default'))).toBe('outbound|9000||authz.default');
    const cluster = Buffer.from('authz');
    const envoyGrpc = Buffer.concat([Buffer.from([0x0a, cluster.length]), cluster]);
    const service = Buffer.concat([Buffer.from([0x0a, envoyGrpc.length]), envoyGrpc, Buffer.from([0x1a, 0x02, 0x08, 0x01])]);
    expect(grpcUpstreamCluster(service)).toBe('authz');
  });
});
