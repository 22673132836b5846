// jwt-authn: validates JWTs (RS256/ES256, also RS384/RS512/PS256/ES384) against JWKS given inline or fetched by HTTP
// call (cached), checks issuer, audiences, exp and nbf, copies claims to headers, and answers 401 with
// WWW-Authenticate on failure. Signatures are verified by the host (`weft.crypto.verify`). Configuration: README.md.
import {
  HeaderPair, HeadersAction, HttpCallResponse, HttpContext, JsonObject, JsonReader, JsonValue, Metric, RootContext, WasmResult,
  asciiLower, base64Decode, callForeignFunctionText, currentTimeNanos, currentTimeSeconds, decodeBytes, defineCounter,
  httpCall, jsonQuote, logError, logWarn, parseJson, pluginConfiguration, registerRootContext, requestHeaders,
  stringArray, stringifyJson, unknownKey,
} from "@weft/sdk/assembly/index";
export * from "@weft/sdk/assembly/exports-headers-only";

const VERIFY_FUNCTION = "weft.crypto.verify";
const CLOCK_SKEW_SECONDS: i64 = 60;
const ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"];

class Key {
  /** The verify payload up to "data" for `headAlg`: the same on every request with this key. */
  headAlg: string = "";
  head: string = "";

  constructor(public kid: string, public kty: string, public json: string) {}

  payloadHead(alg: string): string {
    if (alg != this.headAlg) {
      this.headAlg = alg;
      this.head = "{\"alg\":" + jsonQuote(alg) + ",\"jwk\":" + this.json + ",\"data\":";
    }
    return this.head;
  }
}

class HeaderSource {
  constructor(public name: string, public prefix: string) {}
}

class ClaimHeader {
  constructor(public claim: string, public header: string) {}
}

class Remote {
  cluster: string = "";
  authority: string = "";
  path: string = "";
  timeoutMs: u32 = 5000;
  cacheSeconds: u64 = 300;
  /** After a failed fetch, requests fail fast (or use the previous keys) for this long before another fetch. */
  retryMs: u64 = 1000;
}

class Provider {
  name: string = "";
  issuer: string = "";
  audiences: Array<string> | null = null;
  keys: Array<Key> = new Array<Key>();
  remote: Remote | null = null;
  fromHeaders: Array<HeaderSource> = [new HeaderSource("authorization", "Bearer ")];
  fromParams: Array<string> = new Array<string>();
  forward: bool = false;
  payloadHeader: string = "";
  claimHeaders: Array<ClaimHeader> = new Array<ClaimHeader>();
  // Remote JWKS state (per VM).
  fetchedAtNanos: u64 = 0;
  /** No new fetch before this (after a failure), so a failing JWKS endpoint is not hammered by every request. */
  retryAtNanos: u64 = 0;
  fetching: bool = false;
  waiters: Array<Jwt> = new Array<Jwt>();

  fresh(now: u64): bool {
    const r = this.remote;
    if (r === null) return true;
    return this.fetchedAtNanos != 0 && now - this.fetchedAtNanos < r.cacheSeconds * 1_000_000_000;
  }
}

class Config {
  providers: Array<Provider> = new Array<Provider>();
  allowMissing: bool = false;
}

/** Keys of a JWKS document ({"keys": [...]}); RSA and EC keys are kept, others skipped. Null when not a JWKS. */
function parseJwks(v: JsonValue): Array<Key> | null {
  const o = v.asObject();
  if (o === null) return null;
  const keys = o.getArray("keys");
  if (keys === null) return null;
  const out = new Array<Key>();
  for (let i = 0; i < keys.length; i++) {
    const k = keys.at(i).asObject();
    if (k === null) continue;
    const kty = k.getString("kty");
    if (kty === null || (kty! != "RSA" && kty! != "EC")) continue;
    const kid = k.getString("kid");
    out.push(new Key(kid === null ? "" : kid!, kty!, stringifyJson(k)));
  }
  return out;
}

class Parser {
  error: string = "";

  fail(message: string): Provider | null {
    if (this.error.length == 0) this.error = message;
    return null;
  }

