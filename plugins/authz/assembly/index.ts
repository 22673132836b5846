// authz: L7 authorization with Istio AuthorizationPolicy semantics — any matching DENY policy denies; otherwise, when
// ALLOW policies exist, one must match; with none, the request is allowed. Configuration is described in README.md.
import {
  HeaderPair, HeadersAction, HttpContext, JsonObject, JsonValue, Metric, RootContext, StringMatcher, asciiLower,
  defineCounter, headerValueInto, logError, logDebug, parseConfigObject, pluginConfiguration, propertyBytesInto,
  propertyPath, registerRootContext, requestHeaders, stringArray, unknownKey, utf8,
} from "@weft/sdk/assembly/index";
import { ContextPool } from "@weft/sdk/assembly/context-pool";
import { RequestValue } from "./request-value";
// Only the callbacks authz acts on (the decision is made on request headers; contexts are created and deleted): a host
// skips a callback the plugin does not export, so no response-headers, done or log call reaches it per request. A
// plugin that overrides another HttpContext/RootContext callback must export it here too.
export {
  proxy_abi_version_0_2_1, proxy_on_context_create, proxy_on_vm_start, proxy_on_configure, proxy_on_request_headers,
  proxy_on_delete,
} from "@weft/sdk/assembly/exports-headers-only";
// Request attributes are read into blocks released before the callback returns: recycled, not reallocated.
export { proxy_on_memory_allocate, malloc } from "@weft/sdk/assembly/sized-blocks";

/**
 * A field pair such as principals/notPrincipals: matches when `values` (if set) matches and `notValues` does not. The
 * patterns are compiled once, at configure time.
 */
class Match {
  values: StringMatcher | null = null;
  notValues: StringMatcher | null = null;

  test(value: string | null): bool {
    return value === null ? this.testAbsent() : this.testRange(value!, 0, value!.length);
  }

  /** test(value.substring(start, end)) without the substring. */
  testRange(value: string, start: i32, end: i32): bool {
    const values = this.values;
    if (values !== null && !values.matchesRange(value, start, end)) return false;
    const notValues = this.notValues;
    return notValues === null || !notValues.matchesRange(value, start, end);
  }

  /** testRange over a value read in place (see RequestValue). */
  testValue(value: RequestValue, start: i32, end: i32): bool {
    const values = this.values;
    if (values !== null && !value.matches(values, start, end)) return false;
    const notValues = this.notValues;
    return notValues === null || !value.matches(notValues, start, end);
  }

  /** test(null): an absent attribute matches no `values` list and is excluded by no `notValues` list. */
  testAbsent(): bool {
    return this.values === null;
  }

  get set(): bool {
    return this.values !== null || this.notValues !== null;
  }
}

class Source {
  principals: Match = new Match();
  namespaces: Match = new Match();
}

class Operation {
  methods: Match = new Match();
  paths: Match = new Match();
  hosts: Match = new Match();
}

class Condition {
  constructor(public key: string, public header: string, public match: Match) {}
}

class Rule {
  from: Array<Source> | null = null;
  to: Array<Operation> | null = null;
  when: Array<Condition> = new Array<Condition>();
}

class Policy {
  constructor(public name: string, public deny: bool, public rules: Array<Rule>) {}
}

const PATH = utf8(":path");
const METHOD = utf8(":method");
const SOURCE_PRINCIPAL = propertyPath("source.principal");

/**
 * What a request looks like to the rules: each attribute is read from the host the first time a rule needs it. One
 * instance serves every request (reset first, released when the decision is made): rules match the values in place,
 * as ranges of what the host wrote (the path before its query, the principal after `spiffe://`, its namespace), so a
 * request decodes no string unless a `when` condition or the deny log asks for one.
 */
class Attributes {
  private pathV: RequestValue = new RequestValue();
  private pathRead: bool = false;
  private pathEnd: i32 = 0;
  private methodV: RequestValue = new RequestValue();
  private methodRead: bool = false;
  private h: string | null = null;
  private peer: RequestValue = new RequestValue();
  private peerRead: bool = false;
  /** The principal is peer[prStart:] (-1: none), its namespace peer[nsStart:nsEnd] (-1: none). */
  private prStart: i32 = -1;
  private nsStart: i32 = -1;
  private nsEnd: i32 = -1;

  reset(): void {
    this.release();
    this.pathRead = false;
    this.methodRead = false;
    this.h = null;
    this.peerRead = false;
    this.prStart = -1;
    this.nsStart = -1;
  }

  /** Frees what the host wrote; the decision is made. */
  release(): void {
    this.pathV.release();
    this.methodV.release();
    this.peer.release();
  }

