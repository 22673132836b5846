/** What every plugin VM shares with the rest of the node: logging, metrics, shared data and queues, callouts and foreign functions. */
import type { Logger } from '../log.js';
import type { ForeignFunctionRegistry } from './foreign-function.js';
import type { GrpcClients } from './grpc-clients.js';
import type { HeaderPairs } from './header-map-codec.js';
import type { PluginMetrics } from './plugin-metrics.js';
import type { PropertyValue } from './properties.js';
import type { SharedData } from './shared-data.js';
import type { SharedQueues } from './shared-queues.js';

export interface HttpCallResponse {
  headers: HeaderPairs;
  body: Uint8Array;
  trailers: HeaderPairs;
}

/**
 * Sends an HTTP request to `cluster` on behalf of a plugin (proxy_http_call). Headers include `:method`, `:path` and
 * `:authority`. Rejecting (or a timeout) is reported to the plugin as a failed call (`num_headers == 0`).
 */
export type HttpCallFn = (cluster: string, headers: HeaderPairs, body: Uint8Array, trailers: HeaderPairs, timeoutMs: number) => Promise<HttpCallResponse>;

/** Where a gRPC upstream (the cluster name a plugin passes) lives: `host:port`, plaintext unless `tls`. */
export interface GrpcTarget {
  address: string;
  tls?: boolean;
}
export type GrpcResolver = (cluster: string) => GrpcTarget | undefined;

/** Receives a plugin's log line (proxy_log, or WASI stdout/stderr) before it goes to the structured log. */
export type PluginLogHook = (plugin: string, level: number, message: string) => void;

export interface HostServices {
  logger: Logger;
  pluginLog: PluginLogHook | undefined;
  metrics: PluginMetrics;
  shared: SharedData;
  queues: SharedQueues;
  foreignFunctions: ForeignFunctionRegistry;
  httpCall: HttpCallFn | undefined;
  grpc: GrpcResolver | undefined;
  grpcClients: GrpcClients;
  /** Node-level properties (`node.id`, `node.metadata.*`, `cluster_name`, ...) visible to every plugin. */
  nodeProperties: Record<string, PropertyValue>;
}
