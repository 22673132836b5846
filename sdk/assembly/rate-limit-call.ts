// shouldRateLimit without text: the request is written in weft's binary payload format into memory reused across
// requests (header values copied straight from the host's block), and the immediate answer is read in place, its
// RateLimit headers handed back to the host without becoming strings. The format is documented in
// runtime/shared-state/README.md; hosts other than weft answer NotFound, as for shouldRateLimit.
import { WasmResult } from "./abi-enums";
import { Context } from "./context";
import { HeaderMap } from "./headers";
import { HostBlock, headerValueInto } from "./host-block";
import { proxy_call_foreign_function, proxy_replace_header_map_value } from "./imports";
import { clearOut, outLen, outPtr, utf8 } from "./memory";
import { awaitRateLimitAnswer, nextForeignCallId, RATE_LIMIT_FUNCTION } from "./weft";
import { RATE_LIMIT_BINARY_TAG, RateLimitResult } from "./weft-results";

const HITS_UNSET: u32 = 0xffffffff;
const HEAD: usize = 12;

let functionName: ArrayBuffer | null = null;
/** The header value being copied into a request; released right after. */
const headerValue = new HostBlock();

function nameBytes(): ArrayBuffer {
  let n = functionName;
  if (n === null) functionName = n = utf8(RATE_LIMIT_FUNCTION);
  return n!;
}

/**
 * One rate-limit request at a time, built in place: begin(), then per descriptor descriptor() and its entries (or
 * cancelDescriptor() when a source is missing, Envoy's rule), then send(). Keys are UTF-8 buffers made once
 * (utf8("user")) so a request encodes only its values.
 *
 * @example
 *   // once, at configure time
 *   const call = new RateLimitCall("api");
 *   const USER = utf8("user"), X_USER = utf8("x-user");
 *   // per request
 *   call.begin();
 *   call.descriptor();
 *   if (!call.entryHeader(USER, requestHeaders, X_USER)) call.cancelDescriptor();
 *   if (call.descriptorCount > 0) {
 *     call.send(this, this.answer);
 *     if (this.answer.pending) return HeadersAction.StopIteration;   // answer comes to onRateLimitResult
 *     if (this.answer.overLimit) this.sendLocalResponse(429, "slow down\n");
 *   }
 */
export class RateLimitCall {
  private ptr: usize = 0;
  private cap: usize = 0;
  private len: usize = 0;
  private count: u32 = 0;
  /** Offset of the open descriptor's head (its u32 hits and u16 entry count). */
  private open: usize = 0;
  /** A key or value did not fit the format's 16-bit length: the request is not sent. */
  private tooLong: bool = false;
  /** tag, flags, count, id, hitsAddend, domain: copied as is at begin(). */
  private readonly head: ArrayBuffer;

  constructor(domain: string, hitsAddend: u32 = 1) {
    const d = utf8(domain);
    const h = new ArrayBuffer(<i32>HEAD + 2 + d.byteLength);
    const p = changetype<usize>(h);
    store<u8>(p, RATE_LIMIT_BINARY_TAG);
    store<u32>(p + 8, hitsAddend);
    store<u16>(p + HEAD, <u16>d.byteLength);
    memory.copy(p + HEAD + 2, changetype<usize>(d), d.byteLength);
    this.head = h;
  }

  /** Descriptors written since begin() and not cancelled. */
  get descriptorCount(): u32 {
    return this.count;
  }

  begin(): void {
    const n = <usize>this.head.byteLength;
    this.len = 0;
    this.room(n + 256);
    memory.copy(this.ptr, changetype<usize>(this.head), n);
    this.len = n;
    this.count = 0;
    this.tooLong = false;
  }

  /** Opens a descriptor; `hitsAddend` -1 uses the request's. */
  descriptor(hitsAddend: i32 = -1): void {
    this.room(6);
    this.open = this.len;
    store<u32>(this.ptr + this.len, hitsAddend < 0 ? HITS_UNSET : <u32>hitsAddend);
    store<u16>(this.ptr + this.len + 4, 0);
    this.len += 6;
    this.count++;
  }

  /** Drops the open descriptor and its entries. */
  cancelDescriptor(): void {
    this.len = this.open;
    this.count--;
  }

