// ratelimit: builds rate-limit descriptors from each request and asks weft's shared limiter (foreign function
// weft.ratelimit.should_rate_limit; the limits are host configuration). Over the limit it rejects with 429 and
// RateLimit-Policy / RateLimit / Retry-After, or delays the request up to maxDelayMs and asks again. A privileged
// bypass rule skips the limiter. Configuration: README.md.
import {
  HeaderPair, HeadersAction, HttpContext, JsonValue, Metric, RateLimitAnswer, RateLimitCall, RateLimitResult,
  RootContext, WasmResult, asciiLower, currentTimeNanos, defineCounter, getPropertyString, logError, logWarn,
  matchesAny, parseConfigObject, pluginConfiguration, registerRootContext, requestHeaders, responseHeaders, stringArray,
  unknownKey, utf8,
} from "@weft/sdk/assembly/index";
// Only the callbacks ratelimit acts on (the decision is made on request headers, or arrives later as a foreign function
// result; its headers are added on response headers, and a held request is retried from onTick; contexts are created
// and deleted): a host skips a callback the plugin does not export, so no done or log call reaches it per request. A
// plugin that overrides another HttpContext/RootContext callback must export it here too.
export {
  proxy_abi_version_0_2_1, proxy_on_memory_allocate, malloc, proxy_on_context_create, proxy_on_vm_start,
  proxy_on_configure, proxy_on_tick, proxy_on_request_headers, proxy_on_response_headers, proxy_on_foreign_function,
  proxy_on_delete,
} from "@weft/sdk/assembly/exports-headers-only";

const TICK_MS: u32 = 10;

const SRC_VALUE: u8 = 0;
const SRC_HEADER: u8 = 1;
const SRC_PROPERTY: u8 = 2;
/** source.address without its port: Envoy's remote_address. */
const SRC_REMOTE: u8 = 3;

class Entry {
  /** UTF-8 of key and arg, made once: a request encodes only the values it reads. */
  keyBytes: ArrayBuffer;
  argBytes: ArrayBuffer;
  constructor(public key: string, public source: u8, public arg: string) {
    this.keyBytes = utf8(key);
    this.argBytes = utf8(arg);
  }
}

class HeaderRule {
  constructor(public name: string, public values: Array<string>) {}
}

class Config {
  domain: string = "";
  /** The limiter request, rewritten in place for every request (binary payload, SDK's RateLimitCall). */
  call: RateLimitCall = new RateLimitCall("-");
  descriptors: Array<Array<Entry>> = new Array<Array<Entry>>();
  delay: bool = false;
  maxDelayMs: u64 = 1000;
  rejectStatus: u32 = 429;
  failClosed: bool = false;
  bypassPrincipals: Array<string> = new Array<string>();
  bypassHeaders: Array<HeaderRule> = new Array<HeaderRule>();
}

const FROM_NAMES = ["remoteAddress", "method", "path", "authority", "principal"];
const FROM_PROPERTIES = ["source.address", "request.method", "request.url_path", "request.host", "source.principal"];

let entryError = "";

/** An entry, or null with the reason in entryError. */
function entry(v: JsonValue, where: string): Entry | null {
  const o = v.asObject();
  if (o === null) { entryError = where + " must be an object"; return null; }
  const u = unknownKey(o, ["key", "value", "fromHeader", "fromProperty", "from"]);
  if (u !== null) { entryError = where + ": unknown field \"" + u! + "\""; return null; }
  const key = o.getString("key");
  if (key === null || key!.length == 0) { entryError = where + ".key must be a non-empty string"; return null; }
  let n = 0;
  let e: Entry | null = null;
  const value = o.getString("value");
  if (value !== null) { n++; e = new Entry(key!, SRC_VALUE, value!); }
  const header = o.getString("fromHeader");
  if (header !== null) { n++; e = new Entry(key!, SRC_HEADER, asciiLower(header!)); }
  const prop = o.getString("fromProperty");
  if (prop !== null) { n++; e = new Entry(key!, SRC_PROPERTY, prop!); }
  const from = o.getString("from");
  if (from !== null) {
    n++;
    const i = FROM_NAMES.indexOf(from!);
    if (i < 0) { entryError = where + ".from must be one of " + FROM_NAMES.join(", "); return null; }
    e = new Entry(key!, i == 0 ? SRC_REMOTE : SRC_PROPERTY, FROM_PROPERTIES[i]);
  }
  if (n != 1 || e === null) { entryError = where + " needs exactly one of value, fromHeader, fromProperty, from"; return null; }
  return e;
}

