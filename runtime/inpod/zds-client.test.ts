// The runtime's ZDS client against a scripted agent on a real SOCK_SEQPACKET socket (no root: /dev/null stands in for a netns fd):
// hello first, one Ack per request in order, the fd handed to add, KeepWorkload honoured only before SnapshotSent, pods absent from
// the snapshot dropped, errors acknowledged with their message, and a new connection after the agent restarts.
import { mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { closeFd, loadNetnsNative, SeqpacketServer, SeqpacketSocket } from '../native/weft-netns.js';
import { decodeAck, decodeHello, encodeRequest, type WorkloadRequest } from './zds-codec.js';
import { ZdsClient, type ZdsHandler } from './zds-client.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

/** A scripted agent: accepts the runtime, waits for its hello, then sends requests one by one, collecting each Ack. */
function agent(file: string): { connected: Promise<void>; send(req: WorkloadRequest, fd?: number): Promise<string>; close(): void; hellos: number[] } {
  const hellos: number[] = [];
  let peer: SeqpacketSocket | undefined;
  let pendingAck: ((error: string) => void) | undefined;
  let onConnected: () => void = () => undefined;
  const connected = new Promise<void>((resolve) => (onConnected = resolve));
  const server = new SeqpacketServer(file, (fd) => {
    peer = new SeqpacketSocket(
      fd,
      (m) => {
        if (hellos.length === 0 || pendingAck === undefined) {
          hellos.push(decodeHello(m.data).version);
          onConnected();
          return;
        }
        const ack = pendingAck;
        pendingAck = undefined;
        ack(decodeAck(m.data).error);
      },
      () => undefined,
    );
  });
  return {
    connected,
    hellos,
    send: (req, fd) =>
      new Promise((resolve) => {
        pendingAck = resolve;
        peer?.send(encodeRequest(req), fd === undefined ? [] : [fd]);
      }),
    close: () => {
      peer?.close();
      server.close();
    },
  };
}

function recordingHandler(): ZdsHandler & { added: string[]; deleted: string[]; retained: string[][] } {
  const h = {
    added: [] as string[],
    deleted: [] as string[],
    retained: [] as string[][],
    add: (uid: string, _info: unknown, fd: number) => {
      closeFd(fd);
      if (uid === 'refuse') return Promise.reject(new Error('cannot bind 15001 in the pod'));
      h.added.push(uid);
      return Promise.resolve();
    },
    delete: (uid: string) => {
      h.deleted.push(uid);
      return Promise.resolve(true);
    },
    retainOnly: (uids: ReadonlySet<string>) => {
      h.retained.push([...uids].sort());
      return Promise.resolve([]);
    },
  };
  return h;
}

describe.skipIf(loadNetnsNative() === undefined)('ZDS client (runtime side)', () => {
  it('follows the protocol: hello, adds with their fd, keep before the snapshot only, snapshot reconciliation, del, errors', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'weft-zds-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'ztunnel.sock');
    const fake = agent(file);
    cleanups.push(() => fake.close());
    const handler = recordingHandler();
    const client = new ZdsClient({ path: file, handler, minBackoffMs: 5, maxBackoffMs: 20 });
    cleanups.push(() => client.stop());
    client.start();
    await fake.connected;
    expect(fake.hellos).toEqual([1]);
    expect(client.state).toBe('replaying');
    const netns = (): number => openSync('/dev/null', 'r');
    expect(await fake.send({ kind: 'add', uid: 'p1', info: { name: 'a', namespace: 'mesh', serviceAccount: 'a' } }, netns())).toBe('');
    expect(await fake.send({ kind: 'add', uid: 'no-fd' })).toMatch(/without a network namespace fd/);
    expect(await fake.send({ kind: 'add', uid: 'refuse' }, netns())).toBe('cannot bind 15001 in the pod');
    expect(await fake.send({ kind: 'keep', uid: 'p0' })).toBe('');
    expect(await fake.send({ kind: 'snapshotSent' })).toBe('');
    expect(client.state).toBe('synced');
    expect(handler.retained).toEqual([['p0', 'p1']]);
    expect(await fake.send({ kind: 'keep', uid: 'late' })).toMatch(/only valid before SnapshotSent/);
    expect(await fake.send({ kind: 'del', uid: 'p1' })).toBe('');
    expect(handler.added).toEqual(['p1']);
    expect(handler.deleted).toEqual(['p1']);
  });

  it('reconnects with a new hello when the agent comes back, and replays start over', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'weft-zds-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'ztunnel.sock');
    const handler = recordingHandler();
    // The runtime starts first: it retries until the agent listens.
    const client = new ZdsClient({ path: file, handler, minBackoffMs: 5, maxBackoffMs: 20 });
    cleanups.push(() => client.stop());
    client.start();
    const first = agent(file);
    await first.connected;
    expect(await first.send({ kind: 'snapshotSent' })).toBe('');
    first.close();
    rmSync(file, { force: true });
    const second = agent(file);
    cleanups.push(() => second.close());
    await second.connected;
    expect(second.hellos).toEqual([1]);
    expect(await second.send({ kind: 'snapshotSent' })).toBe('');
    expect(handler.retained).toEqual([[], []]);
  });
});
