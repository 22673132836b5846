// header-rewrite: removes, sets and adds request and response headers; values are literals or come from a property
// (e.g. source.principal), a request header, or the request's trace id. Configuration is described in README.md.
import {
  HeadersAction, HeaderMap, asciiLower, HttpContext, JsonValue, RootContext, getPropertyString, logError, parseConfigObject, unknownKey,
  pluginConfiguration, registerRootContext, requestHeaders, responseHeaders, utf8,
} from "@weft/sdk/assembly/index";
// Only the callbacks header-rewrite acts on (the edits are made on request and response headers; contexts are created
// and deleted): a host skips a callback the plugin does not export, so no done or log call reaches it per request. A
// plugin that overrides another HttpContext/RootContext callback must export it here too.
export {
  proxy_abi_version_0_2_1, proxy_on_memory_allocate, malloc, proxy_on_context_create, proxy_on_vm_start,
  proxy_on_configure, proxy_on_request_headers, proxy_on_response_headers, proxy_on_delete,
} from "@weft/sdk/assembly/exports-headers-only";

const MAX_RULES = 64;

/** Where a value comes from. */
const SOURCE_LITERAL: u8 = 0;
const SOURCE_PROPERTY: u8 = 1;
const SOURCE_HEADER: u8 = 2;
const SOURCE_TRACE_ID: u8 = 3;

class ValueRule {
  /** UTF-8 of the name and of a literal value, encoded once here rather than on every request. */
  nameBytes: ArrayBuffer;
  literalBytes: ArrayBuffer;

  constructor(public name: string, public source: u8, public arg: string, public fallback: string | null) {
    this.nameBytes = utf8(name);
    this.literalBytes = source == SOURCE_LITERAL ? utf8(arg) : new ArrayBuffer(0);
  }
}

class Phase {
  removes: Array<string> = new Array<string>();
  removeBytes: Array<ArrayBuffer> = new Array<ArrayBuffer>();
  sets: Array<ValueRule> = new Array<ValueRule>();
  adds: Array<ValueRule> = new Array<ValueRule>();

  get empty(): bool {
    return this.removes.length == 0 && this.sets.length == 0 && this.adds.length == 0;
  }
}

class Config {
  request: Phase = new Phase();
  response: Phase = new Phase();
  /** Request headers the response phase reads (captured while the request headers are available). */
  captured: Array<string> = new Array<string>();
  capturesTraceId: bool = false;
}

function isHeaderName(s: string): bool {
  if (s.length == 0 || s.length > 256) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // RFC 9110 token characters, lower case (a leading ':' allows pseudo-headers such as :path).
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x5f || c == 0x2e || c == 0x21 ||
      c == 0x23 || c == 0x24 || c == 0x25 || c == 0x26 || c == 0x27 || c == 0x2a || c == 0x2b || c == 0x5e || c == 0x60 ||
      c == 0x7c || c == 0x7e || (c == 0x3a && i == 0);
    if (!ok) return false;
  }
  return true;
}

class ConfigParser {
  error: string = "";

  fail(message: string): bool {
    if (this.error.length == 0) this.error = message;
    return false;
  }

  valueRule(v: JsonValue, where: string, out: Array<ValueRule>): bool {
    const o = v.asObject();
    if (o === null) return this.fail(where + " must be an object");
    const unknown = unknownKey(o, ["name", "value", "fromProperty", "fromHeader", "from", "default"]);
    if (unknown !== null) return this.fail(where + ": unknown field \"" + unknown! + "\"");
    const name = o.getString("name");
    if (name === null) return this.fail(where + ".name must be a string");
    const lname = asciiLower(name!);
    if (!isHeaderName(lname)) return this.fail(where + ".name \"" + name! + "\" is not a valid header name");
    let sources = 0;
    let source = SOURCE_LITERAL;
    let arg = "";
    if (o.has("value")) { sources++; const s = o.getString("value"); if (s === null) return this.fail(where + ".value must be a string"); arg = s!; }
    if (o.has("fromProperty")) { sources++; const s = o.getString("fromProperty"); if (s === null || s!.length == 0) return this.fail(where + ".fromProperty must be a property path"); source = SOURCE_PROPERTY; arg = s!; }
    if (o.has("fromHeader")) { sources++; const s = o.getString("fromHeader"); if (s === null || !isHeaderName(asciiLower(s!))) return this.fail(where + ".fromHeader must be a header name"); source = SOURCE_HEADER; arg = asciiLower(s!); }
    if (o.has("from")) {
      sources++;
      const s = o.getString("from");
      if (s === null || s! != "traceId") return this.fail(where + ".from must be \"traceId\"");
      source = SOURCE_TRACE_ID;
    }
    if (sources != 1) return this.fail(where + " needs exactly one of value, fromProperty, fromHeader, from");
    let fallback: string | null = null;
    if (o.has("default")) {
      const d = o.getString("default");
      if (d === null) return this.fail(where + ".default must be a string");
      fallback = d;
    }
    out.push(new ValueRule(lname, source, arg, fallback));
    return true;
  }

