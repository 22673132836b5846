/**
 * The upstream's answer in an HTTP/1.x exchange: its head parsed strictly (1xx interim answers, retry verdicts on the
 * status), route and filter header edits, the head and body handed to http1-response-stream, the upstream connection
 * given back to its pool once both bodies were framed exactly, and 101 upgrades turned into byte tunnels.
 */
import { switchingProtocolsHead } from './http1-head-writer.js';
import { Http1ResponseStream, type ResponseStreamOwner } from './http1-response-stream.js';
import { HeaderList } from './header-list.js';
import { ResponseHeadFields } from './response-head-fields.js';
import { findHeadEnd, HeadParseError, parseResponseHead, type ResponseHead } from './http1-head-parser.js';
import { hasResponseHeaderHooks, onResponseBodyHook, runFilterHook, runResponseHeaders } from './l7-filter.js';
import { L7_ERROR, localReply } from './local-reply.js';
import { applyHeaderOps } from './route-actions.js';
import { spliceTunnel } from './byte-tunnel.js';
import { Http1ExchangeRouter } from './http1-exchange-router.js';
import { wallNow } from './loop-clock.js';

export abstract class Http1ExchangeResponse extends Http1ExchangeRouter implements ResponseStreamOwner {
  onUpstreamData(chunk: Buffer): void {
    if (this.phase === 'waiting') {
      this.resBuf = this.resBuf === null ? chunk : Buffer.concat([this.resBuf, chunk]);
      this.parseResponseHead();
      return;
    }
    if (this.phase === 'streaming') this.response!.forward(chunk, 0);
  }

  protected parseResponseHead(): void {
    const buf = this.resBuf!;
    const limits = this.conn.headLimits;
    const end = findHeadEnd(buf, 0, limits);
    if (end === 0) return;
    if (end instanceof HeadParseError) return this.upstreamProtocolError(end.reason);
    // The fields are decoded only if something asks for them: filters and route operations see them undecoded
    // (ResponseHeadFields), most of them read a few by name or none. A Wasm chain whose plugins act only on the
    // request has no response headers hook at all.
    const filtered = hasResponseHeaderHooks(this.streams);
    const res = parseResponseHead(buf, 0, end, limits, false);
    if (res instanceof HeadParseError) return this.upstreamProtocolError(res.reason);
    if (res.status < 200 && res.status !== 101) {
      // 1xx interim responses: 100 Continue reaches a client that asked for it; others are dropped.
      if (res.status === 100 && this.head.expectContinue && !this.responseStarted) this.conn.io.write('HTTP/1.1 100 Continue\r\n\r\n');
      this.resBuf = end === buf.length ? null : buf.subarray(end);
      if (this.resBuf !== null) this.parseResponseHead();
      return;
    }
    this.clearTryTimer();
    this.res = res;
    this.status = res.status;
    if (res.grpcStatus !== undefined) this.grpcStatus = res.grpcStatus;
    const outcome = res.status >= 500 ? (res.status >= 502 && res.status <= 504 ? 'gateway' : '5xx') : 'success';
    this.cluster!.report(this.endpoint!, outcome, wallNow());
    const verdict = this.retryVerdict(res);
    if (verdict === 'exhausted') this.flags = 'URX';
    if (verdict === 'retry') {
      this.endAttempt(null);
      this.discardUpstream();
      return this.retryOrFail('status', localReply(res.status, L7_ERROR.upstreamReset, 'URX', 'upstream retries exhausted'));
    }
    this.resBuf = null;
    if (res.status === 101) return this.startTunnel(res, end === buf.length ? null : buf.subarray(end));
    const response = new Http1ResponseStream(this.head, res, this.conn.io, this, this.responseBodyHooks, this.bufferResponse, this.conn.ctx.limits.maxBufferedBodyBytes);
    this.response = response;
    if (response.closeAfter) this.keepAlive = false;
    this.phase = 'streaming';
    const ops = this.route?.responseHeaders;
    // Without response filters or header operations the fields stay as the upstream sent them, undecoded (see ParsedResponseHead).
    if (!filtered && ops === undefined) return this.sendResponseHead(res, undefined, buf, end);
    const headers = HeaderList.undecoded(new ResponseHeadFields(res, buf, 0));
    if (ops !== undefined) applyHeaderOps(headers, ops);
    const emptyBody = response.framing.complete;
    if (!filtered) return this.sendResponseHead(res, headers, buf, end);
    const status = runResponseHeaders(this.streams, res.status, headers, emptyBody);
    if (status === undefined) return this.sendResponseHead(res, headers, buf, end);
    // Only a paused filter stops the upstream; pausing costs two epoll changes, too much for every request.
    if (status instanceof Promise) this.upstream?.io.pause();
    this.settle(status, () => {
      this.upstream?.io.resume();
      this.sendResponseHead(res, headers, buf, end);
    });
  }

