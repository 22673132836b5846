/**
 * `weft-cni agent`: the node agent of in-pod mode (istio-cni's role). It keeps every enrolled pod's network namespace
 * open, serves ZDS to the runtime on a SOCK_SEQPACKET socket (the runtime connects; on each connection the whole cache
 * is replayed as AddWorkload, then SnapshotSent) and answers weft-cni's plugin events only once the runtime has
 * acknowledged them. Its cache survives its own restarts: it is rebuilt from weft-cni's pod records.
 */
import { existsSync, openSync, renameSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { createLogger } from '../runtime/log.js';
import { closeFd, netnsIdOf, SeqpacketServer, SeqpacketSocket, type SeqpacketMessage } from '../runtime/native/weft-netns.js';
import { decodeAck, decodeHello, encodeRequest, ZDS_VERSION_V1, type WorkloadInfo, type WorkloadRequest } from '../runtime/inpod/zds-codec.js';
import type { AgentAnswer, AgentRequest } from './agent-client.js';
import { StateStore } from './state-store.js';

const log = createLogger('cni-agent');

function inodeOf(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

export interface InpodAgentOptions {
  zdsSocket: string;
  agentSocket: string;
  stateDir: string;
}

interface CachedPod {
  uid: string;
  info: WorkloadInfo;
  netnsFd: number;
  netnsId: string;
}

/** One runtime connection: requests go out one at a time, each answered by the next Ack. */
class RuntimeConnection {
  readonly socket: SeqpacketSocket;
  hello = false;
  synced = false;
  #acks: ((r: { error: string } | Error) => void)[] = [];
  #chain: Promise<unknown> = Promise.resolve();
  readonly #onHello: () => void;

  constructor(fd: number, onHello: () => void, onClose: (c: RuntimeConnection) => void) {
    this.#onHello = onHello;
    this.socket = new SeqpacketSocket(
      fd,
      (m) => this.#onMessage(m),
      () => {
        for (const a of this.#acks.splice(0)) a(new Error('the runtime disconnected'));
        onClose(this);
      },
    );
  }

  /**
   * Sends and waits for the Ack; an Ack with an error rejects. Requests never overlap. An add's fd is looked up when it
   * is sent, not when queued: a pod deleted meanwhile has had its fd closed, and that number may name another file now.
   */
  request(req: WorkloadRequest, fdAtSend?: () => number | undefined): Promise<void> {
    const next = this.#chain.then(
      () =>
        new Promise<void>((resolve, reject) => {
          const fd = fdAtSend?.();
          if (fdAtSend !== undefined && fd === undefined) return reject(new Error('pod deleted before it was sent to the runtime'));
          this.#acks.push((r) => (r instanceof Error ? reject(r) : r.error === '' ? resolve() : reject(new Error(r.error))));
          try {
            this.socket.send(encodeRequest(req), fd === undefined ? [] : [fd]);
          } catch (err) {
            this.#acks.pop();
            reject(err instanceof Error ? err : new Error(String(err)));
          }
        }),
    );
    this.#chain = next.catch(() => undefined);
    return next;
  }

  #onMessage(m: SeqpacketMessage): void {
    for (const fd of m.fds) closeFd(fd);
    if (!this.hello) {
      const { version } = decodeHello(m.data);
      if (version !== ZDS_VERSION_V1) log.warn({ version }, 'runtime speaks an unknown ZDS version; trying V1');
      this.hello = true;
      this.#onHello();
      return;
    }
    const ack = this.#acks.shift();
    try {
      ack?.(decodeAck(m.data));
    } catch (err) {
      ack?.(err as Error);
    }
  }
}

export class InpodAgent {
  readonly #opts: InpodAgentOptions;
  readonly #cache = new Map<string, CachedPod>();
  /** Plugin events waiting for a runtime to acknowledge their pod. */
  readonly #waiting = new Map<string, ((err?: Error) => void)[]>();
  #active: RuntimeConnection | undefined;
  #zds: SeqpacketServer | undefined;
  #events: net.Server | undefined;
  #eventsInode: number | undefined;

  constructor(opts: InpodAgentOptions) {
    this.#opts = opts;
  }

  get pods(): number {
    return this.#cache.size;
  }

  async start(): Promise<void> {
    this.#loadFromRecords();
    rmSync(this.#opts.zdsSocket, { force: true });
    this.#zds = new SeqpacketServer(this.#opts.zdsSocket, (fd) => this.#onRuntime(fd));
    const events = net.createServer((s) => this.#onPluginEvent(s));
    this.#events = events;
    // Bound under a name of its own, then renamed over the path: a successor (the DaemonSet's surge pod) takes the path
    // over without a moment where plugin events find no socket, and our close (libuv unlinks the name it bound) cannot
    // remove the successor's socket.
    const bound = `${this.#opts.agentSocket}.${process.pid}`;
    rmSync(bound, { force: true });
    await new Promise<void>((resolve, reject) => {
      events.once('error', reject);
      events.listen(bound, () => resolve());
    });
    renameSync(bound, this.#opts.agentSocket);
    this.#eventsInode = statSync(this.#opts.agentSocket).ino;
    log.info({ zds: this.#opts.zdsSocket, events: this.#opts.agentSocket, pods: this.#cache.size }, 'node agent ready');
  }

  close(): void {
    this.#zds?.close();
    this.#events?.close();
    // The path is ours to remove only while it still names our socket.
    if (this.#eventsInode !== undefined && inodeOf(this.#opts.agentSocket) === this.#eventsInode) rmSync(this.#opts.agentSocket, { force: true });
    this.#eventsInode = undefined;
    this.#active?.socket.close();
    for (const pod of this.#cache.values()) closeFd(pod.netnsFd);
    this.#cache.clear();
  }

  /** Pods weft-cni enrolled before this agent started (an agent restart): their namespaces, if they still exist. */
  #loadFromRecords(): void {
    for (const pod of new StateStore(this.#opts.stateDir).listPods()) {
      const inpod = pod.inpod;
      if (inpod === undefined || !existsSync(inpod.netns)) continue;
      let fd: number;
      try {
        fd = openSync(inpod.netns, 'r');
      } catch {
        continue;
      }
      if (netnsIdOf(fd) !== inpod.netnsId) {
        closeFd(fd);
        continue;
      }
      this.#cache.set(inpod.uid, { uid: inpod.uid, info: inpod.info, netnsFd: fd, netnsId: inpod.netnsId });
    }
  }

  #onRuntime(fd: number): void {
    const conn: RuntimeConnection = new RuntimeConnection(
      fd,
      () => void this.#replay(conn),
      (c) => {
        if (this.#active === c) this.#active = undefined;
        log.warn({}, 'runtime disconnected; pods keep their rules, new pods wait for the runtime');
      },
    );
  }

  /** ZDS on (re)connect: every cached pod as AddWorkload, then SnapshotSent; the newest runtime becomes the one updated. */
  async #replay(conn: RuntimeConnection): Promise<void> {
    this.#active = conn;
    try {
      for (const uid of [...this.#cache.keys()]) {
        const pod = this.#cache.get(uid);
        if (pod === undefined) continue;
        await conn.request({ kind: 'add', uid, info: pod.info }, () => this.#cache.get(uid)?.netnsFd).then(
          () => this.#settle(uid),
          (err: unknown) => this.#settle(uid, err as Error),
        );
      }
      await conn.request({ kind: 'snapshotSent' });
      conn.synced = true;
      log.info({ pods: this.#cache.size }, 'runtime synced');
      // Pods added while the replay ran.
      for (const uid of [...this.#waiting.keys()]) await this.#push(conn, uid);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'replay to the runtime failed; it will reconnect');
    }
  }

  async #push(conn: RuntimeConnection, uid: string): Promise<void> {
    const pod = this.#cache.get(uid);
    if (pod === undefined) return this.#settle(uid, new Error('pod deleted before the runtime confirmed it'));
    await conn.request({ kind: 'add', uid, info: pod.info }, () => this.#cache.get(uid)?.netnsFd).then(
      () => this.#settle(uid),
      (err: unknown) => this.#settle(uid, err as Error),
    );
  }

  #settle(uid: string, err?: Error): void {
    const waiters = this.#waiting.get(uid);
    this.#waiting.delete(uid);
    for (const w of waiters ?? []) w(err);
  }

  #onPluginEvent(socket: net.Socket): void {
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('error', () => undefined);
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      const answer = (a: AgentAnswer): void => void socket.end(JSON.stringify(a) + '\n');
      let req: AgentRequest;
      try {
        req = JSON.parse(buffered.slice(0, nl)) as AgentRequest;
      } catch {
        return answer({ ok: false, error: 'request is not JSON' });
      }
      buffered = '';
      this.#handle(req).then(
        () => answer({ ok: true }),
        (err: unknown) => answer({ ok: false, error: err instanceof Error ? err.message : String(err) }),
      );
    });
  }

  async #handle(req: AgentRequest): Promise<void> {
    if (req.op === 'del') {
      const pod = this.#cache.get(req.uid);
      this.#cache.delete(req.uid);
      this.#settle(req.uid, new Error('pod deleted'));
      const conn = this.#active;
      // A runtime that is away learns of the delete from the next snapshot, which no longer lists the pod.
      if (conn?.synced === true) await conn.request({ kind: 'del', uid: req.uid }).catch((err: unknown) => log.warn({ uid: req.uid, err: (err as Error).message }, 'runtime did not confirm the delete'));
      if (pod !== undefined) closeFd(pod.netnsFd);
      return;
    }
    if (req.op !== 'add' || typeof req.uid !== 'string' || typeof req.netns !== 'string') throw new Error('expected {op: add|del, uid, netns}');
    const fd = openSync(req.netns, 'r');
    const previous = this.#cache.get(req.uid);
    if (previous !== undefined) closeFd(previous.netnsFd);
    this.#cache.set(req.uid, { uid: req.uid, info: { name: req.name, namespace: req.namespace, serviceAccount: req.serviceAccount }, netnsFd: fd, netnsId: netnsIdOf(fd) });
    const done = new Promise<void>((resolve, reject) => {
      const list = this.#waiting.get(req.uid) ?? [];
      list.push((err) => (err === undefined ? resolve() : reject(err)));
      this.#waiting.set(req.uid, list);
    });
    const conn = this.#active;
    // No runtime (or one still replaying): the pod waits in the cache, and the replay or the push after it confirms it.
    if (conn?.synced === true) await this.#push(conn, req.uid);
    return done.catch((err: unknown) => {
      // Refused by the runtime: the ADD fails, so the pod must not be replayed later.
      if (this.#cache.get(req.uid)?.netnsFd === fd) {
        this.#cache.delete(req.uid);
        closeFd(fd);
      }
      throw err;
    });
  }
}
