// jwt-authn's configuration: providers (issuer, audiences, inline or remote JWKS, where the token is, what is
// forwarded, the verified-token cache) parsed once at configure time into plain objects the request path only reads.
import {
  HttpContext, JsonValue, asciiLower, jsonQuote, parseConfigObject, parseJson, stringArray, stringifyJson, unknownKey, utf8,
} from "@weft/sdk/assembly/index";
import { DEFAULT_CACHE_SIZE, DEFAULT_MAX_TOKEN_BYTES, TokenCache } from "./token-cache";

/** Bounds on jwtCacheConfig: each cached token holds its bytes and its claims, so size × token size bounds the memory. */
const MAX_CACHE_SIZE: i32 = 65536;
const MAX_TOKEN_BYTES: i32 = 65536;

export class Key {
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

export class HeaderSource {
  /** The name as UTF-8, and the prefix lower-cased as ASCII bytes when it is ASCII (the in-place read compares those). */
  nameBytes: ArrayBuffer;
  prefixLower: ArrayBuffer | null = null;

  constructor(public name: string, public prefix: string) {
    this.nameBytes = utf8(name);
    let ascii = true;
    for (let i = 0; i < prefix.length; i++) if (prefix.charCodeAt(i) >= 0x80) ascii = false;
    if (ascii) this.prefixLower = utf8(asciiLower(prefix));
  }
}

export class ClaimHeader {
  headerBytes: ArrayBuffer;

  constructor(public claim: string, public header: string) {
    this.headerBytes = utf8(header);
  }
}

export class Remote {
  cluster: string = "";
  authority: string = "";
  path: string = "";
  timeoutMs: u32 = 5000;
  cacheSeconds: u64 = 300;
  /** After a failed fetch, requests fail fast (or use the previous keys) for this long before another fetch. */
  retryMs: u64 = 1000;
}

export class Provider {
  name: string = "";
  issuer: string = "";
  audiences: Array<string> | null = null;
  keys: Array<Key> = new Array<Key>();
  remote: Remote | null = null;
  fromHeaders: Array<HeaderSource> = [new HeaderSource("authorization", "Bearer ")];
  fromParams: Array<string> = new Array<string>();
  forward: bool = false;
  payloadHeader: string = "";
  payloadHeaderBytes: ArrayBuffer = new ArrayBuffer(0);
  claimHeaders: Array<ClaimHeader> = new Array<ClaimHeader>();
  // Remote JWKS state (per VM).
  fetchedAtNanos: u64 = 0;
  /** No new fetch before this (after a failure), so a failing JWKS endpoint is not hammered by every request. */
  retryAtNanos: u64 = 0;
  fetching: bool = false;
  /** Requests (Jwt contexts) waiting for the fetch in flight. */
  waiters: Array<HttpContext> = new Array<HttpContext>();
  /** Verified tokens (jwtCacheConfig); null when the cache is off. A new configuration starts with empty caches. */
  cache: TokenCache | null = new TokenCache(DEFAULT_CACHE_SIZE, DEFAULT_MAX_TOKEN_BYTES);

  fresh(now: u64): bool {
    const r = this.remote;
    if (r === null) return true;
    return this.fetchedAtNanos != 0 && now - this.fetchedAtNanos < r.cacheSeconds * 1_000_000_000;
  }
}

export class Config {
  providers: Array<Provider> = new Array<Provider>();
  allowMissing: bool = false;
}

/** Whether two key lists hold the same keys in the same order (a JWKS refresh that changed nothing). */
export function sameKeys(a: Array<Key>, b: Array<Key>): bool {
  if (a.length != b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i].kid != b[i].kid || a[i].kty != b[i].kty || a[i].json != b[i].json) return false;
  return true;
}

/** Keys of a JWKS document ({"keys": [...]}); RSA and EC keys are kept, others skipped. Null when not a JWKS. */
export function parseJwks(v: JsonValue): Array<Key> | null {
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

export class Parser {
  error: string = "";

  fail(message: string): Provider | null {
    if (this.error.length == 0) this.error = message;
    return null;
  }

  refuse(message: string): bool {
    this.fail(message);
    return false;
  }

  provider(v: JsonValue, where: string): Provider | null {
    const o = v.asObject();
    if (o === null) return this.fail(where + " must be an object");
    const unknown = unknownKey(o, ["name", "issuer", "audiences", "jwks", "remoteJwks", "fromHeaders", "fromParams", "forward", "forwardPayloadHeader", "claimToHeaders", "jwtCacheConfig"]);
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
    if (ph !== null) {
      p.payloadHeader = asciiLower(ph!);
      p.payloadHeaderBytes = utf8(p.payloadHeader);
    }
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
    if (o.has("jwtCacheConfig") && !this.cacheConfig(o.get("jwtCacheConfig")!, where, p)) return null;
    return p;
  }

  /** Envoy's JwtCacheConfig (0 or absent fields take Envoy's defaults); `false` turns the cache off. */
  cacheConfig(v: JsonValue, where: string, p: Provider): bool {
    if (v.isBool && !v.asBool()) {
      p.cache = null;
      return true;
    }
    const o = v.asObject();
    if (o === null) return this.refuse(where + ".jwtCacheConfig must be an object or false");
    const u = unknownKey(o, ["jwtCacheSize", "jwtMaxTokenSize"]);
    if (u !== null) return this.refuse(where + ".jwtCacheConfig: unknown field \"" + u! + "\"");
    for (let i = 0; i < o.keys.length; i++) if (!o.get(o.keys[i])!.isNumber) return this.refuse(where + ".jwtCacheConfig." + o.keys[i] + " must be a number");
    const size = o.getNumber("jwtCacheSize", 0);
    const max = o.getNumber("jwtMaxTokenSize", 0);
    if (size != Math.floor(size) || size < 0 || size > MAX_CACHE_SIZE) return this.refuse(where + ".jwtCacheConfig.jwtCacheSize must be an integer 0-" + MAX_CACHE_SIZE.toString());
    if (max != Math.floor(max) || max < 0 || max > MAX_TOKEN_BYTES) return this.refuse(where + ".jwtCacheConfig.jwtMaxTokenSize must be an integer 0-" + MAX_TOKEN_BYTES.toString());
    p.cache = new TokenCache(size == 0 ? DEFAULT_CACHE_SIZE : <i32>size, max == 0 ? DEFAULT_MAX_TOKEN_BYTES : <i32>max);
    return true;
  }

  parse(text: string): Config | null {
    const parsed = parseConfigObject(text, ["providers", "allowMissing"]);
    if (parsed.object === null) { this.fail(parsed.error); return null; }
    const o = parsed.object!;
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
