/** Typed access to the addon's in-pod calls (weft-netns.c): sockets made inside a pod's network namespace, the namespace's addresses, and SOCK_SEQPACKET unix sockets that carry file descriptors, wrapped as a small event-driven SeqpacketSocket. */
import { closeSync, fstatSync } from 'node:fs';
import { WeftError } from '../errors.js';
import { loadNativeSocket, requireNativeSocket, type NativeSocket } from './weft-socket.js';

export interface NetnsNative {
  /** A TCP listener, or with `udp` a bound UDP socket, on an IPv4 or IPv6 address inside the namespace. */
  netnsListen(nsFd: number, host: string, port: number, backlog: number, mark: number, udp?: boolean): number;
  /** An unconnected TCP socket inside the namespace: bound transparently to `source` when given, else of `family`. */
  netnsSocket(nsFd: number, source: string, mark: number, family?: 4 | 6): number;
  netnsAddresses(nsFd: number): string[];
  seqpacketListen(path: string): number;
  seqpacketConnect(path: string): number;
  seqpacketAccept(fd: number): number;
  seqpacketSend(fd: number, data: Buffer, fds: number[]): number;
  seqpacketRecv(fd: number): { data: Buffer; fds: number[]; truncated: boolean } | null;
  watchReadable(fd: number, onReadable: (status: number) => void): object;
  unwatch(handle: object): void;
}

/** The addon's in-pod calls, or a clear error when the addon predates them or is not built. */
export function requireNetnsNative(feature: string): NetnsNative {
  const native = requireNativeSocket(feature) as NativeSocket & Partial<NetnsNative>;
  if (typeof native.netnsListen !== 'function') {
    throw new WeftError('WEFT_ERR_NATIVE_UNAVAILABLE', `${feature} needs the in-pod calls of the native addon; rebuild it with \`npm install\``);
  }
  return native as NetnsNative;
}

/** The in-pod calls when the addon has them (tests skip otherwise). */
export function loadNetnsNative(): NetnsNative | undefined {
  const native = loadNativeSocket() as (NativeSocket & Partial<NetnsNative>) | null;
  return typeof native?.netnsListen === 'function' ? (native as NetnsNative) : undefined;
}

export interface SeqpacketMessage {
  data: Buffer;
  /** Descriptors that came with the packet (SCM_RIGHTS); the receiver owns and must close them. */
  fds: number[];
}

/**
 * One connected SOCK_SEQPACKET unix socket: each send is one packet, each message one packet. `onMessage` runs per
 * packet; `onClose` once, when the peer hangs up or close() is called.
 */
export class SeqpacketSocket {
  readonly #native: NetnsNative;
  #fd: number;
  #watch: object | undefined;
  readonly #onMessage: (m: SeqpacketMessage) => void;
  readonly #onClose: () => void;

  constructor(fd: number, onMessage: (m: SeqpacketMessage) => void, onClose: () => void) {
    this.#native = requireNetnsNative('the ZDS socket');
    this.#fd = fd;
    this.#onMessage = onMessage;
    this.#onClose = onClose;
    this.#watch = this.#native.watchReadable(fd, (status) => this.#drain(status));
  }

  static connect(path: string, onMessage: (m: SeqpacketMessage) => void, onClose: () => void): SeqpacketSocket {
    const native = requireNetnsNative('the ZDS socket');
    return new SeqpacketSocket(native.seqpacketConnect(path), onMessage, onClose);
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  send(data: Buffer, fds: number[] = []): void {
    if (this.#fd < 0) throw new WeftError('WEFT_ERR_ZDS', 'the ZDS connection is closed');
    this.#native.seqpacketSend(this.#fd, data, fds);
  }

  close(): void {
    if (this.#fd < 0) return;
    if (this.#watch !== undefined) this.#native.unwatch(this.#watch);
    this.#watch = undefined;
    closeFd(this.#fd);
    this.#fd = -1;
    this.#onClose();
  }

  #drain(status: number): void {
    if (status < 0) return this.close();
    for (;;) {
      if (this.#fd < 0) return;
      let m: ReturnType<NetnsNative['seqpacketRecv']>;
      try {
        m = this.#native.seqpacketRecv(this.#fd);
      } catch {
        return this.close();
      }
      if (m === null) return;
      if (m.data.length === 0 && m.fds.length === 0) return this.close();
      this.#onMessage({ data: m.data, fds: m.fds });
    }
  }
}

/** A listening SOCK_SEQPACKET socket; each accepted peer becomes a SeqpacketSocket via `onConnection`. */
export class SeqpacketServer {
  readonly #native: NetnsNative;
  #fd: number;
  readonly #watch: object;

  constructor(path: string, onConnection: (fd: number) => void) {
    this.#native = requireNetnsNative('the ZDS socket');
    this.#fd = this.#native.seqpacketListen(path);
    this.#watch = this.#native.watchReadable(this.#fd, () => {
      for (let c = this.#native.seqpacketAccept(this.#fd); c >= 0; c = this.#native.seqpacketAccept(this.#fd)) onConnection(c);
    });
  }

  close(): void {
    if (this.#fd < 0) return;
    this.#native.unwatch(this.#watch);
    closeFd(this.#fd);
    this.#fd = -1;
  }
}

/** Closes a descriptor we own; one already closed is not an error worth reporting. */
export function closeFd(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // EBADF: already closed.
  }
}

/** A network namespace's identity, `dev:inode` of an fd or path to it (as ztunnel, cilium and vishvananda/netns compare them). */
export function netnsIdOf(fd: number): string {
  const st = fstatSync(fd);
  return `${st.dev}:${st.ino}`;
}
