// jwt-authn: validates JWTs (RS256/ES256, also RS384/RS512/PS256/ES384) against JWKS given inline or fetched by HTTP
// call (cached), checks issuer, audiences, exp and nbf, copies claims to headers, and answers 401 with
// WWW-Authenticate on failure. Signatures are verified by the host (`weft.crypto.verify`); verified tokens are kept per
// provider (Envoy's jwt_cache_config) so a repeated token skips decoding and verification. Configuration: README.md.
import {
  HeaderPair, HeadersAction, HostBlock, HttpCallResponse, HttpContext, JsonReader, Metric, RootContext, WasmResult,
  asciiLower, callForeignFunctionText, currentTimeNanos, currentTimeSeconds, defineCounter, headerValueInto, httpCall,
  jsonQuote, logError, logWarn, parseJson, pluginConfiguration, registerRootContext, requestHeaders, stringArray, utf8,
} from "@weft/sdk/assembly/index";
import { Config, Key, Parser, Provider, parseJwks, sameKeys } from "./config";
import { CachedToken, tokenHash } from "./token-cache";
import { Token, claimAt, claimText, parseToken, queryParam } from "./token";
// Only the callbacks jwt-authn acts on (tokens are checked on request headers, and remote JWKS arrive as HTTP call
// responses; contexts are created and deleted): a host skips a callback the plugin does not export, so no done or log
// call reaches it per request. A plugin that overrides another HttpContext/RootContext callback must export it here
// too.
export {
  proxy_abi_version_0_2_1, proxy_on_context_create, proxy_on_vm_start, proxy_on_configure, proxy_on_request_headers,
  proxy_on_http_call_response, proxy_on_delete,
} from "@weft/sdk/assembly/exports-headers-only";
// The token's header value is read into a block recycled from request to request (whatever the token's length up to
// 4 KiB), not allocated and freed each time.
export { proxy_on_memory_allocate, malloc } from "@weft/sdk/assembly/sized-blocks";
import { recycleSizedBlock } from "@weft/sdk/assembly/sized-blocks";
import { ContextPool } from "@weft/sdk/assembly/context-pool";

const VERIFY_FUNCTION = "weft.crypto.verify";
const CLOCK_SKEW_SECONDS: i64 = 60;

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

/** Where extract() found the token: nowhere, in place in `tokenBlock` (tokenPtr, tokenLen), or as text in Jwt.raw. */
const FOUND_NONE: i32 = 0;
const FOUND_BYTES: i32 = 1;
const FOUND_TEXT: i32 = 2;

// The header value holding the token, read where the host wrote it; recycled before onRequestHeaders returns, so one
// HostBlock serves every request (callbacks never nest).
const tokenBlock = new HostBlock();
let tokenPtr: usize = 0;
let tokenLen: usize = 0;
/** The prefix of the header source the in-place token came from (the text path strips it when the value is not ASCII). */
let tokenPrefix = "";

/** What a look in the providers' caches found. */
const LOOKED_NONE: i32 = 0;
const LOOKED_MISS: i32 = 1;
const LOOKED_HIT: i32 = 2;

function asciiOnly(ptr: usize, len: usize): bool {
  let i: usize = 0;
  for (; i + 8 <= len; i += 8) if ((load<u64>(ptr + i) & 0x8080808080808080) != 0) return false;
  for (; i < len; i++) if (load<u8>(ptr + i) >= 0x80) return false;
  return true;
}

/** String#trim's white space, for ASCII (TAB, LF, VT, FF, CR, SP). */
function isAsciiSpace(c: u32): bool {
  return c == 0x20 || c - 0x09 <= 0x0d - 0x09;
}

/** Whether the bytes at `ptr` start with `lower` (ASCII, lower case), ignoring ASCII case. */
function hasPrefix(ptr: usize, lower: ArrayBuffer): bool {
  const p = changetype<usize>(lower);
  for (let i: usize = 0; i < <usize>lower.byteLength; i++) {
    let c = <u32>load<u8>(ptr + i);
    if (c - 0x41 <= 0x5a - 0x41) c += 0x20;
    if (c != <u32>load<u8>(p + i)) return false;
  }
  return true;
}

