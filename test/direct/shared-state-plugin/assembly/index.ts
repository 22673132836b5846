// Test fixture for the shared-state foreign functions: limits each request by its x-user header through
// weft.ratelimit.should_rate_limit and guards it with breaker "upstream" through weft.breaker.*; answers 429/503 itself.
import {
  BreakerPermit, HeaderPair, HeadersAction, HttpContext, RateLimitDescriptor, RateLimitResult, RootContext, breakerAcquire,
  breakerRecord, registerRootContext, requestHeaders, responseHeaders, shouldRateLimit,
} from "@weft/sdk/assembly/index";
export * from "@weft/sdk/assembly/exports";

class Limited extends HttpContext {
  permit: BreakerPermit | null = null;

  onRequestHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    const user = requestHeaders.get("x-user");
    const d = new RateLimitDescriptor().entry("user", user === null ? "anonymous" : user!);
    const call = shouldRateLimit("fixture", [d], this);
    if (call.pending) return HeadersAction.StopIteration;
    if (call.result === null) {
      this.sendLocalResponse(500, "no limiter\n");
      return HeadersAction.StopIteration;
    }
    return this.decide(call.result!) ? HeadersAction.Continue : HeadersAction.StopIteration;
  }

  onRateLimitResult(token: u32, result: RateLimitResult): void {
    if (this.decide(result)) this.continueRequest();
  }

  onBreakerPermit(token: u32, permit: BreakerPermit): void {
    if (this.admit(permit)) this.continueRequest();
  }

  /** true: go on to the breaker check (which may itself pause); false: answered locally. */
  decide(result: RateLimitResult): bool {
    if (result.failed) {
      this.sendLocalResponse(500, result.error + "\n");
      return false;
    }
    if (result.overLimit) {
      this.sendLocalResponse(429, "over limit\n", result.headers);
      return false;
    }
    const call = breakerAcquire("upstream", this);
    if (call.pending) return false;
    return call.result !== null && this.admit(call.result!);
  }

  admit(permit: BreakerPermit): bool {
    if (!permit.allowed) {
      this.sendLocalResponse(503, "breaker " + permit.state + "\n", [new HeaderPair("x-weft-error", "WEFT_ERR_CIRCUIT_OPEN")]);
      return false;
    }
    this.permit = permit;
    requestHeaders.replace("x-breaker-state", permit.state);
    return true;
  }

  onResponseHeaders(headerCount: u32, endOfStream: bool): HeadersAction {
    if (this.permit !== null) {
      const status = responseStatus();
      breakerRecord(this.permit!, status < 500);
      this.permit = null;
    }
    return HeadersAction.Continue;
  }
}

function responseStatus(): i32 {
  const s = responseHeaders.get(":status");
  return s === null ? 0 : I32.parseInt(s!);
}

class Root extends RootContext {
  newHttpContext(id: u32): HttpContext {
    return new Limited(id, this);
  }
}

registerRootContext((id: u32): RootContext => new Root(id));
