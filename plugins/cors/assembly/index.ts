// cors: answers CORS preflights for allowed origins and adds Access-Control-* headers to their responses, as Envoy's
// CORS filter does (a disallowed origin gets no CORS headers and the browser blocks it). Configuration: README.md.
import {
  HeaderPair, HeadersAction, HttpContext, RootContext, StringMatcher, logError, parseConfigObject, pluginConfiguration,
  registerRootContext, requestHeaders, responseHeaders, stringArray, utf8,
} from "@weft/sdk/assembly/index";
export * from "@weft/sdk/assembly/exports-headers-only";

class Config {
  allowOrigins: Array<string> = new Array<string>();
  allowMethods: Array<string> = ["GET", "HEAD", "POST"];
  allowHeaders: Array<string> = new Array<string>();
  exposeHeaders: Array<string> = new Array<string>();
  maxAgeSeconds: i32 = -1;
  allowCredentials: bool = false;
  /** Precomputed header values. */
  methodsValue: string = "GET, HEAD, POST";
  allowHeadersValue: string = "";
  exposeValue: string = "";
  anyOrigin: bool = false;
  anyHeader: bool = false;
  /** allowOrigins compiled once; the response's constant fields as UTF-8 (nothing encoded per response). */
  origins: StringMatcher = new StringMatcher([]);
  exposeBytes: ArrayBuffer = new ArrayBuffer(0);
}

const ALLOW_ORIGIN = utf8("access-control-allow-origin");
const ALLOW_CREDENTIALS = utf8("access-control-allow-credentials");
const EXPOSE_HEADERS = utf8("access-control-expose-headers");
const VARY = utf8("vary");
const ORIGIN = utf8("Origin");
const TRUE = utf8("true");
const STAR = utf8("*");

function parse(text: string, out: Config): string {
  const parsed = parseConfigObject(text, ["allowOrigins", "allowMethods", "allowHeaders", "exposeHeaders", "maxAgeSeconds", "allowCredentials"]);
  if (parsed.object === null) return parsed.error;
  const o = parsed.object!;
  const lists = ["allowOrigins", "allowMethods", "allowHeaders", "exposeHeaders"];
  for (let i = 0; i < lists.length; i++) {
    if (!o.has(lists[i])) continue;
    const a = stringArray(o.get(lists[i]));
    if (a === null) return lists[i] + " must be an array of strings";
    if (i == 0) out.allowOrigins = a!;
    else if (i == 1) out.allowMethods = a!;
    else if (i == 2) out.allowHeaders = a!;
    else out.exposeHeaders = a!;
  }
  if (out.allowOrigins.length == 0) return "allowOrigins must list at least one origin (\"*\" for any)";
  if (o.has("maxAgeSeconds")) {
    const m = o.getNumber("maxAgeSeconds", -1);
    if (m < 0 || m > 86400 || m != Math.floor(m)) return "maxAgeSeconds must be an integer 0-86400";
    out.maxAgeSeconds = <i32>m;
  }
  if (o.has("allowCredentials")) {
    const v = o.get("allowCredentials")!;
    if (!v.isBool) return "allowCredentials must be true or false";
    out.allowCredentials = v.asBool();
  }
  out.anyOrigin = out.allowOrigins.includes("*");
  out.anyHeader = out.allowHeaders.includes("*");
  out.methodsValue = out.allowMethods.join(", ");
  out.allowHeadersValue = out.allowHeaders.join(", ");
  out.exposeValue = out.exposeHeaders.join(", ");
  out.origins = new StringMatcher(out.allowOrigins);
  out.exposeBytes = utf8(out.exposeValue);
  return "";
}

class Cors extends HttpContext {
  /** The allowed Origin of this request, "" when it is not a CORS request or the origin is not allowed. */
  origin: string = "";

  constructor(id: u32, public corsRoot: CorsRoot) {
    super(id, corsRoot);
  }

  onRequestHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    const c = this.corsRoot.config;
    const origin = requestHeaders.get("origin");
    if (origin === null || !c.origins.matches(origin!)) return HeadersAction.Continue;
    this.origin = origin!;
    // A preflight is an OPTIONS request with Access-Control-Request-Method. Asked first, that header's absence (a
    // simple request) answers without the host copying a value into the plugin.
    const requested = requestHeaders.get("access-control-request-method");
    if (requested === null) return HeadersAction.Continue;
    const method = requestHeaders.get(":method");
    if (method === null || method! != "OPTIONS") return HeadersAction.Continue;
    // A preflight: answered here, never forwarded.
    const headers = new Array<HeaderPair>();
    this.originHeaders(headers);
    if (c.allowMethods.includes(requested!)) headers.push(new HeaderPair("access-control-allow-methods", c.methodsValue));
    const asked = requestHeaders.get("access-control-request-headers");
    if (c.anyHeader && asked !== null) headers.push(new HeaderPair("access-control-allow-headers", asked!));
    else if (c.allowHeadersValue.length > 0) headers.push(new HeaderPair("access-control-allow-headers", c.allowHeadersValue));
    if (c.maxAgeSeconds >= 0) headers.push(new HeaderPair("access-control-max-age", c.maxAgeSeconds.toString()));
    this.sendLocalResponse(204, "", headers, "cors_preflight");
    return HeadersAction.StopIteration;
  }

  originHeaders(out: Array<HeaderPair>): void {
    const c = this.corsRoot.config;
    // "*" cannot be combined with credentials (Fetch standard), so the origin is echoed then.
    out.push(new HeaderPair("access-control-allow-origin", c.anyOrigin && !c.allowCredentials ? "*" : this.origin));
    if (c.allowCredentials) out.push(new HeaderPair("access-control-allow-credentials", "true"));
    out.push(new HeaderPair("vary", "Origin"));
  }

  onResponseHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    if (this.origin.length == 0) return HeadersAction.Continue;
    // originHeaders' fields, edited in place: no list of pairs built on every CORS response.
    const c = this.corsRoot.config;
    if (c.anyOrigin && !c.allowCredentials) responseHeaders.replaceRaw(ALLOW_ORIGIN, STAR);
    else responseHeaders.replace("access-control-allow-origin", this.origin);
    if (c.allowCredentials) responseHeaders.replaceRaw(ALLOW_CREDENTIALS, TRUE);
    responseHeaders.addRaw(VARY, ORIGIN);
    if (c.exposeValue.length > 0) responseHeaders.replaceRaw(EXPOSE_HEADERS, c.exposeBytes);
    return HeadersAction.Continue;
  }
}

class CorsRoot extends RootContext {
  config: Config = new Config();

  onConfigure(configurationSize: u32): bool {
    const next = new Config();
    const err = parse(pluginConfiguration.text(), next);
    if (err.length > 0) {
      logError("cors: rejected configuration: " + err);
      return false;
    }
    this.config = next;
    return true;
  }

  newHttpContext(id: u32): HttpContext {
    return new Cors(id, this);
  }
}

registerRootContext((id: u32): RootContext => new CorsRoot(id));