  /** The :path as the host gave it, query included (absent reads as ""); the path proper ends at pathEnd. */
  private readPath(): RequestValue {
    const v = this.pathV;
    if (!this.pathRead) {
      this.pathRead = true;
      v.took(headerValueInto(requestHeaders, PATH, v.block));
      const q = v.indexOfChar(0x3f, 0); // '?'
      this.pathEnd = q < 0 ? v.length : q;
    }
    return v;
  }

  private readMethod(): RequestValue {
    const v = this.methodV;
    if (!this.methodRead) {
      this.methodRead = true;
      v.took(headerValueInto(requestHeaders, METHOD, v.block));
    }
    return v;
  }

  get method(): string {
    return this.readMethod().str();
  }

  get path(): string {
    const v = this.readPath();
    const raw = v.str();
    return this.pathEnd == raw.length ? raw : raw.substring(0, this.pathEnd);
  }

  get host(): string {
    let v = this.h;
    if (v === null) {
      const h = requestHeaders.get(":authority");
      v = h === null ? "" : asciiLower(h!);
      this.h = v;
    }
    return v!;
  }

  matchMethod(m: Match): bool {
    const v = this.readMethod();
    return m.testValue(v, 0, v.length);
  }

  matchPath(m: Match): bool {
    const v = this.readPath();
    return m.testValue(v, 0, this.pathEnd);
  }

  get principal(): string | null {
    this.readPeer();
    return this.prStart < 0 ? null : this.peer.str().substring(this.prStart);
  }

  get namespace(): string | null {
    this.readPeer();
    return this.nsStart < 0 ? null : this.peer.str().substring(this.nsStart, this.nsEnd);
  }

  matchPrincipal(m: Match): bool {
    this.readPeer();
    return this.prStart < 0 ? m.testAbsent() : m.testValue(this.peer, this.prStart, this.peer.length);
  }

  matchNamespace(m: Match): bool {
    this.readPeer();
    return this.nsStart < 0 ? m.testAbsent() : m.testValue(this.peer, this.nsStart, this.nsEnd);
  }

  private readPeer(): void {
    if (this.peerRead) return;
    this.peerRead = true;
    const peer = this.peer;
    peer.took(propertyBytesInto(SOURCE_PRINCIPAL, peer.block));
    if (!peer.present || peer.length == 0) return;
    // Istio principals are written without the spiffe:// scheme; the namespace is the /ns/ part of td/ns/NS/sa/SA.
    this.prStart = peer.startsWith("spiffe://") ? 9 : 0;
    const at = peer.indexOf("/ns/", this.prStart);
    if (at < 0) return;
    this.nsStart = at + 4;
    const end = peer.indexOfChar(0x2f, this.nsStart); // '/'
    this.nsEnd = end < 0 ? peer.length : end;
  }
}

class Config {
  policies: Array<Policy> = new Array<Policy>();
  hasAllow: bool = false;
  denyStatus: u32 = 403;
  denyBody: string = "RBAC: access denied";
  dryRun: bool = false;
}

class Parser {
  error: string = "";

  fail(message: string): bool {
    if (this.error.length == 0) this.error = message;
    return false;
  }

  pair(o: JsonObject, key: string, notKey: string, where: string, out: Match, lowerCase: bool): bool {
    if (o.has(key)) {
      const a = stringArray(o.get(key));
      if (a === null) return this.fail(where + "." + key + " must be an array of strings");
      out.values = new StringMatcher(lowerCase ? lowerAll(a!) : a!);
    }
    if (o.has(notKey)) {
      const a = stringArray(o.get(notKey));
      if (a === null) return this.fail(where + "." + notKey + " must be an array of strings");
      out.notValues = new StringMatcher(lowerCase ? lowerAll(a!) : a!);
    }
    return true;
  }

  source(v: JsonValue, where: string): Source | null {
    const wrapper = v.asObject();
    if (wrapper === null || unknownKey(wrapper, ["source"]) !== null || wrapper.getObject("source") === null) { this.fail(where + " must be {\"source\": {...}}"); return null; }
    const o = wrapper.getObject("source")!;
    const unknown = unknownKey(o, ["principals", "notPrincipals", "namespaces", "notNamespaces"]);
    if (unknown !== null) { this.fail(where + ".source: unsupported field \"" + unknown! + "\""); return null; }
    const s = new Source();
    if (!this.pair(o, "principals", "notPrincipals", where + ".source", s.principals, false)) return null;
    if (!this.pair(o, "namespaces", "notNamespaces", where + ".source", s.namespaces, false)) return null;
    return s;
  }

