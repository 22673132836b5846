/**
 * gRPC callouts (proxy_grpc_call, proxy_grpc_stream, send/cancel/close) over @grpc/grpc-js. The upstream a plugin names
 * is a cluster, resolved by the host's GrpcResolver; replies reach the root context through the proxy_on_grpc_* callbacks.
 */
import type { Metadata, ClientDuplexStream, ClientUnaryCall, StatusObject } from '@grpc/grpc-js';
import { lazyGrpc } from '../../lazy-packages.js';
import { Status } from '../abi-constants.js';
import { type HeaderPairs, readMap } from '../header-map-codec.js';
import { identity } from '../grpc-clients.js';
import type { PluginVm } from '../plugin-vm.js';

type HostFn = (...args: number[]) => number;

interface GrpcCall {
  call: ClientUnaryCall | ClientDuplexStream<Buffer, Buffer>;
  stream: boolean;
  /** After cancel the plugin hears nothing more about this call (cpp-host semantics). */
  cancelled: boolean;
}

/**
 * The upstream a plugin names: Rust/Go SDKs pass the cluster name; the C++ SDK passes a serialized
 * envoy.config.core.v3.GrpcService whose envoy_grpc (field 1) holds cluster_name (field 1). Envoy accepts both.
 */
export function grpcUpstreamCluster(raw: Uint8Array): string {
  const text = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
  const field1 = (b: Uint8Array): Uint8Array | undefined => {
    if (b.length < 2 || b[0] !== 0x0a) return undefined;
    let len = 0;
    let i = 1;
    for (let shift = 0; i < b.length && shift < 28; shift += 7) {
      const byte = b[i++]!;
      len |= (byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) break;
    }
    return i + len <= b.length ? b.subarray(i, i + len) : undefined;
  };
  const envoyGrpc = field1(raw);
  const cluster = envoyGrpc === undefined ? undefined : field1(envoyGrpc);
  return cluster !== undefined && /^[\x21-\x7e]+$/.test(text(cluster)) ? text(cluster) : text(raw);
}

function toMetadata(pairs: HeaderPairs): Metadata {
  const md = new (lazyGrpc().Metadata)();
  for (const [k, v] of pairs) {
    if (k.startsWith(':')) continue;
    if (k.endsWith('-bin')) md.add(k, Buffer.from(v, 'latin1'));
    else md.add(k, v);
  }
  return md;
}

function fromMetadata(md: Metadata): HeaderPairs {
  const out: HeaderPairs = [];
  for (const [k, values] of Object.entries(md.toJSON())) {
    for (const v of values as (string | Buffer)[]) out.push([k, typeof v === 'string' ? v : v.toString('latin1')]);
  }
  return out;
}

