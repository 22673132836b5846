// proxy-wasm enumerations in camelCase-free PascalCase members, as AssemblyScript enums. (In AssemblyScript an enum
// is a set of compile-time i32 constants — the idiomatic and zero-cost form; the TypeScript rule against enums is
// about runtime objects and does not apply here.)

/** proxy_status_t: what every host call answers. Anything but Ok is handed back to the plugin, never aborted on. */
export enum WasmResult {
  Ok = 0,
  NotFound = 1,
  BadArgument = 2,
  SerializationFailure = 3,
  ParseFailure = 4,
  BadExpression = 5,
  InvalidMemoryAccess = 6,
  Empty = 7,
  CasMismatch = 8,
  ResultMismatch = 9,
  InternalFailure = 10,
  BrokenConnection = 11,
  Unimplemented = 12,
}

/** A short name for a WasmResult, for log lines. */
export function wasmResultName(r: WasmResult): string {
  switch (r) {
    case WasmResult.Ok: return "Ok";
    case WasmResult.NotFound: return "NotFound";
    case WasmResult.BadArgument: return "BadArgument";
    case WasmResult.SerializationFailure: return "SerializationFailure";
    case WasmResult.ParseFailure: return "ParseFailure";
    case WasmResult.InvalidMemoryAccess: return "InvalidMemoryAccess";
    case WasmResult.Empty: return "Empty";
    case WasmResult.CasMismatch: return "CasMismatch";
    case WasmResult.InternalFailure: return "InternalFailure";
    case WasmResult.Unimplemented: return "Unimplemented";
    default: return "Status" + (<i32>r).toString();
  }
}

/** What a header or trailer callback tells the host. Any stop pauses the whole stream until continueRequest/Response. */
export enum HeadersAction {
  Continue = 0,
  StopIteration = 1,
}

/** What a body callback tells the host. */
export enum DataAction {
  Continue = 0,
  /** Hold this chunk and show it again, with the following ones, in the next body callback. */
  StopIterationAndBuffer = 1,
  StopIterationAndWatermark = 2,
  /** Drop this chunk from the stream (the plugin keeps what it needs). */
  StopIterationNoBuffer = 3,
}

export enum LogLevel {
  Trace = 0,
  Debug = 1,
  Info = 2,
  Warn = 3,
  Error = 4,
  Critical = 5,
}

export enum MapType {
  RequestHeaders = 0,
  RequestTrailers = 1,
  ResponseHeaders = 2,
  ResponseTrailers = 3,
  GrpcReceiveInitialMetadata = 4,
  GrpcReceiveTrailingMetadata = 5,
  HttpCallResponseHeaders = 6,
  HttpCallResponseTrailers = 7,
}

export enum BufferType {
  RequestBody = 0,
  ResponseBody = 1,
  DownstreamData = 2,
  UpstreamData = 3,
  HttpCallResponseBody = 4,
  GrpcReceiveBuffer = 5,
  VmConfiguration = 6,
  PluginConfiguration = 7,
  ForeignFunctionArguments = 8,
}

export enum StreamType {
  Request = 0,
  Response = 1,
  Downstream = 2,
  Upstream = 3,
}

export enum MetricType {
  Counter = 0,
  Gauge = 1,
  Histogram = 2,
}

/** grpc_status for proxy_send_local_response meaning "not a gRPC response". */
export const GRPC_STATUS_NONE: i32 = -1;