  operation(v: JsonValue, where: string): Operation | null {
    const wrapper = v.asObject();
    if (wrapper === null || unknownKey(wrapper, ["operation"]) !== null || wrapper.getObject("operation") === null) { this.fail(where + " must be {\"operation\": {...}}"); return null; }
    const o = wrapper.getObject("operation")!;
    const unknown = unknownKey(o, ["methods", "notMethods", "paths", "notPaths", "hosts", "notHosts"]);
    if (unknown !== null) { this.fail(where + ".operation: unsupported field \"" + unknown! + "\""); return null; }
    const op = new Operation();
    if (!this.pair(o, "methods", "notMethods", where + ".operation", op.methods, false)) return null;
    if (!this.pair(o, "paths", "notPaths", where + ".operation", op.paths, false)) return null;
    if (!this.pair(o, "hosts", "notHosts", where + ".operation", op.hosts, true)) return null;
    return op;
  }

  condition(v: JsonValue, where: string): Condition | null {
    const o = v.asObject();
    if (o === null) { this.fail(where + " must be an object"); return null; }
    const unknown = unknownKey(o, ["key", "values", "notValues"]);
    if (unknown !== null) { this.fail(where + ": unsupported field \"" + unknown! + "\""); return null; }
    const key = o.getString("key");
    if (key === null) { this.fail(where + ".key must be a string"); return null; }
    let header = "";
    if (key!.startsWith("request.headers[") && key!.endsWith("]") && key!.length > 17) header = asciiLower(key!.substring(16, key!.length - 1));
    else if (key! != "source.principal" && key! != "source.namespace" && key! != "request.method" && key! != "request.path" && key! != "request.host") {
      this.fail(where + ".key \"" + key! + "\" is not supported (request.headers[NAME], source.principal, source.namespace, request.method, request.path, request.host)");
      return null;
    }
    const m = new Match();
    if (!this.pair(o, "values", "notValues", where, m, false)) return null;
    if (!m.set) { this.fail(where + " needs values or notValues"); return null; }
    return new Condition(key!, header, m);
  }

  rule(v: JsonValue, where: string): Rule | null {
    const o = v.asObject();
    if (o === null) { this.fail(where + " must be an object"); return null; }
    const unknown = unknownKey(o, ["from", "to", "when"]);
    if (unknown !== null) { this.fail(where + ": unsupported field \"" + unknown! + "\""); return null; }
    const r = new Rule();
    const from = o.get("from");
    if (from !== null) {
      const a = from.asArray();
      if (a === null) { this.fail(where + ".from must be an array"); return null; }
      const list = new Array<Source>();
      for (let i = 0; i < a.length; i++) {
        const s = this.source(a.at(i), where + ".from[" + i.toString() + "]");
        if (s === null) return null;
        list.push(s!);
      }
      r.from = list;
    }
    const to = o.get("to");
    if (to !== null) {
      const a = to.asArray();
      if (a === null) { this.fail(where + ".to must be an array"); return null; }
      const list = new Array<Operation>();
      for (let i = 0; i < a.length; i++) {
        const op = this.operation(a.at(i), where + ".to[" + i.toString() + "]");
        if (op === null) return null;
        list.push(op!);
      }
      r.to = list;
    }
    const when = o.get("when");
    if (when !== null) {
      const a = when.asArray();
      if (a === null) { this.fail(where + ".when must be an array"); return null; }
      for (let i = 0; i < a.length; i++) {
        const c = this.condition(a.at(i), where + ".when[" + i.toString() + "]");
        if (c === null) return null;
        r.when.push(c!);
      }
    }
    return r;
  }

  parse(text: string): Config | null {
    const parsed = parseConfigObject(text, ["policies", "denyStatus", "denyBody", "dryRun"]);
    if (parsed.object === null) { this.fail(parsed.error); return null; }
    const o = parsed.object!;
    const c = new Config();
    const status = o.getNumber("denyStatus", 403);
    if (status < 200 || status > 599 || status != Math.floor(status)) { this.fail("denyStatus must be an HTTP status 200-599"); return null; }
    c.denyStatus = <u32>status;
    if (o.has("denyBody")) {
      const b = o.getString("denyBody");
      if (b === null) { this.fail("denyBody must be a string"); return null; }
      c.denyBody = b!;
    }
    c.dryRun = o.getBool("dryRun");
    const list = o.get("policies");
    if (list === null) return c;
    const a = list.asArray();
    if (a === null) { this.fail("policies must be an array"); return null; }
    for (let i = 0; i < a.length; i++) {
      const where = "policies[" + i.toString() + "]";
      const p = a.at(i).asObject();
      if (p === null) { this.fail(where + " must be an object"); return null; }
      const u = unknownKey(p, ["name", "action", "rules"]);
      if (u !== null) { this.fail(where + ": unknown field \"" + u! + "\""); return null; }
      const action = p.getString("action");
      const act = action === null ? "ALLOW" : action!;
      if (act != "ALLOW" && act != "DENY") { this.fail(where + ".action must be ALLOW or DENY"); return null; }
      const name = p.getString("name");
      const rules = new Array<Rule>();
      const rv = p.get("rules");
      if (rv !== null) {
        const ra = rv.asArray();
        if (ra === null) { this.fail(where + ".rules must be an array"); return null; }
        for (let j = 0; j < ra.length; j++) {
          const r = this.rule(ra.at(j), where + ".rules[" + j.toString() + "]");
          if (r === null) return null;
          rules.push(r!);
        }
      }
      if (act == "ALLOW") c.hasAllow = true;
      c.policies.push(new Policy(name === null ? where : name!, act == "DENY", rules));
    }
    return c;
  }
}

