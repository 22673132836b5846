// fault-injection: delays and aborts a percentage of requests, as Istio's VirtualService fault injection (delay first,
// then abort). A delayed request is paused and resumed from the root context's tick. Configuration: README.md.
import {
  HeaderPair, HeadersAction, HttpContext, JsonValue, Metric, RootContext, currentTimeNanos, defineCounter,
  logError, parseConfigObject, parseJson, pluginConfiguration, randomUnit, registerRootContext, unknownKey,
} from "@weft/sdk/assembly/index";
// Only the callbacks fault-injection acts on (the abort or delay is decided on request headers, and a delayed request
// is resumed from onTick; contexts are created and deleted): a host skips a callback the plugin does not export, so no
// done or log call reaches it per request. A plugin that overrides another HttpContext/RootContext callback must export
// it here too.
export {
  proxy_abi_version_0_2_1, proxy_on_memory_allocate, malloc, proxy_on_context_create, proxy_on_vm_start,
  proxy_on_configure, proxy_on_tick, proxy_on_request_headers, proxy_on_delete,
} from "@weft/sdk/assembly/exports-headers-only";

const TICK_MS: u32 = 5;
const MAX_DELAY_MS: f64 = 600_000;

class Config {
  delayPercent: f64 = 0;
  delayMs: f64 = 0;
  abortPercent: f64 = 0;
  abortStatus: u32 = 0;
  /** gRPC status for gRPC requests; -1 when not configured. */
  grpcStatus: i32 = -1;
}

const GRPC_CODES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
  "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"];

/** Istio writes percentages as {"value": 12.5}; a bare number is accepted too. Answers -1 when invalid. */
function percentage(v: JsonValue | null): f64 {
  if (v === null) return 100;
  let n: f64 = -1;
  if (v.isNumber) n = v.asNumber();
  else {
    const o = v.asObject();
    if (o !== null && unknownKey(o, ["value"]) === null && o.has("value") && o.get("value")!.isNumber) n = o.getNumber("value");
  }
  return n >= 0 && n <= 100 ? n : -1;
}

/** "5s", "100ms", "1.5s" (protobuf Duration JSON) in milliseconds; -1 when invalid. */
function durationMs(s: string): f64 {
  let unit: f64 = 0;
  let num = "";
  if (s.endsWith("ms")) { unit = 1; num = s.substring(0, s.length - 2); }
  else if (s.endsWith("s")) { unit = 1000; num = s.substring(0, s.length - 1); }
  else return -1;
  const parsed = parseJson(num);
  if (!parsed.ok || !parsed.value!.isNumber) return -1;
  const v = parsed.value!.asNumber() * unit;
  return v >= 0 ? v : -1;
}

function parse(text: string, c: Config): string {
  const parsed = parseConfigObject(text, ["delay", "abort"]);
  if (parsed.object === null) return parsed.error;
  const o = parsed.object!;
  const delay = o.getObject("delay");
  if (o.has("delay") && delay === null) return "delay must be an object";
  if (delay !== null) {
    const u = unknownKey(delay, ["fixedDelay", "fixedDelayMs", "percentage"]);
    if (u !== null) return "delay: unknown field \"" + u! + "\"";
    let ms: f64 = -1;
    const fd = delay.getString("fixedDelay");
    if (fd !== null) ms = durationMs(fd!);
    else if (delay.has("fixedDelayMs") && delay.get("fixedDelayMs")!.isNumber) ms = delay.getNumber("fixedDelayMs");
    if (ms < 0 || ms > MAX_DELAY_MS) return "delay needs fixedDelay (\"100ms\", \"2s\") or fixedDelayMs, at most 600s";
    c.delayMs = ms;
    c.delayPercent = percentage(delay.get("percentage"));
    if (c.delayPercent < 0) return "delay.percentage must be 0-100 (a number or {\"value\": n})";
  }
  const abort = o.getObject("abort");
  if (o.has("abort") && abort === null) return "abort must be an object";
  if (abort !== null) {
    const u = unknownKey(abort, ["httpStatus", "grpcStatus", "percentage"]);
    if (u !== null) return "abort: unknown field \"" + u! + "\"";
    const status = abort.getNumber("httpStatus", 0);
    if (abort.has("httpStatus") && (status < 200 || status > 599 || status != Math.floor(status))) return "abort.httpStatus must be an HTTP status 200-599";
    c.abortStatus = <u32>status;
    if (abort.has("grpcStatus")) {
      const g = abort.getString("grpcStatus");
      const idx = g === null ? -1 : GRPC_CODES.indexOf(g!);
      if (idx < 0) return "abort.grpcStatus must be a gRPC code name such as UNAVAILABLE";
      c.grpcStatus = idx;
      if (c.abortStatus == 0) c.abortStatus = 200;
    }
    if (c.abortStatus == 0) return "abort needs httpStatus or grpcStatus";
    c.abortPercent = percentage(abort.get("percentage"));
    if (c.abortPercent < 0) return "abort.percentage must be 0-100 (a number or {\"value\": n})";
  }
  return "";
}