function parse(text: string, c: Config): string {
  const parsed = parseConfigObject(text, ["domain", "descriptors", "strategy", "maxDelayMs", "rejectStatus", "failureMode", "bypass"]);
  if (parsed.object === null) return parsed.error;
  const o = parsed.object!;
  const domain = o.getString("domain");
  if (domain === null || domain!.length == 0) return "domain must be a non-empty string";
  c.domain = domain!;
  c.call = new RateLimitCall(domain!);
  const list = o.getArray("descriptors");
  if (list === null || list.length == 0) return "descriptors must be a non-empty array of descriptors";
  for (let i = 0; i < list.length; i++) {
    const d = list.at(i).asArray();
    if (d === null || d.length == 0) return "descriptors[" + i.toString() + "] must be a non-empty array of entries";
    const entries = new Array<Entry>();
    for (let j = 0; j < d.length; j++) {
      const e = entry(d.at(j), "descriptors[" + i.toString() + "][" + j.toString() + "]");
      if (e === null) return entryError;
      entries.push(e!);
    }
    c.descriptors.push(entries);
  }
  const strategy = o.getString("strategy");
  if (strategy !== null && strategy! != "reject" && strategy! != "delay") return "strategy must be reject or delay";
  c.delay = strategy !== null && strategy! == "delay";
  const maxDelay = o.getNumber("maxDelayMs", 1000);
  if (maxDelay < 0 || maxDelay > 60000) return "maxDelayMs must be 0-60000";
  c.maxDelayMs = <u64>maxDelay;
  const status = o.getNumber("rejectStatus", 429);
  if (status < 400 || status > 599 || status != Math.floor(status)) return "rejectStatus must be 400-599";
  c.rejectStatus = <u32>status;
  const fm = o.getString("failureMode");
  if (fm !== null && fm! != "allow" && fm! != "deny") return "failureMode must be allow or deny";
  c.failClosed = fm !== null && fm! == "deny";
  const bypass = o.get("bypass");
  if (bypass !== null) {
    const b = bypass.asObject();
    if (b === null) return "bypass must be an object";
    const u = unknownKey(b, ["principals", "headers"]);
    if (u !== null) return "bypass: unknown field \"" + u! + "\"";
    if (b.has("principals")) {
      const p = stringArray(b.get("principals"));
      if (p === null) return "bypass.principals must be an array of strings";
      c.bypassPrincipals = p!;
    }
    const hs = b.get("headers");
    if (hs !== null) {
      const a = hs.asArray();
      if (a === null) return "bypass.headers must be an array";
      for (let i = 0; i < a.length; i++) {
        const h = a.at(i).asObject();
        const name: string | null = h === null ? null : h.getString("name");
        const values: Array<string> | null = h === null ? null : stringArray(h.get("values"));
        if (name === null || values === null) return "bypass.headers[" + i.toString() + "] needs name and values";
        c.bypassHeaders.push(new HeaderRule(asciiLower(name!), values!));
      }
    }
  }
  return "";
}

/** "10.0.0.1:5000" → "10.0.0.1", "[::1]:80" → "::1". */
function hostOf(address: string): string {
  if (address.startsWith("[")) {
    const end = address.indexOf("]");
    return end > 0 ? address.substring(1, end) : address;
  }
  const colon = address.lastIndexOf(":");
  return colon > 0 && address.indexOf(":") == colon ? address.substring(0, colon) : address;
}

class Limit extends HttpContext {
  /** The limiter's immediate answer, read in place (its RateLimit headers go to the response without strings). */
  answer: RateLimitAnswer;
  /** RateLimit headers of a decoded answer (deferred, or over the limit); null: take them from `answer`. */
  headers: Array<HeaderPair> | null = null;
  /** The request as sent, copied under the delay strategy once it has to be asked again (after a wait or a deferred answer). */
  payload: ArrayBuffer | null = null;
  startedNanos: u64 = 0;
  dueNanos: u64 = 0;
  pending: bool = false;