function lowerAll(a: Array<string>): Array<string> {
  const out = new Array<string>(a.length);
  for (let i = 0; i < a.length; i++) out[i] = asciiLower(a[i]);
  return out;
}

function condValue(c: Condition, a: Attributes): string | null {
  if (c.header.length > 0) return requestHeaders.get(c.header);
  if (c.key == "source.principal") return a.principal;
  if (c.key == "source.namespace") return a.namespace;
  if (c.key == "request.method") return a.method;
  if (c.key == "request.path") return a.path;
  return a.host;
}

function ruleMatches(r: Rule, a: Attributes): bool {
  const from = r.from;
  if (from !== null) {
    let any = false;
    // An unset field matches without reading its attribute from the host.
    for (let i = 0; i < from.length && !any; i++) {
      const f = from[i];
      any = (!f.principals.set || a.matchPrincipal(f.principals)) && (!f.namespaces.set || a.matchNamespace(f.namespaces));
    }
    if (!any) return false;
  }
  const to = r.to;
  if (to !== null) {
    let any = false;
    for (let i = 0; i < to.length && !any; i++) {
      const op = to[i];
      any = (!op.methods.set || a.matchMethod(op.methods)) && (!op.paths.set || a.matchPath(op.paths)) && (!op.hosts.set || op.hosts.test(a.host));
    }
    if (!any) return false;
  }
  for (let i = 0; i < r.when.length; i++) if (!r.when[i].match.test(condValue(r.when[i], a))) return false;
  return true;
}

/** A policy matches when any of its rules does; a policy with no rules matches nothing (Istio's allow-nothing). */
function policyMatches(p: Policy, a: Attributes): bool {
  for (let i = 0; i < p.rules.length; i++) if (ruleMatches(p.rules[i], a)) return true;
  return false;
}

class Authz extends HttpContext {
  constructor(id: u32, public authzRoot: AuthzRoot) {
    super(id, authzRoot);
  }

  /** Nothing of a request outlives onRequestHeaders: the context serves the next stream. */
  onDelete(): void {
    this.authzRoot.contexts.give(this);
  }

  onRequestHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    const root = this.authzRoot;
    const c = root.config;
    const a = root.attributes;
    a.reset();
    let denied = false;
    let reason = "";
    for (let i = 0; i < c.policies.length && !denied; i++) {
      if (c.policies[i].deny && policyMatches(c.policies[i], a)) { denied = true; reason = "denied by " + c.policies[i].name; }
    }
    if (!denied && c.hasAllow) {
      let allowed = false;
      for (let i = 0; i < c.policies.length && !allowed; i++) if (!c.policies[i].deny && policyMatches(c.policies[i], a)) allowed = true;
      if (!allowed) { denied = true; reason = "no ALLOW policy matched"; }
    }
    if (!denied) {
      a.release();
      root.allowed.increment(1);
      return HeadersAction.Continue;
    }
    root.denied.increment(1);
    logDebug("authz: " + reason + " for " + a.method + " " + a.path);
    a.release();
    if (c.dryRun) {
      requestHeaders.replace("x-weft-authz-dry-run", "denied");
      return HeadersAction.Continue;
    }
    this.sendLocalResponse(c.denyStatus, c.denyBody, [new HeaderPair("content-type", "text/plain")], "authz_denied");
    return HeadersAction.StopIteration;
  }
}

class AuthzRoot extends RootContext {
  config: Config = new Config();
  /** The request being decided: callbacks never overlap, so one instance serves them all. */
  attributes: Attributes = new Attributes();
  /** Deleted request contexts, reused for new streams: a request allocates no context object. */
  contexts: ContextPool<Authz> = new ContextPool<Authz>();
  allowed: Metric = new Metric(0, 0, 0);
  denied: Metric = new Metric(0, 0, 0);

  onConfigure(configurationSize: u32): bool {
    const p = new Parser();
    const next = p.parse(pluginConfiguration.text());
    if (next === null) {
      logError("authz: rejected configuration: " + p.error);
      return false;
    }
    this.config = next!;
    this.allowed = defineCounter("authz_allowed_total");
    this.denied = defineCounter("authz_denied_total");
    return true;
  }

  newHttpContext(id: u32): HttpContext {
    const c = this.contexts.take(id);
    return c === null ? new Authz(id, this) : c;
  }
}

registerRootContext((id: u32): RootContext => new AuthzRoot(id));
