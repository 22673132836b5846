/** Shares a predecessor's listening sockets out among this process's worker threads for a hot upgrade: every socket to one worker, and a duplicate to each worker a listener has no socket of its own for. */
import type { HandoverSocket } from '../upgrade/socket-handover.js';

/**
 * Socket j of a listener goes to worker j mod `workers`, so every accept queue of the predecessor's SO_REUSEPORT group
 * gets a reader and equal counts map one to one. When the listener has fewer sockets than there are workers (the
 * predecessor ran fewer), worker i also gets a duplicate of socket i mod count: two event loops then accept from one
 * queue, which the kernel allows, rather than a fresh socket that would take connections before the handover commits.
 * Sockets made after start-up (`late`, in-pod) go to their single owner, worker 0, and are not duplicated.
 */
export function shareOut(sockets: HandoverSocket[], workers: number, dup: (fd: number) => number): HandoverSocket[][] {
  const shares: HandoverSocket[][] = Array.from({ length: workers }, () => []);
  const groups = new Map<string, HandoverSocket[]>();
  for (const s of sockets) {
    const id = `${s.record.kind} ${s.record.key}`;
    groups.set(id, [...(groups.get(id) ?? []), s]);
  }
  for (const group of groups.values()) {
    group.forEach((s, j) => shares[j % workers]?.push(s));
    if (group[0]?.record.late === true) continue;
    for (let i = group.length; i < workers; i++) {
      const source = group[i % group.length] as HandoverSocket;
      shares[i]?.push({ record: source.record, fd: dup(source.fd) });
    }
  }
  return shares;
}