  provider(v: JsonValue, where: string): Provider | null {
    const o = v.asObject();
    if (o === null) return this.fail(where + " must be an object");
    const unknown = unknownKey(o, ["name", "issuer", "audiences", "jwks", "remoteJwks", "fromHeaders", "fromParams", "forward", "forwardPayloadHeader", "claimToHeaders"]);
    if (unknown !== null) return this.fail(where + ": unknown field \"" + unknown! + "\"");
    const p = new Provider();
    const name = o.getString("name");
    p.name = name === null ? where : name!;
    const issuer = o.getString("issuer");
    if (issuer === null || issuer!.length == 0) return this.fail(where + ".issuer must be a non-empty string");
    p.issuer = issuer!;
    if (o.has("audiences")) {
      const a = stringArray(o.get("audiences"));
      if (a === null) return this.fail(where + ".audiences must be an array of strings");
      p.audiences = a;
    }
    const jwks = o.get("jwks");
    if (jwks !== null) {
      let doc: JsonValue | null = jwks;
      const text = jwks.asString();
      if (text !== null) {
        const parsed = parseJson(text!);
        if (!parsed.ok) return this.fail(where + ".jwks is not JSON: " + parsed.error);
        doc = parsed.value;
      }
      const keys = parseJwks(doc!);
      if (keys === null) return this.fail(where + ".jwks must be a JWKS ({\"keys\": [...]})");
      if (keys!.length == 0) return this.fail(where + ".jwks has no RSA or EC key");
      p.keys = keys!;
    }
    const remote = o.get("remoteJwks");
    if (remote !== null) {
      const r = remote.asObject();
      if (r === null) return this.fail(where + ".remoteJwks must be an object");
      const u = unknownKey(r, ["cluster", "authority", "path", "timeoutMs", "cacheSeconds", "retryMs"]);
      if (u !== null) return this.fail(where + ".remoteJwks: unknown field \"" + u! + "\"");
      const rem = new Remote();
      const cluster = r.getString("cluster");
      const path = r.getString("path");
      if (cluster === null || cluster!.length == 0 || path === null || !path!.startsWith("/")) return this.fail(where + ".remoteJwks needs cluster and an absolute path");
      rem.cluster = cluster!;
      rem.path = path!;
      const authority = r.getString("authority");
      rem.authority = authority === null ? cluster! : authority!;
      const t = r.getNumber("timeoutMs", 5000);
      const c = r.getNumber("cacheSeconds", 300);
      if (t < 1 || t > 60000 || c < 0 || c > 86400) return this.fail(where + ".remoteJwks timeoutMs must be 1-60000 and cacheSeconds 0-86400");
      const retry = r.getNumber("retryMs", 1000);
      if (retry < 0 || retry > 600000) return this.fail(where + ".remoteJwks retryMs must be 0-600000");
      rem.timeoutMs = <u32>t;
      rem.cacheSeconds = <u64>c;
      rem.retryMs = <u64>retry;
      p.remote = rem;
    }
    if (jwks === null && remote === null) return this.fail(where + " needs jwks or remoteJwks");
    if (o.has("fromHeaders")) {
      const a = o.getArray("fromHeaders");
      if (a === null) return this.fail(where + ".fromHeaders must be an array");
      p.fromHeaders = new Array<HeaderSource>();
      for (let i = 0; i < a.length; i++) {
        const h = a.at(i).asObject();
        const hn: string | null = h === null ? null : h.getString("name");
        if (h === null || hn === null) return this.fail(where + ".fromHeaders[" + i.toString() + "] needs a name");
        const prefix = h.getString("prefix");
        p.fromHeaders.push(new HeaderSource(asciiLower(hn!), prefix === null ? "" : prefix!));
      }
    }
    if (o.has("fromParams")) {
      const a = stringArray(o.get("fromParams"));
      if (a === null) return this.fail(where + ".fromParams must be an array of strings");
      p.fromParams = a!;
    }
    p.forward = o.getBool("forward");
    const ph = o.getString("forwardPayloadHeader");
    if (ph !== null) p.payloadHeader = asciiLower(ph!);
    if (o.has("claimToHeaders")) {
      const a = o.getArray("claimToHeaders");
      if (a === null) return this.fail(where + ".claimToHeaders must be an array");
      for (let i = 0; i < a.length; i++) {
        const c = a.at(i).asObject();
        const claim: string | null = c === null ? null : c.getString("claim");
        const header: string | null = c === null ? null : c.getString("header");
        if (claim === null || header === null) return this.fail(where + ".claimToHeaders[" + i.toString() + "] needs claim and header");
        p.claimHeaders.push(new ClaimHeader(claim!, asciiLower(header!)));
      }
    }
    return p;
  }