/** A cached token's exp and nbf against the clock, as the full path checks them. */
function timely(e: CachedToken, now: i64): bool {
  if (e.hasExp && e.exp + CLOCK_SKEW_SECONDS < now) return false;
  return !(e.hasNbf && e.nbf - CLOCK_SKEW_SECONDS > now);
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

  /** A recycled context starts its new stream as a new one would. */
  reset(): void {
    this.token = null;
    this.provider = null;
    this.raw = "";
    this.waiting = false;
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

  /** Finds the token as the providers list their sources, first found wins; see FOUND_*. */
  extract(): i32 {
    const ps = this.jwtRoot.config.providers;
    for (let i = 0; i < ps.length; i++) {
      const p = ps[i];
      for (let j = 0; j < p.fromHeaders.length; j++) {
        const h = p.fromHeaders[j];
        if (!headerValueInto(requestHeaders, h.nameBytes, tokenBlock)) continue;
        const ptr = tokenBlock.ptr;
        const len = tokenBlock.len;
        const lower = h.prefixLower;
        if (lower !== null) {
          // The text path's checks, made on the bytes in place. The prefix (ASCII) matches the bytes exactly when it
          // matches the text; the ASCII white space trimmed here is all String#trim would trim from an ASCII value, and
          // a value that is not ASCII is read as text after all (fromCache), as it always was.
          const pl = <usize>lower.byteLength;
          if (pl > 0 && (len <= pl || !hasPrefix(ptr, lower))) { recycleSizedBlock(tokenBlock); continue; }
          let start = pl;
          let end = len;
          while (start < end && isAsciiSpace(load<u8>(ptr + start))) start++;
          while (end > start && isAsciiSpace(load<u8>(ptr + end - 1))) end--;
          tokenPtr = ptr + start;
          tokenLen = end - start;
          tokenPrefix = h.prefix;
          return FOUND_BYTES;
        }
        const v = tokenBlock.text();
        recycleSizedBlock(tokenBlock);
        const prefix = h.prefix;
        if (prefix.length > 0 && (v.length <= prefix.length || asciiLower(v.substring(0, prefix.length)) != asciiLower(prefix))) continue;
        this.raw = v.substring(prefix.length).trim();
        return FOUND_TEXT;
      }
      if (p.fromParams.length > 0) {
        const path = requestHeaders.get(":path");
        for (let j = 0; path !== null && j < p.fromParams.length; j++) {
          const v = queryParam(path!, p.fromParams[j]);
          if (v !== null && v!.length > 0) { this.raw = v!; return FOUND_TEXT; }
        }
      }
    }
    return FOUND_NONE;
  }

  /**
   * Serves a token a provider verified before (Envoy's jwt cache: issuer and audiences were checked then and depend
   * only on the token and the configuration; exp and nbf are checked now). On a miss the token is left in `raw`.
   */
  fromCache(found: i32): bool {
    const root = this.jwtRoot;
    if (found == FOUND_BYTES) {
      // A hit proves the value ASCII (prefix, ASCII white space and a cached token, which is ASCII): no check needed.
      const looked = this.lookup(tokenPtr, tokenLen);
      if (looked == LOOKED_HIT) return true;
      if (asciiOnly(tokenBlock.ptr, tokenBlock.len)) {
        if (looked == LOOKED_MISS) root.cacheMisses.increment(1);
        this.raw = String.UTF8.decodeUnsafe(tokenPtr, tokenLen);
        recycleSizedBlock(tokenBlock);
        return false;
      }
      // Not ASCII: the token is what String#trim leaves of the text after the prefix (Unicode white space too).
      const v = tokenBlock.text();
      recycleSizedBlock(tokenBlock);
      this.raw = v.substring(tokenPrefix.length).trim();
    }
    const text = utf8(this.raw);
    const looked = this.lookup(changetype<usize>(text), <usize>text.byteLength);
    if (looked == LOOKED_HIT) return true;
    if (looked == LOOKED_MISS) root.cacheMisses.increment(1);
    return false;
  }

  /** Looks the token up in each provider's cache; a timely hit is served (allowed, counted) before this returns. */
  lookup(ptr: usize, len: usize): i32 {
    const root = this.jwtRoot;
    const ps = root.config.providers;
    let hash: u32 = 0;
    let hashed = false;
    let looked = LOOKED_NONE;
    for (let i = 0; i < ps.length; i++) {
      const cache = ps[i].cache;
      if (cache === null) continue;
      looked = LOOKED_MISS;
      // A token longer than the cache keeps is never in it (and an oversized header is not hashed for nothing).
      if (cache.size == 0 || len > <usize>cache.maxTokenBytes) continue;
      if (!hashed) { hash = tokenHash(ptr, len); hashed = true; }
      const e = cache.lookup(ptr, len, hash);
      if (e === null) continue;
      if (timely(e, <i64>currentTimeSeconds())) {
        recycleSizedBlock(tokenBlock);
        root.cacheHits.increment(1);
        this.allow(ps[i], e);
        return LOOKED_HIT;
      }
      // Expired (or not valid yet) since it was cached: Envoy drops it, and the full path names the reason.
      cache.remove(e);
      break;
    }
    return looked;
  }

  onRequestHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    const config = this.jwtRoot.config;
    const found = this.extract();
    if (found == FOUND_NONE) {
      if (config.allowMissing) return HeadersAction.Continue;
      this.deny("Jwt is missing", false);
      return HeadersAction.StopIteration;
    }
    if (this.fromCache(found)) return HeadersAction.Continue;
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
    const e = this.verified(p, t);
    this.allow(p, e);
    const cache = p.cache;
    if (cache !== null) cache.insert(e);
    return true;
  }

  /** What this verified token makes a request do, kept for the next request with the same token. */
  verified(p: Provider, t: Token): CachedToken {
    const e = new CachedToken();
    if (p.cache !== null) {
      e.token = utf8(this.raw);
      e.hash = tokenHash(changetype<usize>(e.token), e.token.byteLength);
    }
    const exp = t.payload.get("exp");
    if (exp !== null) { e.hasExp = true; e.exp = <i64>exp.asNumber(); }
    const nbf = t.payload.get("nbf");
    if (nbf !== null) { e.hasNbf = true; e.nbf = <i64>nbf.asNumber(); }
    for (let i = 0; i < p.claimHeaders.length; i++) {
      const v = claimAt(t.payload, p.claimHeaders[i].claim);
      e.claims.push(v === null ? null : utf8(claimText(v!)));
    }
    if (p.payloadHeader.length > 0) e.payload = utf8(t.payloadSegment);
    return e;
  }

  /** Counts the request as allowed and edits its headers: claims and payload copied, the token dropped unless forwarded. */
  allow(p: Provider, e: CachedToken): void {
    this.jwtRoot.allowed.increment(1);
    for (let i = 0; i < p.claimHeaders.length; i++) {
      const v = unchecked(e.claims[i]);
      if (v !== null) requestHeaders.replaceRaw(p.claimHeaders[i].headerBytes, v!);
    }
    if (p.payloadHeader.length > 0) requestHeaders.replaceRaw(p.payloadHeaderBytes, e.payload);
    if (!p.forward) {
      for (let i = 0; i < p.fromHeaders.length; i++) requestHeaders.removeRaw(p.fromHeaders[i].nameBytes);
    }
  }

  /** The JWKS refresh this request waited for is over (keys may still be empty after a failure). */
  resume(): void {
    this.waiting = false;
    if (this.verify()) this.continueRequest();
  }

  onDelete(): void {
    const p = this.provider;
    if (p !== null && this.waiting) {
      const i = p!.waiters.indexOf(this);
      if (i >= 0) p!.waiters.splice(i, 1);
    }
    // No waiter list refers to it any more: the context serves the next stream.
    this.jwtRoot.contexts.give(this);
  }
}

