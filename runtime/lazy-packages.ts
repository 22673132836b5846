/**
 * undici and @grpc/grpc-js, required on first use instead of at import. An L7 node imports the modules that can call
 * them (plugin fetches over https/oci, request mirroring, h2 upstreams, a plugin's gRPC calls), but an idle one or one
 * whose plugins come from file:// never does: the two packages are ~175 module files and about 20 MB of an idle L7
 * node's RSS. Both are CommonJS without an `exports` map, so `require` returns the module an ES import would.
 */
import { createRequire } from 'node:module';
import type * as Undici from 'undici';
import type * as GrpcJs from '@grpc/grpc-js';

const require = createRequire(import.meta.url);

export const lazyUndici = (): typeof Undici => require('undici') as typeof Undici;
export const lazyGrpc = (): typeof GrpcJs => require('@grpc/grpc-js') as typeof GrpcJs;
