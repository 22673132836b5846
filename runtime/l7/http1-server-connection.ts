/** The downstream side of HTTP/1.x: buffers and parses request heads strictly, enforces head size/count/time limits, runs one exchange at a time (pipelined requests wait their turn) and keeps the connection alive between them. */
import type { Duplex } from 'node:stream';
import { findHeadEnd, HeadParseError, parseRequestHead, type HeadLimits } from './http1-head-parser.js';
import { Http1Exchange } from './http1-exchange.js';
import type { Http1ExchangeState } from './http1-exchange-state.js';
import { BodyFraming } from './http1-body-framing.js';
import type { L7Context, L7Target } from './l7-context.js';
import type { StateSnapshot } from '../state/state-snapshot.js';
import type { L7Filter, LocalReply } from './l7-filter.js';
import { routeTableFor, type RouteTable } from './route-table.js';
import { L7_ERROR, localReply, serializeLocalReply } from './local-reply.js';
import type { PeerLabels } from './http-telemetry.js';
import { peerLabels } from './http-telemetry.js';
import { createHttp1Transport, type Http1Transport } from './http1-transport.js';
import { wallNow } from './loop-clock.js';

const CR = 0x0d;
const LF = 0x0a;
/** How long a closing connection's late bytes are read and dropped before it is destroyed. */
const LINGER_MS = 1000;

export class Http1ServerConnection {
  readonly socket: Duplex;
  /** All reads and writes of the connection go through here (libuv handle or stream events). */
  readonly io: Http1Transport;
  readonly ctx: L7Context;
  readonly target: L7Target;
  readonly peer: PeerLabels;
  /** Head size and count limits (the same for the requests read here and the responses read upstream). */
  readonly headLimits: HeadLimits;
  /** Unparsed bytes (the start of the next head, or pipelined requests waiting for the current exchange). */
  #buf: Buffer | null = null;
  #exchange: Http1Exchange | null = null;
  #headTimer: NodeJS.Timeout | null = null;
  #closed = false;
  /** The client half-closed; finish the current exchange, then close. */
  #ended = false;
  #paused = false;

  constructor(socket: Duplex, ctx: L7Context, target: L7Target, firstBytes: Buffer | undefined) {
    this.socket = socket;
    this.ctx = ctx;
    this.target = target;
    this.#resolved = target;
    this.peer = peerLabels({
      source: ctx.state.current.workloadByIp(target.source.address),
      sourcePrincipal: target.sourceIdentity,
      service: target.service,
      destination: target.workload,
      protocol: target.servicePort?.appProtocol === 'grpc' ? 'grpc' : 'http',
    });
    this.headLimits = { maxHeadBytes: ctx.limits.maxRequestHeadersBytes, maxHeaders: ctx.limits.maxHeaders };
    ctx.connections.add(this);
    this.#draining = ctx.draining;
    this.io = createHttp1Transport(socket, {
      onData: (chunk) => this.#onData(chunk),
      onEnd: () => this.#onEnd(),
      onDrain: () => this.#exchange?.onDownstreamDrain(),
      onClose: () => this.#onClose(),
    });
    if (firstBytes !== undefined && firstBytes.length > 0) this.#onData(firstBytes);
  }