export function grpcImports(vm: PluginVm): Record<string, HostFn> {
  const calls = new Map<number, GrpcCall>();

  const open = (up: number, ul: number, sp: number, sl: number, mp: number, ml: number, hp: number, hl: number): { path: string; md: Metadata; cluster: string } | number => {
    const mem = vm.mem;
    for (const [p, l] of [[up, ul], [sp, sl], [mp, ml], [hp, hl]] as const) if (!mem.inBounds(p >>> 0, l >>> 0)) return Status.InvalidMemoryAccess;
    const initial = readMap(mem.buf, hp >>> 0, hl >>> 0);
    if (initial === undefined) return Status.BadArgument;
    return { cluster: grpcUpstreamCluster(mem.copy(up >>> 0, ul >>> 0)), path: `/${mem.utf8(sp >>> 0, sl >>> 0)}/${mem.utf8(mp >>> 0, ml >>> 0)}`, md: toMetadata(initial) };
  };

  const deliver = (token: number, fn: (vm: PluginVm) => void): void => {
    const c = calls.get(token);
    if (c === undefined || c.cancelled) return;
    vm.runAsync(vm.root, fn);
  };

  const wire = (token: number, g: GrpcCall): void => {
    const root = vm.root.id;
    g.call.on('metadata', (md: Metadata) =>
      deliver(token, (v) => {
        v.grpcReceive = { metadata: fromMetadata(md) };
        try {
          v.invoke3(v.root, v.cb.onGrpcReceiveInitialMetadata, root, token, v.grpcReceive.metadata!.length);
        } finally {
          v.grpcReceive = undefined;
        }
      }),
    );
    g.call.on('status', (status: StatusObject) => {
      deliver(token, (v) => {
        const trailing = fromMetadata(status.metadata);
        if (trailing.length > 0) {
          v.grpcReceive = { metadata: trailing };
          try {
            v.invoke3(v.root, v.cb.onGrpcReceiveTrailingMetadata, root, token, trailing.length);
          } finally {
            v.grpcReceive = undefined;
          }
        }
        v.grpcReceive = { status: status.code, statusMessage: status.details };
        try {
          v.invoke3(v.root, v.cb.onGrpcClose, root, token, status.code);
        } finally {
          v.grpcReceive = undefined;
        }
      });
      calls.delete(token);
      vm.pendingAsync--;
    });
  };

  const onMessage = (token: number) => (message: Buffer) =>
    deliver(token, (v) => {
      v.grpcReceive = { message };
      try {
        v.invoke3(v.root, v.cb.onGrpcReceive, v.root.id, token, message.length);
      } finally {
        v.grpcReceive = undefined;
      }
    });

  const client = (cluster: string) => {
    const target = vm.services.grpc?.(cluster);
    return target === undefined ? undefined : vm.grpcClients.get(target);
  };

  return {
    proxy_grpc_call: (up, ul, sp, sl, mp, ml, hp, hl, msgp, msgl, timeout, ret) => {
      const o = open(up, ul, sp, sl, mp, ml, hp, hl);
      if (typeof o === 'number') return o;
      if (!vm.mem.inBounds(msgp >>> 0, msgl >>> 0) || !vm.mem.inBounds(ret >>> 0, 4)) return Status.InvalidMemoryAccess;
      const c = client(o.cluster);
      if (c === undefined) return Status.ParseFailure;
      const token = vm.nextCallId();
      const message = Buffer.from(vm.mem.copy(msgp >>> 0, msgl >>> 0));
      const options = (timeout >>> 0) > 0 ? { deadline: Date.now() + (timeout >>> 0) } : {};
      const call = c.makeUnaryRequest(o.path, identity, identity, message, o.md, options, (err, value) => {
        if (err === null && value !== undefined) onMessage(token)(value);
      });
      const g: GrpcCall = { call, stream: false, cancelled: false };
      calls.set(token, g);
      vm.pendingAsync++;
      wire(token, g);
      vm.mem.setU32(ret >>> 0, token);
      return Status.Ok;
    },
    proxy_grpc_stream: (up, ul, sp, sl, mp, ml, hp, hl, ret) => {
      const o = open(up, ul, sp, sl, mp, ml, hp, hl);
      if (typeof o === 'number') return o;
      if (!vm.mem.inBounds(ret >>> 0, 4)) return Status.InvalidMemoryAccess;
      const c = client(o.cluster);
      if (c === undefined) return Status.ParseFailure;
      const token = vm.nextCallId();
      const call = c.makeBidiStreamRequest(o.path, identity, identity, o.md, {});
      call.on('data', onMessage(token));
      call.on('error', () => {
        // Reported through the 'status' event as proxy_on_grpc_close.
      });
      const g: GrpcCall = { call, stream: true, cancelled: false };
      calls.set(token, g);
      vm.pendingAsync++;
      wire(token, g);
      vm.mem.setU32(ret >>> 0, token);
      return Status.Ok;
    },
    proxy_grpc_send: (token, mp, ml, endStream) => {
      const g = calls.get(token >>> 0);
      if (g === undefined) return Status.NotFound;
      if (!g.stream) return Status.BadArgument;
      if (!vm.mem.inBounds(mp >>> 0, ml >>> 0)) return Status.InvalidMemoryAccess;
      const s = g.call as ClientDuplexStream<Buffer, Buffer>;
      s.write(Buffer.from(vm.mem.copy(mp >>> 0, ml >>> 0)));
      if (endStream !== 0) s.end();
      return Status.Ok;
    },
    proxy_grpc_cancel: (token) => {
      const g = calls.get(token >>> 0);
      if (g === undefined) return Status.NotFound;
      g.cancelled = true;
      g.call.cancel();
      return Status.Ok;
    },
    proxy_grpc_close: (token) => {
      const g = calls.get(token >>> 0);
      if (g === undefined) return Status.NotFound;
      if (g.stream) (g.call as ClientDuplexStream<Buffer, Buffer>).end();
      else {
        g.cancelled = true;
        g.call.cancel();
      }
      return Status.Ok;
    },
  };
}
