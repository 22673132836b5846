// The public API of @weft/sdk (camelCase throughout; the raw ABI stays in imports.ts). A plugin imports from here and
// re-exports "./exports" from its entry file so the host finds the proxy_on_* callbacks.
export { WasmResult, wasmResultName, HeadersAction, DataAction, LogLevel, MapType, BufferType, StreamType, MetricType, GRPC_STATUS_NONE } from "./abi-enums";
export { HostResult, StringResult, BytesResult, U32Result, U64Result, decodeBytes } from "./result";
export { Context, RootContext, HttpContext } from "./context";
export { registerRootContext, RootFactory } from "./root-registry";
export {
  HeaderPair, HeaderMap, serializeHeaders, deserializeHeaders, requestHeaders, requestTrailers, responseHeaders,
  responseTrailers, httpCallResponseHeaders, httpCallResponseTrailers,
} from "./headers";
export { HostBuffer, requestBody, responseBody, httpCallResponseBody, pluginConfiguration, vmConfiguration, foreignFunctionArguments } from "./buffers";
export { getProperty, getPropertyString, getPropertyInt, setProperty, setPropertyString } from "./properties";
export { log, logLevel, refreshLogLevel, logTrace, logDebug, logInfo, logWarn, logError, logCritical } from "./log";
export { httpCall, pendingHttpCalls } from "./http-call";
export { HttpCallResponse } from "./http-call-response";
export { callForeignFunction, callForeignFunctionText } from "./foreign-function";
export {
  getSharedData, setSharedData, SharedDataResult, registerSharedQueue, resolveSharedQueue, enqueueSharedQueue,
  dequeueSharedQueue, SharedCounter,
} from "./shared-data";
export { Metric, defineMetric, defineCounter, defineGauge, defineHistogram } from "./metrics";
export { currentTimeNanos, currentTimeSeconds, randomU32, randomUnit } from "./host-time";
export {
  JsonKind, JsonValue, JsonNull, JsonBool, JsonNumber, JsonString, JsonArray, JsonObject, JsonParseResult, JsonReader, parseJson, jsonQuote, stringArray, unknownKey, stringifyJson,
} from "./json";
export { ConfigObject, parseConfigObject } from "./config-object";
export {
  RateLimitDescriptor, PendingCall, shouldRateLimit, breakerAcquire, breakerRecord, breakerState, pendingForeignCalls,
  sharedCounterAdd, RATE_LIMIT_FUNCTION, BREAKER_ACQUIRE_FUNCTION, BREAKER_RECORD_FUNCTION, BREAKER_STATE_FUNCTION,
  COUNTER_ADD_FUNCTION,
} from "./weft";
export { RateLimitResult, RateLimitStatus, BreakerPermit, CounterResult, RATE_LIMIT_BINARY_TAG } from "./weft-results";
export { RateLimitCall, RateLimitAnswer } from "./rate-limit-call";
export { decodeUtf8, utf8, asciiLower } from "./memory";
export { istioMatch, matchesAny } from "./string-match";
export { StringMatcher } from "./string-matcher";
export { propertyInto, propertyPath, propertyBytesInto } from "./property-block";
export { base64Decode, base64UrlEncode } from "./base64";
export { HostBlock, headerValueInto, replaceHeaderFromBlock } from "./host-block";
export { isAsciiBytes } from "./ascii-bytes";
export { weftAbort } from "./abort";