/** True with probability `percent` / 100, from the host's random source. */
function chance(percent: f64): bool {
  if (percent <= 0) return false;
  if (percent >= 100) return true;
  return randomUnit() * 100 < percent;
}

class Fault extends HttpContext {
  abort: bool = false;
  dueNanos: u64 = 0;
  grpc: bool = false;

  constructor(id: u32, public faultRoot: FaultRoot) {
    super(id, faultRoot);
  }

  onRequestHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    const c = this.faultRoot.config;
    const ct = this.faultRoot.config.grpcStatus >= 0 ? requestContentType() : "";
    this.grpc = ct.startsWith("application/grpc");
    this.abort = chance(c.abortPercent);
    if (chance(c.delayPercent)) {
      this.faultRoot.delays.increment(1);
      this.dueNanos = currentTimeNanos() + <u64>(c.delayMs * 1_000_000);
      this.faultRoot.hold(this);
      return HeadersAction.StopIteration;
    }
    return this.finish() ? HeadersAction.StopIteration : HeadersAction.Continue;
  }

  /** Applies the abort decision; true when the request was answered here. */
  finish(): bool {
    if (!this.abort) return false;
    const c = this.faultRoot.config;
    this.faultRoot.aborts.increment(1);
    if (this.grpc && c.grpcStatus >= 0) {
      this.sendLocalResponse(200, "", [new HeaderPair("content-type", "application/grpc")], "fault_filter_abort", c.grpcStatus);
    } else {
      this.sendLocalResponse(c.abortStatus, "fault filter abort", [new HeaderPair("content-type", "text/plain")], "fault_filter_abort");
    }
    return true;
  }

  onDelete(): void {
    this.faultRoot.release(this);
  }
}

import { requestHeaders } from "@weft/sdk/assembly/index";

function requestContentType(): string {
  const v = requestHeaders.get("content-type");
  return v === null ? "" : v!;
}

class FaultRoot extends RootContext {
  config: Config = new Config();
  held: Array<Fault> = new Array<Fault>();
  delays: Metric = new Metric(0, 0, 0);
  aborts: Metric = new Metric(0, 0, 0);

  onConfigure(configurationSize: u32): bool {
    const next = new Config();
    const err = parse(pluginConfiguration.text(), next);
    if (err.length > 0) {
      logError("fault-injection: rejected configuration: " + err);
      return false;
    }
    this.config = next;
    this.delays = defineCounter("fault_injection_delays_total");
    this.aborts = defineCounter("fault_injection_aborts_total");
    return true;
  }

  hold(f: Fault): void {
    if (this.held.length == 0) this.setTickPeriod(TICK_MS);
    this.held.push(f);
  }

  release(f: Fault): void {
    const i = this.held.indexOf(f);
    if (i < 0) return;
    this.held.splice(i, 1);
    if (this.held.length == 0) this.setTickPeriod(0);
  }

  onTick(): void {
    const now = currentTimeNanos();
    const due = new Array<Fault>();
    for (let i = 0; i < this.held.length; i++) if (this.held[i].dueNanos <= now) due.push(this.held[i]);
    for (let i = 0; i < due.length; i++) {
      const f = due[i];
      this.release(f);
      // The stream may have ended meanwhile (activate fails); then there is nothing to resume.
      if (f.activate() != 0) continue;
      if (!f.finish()) f.continueRequest();
    }
  }

  newHttpContext(id: u32): HttpContext {
    return new Fault(id, this);
  }
}

registerRootContext((id: u32): RootContext => new FaultRoot(id));
