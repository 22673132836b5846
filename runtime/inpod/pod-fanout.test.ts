// The primary's in-pod fan-out against scripted workers (no root: /dev/null and a directory stand in for netns fds): every live
// worker binds each pod before the ACK, one refusal rolls the others back, a replay of the same namespace is a no-op, the fd
// closes only after every worker released the pod, a restarted worker gets every pod, and a snapshot drops the rest.
import { fstatSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { INPOD_ADD_RPC, INPOD_DEL_RPC, PodFanout, type PodWorkers } from './pod-fanout.js';

const isOpen = (fd: number): boolean => {
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
};

/** Workers that record calls; `refuse` names a worker id whose adds fail. */
function scriptedWorkers(ids: number[], refuse?: number): PodWorkers & { calls: string[]; live: () => number[]; ids: number[] } {
  const w = {
    ids,
    calls: [] as string[],
    live: () => w.ids,
    call: <T>(id: number, method: string, payload: unknown): Promise<T> => {
      const { uid, netnsFd } = payload as { uid: string; netnsFd?: number };
      if (method === INPOD_DEL_RPC && netnsFd === undefined) w.calls.push(`del ${uid} @${id}`);
      if (method === INPOD_ADD_RPC) {
        if (id === refuse) return Promise.reject(new Error(`worker ${id}: cannot bind 15001 in the pod`));
        w.calls.push(`add ${uid} @${id}`);
        return Promise.resolve({ uid, name: uid, ports: [15001, 15006, 15008] } as T);
      }
      return Promise.resolve(true as T);
    },
  };
  return w;
}

const config = { socket: `${tmpdir()}/weft-fanout-none.sock`, mark: 0x539 };
const info = { name: 'a', namespace: 'mesh', serviceAccount: 'a' };

describe('in-pod fan-out to worker threads (primary side)', () => {
  it('binds each pod in every live worker before acknowledging, and lists which workers serve it', async () => {
    const workers = scriptedWorkers([0, 1]);
    const fanout = new PodFanout(config, workers);
    const fd = openSync('/dev/null', 'r');
    await fanout.add('a', info, fd);
    expect(workers.calls.sort()).toEqual(['add a @0', 'add a @1']);
    expect(isOpen(fd)).toBe(true);
    expect((fanout.dump() as { pods: { uid: string; workers: number[] }[] }).pods).toEqual([expect.objectContaining({ uid: 'a', workers: [0, 1] })]);
    fanout.close();
    expect(isOpen(fd)).toBe(false);
  });

  it('rolls back the workers that bound when one refuses, closes the fd and reports the refusal', async () => {
    const workers = scriptedWorkers([0, 1], 1);
    const fanout = new PodFanout(config, workers);
    const fd = openSync('/dev/null', 'r');
    await expect(fanout.add('a', info, fd)).rejects.toThrow('worker 1: cannot bind 15001 in the pod');
    expect(workers.calls).toEqual(['add a @0', 'del a @0']);
    expect(isOpen(fd)).toBe(false);
    expect((fanout.dump() as { pods: unknown[] }).pods).toEqual([]);
  });

  it('treats a re-sent AddWorkload for the same namespace as a no-op, and a new namespace as a replacement', async () => {
    const workers = scriptedWorkers([0, 1]);
    const fanout = new PodFanout(config, workers);
    const first = openSync('/dev/null', 'r');
    await fanout.add('a', info, first);
    const again = openSync('/dev/null', 'r');
    await fanout.add('a', info, again);
    expect(isOpen(again)).toBe(false);
    expect(workers.calls).toHaveLength(2);
    const other = openSync(tmpdir(), 'r');
    await fanout.add('a', info, other);
    expect(isOpen(first)).toBe(false);
    expect(workers.calls.slice(2).sort()).toEqual(['add a @0', 'add a @1', 'del a @0', 'del a @1']);
    fanout.close();
  });

  it('closes the fd only after every worker released the pod; snapshots drop pods the agent no longer has', async () => {
    const workers = scriptedWorkers([0, 1]);
    const openAtDelete: boolean[] = [];
    const fds: number[] = [];
    const call = workers.call.bind(workers);
    workers.call = (id, method, payload) => {
      const uid = (payload as { uid: string }).uid;
      if (method === INPOD_DEL_RPC) openAtDelete.push(isOpen(fds[uid === 'a' ? 0 : 1] as number));
      return call(id, method, payload);
    };
    const fanout = new PodFanout(config, workers);
    for (const uid of ['a', 'b']) {
      const fd = openSync('/dev/null', 'r');
      fds.push(fd);
      await fanout.add(uid, { ...info, name: uid }, fd);
    }
    expect(await fanout.delete('a')).toBe(true);
    expect(await fanout.delete('a')).toBe(false);
    expect(isOpen(fds[0] as number)).toBe(false);
    expect(await fanout.retainOnly(new Set())).toEqual(['b']);
    expect(isOpen(fds[1] as number)).toBe(false);
    expect(openAtDelete).toEqual([true, true, true, true]);
  });

  it('gives a restarted worker every pod, and a third worker that joins as well', async () => {
    const workers = scriptedWorkers([0, 1]);
    const fanout = new PodFanout(config, workers);
    await fanout.add('a', info, openSync('/dev/null', 'r'));
    await fanout.add('b', { ...info, name: 'b' }, openSync('/dev/null', 'r'));
    workers.calls.length = 0;
    await fanout.workerStarted(1);
    workers.ids = [0, 1, 2];
    await fanout.workerStarted(2);
    expect(workers.calls).toEqual(['add a @1', 'add b @1', 'add a @2', 'add b @2']);
    expect((fanout.dump() as { pods: { workers: number[] }[] }).pods.map((p) => p.workers)).toEqual([
      [0, 1, 2],
      [0, 1, 2],
    ]);
    fanout.close();
  });
});
