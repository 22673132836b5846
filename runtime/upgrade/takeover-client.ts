/** The successor's side of a hot upgrade (`weft run --takeover`): receives the running weft's listening sockets, and once started tells it to let go. */
import net from 'node:net';
import { WeftError, systemErrorCode } from '../errors.js';
import { createLogger } from '../log.js';
import { requireNativeSocket } from '../native/weft-socket.js';
import { socketHandover, type SocketRecord } from './socket-handover.js';
import { decodeMessages, encodeMessage, type TakeoverMessage } from './takeover-protocol.js';

const log = createLogger('takeover');

/** How long the predecessor may take to send its sockets, and to stop accepting once told to. */
const RECEIVE_TIMEOUT_MS = 10_000;
const RELEASE_TIMEOUT_MS = 30_000;

export interface Predecessor {
  pid: number;
  sockets: number;
  /** Tells the predecessor this process is serving; resolves once it has stopped accepting (it drains on its own). */
  complete(): Promise<void>;
  /** Start-up failed: closes the channel, and the predecessor keeps serving. */
  abort(): void;
}

/**
 * Connects to the weft running at `path` and inherits its listening sockets (socket-handover.ts), which the app
 * adopts as it starts. Undefined when no weft answers there: this process then binds its own sockets.
 */
export function takeOver(path: string): Predecessor | undefined {
  const native = requireNativeSocket('weft run --takeover');
  if (native.unixConnect === undefined || native.fdReceive === undefined) throw new WeftError('WEFT_ERR_NATIVE_UNAVAILABLE', 'weft run --takeover needs the native addon rebuilt (npm install)');
  let fd: number;
  try {
    fd = native.unixConnect(path);
  } catch (err) {
    const code = systemErrorCode(err);
    if (code === 'E2' || code === 'E111') {
      // ENOENT, ECONNREFUSED: nothing runs with this config; start as usual.
      log.warn({ path }, 'no running weft to take over; binding the listeners afresh');
      return undefined;
    }
    throw new WeftError('WEFT_ERR_LISTEN', `takeover: cannot reach the running weft at ${path}: ${(err as Error).message}`, { cause: err });
  }
  const received: { record: SocketRecord; fd: number }[] = [];
  let pid = 0;
  let text = '';
  try {
    // Blocking reads are fine here: nothing else runs yet in this process, and the wait is bounded.
    for (let more = true; more; ) {
      const got = native.fdReceive(fd, RECEIVE_TIMEOUT_MS);
      if (got === null) throw new WeftError('WEFT_ERR_UPSTREAM_TIMEOUT', `takeover: the running weft sent no sockets within ${RECEIVE_TIMEOUT_MS} ms`);
      if (got.data.length === 0) throw new WeftError('WEFT_ERR_UPSTREAM_CONNECT', 'takeover: the running weft closed the control socket (another takeover in progress?)');
      if (got.truncated) throw new WeftError('WEFT_ERR_INTERNAL', 'takeover: descriptors were truncated in transit (out of file descriptors?)');
      const decoded = decodeMessages(text + got.data.toString('utf8'));
      text = decoded.rest;
      const batch = decoded.messages.filter((m): m is Extract<TakeoverMessage, { type: 'sockets' }> => m.type === 'sockets');
      const records = batch.flatMap((m) => m.sockets);
      if (records.length !== got.fds.length) throw new WeftError('WEFT_ERR_INTERNAL', `takeover: ${got.fds.length} descriptors arrived for ${records.length} sockets`);
      records.forEach((record, i) => received.push({ record, fd: got.fds[i] as number }));
      pid = batch[0]?.pid ?? pid;
      more = batch.length === 0 || batch.some((m) => m.more);
    }
  } catch (err) {
    for (const r of received) native.closeFd?.(r.fd);
    native.closeFd?.(fd);
    throw err;
  }
  socketHandover.inherit(received);
  log.info({ predecessor: pid, sockets: received.length }, 'inherited the listening sockets of the running weft');
  const channel = new net.Socket({ fd, readable: true, writable: true });
  channel.on('error', () => undefined);
  return {
    pid,
    sockets: received.length,
    complete: () =>
      new Promise<void>((resolve, reject) => {
        let buffered = '';
        const timer = setTimeout(() => fail(new WeftError('WEFT_ERR_UPSTREAM_TIMEOUT', `takeover: weft ${pid} did not stop accepting within ${RELEASE_TIMEOUT_MS} ms`)), RELEASE_TIMEOUT_MS);
        const fail = (err: Error): void => {
          clearTimeout(timer);
          channel.destroy();
          reject(err);
        };
        channel.setEncoding('utf8');
        channel.on('data', (chunk: string) => {
          buffered += chunk;
          if (!decodeMessages(buffered).messages.some((m) => m.type === 'released')) return;
          clearTimeout(timer);
          channel.end();
          log.info({ predecessor: pid }, 'predecessor stopped accepting; it drains its open connections');
          resolve();
        });
        channel.once('close', () => fail(new WeftError('WEFT_ERR_UPSTREAM_CONNECT', `takeover: weft ${pid} closed the control socket before releasing its listeners`)));
        channel.write(encodeMessage({ type: 'ready', pid: process.pid }));
      }),
    abort: () => channel.destroy(),
  };
}
