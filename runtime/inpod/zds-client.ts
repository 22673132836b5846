/** The runtime's end of ZDS (ztunnel's role): connects to the node agent's SOCK_SEQPACKET socket, says hello, applies AddWorkload (with the pod's netns fd) / KeepWorkload / DelWorkload / SnapshotSent one at a time, acknowledges each, and reconnects with backoff. */
import { createLogger } from '../log.js';
import { closeFd, SeqpacketSocket, type SeqpacketMessage } from '../native/weft-netns.js';
import { decodeRequest, encodeAck, encodeHello, type WorkloadInfo } from './zds-codec.js';

const log = createLogger('zds');

export interface ZdsHandler {
  add(uid: string, info: WorkloadInfo | undefined, netnsFd: number): Promise<void>;
  delete(uid: string): Promise<unknown>;
  /** SnapshotSent: everything not added or kept since the connection began is gone. */
  retainOnly(uids: ReadonlySet<string>): Promise<unknown>;
}

export interface ZdsClientOptions {
  path: string;
  handler: ZdsHandler;
  /** First reconnect delay (ztunnel: 10 ms), doubled up to maxBackoffMs. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export type ZdsState = 'connecting' | 'replaying' | 'synced';

export class ZdsClient {
  readonly #opts: ZdsClientOptions;
  #socket: SeqpacketSocket | undefined;
  #state: ZdsState = 'connecting';
  #seen = new Set<string>();
  #queue: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #backoff: number;
  #stopped = false;
  #connections = 0;

  constructor(opts: ZdsClientOptions) {
    this.#opts = opts;
    this.#backoff = opts.minBackoffMs ?? 10;
  }

  get state(): ZdsState {
    return this.#state;
  }

  start(): void {
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#socket?.close();
  }

  dump(): unknown {
    return { socket: this.#opts.path, state: this.#state, connections: this.#connections };
  }

  #connect(): void {
    if (this.#stopped) return;
    try {
      this.#socket = SeqpacketSocket.connect(
        this.#opts.path,
        (m) => this.#enqueue(m),
        () => this.#onClose(),
      );
    } catch (err) {
      log.debug({ path: this.#opts.path, err: (err as Error).message }, 'node agent not reachable; retrying');
      this.#retry();
      return;
    }
    this.#connections++;
    this.#state = 'replaying';
    this.#seen = new Set();
    this.#backoff = this.#opts.minBackoffMs ?? 10;
    this.#socket.send(encodeHello());
    log.info({ path: this.#opts.path }, 'connected to the node agent');
  }

  #retry(): void {
    if (this.#stopped) return;
    this.#state = 'connecting';
    this.#timer = setTimeout(() => this.#connect(), this.#backoff);
    this.#backoff = Math.min(this.#backoff * 2, this.#opts.maxBackoffMs ?? 1000);
  }

  #onClose(): void {
    if (this.#stopped) return;
    log.warn({ path: this.#opts.path }, 'node agent connection lost; reconnecting (pods keep their proxies)');
    this.#socket = undefined;
    this.#retry();
  }

  /** Messages are applied strictly in order: the agent waits for each ACK, and a Del must never overtake its Add. */
  #enqueue(m: SeqpacketMessage): void {
    const socket = this.#socket;
    this.#queue = this.#queue.then(async () => {
      const error = await this.#apply(m).then(
        () => '',
        (err: unknown) => (err instanceof Error ? err.message : String(err)),
      );
      if (socket !== undefined && !socket.closed) socket.send(encodeAck(error));
    });
  }

  async #apply(m: SeqpacketMessage): Promise<void> {
    const [fd, ...extra] = m.fds;
    for (const f of extra) closeFd(f);
    let req;
    try {
      req = decodeRequest(m.data);
    } catch (err) {
      if (fd !== undefined) closeFd(fd);
      throw err;
    }
    if (req.kind !== 'add' && fd !== undefined) closeFd(fd);
    switch (req.kind) {
      case 'add':
        if (fd === undefined) throw new Error(`AddWorkload ${req.uid} came without a network namespace fd`);
        await this.#opts.handler.add(req.uid, req.info, fd);
        // Only a pod whose proxy started counts as sent: a refused one is dropped at the snapshot like any other.
        this.#seen.add(req.uid);
        return;
      case 'keep':
        if (this.#state === 'synced') throw new Error('KeepWorkload is only valid before SnapshotSent');
        this.#seen.add(req.uid);
        return;
      case 'del':
        await this.#opts.handler.delete(req.uid);
        return;
      case 'snapshotSent': {
        await this.#opts.handler.retainOnly(this.#seen);
        this.#state = 'synced';
        log.info({ pods: this.#seen.size }, 'snapshot from the node agent applied');
        return;
      }
    }
  }
}