  constructor(id: u32, public rl: RateLimitRoot) {
    super(id, rl);
    this.answer = rl.takeAnswer();
  }

  bypassed(): bool {
    const c = this.rl.config;
    if (c.bypassPrincipals.length > 0) {
      const p = getPropertyString("source.principal");
      if (p.ok && p.value.length > 0) {
        const principal = p.value.startsWith("spiffe://") ? p.value.substring(9) : p.value;
        if (matchesAny(c.bypassPrincipals, principal)) return true;
      }
    }
    for (let i = 0; i < c.bypassHeaders.length; i++) {
      const v = requestHeaders.get(c.bypassHeaders[i].name);
      if (v !== null && matchesAny(c.bypassHeaders[i].values, v!)) return true;
    }
    return false;
  }

  /** Writes the request's descriptors into the config's call; Envoy's rule: a descriptor with any entry whose source is absent is not sent. */
  build(): u32 {
    const c = this.rl.config;
    const call = c.call;
    call.begin();
    for (let i = 0; i < c.descriptors.length; i++) {
      const d = c.descriptors[i];
      call.descriptor();
      let complete = true;
      for (let j = 0; j < d.length && complete; j++) {
        const e = d[j];
        if (e.source == SRC_VALUE) call.entryBytes(e.keyBytes, changetype<usize>(e.argBytes), <usize>e.argBytes.byteLength);
        else if (e.source == SRC_HEADER) complete = call.entryHeader(e.keyBytes, requestHeaders, e.argBytes);
        else {
          const r = getPropertyString(e.arg);
          if (r.ok && r.value.length > 0) call.entry(e.keyBytes, e.source == SRC_REMOTE ? hostOf(r.value) : r.value);
          else complete = false;
        }
      }
      if (!complete) call.cancelDescriptor();
    }
    return call.descriptorCount;
  }

  onRequestHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    if (this.bypassed()) {
      this.rl.bypassed.increment(1);
      return HeadersAction.Continue;
    }
    if (this.build() == 0) return HeadersAction.Continue;
    // Only the delay strategy measures how long a request has waited (a clock read is a hostcall).
    if (this.rl.config.delay) this.startedNanos = currentTimeNanos();
    return this.ask() ? HeadersAction.Continue : HeadersAction.StopIteration;
  }

  /** Asks the limiter; true when the request may go on now (false: answered locally, or waiting). */
  ask(): bool {
    const a = this.answer;
    const saved = this.payload;
    if (saved !== null) RateLimitCall.sendPayload(saved, this, a);
    else this.rl.config.call.send(this, a);
    if (a.pending) {
      this.pending = true;
      // Other requests reuse the call's memory before the answer comes: keep this one's to ask again after a delay.
      if (this.rl.config.delay) this.keepPayload();
      return false;
    }
    if (a.status != WasmResult.Ok) return this.failed("the host has no shared limiter (status " + (<i32>a.status).toString() + ")");
    if (!a.failed && !a.overLimit) {
      this.headers = null;
      this.rl.allowed.increment(1);
      return true;
    }
    return this.decide(a.result());
  }

  onRateLimitResult(token: u32, result: RateLimitResult): void {
    this.pending = false;
    this.answer.release();
    if (this.decide(result)) this.continueRequest();
  }

  failed(why: string): bool {
    this.rl.errors.increment(1);
    logWarn("ratelimit: " + why + (this.rl.config.failClosed ? "; denying" : "; allowing"));
    if (!this.rl.config.failClosed) return true;
    this.sendLocalResponse(500, "rate limit service unavailable", [new HeaderPair("content-type", "text/plain")], "rate_limiter_error");
    return false;
  }

  decide(r: RateLimitResult): bool {
    if (r.failed) return this.failed("limiter error: " + r.error);
    this.headers = r.headers;
    if (!r.overLimit) {
      this.rl.allowed.increment(1);
      return true;
    }
    const c = this.rl.config;
    if (c.delay) {
      let wait: f64 = 0;
      for (let i = 0; i < r.statuses.length; i++) if (r.statuses[i].overLimit && r.statuses[i].retryAfterMs > wait) wait = r.statuses[i].retryAfterMs;
      const now = currentTimeNanos();
      const waited = (now - this.startedNanos) / 1_000_000;
      if (wait > 0 && waited + <u64>wait <= c.maxDelayMs) {
        this.keepPayload();
        this.rl.delayed.increment(1);
        this.dueNanos = now + <u64>(wait * 1_000_000);
        this.rl.hold(this);
        return false;
      }
    }
    this.rl.limited.increment(1);
    const headers = r.headers.slice(0);
    headers.push(new HeaderPair("content-type", "text/plain"));
    headers.push(new HeaderPair("x-weft-ratelimited", "true"));
    this.sendLocalResponse(c.rejectStatus, "rate limited\n", headers, "request_rate_limited");
    return false;
  }

  /**
   * Copies the request out of the config's call, which still holds it: decide() runs right after send() or on a
   * deferred answer, and a deferred call under delay was copied when it went out.
   */
  keepPayload(): void {
    if (this.payload === null) this.payload = this.rl.config.call.payload();
  }

  /** The delay is over: ask again. */
  retry(): void {
    if (this.ask()) this.continueRequest();
  }

  onResponseHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    const h = this.headers;
    if (h === null) this.answer.replaceHeaders(responseHeaders, "retry-after");
    else {
      for (let i = 0; i < h.length; i++) {
        if (h[i].name != "retry-after") responseHeaders.replace(h[i].name, h[i].value);
      }
    }
    this.answer.release();
    return HeadersAction.Continue;
  }

  onDelete(): void {
    this.answer.release();
    this.rl.spareAnswers.push(this.answer);
    this.rl.release(this);
  }
}

