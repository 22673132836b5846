import { describe, expect, it } from 'vitest';
import { shareOut } from './share-out.js';
import type { HandoverSocket } from '../upgrade/socket-handover.js';

const sock = (key: string, fd: number, kind: 'tcp' | 'udp' = 'tcp', late = false): HandoverSocket => ({ record: { key, kind, port: 15001, ...(late ? { late } : {}) }, fd });
const fds = (share: HandoverSocket[] | undefined) => (share ?? []).map((s) => `${s.record.kind} ${s.record.key} ${s.fd}`);

describe('shareOut', () => {
  it('gives each worker one socket of the group when the counts match', () => {
    const shares = shareOut([sock('outbound a', 10), sock('outbound a', 11), sock('dns a', 12, 'udp'), sock('dns a', 13, 'udp')], 2, () => -1);
    expect(fds(shares[0])).toEqual(['tcp outbound a 10', 'udp dns a 12']);
    expect(fds(shares[1])).toEqual(['tcp outbound a 11', 'udp dns a 13']);
  });

  it('gives a worker several sockets when the predecessor ran more workers (no queue is left unread)', () => {
    const shares = shareOut([sock('outbound a', 10), sock('outbound a', 11), sock('outbound a', 12)], 2, () => -1);
    expect(fds(shares[0])).toEqual(['tcp outbound a 10', 'tcp outbound a 12']);
    expect(fds(shares[1])).toEqual(['tcp outbound a 11']);
  });

  it('gives the extra workers duplicates when the predecessor ran fewer, except for late (in-pod) sockets', () => {
    let next = 100;
    const shares = shareOut([sock('outbound a', 10), sock('outbound (pod p) b', 20, 'tcp', true)], 3, () => next++);
    expect(fds(shares[0])).toEqual(['tcp outbound a 10', 'tcp outbound (pod p) b 20']);
    expect(fds(shares[1])).toEqual(['tcp outbound a 100']);
    expect(fds(shares[2])).toEqual(['tcp outbound a 101']);
  });
});
