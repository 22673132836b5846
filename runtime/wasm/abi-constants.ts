/** proxy-wasm ABI enumerations (spec v0.2.1 plus the C++ SDK values the spec omits), as `as const` objects. */

/** proxy_status_t / WasmResult: what every hostcall returns. */
export const Status = {
  Ok: 0,
  NotFound: 1,
  BadArgument: 2,
  SerializationFailure: 3,
  ParseFailure: 4,
  BadExpression: 5,
  InvalidMemoryAccess: 6,
  Empty: 7,
  CasMismatch: 8,
  ResultMismatch: 9,
  InternalFailure: 10,
  BrokenConnection: 11,
  Unimplemented: 12,
} as const;
export type StatusCode = (typeof Status)[keyof typeof Status];

export const BufferType = {
  HttpRequestBody: 0,
  HttpResponseBody: 1,
  DownstreamData: 2,
  UpstreamData: 3,
  HttpCallResponseBody: 4,
  GrpcReceiveBuffer: 5,
  VmConfiguration: 6,
  PluginConfiguration: 7,
  ForeignFunctionArguments: 8,
} as const;

export const MapType = {
  HttpRequestHeaders: 0,
  HttpRequestTrailers: 1,
  HttpResponseHeaders: 2,
  HttpResponseTrailers: 3,
  GrpcReceiveInitialMetadata: 4,
  GrpcReceiveTrailingMetadata: 5,
  HttpCallResponseHeaders: 6,
  HttpCallResponseTrailers: 7,
} as const;

export const StreamType = { HttpRequest: 0, HttpResponse: 1, Downstream: 2, Upstream: 3 } as const;

export const MetricType = { Counter: 0, Gauge: 1, Histogram: 2 } as const;

/** proxy_log_level_t. */
export const LogLevel = { Trace: 0, Debug: 1, Info: 2, Warn: 3, Error: 4, Critical: 5 } as const;

/**
 * Header-callback return values as the C++/AS SDKs define them; cpp-host treats any non-zero value as
 * "stop everything" (1 is mapped to StopAllIterationAndWatermark), and so does weft.
 */
export const HeadersStatus = { Continue: 0, StopIteration: 1, ContinueAndEndStream: 2, StopAllIterationAndBuffer: 3, StopAllIterationAndWatermark: 4 } as const;

/** Body-callback return values (FilterDataStatus). */
export const DataStatus = { Continue: 0, StopIterationAndBuffer: 1, StopIterationAndWatermark: 2, StopIterationNoBuffer: 3 } as const;

/** WASI preview1 errno values the host returns. */
export const Errno = { Success: 0, Badf: 8, Fault: 21, Inval: 28, Nosys: 52, Notsup: 58, Spipe: 70, Notcapable: 76 } as const;

export const ABI_VERSIONS = ['0.2.1', '0.2.0', '0.1.0'] as const;
export type AbiVersion = (typeof ABI_VERSIONS)[number];

/** grpc_status argument of proxy_send_local_response meaning "not a gRPC response" (SDKs pass -1 / u32::MAX). */
export const GRPC_STATUS_NONE = 0xffffffff;
