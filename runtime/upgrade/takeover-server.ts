/** The running weft's side of a hot upgrade: listens on the control socket, hands every listening socket to a successor, and lets go of them only when the successor says it is ready. */
import net from 'node:net';
import { existsSync, unlinkSync } from 'node:fs';
import { createLogger } from '../log.js';
import { loadNativeSocket, socketFd } from '../native/weft-socket.js';
import type { HandoverSocket } from './socket-handover.js';
import { decodeMessages, encodeMessage, FDS_PER_MESSAGE } from './takeover-protocol.js';

const log = createLogger('takeover');

/** A successor that connected but never reported ready (stuck in start-up) is given up on after this long. */
const READY_TIMEOUT_MS = 120_000;

export interface TakeoverServerOptions {
  /** Every listening socket to send, as descriptors valid until `release` runs (hot-upgrade.ts HandoverSockets). */
  lend: () => Promise<{ sockets: HandoverSocket[]; release(): void }>;
  /** The successor is ready: stop accepting on every listener (the sockets stay open in the successor). */
  release: () => Promise<void>;
  /** After `released` went out: drain and exit. */
  onTakenOver: (successorPid: number) => void;
}

export class TakeoverServer {
  readonly path: string;
  readonly #server: net.Server;
  #busy = false;

  private constructor(path: string, server: net.Server) {
    this.path = path;
    this.#server = server;
  }

  /**
   * Listens on `path`, unless a live weft already answers there (then this process cannot be taken over, and says so).
   * A socket file left by a process that died is replaced.
   */
  static async start(path: string, opts: TakeoverServerOptions): Promise<TakeoverServer | undefined> {
    if (loadNativeSocket()?.fdSend === undefined) {
      log.warn({ path }, 'hot upgrade unavailable: the native addon is not built');
      return undefined;
    }
    if (existsSync(path)) {
      if (await answers(path)) {
        log.warn({ path }, 'another weft holds the takeover socket; this process cannot be taken over');
        return undefined;
      }
      unlinkSync(path);
    }
    const server = net.createServer({ pauseOnConnect: true });
    const takeover = new TakeoverServer(path, server);
    server.on('connection', (socket) => takeover.#serve(socket, opts));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.unref();
    log.info({ path }, 'ready to be taken over (weft run --takeover)');
    return takeover;
  }

  close(): void {
    if (!this.#server.listening) return;
    // net.Server unlinks its unix socket path on close.
    this.#server.close();
  }

  #serve(socket: net.Socket, opts: TakeoverServerOptions): void {
    const fd = socketFd(socket);
    const native = loadNativeSocket();
    if (this.#busy || fd === undefined || native?.fdSend === undefined) {
      log.warn({}, 'takeover refused: another takeover is in progress');
      socket.destroy();
      return;
    }
    this.#busy = true;
    const send = native.fdSend.bind(native);
    opts.lend().then(
      (lent) => {
        try {
          // Sent before libuv reads or writes this socket (it is paused): the descriptors must ride on their own messages.
          const held = lent.sockets;
          for (let i = 0; i === 0 || i < held.length; i += FDS_PER_MESSAGE) {
            const batch = held.slice(i, i + FDS_PER_MESSAGE);
            const more = i + FDS_PER_MESSAGE < held.length;
            send(fd, encodeMessage({ type: 'sockets', pid: process.pid, sockets: batch.map((h) => h.record), more }), batch.map((h) => h.fd));
          }
          log.info({ sockets: held.length }, 'listening sockets sent to the successor; serving until it is ready');
        } catch (err) {
          log.error({ err }, 'takeover failed while sending the listening sockets; still serving');
          this.#busy = false;
          socket.destroy();
          return;
        } finally {
          lent.release();
        }
        this.#awaitReady(socket, opts);
      },
      (err: unknown) => {
        log.error({ err }, 'takeover failed while gathering the listening sockets; still serving');
        this.#busy = false;
        socket.destroy();
      },
    );
  }

  /** The successor has the sockets: wait for its `ready`, then stop accepting and tell it `released`. */
  #awaitReady(socket: net.Socket, opts: TakeoverServerOptions): void {
    let released = false;
    const timer = setTimeout(() => {
      log.error({ timeoutMs: READY_TIMEOUT_MS }, 'successor did not become ready; still serving');
      socket.destroy();
    }, READY_TIMEOUT_MS);
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      let decoded;
      try {
        decoded = decodeMessages(text + chunk);
      } catch (err) {
        log.error({ err }, 'successor sent garbage on the takeover socket; still serving');
        socket.destroy();
        return;
      }
      text = decoded.rest;
      for (const message of decoded.messages) {
        if (message.type !== 'ready' || released) continue;
        released = true;
        clearTimeout(timer);
        log.info({ successor: message.pid }, 'successor is ready; stop accepting and drain');
        opts.release().then(
          () => {
            // The path is free before the successor hears `released`: it binds its own control socket there next.
            this.close();
            socket.end(encodeMessage({ type: 'released', pid: process.pid }));
            opts.onTakenOver(message.pid);
          },
          (err: unknown) => {
            log.error({ err }, 'stopping the listeners failed');
            socket.destroy();
            opts.onTakenOver(message.pid);
          },
        );
      }
    });
    socket.on('error', () => socket.destroy());
    socket.once('close', () => {
      clearTimeout(timer);
      if (released) return;
      // The successor died or gave up: nothing was released, and the sockets it held copies of stay ours.
      log.warn({}, 'successor went away before it was ready; still serving');
      this.#busy = false;
    });
    socket.resume();
  }
}

/** True when a process accepts connections on the unix socket `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}