  /**
   * The target as seen by the current snapshot: a keep-alive connection outlives reloads, and each request must
   * route with the services, endpoints and policies in force when it arrives.
   */
  currentTarget(snapshot: StateSnapshot): L7Target {
    if (this.#targetVersion === snapshot.version) return this.#resolved;
    const t = this.target;
    const service = t.service === undefined ? undefined : (snapshot.serviceByName(t.service.key) ?? t.service);
    const servicePort = t.servicePort === undefined ? undefined : (service?.ports.find((p) => p.port === t.servicePort?.port) ?? t.servicePort);
    const ip = t.workload?.addresses[0];
    const workload = ip === undefined ? undefined : (snapshot.workloadByIp(ip) ?? t.workload);
    this.#resolved = { ...t, service, servicePort, workload };
    this.#targetVersion = snapshot.version;
    this.#table = routeTableFor(snapshot, service, servicePort?.port ?? t.originalDst.port);
    this.#filters = this.ctx.filtersFor(snapshot, this.#resolved);
    return this.#resolved;
  }

  /** Route table and filters for the current target; call currentTarget(snapshot) first. */
  get routeTable(): RouteTable {
    return this.#table!;
  }

  get filters(): readonly L7Filter[] {
    return this.#filters;
  }

  #table: RouteTable | undefined;
  #filters: readonly L7Filter[] = [];

  #targetVersion = -1;
  #resolved: L7Target;

  /** When the last exchange ended (ms since epoch); the proxy's sweep closes connections idle past l7.idleTimeoutMs. */
  idleSince = Date.now();

  /** True when no request is in flight and the connection has been quiet since before `cutoff`. */
  isIdleSince(cutoff: number): boolean {
    return this.#exchange === null && this.#buf === null && this.idleSince < cutoff;
  }

  get closed(): boolean {
    return this.#closed;
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Draining (shutdown or hot upgrade): the next response carries `connection: close` and the connection ends after it. */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Starts the drain. A connection between requests stays open: closing it could race a request the client is
   * already sending on it; the request is answered (with `connection: close`), or the drain deadline ends it.
   */
  drain(): void {
    this.#draining = true;
  }

  /**
   * The drain deadline passed. A connection between requests ends in order (FIN, then late bytes are read and dropped
   * until the client closes, so no unread byte turns the close into a reset); one with a request in flight is cut.
   */
  endAtDeadline(): void {
    if (this.#exchange !== null || this.#buf !== null) return this.destroy();
    this.#closeGracefully();
    this.#lingerThenDestroy();
    return undefined;
  }

  #draining = false;

  #onData(chunk: Buffer): void {
    // After a framing error or the last response, bytes are read and dropped until the close (a lingering close: an
    // unread receive queue would make the kernel reset the connection before the client read the answer).
    if (this.#discarding) return;
    const ex = this.#exchange;
    if (ex !== null && ex.wantsRequestBody) {
      const rest = ex.feedRequestBody(chunk, 0);
      if (rest === -1) return;
      chunk = chunk.subarray(rest);
      if (chunk.length === 0) return;
    }
    this.#buf = this.#buf === null ? chunk : Buffer.concat([this.#buf, chunk]);
    if (ex === null) this.#parseNext();
    else if (this.#buf.length > this.headLimits.maxHeadBytes && !this.#paused) {
      // Pipelined requests beyond one head's worth wait in the kernel, not in memory.
      this.#paused = true;
      this.io.pause();
    }
  }

  #parseNext(): void {
    let buf = this.#buf;
    if (buf === null || this.#closed) return;
    // RFC 9112 §2.2: empty lines (CRLF) before a request line are ignored, as some clients send one after a body.
    if (buf[0] === CR && buf[1] === LF) {
      let i = 2;
      while (buf[i] === CR && buf[i + 1] === LF) i += 2;
      buf = this.#buf = i === buf.length ? null : buf.subarray(i);
      if (buf === null) {
        this.#headTimer ??= setTimeout(() => this.#onHeadTimeout(), this.ctx.limits.headersTimeoutMs);
        return;
      }
    }
    const end = findHeadEnd(buf, 0, this.headLimits);
    if (end === 0) {
      this.#headTimer ??= setTimeout(() => this.#onHeadTimeout(), this.ctx.limits.headersTimeoutMs);
      return;
    }
    if (this.#headTimer !== null) {
      clearTimeout(this.#headTimer);
      this.#headTimer = null;
    }
    if (end instanceof HeadParseError) return this.#reject(end);
    const head = parseRequestHead(buf, 0, end, this.headLimits);
    if (head instanceof HeadParseError) return this.#reject(head);
    this.#buf = end === buf.length ? null : buf.subarray(end);
    if (head.chunked && this.#buf !== null) {
      const broken = BodyFraming.brokenChunkedBody(this.#buf, 0);
      if (broken !== undefined) return this.#reject(new HeadParseError(400, `invalid chunked body: ${broken}`));
    }
    const ex = new Http1Exchange(this, head);
    this.#exchange = ex;
    ex.start();
    // Body bytes that arrived with the head.
    if (this.#buf !== null && ex.wantsRequestBody && this.#exchange === ex) {
      const rest = ex.feedRequestBody(this.#buf, 0);
      this.#buf = rest === -1 || rest === this.#buf.length ? null : this.#buf.subarray(rest);
    }
  }

  /**
   * The current request's framing failed: no byte after it may be parsed as a request. Whatever arrives from now on is
   * dropped; the exchange answers with `connection: close` (or cuts the connection) and the close follows.
   */
  stopReading(): void {
    this.#buf = null;
    this.#discarding = true;
  }

  /** Called by the exchange when its response is complete and its request fully read. */
  exchangeDone(ex: Http1ExchangeState, keepAlive: boolean): void {
    if (this.#exchange !== ex) return;
    this.#exchange = null;
    this.idleSince = wallNow();
    if (!keepAlive || this.#ended || this.#discarding) {
      this.#closeGracefully();
      return;
    }
    if (this.#paused) {
      this.#paused = false;
      this.io.resume();
    }
    if (this.#buf !== null) this.#parseNext();
  }

  /** Bytes already read past the current head: they belong to a tunnel (CONNECT, Upgrade) once it is up. */
  takeBuffered(): Buffer | null {
    const b = this.#buf;
    this.#buf = null;
    return b;
  }

  /** Leftover bytes after a request body: the next pipelined request. */
  unshift(rest: Buffer): void {
    this.#buf = this.#buf === null ? rest : Buffer.concat([rest, this.#buf]);
  }

  /** Writes a protocol-error reply and closes (the stream position is unknown after a bad head). */
  #reject(err: HeadParseError): void {
    const status = err.status === 502 ? 400 : err.status;
    this.#discarding = true;
    const code = status === 431 ? L7_ERROR.headersTooLarge : L7_ERROR.badRequest;
    this.writeLocalAndClose(localReply(status, code, 'DPE', err.reason), 0);
  }

  #onHeadTimeout(): void {
    this.#headTimer = null;
    if (this.#exchange === null && !this.#closed) this.writeLocalAndClose(localReply(408, L7_ERROR.headersTimeout, 'DPE', 'request headers not received in time'), 0);
  }

  writeLocalAndClose(reply: LocalReply, _requestBytes: number): void {
    this.#buf = null;
    this.#discarding = true;
    if (this.#closed) return;
    this.io.end(serializeLocalReply(reply, true, false));
    this.#closed = true;
    this.#lingerThenDestroy();
  }

  #closeGracefully(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#buf = null;
    this.#discarding = true;
    // No timer here: a large answer may still sit in the write queue, and the idle sweep reaps a client that never closes.
    this.io.end();
  }

  /** A client that keeps sending (or never closes its side) after weft's last answer is cut off rather than read forever. */
  #lingerThenDestroy(): void {
    const timer = setTimeout(() => this.socket.destroy(), LINGER_MS);
    timer.unref();
    this.socket.once('close', () => clearTimeout(timer));
  }

  /** Bytes after the last request are being dropped until the close. */
  #discarding = false;

  #onEnd(): void {
    this.#ended = true;
    if (this.#exchange === null) this.#closeGracefully();
    else this.#exchange.onDownstreamEnd();
  }

  #onClose(): void {
    this.#closed = true;
    if (this.#headTimer !== null) clearTimeout(this.#headTimer);
    this.#headTimer = null;
    this.ctx.connections.delete(this);
    const ex = this.#exchange;
    this.#exchange = null;
    ex?.onDownstreamClose();
  }
}