  /**
   * `headers`: the fields as filters and route operations left them, undefined when nothing could change them; the
   * body bytes that came with the head are chunk[bodyAt, length).
   */
  protected sendResponseHead(res: ResponseHead, headers: HeaderList | undefined, chunk: Buffer, bodyAt: number): void {
    if (this.phase === 'done') return;
    if (this.conn.draining) this.keepAlive = false;
    // An answer that starts before the request body was read (an early 401/413, an expect-based refusal): the rest of
    // that body will never be framed as a request, so the client is told now that the connection ends with it.
    if (!this.reqComplete) this.keepAlive = false;
    const connection = !this.keepAlive ? 'close' : this.head.minor === 0 ? 'keep-alive' : undefined;
    this.response!.start(res, headers, connection, chunk, bodyAt);
  }

  setResponseStatus(status: number): string | undefined {
    const res = this.res;
    if (res === undefined || this.responseStarted) return 'the response head already went out';
    if ((status === 204 || status === 304) && !this.response!.framing.complete) return `a ${status} response cannot carry the upstream's body`;
    res.status = status;
    // The upstream's reason phrase belongs to its own status; the head is written anew with the new one's.
    res.reason = '';
    res.verbatim = undefined;
    this.status = status;
    return undefined;
  }

  onResponseComplete(): void {
    this.finishResponse();
  }

  onResponseInvalid(reason: string): void {
    this.upstreamProtocolError(reason);
  }

  onResponseTooLarge(): void {
    this.discardUpstream();
    this.keepAlive = false;
    this.replyLocal(localReply(500, L7_ERROR.bodyTooLarge, 'UPE', 'response body exceeds the buffering limit'));
  }

  onResponseCollected(body: Buffer): void {
    this.settle(runFilterHook(this.streams, 0, onResponseBodyHook, body, true), () => {
      this.response!.sendCollected(this.replacedResponseBody ?? body);
      this.finishResponse();
    });
  }

  pauseUpstream(): void {
    this.upstream?.io.pause();
  }

  onDownstreamDrain(): void {
    this.upstream?.io.resume();
  }

  protected finishResponse(): void {
    const up = this.upstream;
    this.upstream = null;
    this.endAttempt('success');
    if (up !== null) {
      const reusable = !this.response!.overran && this.reqComplete && !this.res!.close;
      up.pool.release(up, reusable, this.cluster!);
    }
    this.complete();
  }

  onUpstreamClose(error: Error | undefined): void {
    this.upstream = null;
    if (this.phase === 'streaming' && this.response?.framing.untilClose === true) {
      this.response.endedByClose();
      this.endAttempt('success');
      return this.complete();
    }
    if (this.phase === 'waiting') {
      this.clearTryTimer();
      this.endAttempt('local-failure');
      const detail = error === undefined ? 'connection closed before a response' : `connection reset: ${error.message}`;
      return this.attemptFailed('reset', 'UC', localReply(503, L7_ERROR.upstreamReset, 'UC', `upstream ${detail}`));
    }
    if (this.phase === 'streaming') {
      // Mid-body loss: the client already has a status line; only cutting the connection is honest.
      this.flags = 'UC';
      this.endAttempt('local-failure');
      this.keepAlive = false;
      this.conn.io.destroy();
      this.complete();
    }
  }

  protected startTunnel(res: ResponseHead, rest: Buffer | null): void {
    const up = this.upstream;
    if (up === null || !this.head.upgrade) return this.upstreamProtocolError('101 without an upgrade request');
    this.clearTimers();
    const out = switchingProtocolsHead(res);
    this.resStarted = true;
    this.phase = 'done';
    // The pooled connection leaves the pool for good: from here it is a byte pipe.
    up.owner = null;
    const down = this.conn.io.release();
    spliceTunnel(down, up.io.release(), rest === null ? [Buffer.from(out, 'latin1')] : [Buffer.from(out, 'latin1'), rest], this.conn.takeBuffered());
    this.endAttempt('success');
    this.status = 101;
    this.record();
  }
}
