// The plugin's object model: a RootContext per plugin (configuration, timers, queues, callouts) and an HttpContext per
// request, each with overridable callbacks. Callbacks AssemblyScript cannot express as closures (callout responses,
// foreign-function results) are methods of the context that started the call: see http-call.ts and weft.ts.
import { DataAction, HeadersAction, GRPC_STATUS_NONE, StreamType, WasmResult } from "./abi-enums";
import { HeaderPair, serializeHeaders } from "./headers";
import { proxy_close_stream, proxy_continue_stream, proxy_done, proxy_send_local_response, proxy_set_effective_context, proxy_set_tick_period_milliseconds } from "./imports";
import { utf8 } from "./memory";
import { HttpCallResponse } from "./http-call-response";
import { BreakerPermit, CounterResult, RateLimitResult } from "./weft-results";

/** The id of the context host calls currently act on (the callback's own, or the last one activated). */
let effectiveId: u32 = 0;

export function setEffectiveId(id: u32): void {
  effectiveId = id;
}

export class Context {
  constructor(public readonly id: u32) {}

  /**
   * Makes host calls act on this context. The SDK does it before delivering a callout or foreign-function result to
   * the context that started it; call it yourself only when touching another stream from a root callback.
   * BadArgument means the context no longer exists on the host.
   */
  activate(): WasmResult {
    if (effectiveId == this.id) return WasmResult.Ok;
    const st = <WasmResult>proxy_set_effective_context(this.id);
    if (st == WasmResult.Ok) effectiveId = this.id;
    return st;
  }

  /** An HTTP call this context started (see httpCall) was answered; `response.failed` on timeout or connect failure. */
  onHttpCallResponse(token: u32, response: HttpCallResponse): void {}

  /** A shouldRateLimit this context started was decided later by the shared limiter. */
  onRateLimitResult(token: u32, result: RateLimitResult): void {}

  /** A breakerAcquire this context started was decided later by the shared breaker. */
  onBreakerPermit(token: u32, permit: BreakerPermit): void {}

  /** A sharedCounterAdd this context started was answered. */
  onCounterResult(token: u32, result: CounterResult): void {}

  /** The host forgets this context after this; pending callouts to it are dropped. */
  onDelete(): void {}
}

/**
 * The per-plugin context: override onConfigure to read the configuration and newHttpContext to make request contexts.
 *
 * @example
 *   class Root extends RootContext {
 *     greeting: string = "hello";
 *     onConfigure(size: u32): bool {
 *       const parsed = parseJson(pluginConfiguration.text());
 *       if (!parsed.ok) { logError("bad configuration: " + parsed.error); return false; }
 *       const g = parsed.object().getString("greeting");
 *       if (g !== null) this.greeting = g;
 *       return true;
 *     }
 *     newHttpContext(id: u32): HttpContext { return new Greeter(id, this); }
 *   }
 *   registerRootContext((id: u32): RootContext => new Root(id));
 */
export class RootContext extends Context {
  /** Once per VM, before onConfigure; false makes the VM unusable. */
  onVmStart(vmConfigurationSize: u32): bool {
    return true;
  }

  /** The plugin configuration arrived (read it from `pluginConfiguration`); false rejects it. */
  onConfigure(configurationSize: u32): bool {
    return true;
  }

  /** Called every tick period (see setTickPeriod). */
  onTick(): void {}

  /** An item arrived on a shared queue this plugin registered. */
  onQueueReady(queueId: u32): void {}

  /** The plugin is being shut down; false defers until the plugin calls done(). */
  onDone(): bool {
    return true;
  }

  /** The context for a new request; the default passes everything through. */
  newHttpContext(contextId: u32): HttpContext {
    return new HttpContext(contextId, this);
  }

  /** Ticks every `periodMs` (0 stops them). */
  setTickPeriod(periodMs: u32): WasmResult {
    return <WasmResult>proxy_set_tick_period_milliseconds(periodMs);
  }
}

/**
 * One request. Headers, bodies and trailers are read and edited through requestHeaders, requestBody, responseHeaders,
 * ... while the matching callback runs (or while the stream is paused in it).
 *
 * @example
 *   class Greeter extends HttpContext {
 *     onRequestHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
 *       if (requestHeaders.get(":path") == "/hello") {
 *         this.sendLocalResponse(200, "hello\n", [new HeaderPair("content-type", "text/plain")]);
 *         return HeadersAction.StopIteration;
 *       }
 *       requestHeaders.replace("x-greeting", "hello");
 *       return HeadersAction.Continue;
 *     }
 *   }
 */
export class HttpContext extends Context {
  constructor(id: u32, public readonly root: RootContext) {
    super(id);
  }

  onRequestHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    return HeadersAction.Continue;
  }

  onRequestBody(bodySize: u32, endOfStream: bool): DataAction {
    return DataAction.Continue;
  }

  onRequestTrailers(trailerCount: u32): HeadersAction {
    return HeadersAction.Continue;
  }

  onResponseHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    return HeadersAction.Continue;
  }

  onResponseBody(bodySize: u32, endOfStream: bool): DataAction {
    return DataAction.Continue;
  }

  onResponseTrailers(trailerCount: u32): HeadersAction {
    return HeadersAction.Continue;
  }

  /** The stream ended; false defers onLog until the plugin calls done(). */
  onDone(): bool {
    return true;
  }

  /** After the stream: headers are still readable (access logging, metrics). */
  onLog(): void {}

  /** Resumes a request paused by StopIteration (typically from onHttpCallResponse). */
  continueRequest(): WasmResult {
    this.activate();
    return <WasmResult>proxy_continue_stream(StreamType.Request);
  }

  continueResponse(): WasmResult {
    this.activate();
    return <WasmResult>proxy_continue_stream(StreamType.Response);
  }

  /** Resets the stream. */
  closeStream(): WasmResult {
    this.activate();
    return <WasmResult>proxy_close_stream(StreamType.Request);
  }

  /** Tells the host a deferred onDone is complete. */
  done(): WasmResult {
    this.activate();
    return <WasmResult>proxy_done();
  }

  /**
   * Answers the client instead of the upstream; the stream stops here whatever the callback returns.
   * `grpcStatus` -1 means not a gRPC response.
   */
  sendLocalResponse(statusCode: u32, body: string, headers: Array<HeaderPair> = [], details: string = "", grpcStatus: i32 = GRPC_STATUS_NONE): WasmResult {
    return this.sendLocalResponseBytes(statusCode, utf8(body), headers, details, grpcStatus);
  }

  sendLocalResponseBytes(statusCode: u32, body: ArrayBuffer, headers: Array<HeaderPair> = [], details: string = "", grpcStatus: i32 = GRPC_STATUS_NONE): WasmResult {
    this.activate();
    const h = serializeHeaders(headers);
    const d = utf8(details);
    return <WasmResult>proxy_send_local_response(
      statusCode, changetype<usize>(d), d.byteLength, changetype<usize>(body), body.byteLength,
      changetype<usize>(h), h.byteLength, grpcStatus,
    );
  }
}