  parse(text: string): Config | null {
    const parsed = parseJson(text.length == 0 ? "{}" : text);
    if (!parsed.ok) { this.fail("configuration is not JSON: " + parsed.error); return null; }
    const o = parsed.value!.asObject();
    if (o === null) { this.fail("configuration must be a JSON object"); return null; }
    const unknown = unknownKey(o, ["providers", "allowMissing"]);
    if (unknown !== null) { this.fail("unknown field \"" + unknown! + "\""); return null; }
    const list = o.getArray("providers");
    if (list === null || list.length == 0) { this.fail("providers must be a non-empty array"); return null; }
    const c = new Config();
    c.allowMissing = o.getBool("allowMissing");
    for (let i = 0; i < list.length; i++) {
      const p = this.provider(list.at(i), "providers[" + i.toString() + "]");
      if (p === null) return null;
      c.providers.push(p!);
    }
    return c;
  }
}

const VERIFY_ANSWER_KEYS: StaticArray<string> = ["valid"];

/** weft.crypto.verify's answer says {"valid": true}: read in one pass, no JSON tree (asked on every request). */
function verifiedValid(text: string): bool {
  const r = new JsonReader(text);
  let valid = false;
  if (r.peekObject() && r.enter(0x7b)) do {
    const k = r.keyIndex(VERIFY_ANSWER_KEYS);
    if (k == -2) break;
    if (k == 0) valid = r.readBool();
    else r.skip();
  } while (r.more(0x7d));
  return valid && r.done();
}

/** A token split and decoded, or the reason it could not be. */
class Token {
  error: string = "";
  alg: string = "";
  kid: string = "";
  payload: JsonObject = new JsonObject();
  payloadSegment: string = "";
  signingInput: string = "";
  signature: string = "";
}

function decodeSegment(seg: string): JsonObject | null {
  const bytes = base64Decode(seg);
  if (bytes === null) return null;
  const parsed = parseJson(decodeBytes(bytes!));
  if (!parsed.ok) return null;
  return parsed.value!.asObject();
}

function parseToken(jwt: string): Token {
  const t = new Token();
  const a = jwt.indexOf(".");
  const b = a < 0 ? -1 : jwt.indexOf(".", a + 1);
  if (a <= 0 || b < 0 || jwt.indexOf(".", b + 1) >= 0 || b == a + 1 || b == jwt.length - 1) {
    t.error = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections";
    return t;
  }
  const header = decodeSegment(jwt.substring(0, a));
  if (header === null) { t.error = "Jwt header is an invalid JSON"; return t; }
  const payload = decodeSegment(jwt.substring(a + 1, b));
  if (payload === null) { t.error = "Jwt payload is an invalid JSON"; return t; }
  const alg = header!.getString("alg");
  if (alg === null || !ALGORITHMS.includes(alg!)) { t.error = "Jwt algorithm is not supported"; return t; }
  if (base64Decode(jwt.substring(b + 1)) === null) { t.error = "Jwt signature is not base64url"; return t; }
  const kid = header!.getString("kid");
  t.alg = alg!;
  t.kid = kid === null ? "" : kid!;
  t.payload = payload!;
  t.payloadSegment = jwt.substring(a + 1, b);
  t.signingInput = jwt.substring(0, b);
  t.signature = jwt.substring(b + 1);
  return t;
}

function queryParam(path: string, name: string): string | null {
  const q = path.indexOf("?");
  if (q < 0) return null;
  const parts = path.substring(q + 1).split("&");
  for (let i = 0; i < parts.length; i++) {
    const eq = parts[i].indexOf("=");
    if (eq > 0 && parts[i].substring(0, eq) == name) return parts[i].substring(eq + 1);
  }
  return null;
}

function claimText(v: JsonValue): string {
  const s = v.asString();
  if (s !== null) return s!;
  return stringifyJson(v);
}

/** Reads a dotted claim path (`realm.role`). */
function claimAt(payload: JsonObject, path: string): JsonValue | null {
  const parts = path.split(".");
  let cur: JsonObject | null = payload;
  for (let i = 0; i < parts.length - 1; i++) {
    cur = cur!.getObject(parts[i]);
    if (cur === null) return null;
  }
  return cur!.get(parts[parts.length - 1]);
}

let verifierMissingLogged = false;

class Jwt extends HttpContext {
  token: Token | null = null;
  provider: Provider | null = null;
  raw: string = "";
  waiting: bool = false;

  constructor(id: u32, public jwtRoot: JwtRoot) {
    super(id, jwtRoot);
  }