  phase(v: JsonValue | null, where: string, out: Phase): bool {
    if (v === null) return true;
    const o = v.asObject();
    if (o === null) return this.fail(where + " must be an object");
    const unknown = unknownKey(o, ["remove", "set", "add"]);
    if (unknown !== null) return this.fail(where + ": unknown field \"" + unknown! + "\"");
    const rm = o.get("remove");
    if (rm !== null) {
      const arr = rm.asArray();
      if (arr === null) return this.fail(where + ".remove must be an array of header names");
      for (let i = 0; i < arr.length; i++) {
        const s = arr.at(i).asString();
        if (s === null || !isHeaderName(asciiLower(s!))) return this.fail(where + ".remove[" + i.toString() + "] is not a header name");
        out.removes.push(asciiLower(s!));
        out.removeBytes.push(utf8(asciiLower(s!)));
      }
    }
    const kinds = ["set", "add"];
    for (let k = 0; k < 2; k++) {
      const list = o.get(kinds[k]);
      if (list === null) continue;
      const arr = list.asArray();
      if (arr === null) return this.fail(where + "." + kinds[k] + " must be an array");
      for (let i = 0; i < arr.length; i++) {
        if (!this.valueRule(arr.at(i), where + "." + kinds[k] + "[" + i.toString() + "]", k == 0 ? out.sets : out.adds)) return false;
      }
    }
    if (out.removes.length + out.sets.length + out.adds.length > MAX_RULES) return this.fail(where + " has more than " + MAX_RULES.toString() + " rules");
    return true;
  }

  parse(text: string): Config | null {
    const parsed = parseConfigObject(text, ["request", "response"]);
    if (parsed.object === null) { this.fail(parsed.error); return null; }
    const o = parsed.object!;
    const c = new Config();
    if (!this.phase(o.get("request"), "request", c.request) || !this.phase(o.get("response"), "response", c.response)) return null;
    const rules = c.response.sets.concat(c.response.adds);
    for (let i = 0; i < rules.length; i++) {
      if (rules[i].source == SOURCE_HEADER && !c.captured.includes(rules[i].arg)) c.captured.push(rules[i].arg);
      if (rules[i].source == SOURCE_TRACE_ID) c.capturesTraceId = true;
    }
    return c;
  }
}

/** The trace id of the request: W3C traceparent's trace-id, else B3's X-B3-TraceId; "" when neither is valid. */
function traceId(): string {
  const tp = requestHeaders.get("traceparent");
  if (tp !== null && tp!.length >= 55 && tp!.charCodeAt(2) == 0x2d && tp!.charCodeAt(35) == 0x2d) {
    const id = tp!.substring(3, 35);
    if (isHex(id) && id != "00000000000000000000000000000000") return id;
  }
  const b3 = requestHeaders.get("x-b3-traceid");
  if (b3 !== null && (b3!.length == 16 || b3!.length == 32) && isHex(b3!)) return asciiLower(b3!);
  return "";
}

function isHex(s: string): bool {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) | 0x20;
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false;
  }
  return true;
}

/** Shared by every request that captures nothing. */
const NOTHING_CAPTURED = new Array<string>(0);

class Rewrite extends HttpContext {
  captured: Array<string> = NOTHING_CAPTURED;
  trace: string = "";

  constructor(id: u32, root: RootContext, public config: Config) {
    super(id, root);
  }

  resolve(rule: ValueRule, isResponse: bool): string | null {
    let v: string | null = null;
    if (rule.source == SOURCE_LITERAL) return rule.arg;
    if (rule.source == SOURCE_PROPERTY) {
      const r = getPropertyString(rule.arg);
      if (r.ok) v = r.value;
    } else if (rule.source == SOURCE_HEADER) {
      if (isResponse) {
        const i = this.config.captured.indexOf(rule.arg);
        const c = i >= 0 && i < this.captured.length ? this.captured[i] : "";
        if (c.length > 0) v = c;
      } else v = requestHeaders.get(rule.arg);
    } else {
      const t = isResponse ? this.trace : traceId();
      if (t.length > 0) v = t;
    }
    return v === null ? rule.fallback : v;
  }

  apply(phase: Phase, map: HeaderMap, isResponse: bool): void {
    for (let i = 0; i < phase.removeBytes.length; i++) map.removeRaw(unchecked(phase.removeBytes[i]));
    for (let i = 0; i < phase.sets.length; i++) {
      const rule = unchecked(phase.sets[i]);
      if (rule.source == SOURCE_LITERAL) map.replaceRaw(rule.nameBytes, rule.literalBytes);
      else {
        const v = this.resolve(rule, isResponse);
        if (v !== null) map.replace(rule.name, v!);
      }
    }
    for (let i = 0; i < phase.adds.length; i++) {
      const rule = unchecked(phase.adds[i]);
      if (rule.source == SOURCE_LITERAL) map.addRaw(rule.nameBytes, rule.literalBytes);
      else {
        const v = this.resolve(rule, isResponse);
        if (v !== null) map.add(rule.name, v!);
      }
    }
  }

  onRequestHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    const c = this.config;
    if (c.captured.length > 0) {
      // Only configurations that copy request headers into the response keep per-request state.
      const captured = new Array<string>(c.captured.length);
      for (let i = 0; i < c.captured.length; i++) {
        const v = requestHeaders.get(c.captured[i]);
        captured[i] = v === null ? "" : v!;
      }
      this.captured = captured;
    }
    if (c.capturesTraceId) this.trace = traceId();
    if (!c.request.empty) this.apply(c.request, requestHeaders, false);
    return HeadersAction.Continue;
  }

  onResponseHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    if (!this.config.response.empty) this.apply(this.config.response, responseHeaders, true);
    return HeadersAction.Continue;
  }
}

class HeaderRewriteRoot extends RootContext {
  config: Config = new Config();

  onConfigure(configurationSize: u32): bool {
    const p = new ConfigParser();
    const next = p.parse(pluginConfiguration.text());
    if (next === null) {
      logError("header-rewrite: rejected configuration: " + p.error);
      return false;
    }
    // Swapped only once valid: a host that reconfigures in place keeps the previous rules on a bad update.
    this.config = next!;
    return true;
  }

  newHttpContext(id: u32): HttpContext {
    return new Rewrite(id, this, this.config);
  }
}

registerRootContext((id: u32): RootContext => new HeaderRewriteRoot(id));