class RateLimitRoot extends RootContext {
  config: Config = new Config();
  held: Array<Limit> = new Array<Limit>();
  /** Answers of deleted contexts, released, for the next ones: no allocation per request (at most one per stream alive at once). */
  spareAnswers: Array<RateLimitAnswer> = new Array<RateLimitAnswer>();
  allowed: Metric = new Metric(0, 0, 0);
  limited: Metric = new Metric(0, 0, 0);
  delayed: Metric = new Metric(0, 0, 0);
  bypassed: Metric = new Metric(0, 0, 0);
  errors: Metric = new Metric(0, 0, 0);

  onConfigure(configurationSize: u32): bool {
    const next = new Config();
    const err = parse(pluginConfiguration.text(), next);
    if (err.length > 0) {
      logError("ratelimit: rejected configuration: " + err);
      return false;
    }
    this.config = next;
    this.allowed = defineCounter("ratelimit_plugin_allowed_total");
    this.limited = defineCounter("ratelimit_plugin_limited_total");
    this.delayed = defineCounter("ratelimit_plugin_delayed_total");
    this.bypassed = defineCounter("ratelimit_plugin_bypassed_total");
    this.errors = defineCounter("ratelimit_plugin_errors_total");
    return true;
  }

  takeAnswer(): RateLimitAnswer {
    return this.spareAnswers.length > 0 ? this.spareAnswers.pop() : new RateLimitAnswer();
  }

  hold(l: Limit): void {
    if (this.held.length == 0) this.setTickPeriod(TICK_MS);
    this.held.push(l);
  }

  release(l: Limit): void {
    const i = this.held.indexOf(l);
    if (i < 0) return;
    this.held.splice(i, 1);
    if (this.held.length == 0) this.setTickPeriod(0);
  }

  onTick(): void {
    const now = currentTimeNanos();
    const due = new Array<Limit>();
    for (let i = 0; i < this.held.length; i++) if (this.held[i].dueNanos <= now) due.push(this.held[i]);
    for (let i = 0; i < due.length; i++) {
      this.release(due[i]);
      if (due[i].activate() != WasmResult.Ok) continue;
      due[i].retry();
    }
  }

  newHttpContext(id: u32): HttpContext {
    return new Limit(id, this);
  }
}

registerRootContext((id: u32): RootContext => new RateLimitRoot(id));