  /** 401 with WWW-Authenticate (RFC 6750 §3, in Envoy's wording); the request stops here. */
  deny(message: string, invalidToken: bool): void {
    this.jwtRoot.denied.increment(1);
    const host = requestHeaders.get(":authority");
    const path = requestHeaders.get(":path");
    let p = path === null ? "/" : path!;
    const q = p.indexOf("?");
    if (q >= 0) p = p.substring(0, q);
    let challenge = "Bearer realm=" + jsonQuote("http://" + (host === null ? "" : host!) + p);
    if (invalidToken) challenge += ", error=\"invalid_token\"";
    this.sendLocalResponse(401, message, [new HeaderPair("www-authenticate", challenge), new HeaderPair("content-type", "text/plain")], "jwt_authn_access_denied");
  }

  extract(): bool {
    const ps = this.jwtRoot.config.providers;
    for (let i = 0; i < ps.length; i++) {
      const p = ps[i];
      for (let j = 0; j < p.fromHeaders.length; j++) {
        const v = requestHeaders.get(p.fromHeaders[j].name);
        if (v === null) continue;
        const prefix = p.fromHeaders[j].prefix;
        if (prefix.length > 0 && (v!.length <= prefix.length || asciiLower(v!.substring(0, prefix.length)) != asciiLower(prefix))) continue;
        this.raw = v!.substring(prefix.length).trim();
        return true;
      }
      if (p.fromParams.length > 0) {
        const path = requestHeaders.get(":path");
        for (let j = 0; path !== null && j < p.fromParams.length; j++) {
          const v = queryParam(path!, p.fromParams[j]);
          if (v !== null && v!.length > 0) { this.raw = v!; return true; }
        }
      }
    }
    return false;
  }

  onRequestHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    const config = this.jwtRoot.config;
    if (!this.extract()) {
      if (config.allowMissing) return HeadersAction.Continue;
      this.deny("Jwt is missing", false);
      return HeadersAction.StopIteration;
    }
    const t = parseToken(this.raw);
    if (t.error.length > 0) { this.deny(t.error, true); return HeadersAction.StopIteration; }
    this.token = t;
    const iss = t.payload.getString("iss");
    for (let i = 0; iss !== null && i < config.providers.length; i++) if (config.providers[i].issuer == iss!) this.provider = config.providers[i];
    const p = this.provider;
    if (p === null) { this.deny("Jwt issuer is not configured", true); return HeadersAction.StopIteration; }
    const now = <i64>currentTimeSeconds();
    const exp = t.payload.get("exp");
    if (exp !== null && (!exp.isNumber || <i64>exp.asNumber() + CLOCK_SKEW_SECONDS < now)) { this.deny("Jwt is expired", true); return HeadersAction.StopIteration; }
    const nbf = t.payload.get("nbf");
    if (nbf !== null && (!nbf.isNumber || <i64>nbf.asNumber() - CLOCK_SKEW_SECONDS > now)) { this.deny("Jwt not yet valid", true); return HeadersAction.StopIteration; }
    if (!this.audienceAllowed(p!, t)) { this.deny("Audiences in Jwt are not allowed", true); return HeadersAction.StopIteration; }
    const nowNanos = currentTimeNanos();
    if (!p!.fresh(nowNanos) && nowNanos >= p!.retryAtNanos) {
      this.jwtRoot.fetch(p!);
      if (p!.fetching) {
        // Stale keys, if any, are not used while a refresh is in flight: the refresh answers within timeoutMs.
        this.waiting = true;
        p!.waiters.push(this);
        return HeadersAction.StopIteration;
      }
    }
    return this.verify() ? HeadersAction.Continue : HeadersAction.StopIteration;
  }

  audienceAllowed(p: Provider, t: Token): bool {
    const allowed = p.audiences;
    if (allowed === null) return true;
    const aud = t.payload.get("aud");
    if (aud === null) return false;
    const one = aud.asString();
    if (one !== null) return allowed!.includes(one!);
    const many = stringArray(aud);
    if (many === null) return false;
    for (let i = 0; i < many!.length; i++) if (allowed!.includes(many![i])) return true;
    return false;
  }

  /** Checks the signature against the provider's keys; on success edits the headers, else answers 401. */
  verify(): bool {
    const p = this.provider!;
    const t = this.token!;
    const kty = t.alg.startsWith("ES") ? "EC" : "RSA";
    let valid = false;
    for (let i = 0; i < p.keys.length && !valid; i++) {
      const k = p.keys[i];
      if (k.kty != kty || (t.kid.length > 0 && k.kid.length > 0 && k.kid != t.kid)) continue;
      const payload = k.payloadHead(t.alg) + jsonQuote(t.signingInput) + ",\"signature\":" + jsonQuote(t.signature) + "}";
      const r = callForeignFunctionText(VERIFY_FUNCTION, payload);
      if (r.status == WasmResult.NotFound) {
        if (!verifierMissingLogged) logError("jwt-authn: the host has no " + VERIFY_FUNCTION + "; every token is refused");
        verifierMissingLogged = true;
        break;
      }
      if (!r.ok) continue;
      valid = verifiedValid(r.value);
    }
    if (!valid) {
      this.deny(p.keys.length == 0 ? "Jwks remote fetch is failed" : "Jwt verification fails", true);
      return false;
    }
    this.jwtRoot.allowed.increment(1);
    for (let i = 0; i < p.claimHeaders.length; i++) {
      const v = claimAt(t.payload, p.claimHeaders[i].claim);
      if (v !== null) requestHeaders.replace(p.claimHeaders[i].header, claimText(v!));
    }
    if (p.payloadHeader.length > 0) requestHeaders.replace(p.payloadHeader, t.payloadSegment);
    if (!p.forward) {
      for (let i = 0; i < p.fromHeaders.length; i++) requestHeaders.remove(p.fromHeaders[i].name);
    }
    return true;
  }

  /** The JWKS refresh this request waited for is over (keys may still be empty after a failure). */
  resume(): void {
    this.waiting = false;
    if (this.verify()) this.continueRequest();
  }

  onDelete(): void {
    const p = this.provider;
    if (p === null || !this.waiting) return;
    const i = p!.waiters.indexOf(this);
    if (i >= 0) p!.waiters.splice(i, 1);
  }
}