  /** An entry with a text value. */
  entry(key: ArrayBuffer, value: string): void {
    this.key(key);
    const n = value.length;
    const src = changetype<usize>(value);
    this.room(2 + <usize>n);
    const at = this.ptr + this.len + 2;
    let i = 0;
    for (; i < n; i++) {
      const c = load<u16>(src + (<usize>i << 1));
      if (c >= 0x80) break;
      store<u8>(at + <usize>i, <u8>c);
    }
    let len = <usize>n;
    if (i < n) {
      this.room(2 + <usize>String.UTF8.byteLength(value, false));
      len = String.UTF8.encodeUnsafe(src, n, this.ptr + this.len + 2, false, String.UTF8.ErrorMode.REPLACE);
    }
    this.value(len);
  }

  /** An entry whose value is `len` bytes at `ptr`. */
  entryBytes(key: ArrayBuffer, ptr: usize, len: usize): void {
    this.key(key);
    this.room(2 + len);
    memory.copy(this.ptr + this.len + 2, ptr, len);
    this.value(len);
  }

  /**
   * An entry whose value is header `name` (UTF-8, lower-case) of `map`, copied from the host's block; false, writing
   * nothing, when the header is absent.
   */
  entryHeader(key: ArrayBuffer, map: HeaderMap, name: ArrayBuffer): bool {
    if (!headerValueInto(map, name, headerValue)) return false;
    this.entryBytes(key, headerValue.ptr, headerValue.len);
    headerValue.release();
    return true;
  }

  /**
   * Sends the request for `handler` into `answer`: decided at once (answer.decided), waiting (answer.pending: the
   * result goes to handler.onRateLimitResult), or failed (answer.failed; NotFound outside weft).
   */
  send(handler: Context, answer: RateLimitAnswer): void {
    if (this.tooLong) {
      answer.release();
      answer.localError = "a descriptor key or value is longer than 65535 bytes";
      return;
    }
    store<u16>(this.ptr + 2, <u16>this.count);
    RateLimitCall.call(this.ptr, this.len, handler, answer);
  }

  /** The request as written, to send again later with sendPayload (a delayed request asks again). */
  payload(): ArrayBuffer {
    store<u16>(this.ptr + 2, <u16>this.count);
    const b = new ArrayBuffer(<i32>this.len);
    memory.copy(changetype<usize>(b), this.ptr, this.len);
    return b;
  }

  /** Sends a request saved with payload() under a new id. */
  static sendPayload(payload: ArrayBuffer, handler: Context, answer: RateLimitAnswer): void {
    RateLimitCall.call(changetype<usize>(payload), <usize>payload.byteLength, handler, answer);
  }

  private static call(ptr: usize, len: usize, handler: Context, answer: RateLimitAnswer): void {
    const id = nextForeignCallId();
    store<u32>(ptr + 4, id);
    const name = nameBytes();
    clearOut();
    const st = <WasmResult>proxy_call_foreign_function(changetype<usize>(name), name.byteLength, ptr, len, outPtr(), outLen());
    answer.release();
    answer.status = st;
    if (st != WasmResult.Ok) return;
    const p = load<usize>(outPtr());
    const n = <usize>load<u32>(outLen());
    if (n == 0 || p == 0) {
      answer.token = id;
      awaitRateLimitAnswer(id, handler);
      return;
    }
    answer.adopt(p, n);
  }

  private key(key: ArrayBuffer): void {
    const n = <usize>key.byteLength;
    if (n > 0xffff) this.tooLong = true;
    this.room(2 + n);
    store<u16>(this.ptr + this.len, <u16>n);
    memory.copy(this.ptr + this.len + 2, changetype<usize>(key), n);
    this.len += 2 + n;
  }

  /** Completes an entry whose value's `len` bytes were written after its length field. */
  private value(len: usize): void {
    if (len > 0xffff) this.tooLong = true;
    store<u16>(this.ptr + this.len, <u16>len);
    this.len += 2 + len;
    const entries = this.ptr + this.open + 4;
    store<u16>(entries, load<u16>(entries) + 1);
  }

  /** Makes room for `more` bytes past len; the buffer is raw memory, never collected, kept for the next request. */
  private room(more: usize): void {
    const need = this.len + more;
    if (need <= this.cap) return;
    let cap = this.cap < 512 ? <usize>512 : this.cap * 2;
    while (cap < need) cap *= 2;
    const p = heap.alloc(cap);
    if (this.len > 0) memory.copy(p, this.ptr, this.len);
    if (this.ptr != 0) heap.free(this.ptr);
    this.ptr = p;
    this.cap = cap;
  }
}

