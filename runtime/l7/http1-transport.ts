/**
 * Byte I/O for one HTTP/1 connection (downstream or pooled upstream): `createHttp1Transport` puts a plain TCP socket
 * on its libuv handle (http1-handle-transport.ts) and anything else (TLS, HBONE streams, test duplexes) on Node's
 * stream events, behind one small interface; framing and parsing stay with the callers.
 */
import type { Duplex } from 'node:stream';
import { createHandleTransport } from './http1-handle-transport.js';
import { createNativeTransport } from './http1-native-transport.js';
import { extendedVerbatimHead } from './http1-head-writer.js';

/** What a transport reports to its owner; each is called on the event loop turn the bytes or the event arrived. */
export interface TransportSink {
  onData(chunk: Buffer): void;
  /** The peer half-closed (FIN). */
  onEnd(): void;
  /** Everything written before a `false` from write() has left; reading the other side may resume. */
  onDrain(): void;
  /** The socket is gone; `error` is the read/write/socket error that ended it, if any. */
  onClose(error: Error | undefined): void;
}

export interface Http1Transport {
  readonly socket: Duplex;
  /** Queues bytes (strings as latin1, as every HTTP head is); false means wait for onDrain before writing more. */
  write(data: Buffer | string): boolean;
  /** A head and the body bytes that follow it, in one write. */
  writeHead(head: string, body: Buffer): boolean;
  /**
   * A forwarded head (`head`, its own bytes ending in the blank line) with the field lines `lines` spliced in before
   * its final CRLF, and `body` after it, in one write (the bytes of extendedVerbatimHead).
   */
  writeSpliced(head: Buffer, lines: string, body: Buffer | undefined): boolean;
  pause(): void;
  resume(): void;
  /** Closes the sending side once queued bytes are out (FIN); the socket is destroyed when both sides are done. */
  end(last?: Buffer): void;
  destroy(): void;
  /**
   * Stops reporting data and drain and hands the socket back to Node's stream machinery (byte tunnels pipe it); the
   * close and end reports stay. Returns the socket.
   */
  release(): Duplex;
}

/**
 * For a plain TCP socket with nothing buffered, the addon's batched I/O when built (http1-native-transport.ts), else
 * the handle transport; anything else on the stream one.
 */
export function createHttp1Transport(socket: Duplex, sink: TransportSink): Http1Transport {
  return createNativeTransport(socket, sink) ?? createHandleTransport(socket, sink) ?? new StreamTransport(socket, sink);
}

/** The fallback: Node's 'data', 'end', 'drain', 'error' and 'close' events forwarded to the sink. */
export class StreamTransport implements Http1Transport {
  readonly socket: Duplex;
  readonly #onData: (chunk: Buffer) => void;
  readonly #onDrain: () => void;
  #error: Error | undefined;

  constructor(socket: Duplex, sink: TransportSink) {
    this.socket = socket;
    this.#onData = (chunk) => sink.onData(chunk);
    this.#onDrain = () => sink.onDrain();
    socket.on('data', this.#onData);
    socket.on('end', () => sink.onEnd());
    socket.on('drain', this.#onDrain);
    socket.on('error', (err: Error) => {
      // 'close' follows and reports it.
      this.#error = err;
    });
    socket.on('close', () => sink.onClose(this.#error));
  }

  write(data: Buffer | string): boolean {
    return typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data);
  }

  writeHead(head: string, body: Buffer): boolean {
    if (body.length > 16 * 1024) {
      this.socket.write(head, 'latin1');
      return this.socket.write(body);
    }
    const headBytes = head.length;
    const merged = Buffer.allocUnsafe(headBytes + body.length);
    merged.write(head, 0, headBytes, 'latin1');
    body.copy(merged, headBytes);
    return this.socket.write(merged);
  }

  writeSpliced(head: Buffer, lines: string, body: Buffer | undefined): boolean {
    return this.socket.write(extendedVerbatimHead(head, lines, body, body?.length ?? 0));
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  end(last?: Buffer): void {
    if (last === undefined) this.socket.end();
    else this.socket.end(last);
  }

  destroy(): void {
    this.socket.destroy();
  }

  release(): Duplex {
    this.socket.off('data', this.#onData);
    this.socket.off('drain', this.#onDrain);
    return this.socket;
  }
}