class JwtRoot extends RootContext {
  config: Config = new Config();
  fetches: Map<u32, Provider> = new Map<u32, Provider>();
  allowed: Metric = new Metric(0, 0, 0);
  denied: Metric = new Metric(0, 0, 0);

  onConfigure(configurationSize: u32): bool {
    const parser = new Parser();
    const next = parser.parse(pluginConfiguration.text());
    if (next === null) {
      logError("jwt-authn: rejected configuration: " + parser.error);
      return false;
    }
    this.config = next!;
    this.allowed = defineCounter("jwt_authn_allowed_total");
    this.denied = defineCounter("jwt_authn_denied_total");
    return true;
  }

  /** Starts a JWKS fetch for `p` unless one is running; leaves p.fetching false when the call cannot be made. */
  fetch(p: Provider): void {
    if (p.fetching) return;
    const r = p.remote!;
    const headers = [new HeaderPair(":method", "GET"), new HeaderPair(":path", r.path), new HeaderPair(":authority", r.authority), new HeaderPair("accept", "application/json")];
    const call = httpCall(r.cluster, headers, null, [], r.timeoutMs, this);
    if (!call.ok) {
      logWarn("jwt-authn: cannot fetch JWKS for " + p.name + " from cluster " + r.cluster + " (status " + (<i32>call.status).toString() + ")");
      return;
    }
    p.fetching = true;
    this.fetches.set(call.value, p);
  }

  onHttpCallResponse(token: u32, response: HttpCallResponse): void {
    if (!this.fetches.has(token)) return;
    const p = this.fetches.get(token);
    this.fetches.delete(token);
    p.fetching = false;
    let keys: Array<Key> | null = null;
    if (!response.failed && response.status == 200) {
      const parsed = parseJson(response.bodyText());
      if (parsed.ok) keys = parseJwks(parsed.value!);
    }
    if (keys !== null) {
      p.keys = keys!;
      p.fetchedAtNanos = currentTimeNanos();
    } else {
      p.retryAtNanos = currentTimeNanos() + p.remote!.retryMs * 1_000_000;
      logWarn("jwt-authn: JWKS fetch for " + p.name + " failed" + (response.failed ? " (no response or timeout)" : " (status " + response.status.toString() + " or not a JWKS)"));
    }
    const waiters = p.waiters;
    p.waiters = new Array<Jwt>();
    for (let i = 0; i < waiters.length; i++) {
      // A waiter whose stream is gone cannot be activated; skip it.
      if (waiters[i].activate() != WasmResult.Ok) continue;
      waiters[i].resume();
    }
  }

  newHttpContext(id: u32): HttpContext {
    return new Jwt(id, this);
  }
}

registerRootContext((id: u32): RootContext => new JwtRoot(id));