/**
 * The limiter's answer to a RateLimitCall, read in place from the host's block (raw memory this object frees on
 * release(), at the latest when it is reused). Reuse one per context.
 */
export class RateLimitAnswer {
  /** The host's status; not Ok means no answer (NotFound: not running in weft). */
  status: WasmResult = WasmResult.Ok;
  /** The call waiting for a deferred answer, 0 otherwise. */
  token: u32 = 0;
  private ptr: usize = 0;
  private len: usize = 0;
  /** Start of the header section, 0 when the block is malformed. */
  private headersAt: usize = 0;
  /** Why the request was not sent (RateLimitCall refused it), "" otherwise. */
  localError: string = "";

  /** The host decided at once and the answer is well-formed (check overLimit / failed). */
  get decided(): bool {
    return this.ptr != 0;
  }

  get pending(): bool {
    return this.status == WasmResult.Ok && this.ptr == 0 && this.token != 0;
  }

  get overLimit(): bool {
    return this.ptr != 0 && this.headersAt != 0 && load<u8>(this.ptr + 1) == 1;
  }

  /** No decision: a host status other than Ok, a limiter error or a malformed answer. */
  get failed(): bool {
    if (this.status != WasmResult.Ok || this.localError.length > 0) return true;
    if (this.ptr == 0) return this.token == 0;
    return this.headersAt == 0;
  }

  /** The answer in full (statuses, headers, error); allocates, for the rare paths. */
  result(): RateLimitResult {
    if (this.status != WasmResult.Ok) return RateLimitResult.failure("status " + (<i32>this.status).toString());
    if (this.localError.length > 0) return RateLimitResult.failure(this.localError);
    if (this.ptr == 0) return RateLimitResult.failure("the host answered no decision");
    return RateLimitResult.fromBinary(this.ptr, this.len);
  }

  /** Sets each of the answer's headers on `map` (replacing), except `except` (a lower-case name, "" for none). */
  replaceHeaders(map: HeaderMap, except: string = ""): void {
    let at = this.headersAt;
    if (at == 0) return;
    const n = <i32>load<u16>(at);
    at += 2;
    for (let i = 0; i < n; i++) {
      const kl = <usize>load<u8>(at);
      const vl = <usize>load<u16>(at + 1);
      if (!RateLimitAnswer.sameName(at + 3, kl, except)) {
        proxy_replace_header_map_value(map.mapType, at + 3, kl, at + 3 + kl, vl);
      }
      at += 3 + kl + vl;
    }
  }

  /** Frees the host's block; the answer reads as not decided afterwards. */
  release(): void {
    if (this.ptr != 0) heap.free(this.ptr);
    this.ptr = 0;
    this.len = 0;
    this.headersAt = 0;
    this.token = 0;
    this.status = WasmResult.Ok;
    this.localError = "";
  }

  /** Takes the host's block; walks it once so later reads need no bounds checks (headersAt 0: malformed or an error). */
  adopt(ptr: usize, len: usize): void {
    this.ptr = ptr;
    this.len = len;
    this.headersAt = 0;
    if (len < HEAD + 2 || load<u8>(ptr) != RATE_LIMIT_BINARY_TAG || load<u8>(ptr + 1) > 1) return;
    const end = ptr + len;
    let at = ptr + HEAD;
    const statuses = <i32>load<u16>(ptr + 2);
    for (let i = 0; i < statuses; i++) {
      if (at + 28 > end) return;
      at += 28 + <usize>load<u16>(at + 2);
    }
    if (at + 2 > end) return;
    const headers = at;
    const n = <i32>load<u16>(at);
    at += 2;
    for (let i = 0; i < n; i++) {
      if (at + 3 > end) return;
      at += 3 + <usize>load<u8>(at) + <usize>load<u16>(at + 1);
    }
    if (at > end) return;
    this.headersAt = headers;
  }

  private static sameName(ptr: usize, len: usize, name: string): bool {
    if (<i32>len != name.length) return false;
    for (let i: usize = 0; i < len; i++) if (<u16>load<u8>(ptr + i) != load<u16>(changetype<usize>(name) + (i << 1))) return false;
    return true;
  }
}
