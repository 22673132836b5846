// cors: answers CORS preflights for allowed origins and adds Access-Control-* headers to their responses, as Envoy's
// CORS filter does (a disallowed origin gets no CORS headers and the browser blocks it). Configuration: README.md.
import {
  HeaderPair, HeadersAction, HostBlock, HttpContext, RootContext, StringMatcher, headerValueInto, isAsciiBytes, logError,
  parseConfigObject, pluginConfiguration, registerRootContext, replaceHeaderFromBlock, requestHeaders, responseHeaders,
  stringArray, utf8,
} from "@weft/sdk/assembly/index";
import { ContextPool } from "@weft/sdk/assembly/context-pool";
// Only the callbacks cors acts on (request and response headers; contexts are created and deleted, and a delete gives a
// held Origin back): a host skips a callback the plugin does not export, so no done or log call reaches it per request.
// A plugin that overrides another HttpContext/RootContext callback must export it here too.
export {
  proxy_abi_version_0_2_1, proxy_on_context_create, proxy_on_vm_start, proxy_on_configure, proxy_on_request_headers,
  proxy_on_response_headers, proxy_on_delete,
} from "@weft/sdk/assembly/exports-headers-only";
// The Origin is read into a small block held until the response: recycled, not reallocated.
export { proxy_on_memory_allocate, malloc } from "@weft/sdk/assembly/small-blocks";
import { recycleBlock } from "@weft/sdk/assembly/small-blocks";

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
const ORIGIN_NAME = utf8("origin");
const REQUEST_METHOD = utf8("access-control-request-method");
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
  /**
   * The allowed, non-empty Origin of this request as the host wrote it (ASCII), held until the response echoes it;
   * null when there is nothing to echo (not a CORS request, not allowed, "*" answered, or held as `origin`).
   */
  originBytes: HostBlock | null = null;
  /** An allowed origin that is not ASCII, decoded as get() returns it ("" otherwise). */
  origin: string = "";
  /** Whether the response gets the CORS headers: the Origin was allowed and is not empty. */
  decorate: bool = false;

  constructor(id: u32, public corsRoot: CorsRoot) {
    super(id, corsRoot);
  }

  /** A recycled context starts its new stream as a new one would. */
  reset(): void {
    this.originBytes = null;
    this.origin = "";
    this.decorate = false;
  }

  onRequestHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    const root = this.corsRoot;
    const c = root.config;
    const b = root.takeBlock();
    // The Origin is matched as the bytes the host wrote when they are ASCII (the same answer as matching their
    // decoding), so a simple CORS request decodes and re-encodes nothing.
    if (!headerValueInto(requestHeaders, ORIGIN_NAME, b)) return this.drop(b);
    const ascii = isAsciiBytes(b.ptr, b.len);
    let text: string | null = null;
    if (!ascii) text = b.text();
    if (!(ascii ? c.origins.matchesAscii(b.ptr, 0, <i32>b.len) : c.origins.matches(text!))) return this.drop(b);
    // A preflight is an OPTIONS request with Access-Control-Request-Method. Asked first, that header's absence (a
    // simple request) answers without the host copying a value into the plugin.
    const acrm = root.takeBlock();
    const requested: string | null = headerValueInto(requestHeaders, REQUEST_METHOD, acrm) ? acrm.text() : null;
    root.giveBack(acrm);
    const method: string | null = requested === null ? null : requestHeaders.get(":method");
    if (method === null || method! != "OPTIONS") {
      this.decorate = b.len > 0;
      if (!this.decorate || (c.anyOrigin && !c.allowCredentials)) return this.drop(b);
      if (ascii) this.originBytes = b;
      else {
        this.origin = text!;
        root.giveBack(b);
      }
      return HeadersAction.Continue;
    }
    // A preflight: answered here, never forwarded.
    this.origin = ascii ? b.text() : text!;
    root.giveBack(b);
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

  /** Gives `b` back to the root's pool; the request passes through. */
  drop(b: HostBlock): HeadersAction {
    this.corsRoot.giveBack(b);
    return HeadersAction.Continue;
  }

  originHeaders(out: Array<HeaderPair>): void {
    const c = this.corsRoot.config;
    // "*" cannot be combined with credentials (Fetch standard), so the origin is echoed then.
    out.push(new HeaderPair("access-control-allow-origin", c.anyOrigin && !c.allowCredentials ? "*" : this.origin));
    if (c.allowCredentials) out.push(new HeaderPair("access-control-allow-credentials", "true"));
    out.push(new HeaderPair("vary", "Origin"));
  }

  onResponseHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    if (!this.decorate) return HeadersAction.Continue;
    // originHeaders' fields, edited in place: no list of pairs built on every CORS response.
    const c = this.corsRoot.config;
    const held = this.originBytes;
    if (c.anyOrigin && !c.allowCredentials) responseHeaders.replaceRaw(ALLOW_ORIGIN, STAR);
    else if (held !== null) replaceHeaderFromBlock(responseHeaders, ALLOW_ORIGIN, held);
    else responseHeaders.replaceRaw(ALLOW_ORIGIN, utf8(this.origin));
    if (c.allowCredentials) responseHeaders.replaceRaw(ALLOW_CREDENTIALS, TRUE);
    responseHeaders.addRaw(VARY, ORIGIN);
    if (c.exposeValue.length > 0) responseHeaders.replaceRaw(EXPOSE_HEADERS, c.exposeBytes);
    this.release();
    return HeadersAction.Continue;
  }

  /** The stream may end without a response (a reset, another plugin's local reply): the held Origin goes back then. */
  onDelete(): void {
    this.release();
    this.corsRoot.contexts.give(this);
  }

  private release(): void {
    const held = this.originBytes;
    if (held === null) return;
    this.originBytes = null;
    this.corsRoot.giveBack(held);
  }
}

class CorsRoot extends RootContext {
  config: Config = new Config();
  /** Deleted request contexts, reused for new streams: a request allocates no context object. */
  contexts: ContextPool<Cors> = new ContextPool<Cors>();
  /** Emptied HostBlocks: a held Origin lives in one from its request to its response, so blocks are reused, never made per request. */
  private blocks: Array<HostBlock> = new Array<HostBlock>();

  takeBlock(): HostBlock {
    return this.blocks.length > 0 ? this.blocks.pop() : new HostBlock();
  }

  giveBack(b: HostBlock): void {
    recycleBlock(b);
    this.blocks.push(b);
  }

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
    const c = this.contexts.take(id);
    if (c === null) return new Cors(id, this);
    c.reset();
    return c;
  }
}

registerRootContext((id: u32): RootContext => new CorsRoot(id));