class JwtRoot extends RootContext {
  config: Config = new Config();
  fetches: Map<u32, Provider> = new Map<u32, Provider>();
  /** Deleted request contexts, reused for new streams: a request allocates no context object. */
  contexts: ContextPool<Jwt> = new ContextPool<Jwt>();
  allowed: Metric = new Metric(0, 0, 0);
  denied: Metric = new Metric(0, 0, 0);
  /** Envoy's jwt_cache_hit / jwt_cache_miss: lookups of a token in the providers' caches. */
  cacheHits: Metric = new Metric(0, 0, 0);
  cacheMisses: Metric = new Metric(0, 0, 0);

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
    this.cacheHits = defineCounter("jwt_authn_jwt_cache_hit_total");
    this.cacheMisses = defineCounter("jwt_authn_jwt_cache_miss_total");
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
      // Envoy keeps its jwt cache across JWKS refreshes; here a refresh that changes the keys empties it, so a token
      // whose key was withdrawn is verified again (and refused) instead of passing until it expires.
      const cache = p.cache;
      if (cache !== null && !sameKeys(p.keys, keys!)) cache.clear();
      p.keys = keys!;
      p.fetchedAtNanos = currentTimeNanos();
    } else {
      p.retryAtNanos = currentTimeNanos() + p.remote!.retryMs * 1_000_000;
      logWarn("jwt-authn: JWKS fetch for " + p.name + " failed" + (response.failed ? " (no response or timeout)" : " (status " + response.status.toString() + " or not a JWKS)"));
    }
    const waiters = p.waiters;
    p.waiters = new Array<HttpContext>();
    for (let i = 0; i < waiters.length; i++) {
      const w = changetype<Jwt>(waiters[i]);
      // A waiter whose stream is gone cannot be activated; skip it.
      if (w.activate() != WasmResult.Ok) continue;
      w.resume();
    }
  }

  newHttpContext(id: u32): HttpContext {
    const c = this.contexts.take(id);
    if (c === null) return new Jwt(id, this);
    c.reset();
    return c;
  }
}

registerRootContext((id: u32): RootContext => new JwtRoot(id));
