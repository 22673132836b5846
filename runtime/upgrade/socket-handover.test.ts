import { describe, expect, it, vi } from 'vitest';
import { fstatSync, openSync } from 'node:fs';
import { LATE_ADOPTION_MS, SocketHandover } from './socket-handover.js';

describe('SocketHandover', () => {
  it('lists held sockets with their current descriptor and forgets released ones', () => {
    const h = new SocketHandover();
    let fd: number | undefined = 7;
    const release = h.hold({ key: 'outbound 0.0.0.0:15001', kind: 'tcp', port: 15001 }, () => fd);
    h.hold({ key: 'dns 127.0.0.1:15053', kind: 'udp', port: 15053 }, () => 9);
    expect(h.held().map((s) => s.fd)).toEqual([7, 9]);
    fd = undefined;
    expect(h.held().map((s) => s.fd)).toEqual([9]);
    release();
    fd = 7;
    expect(h.held().map((s) => s.record.key)).toEqual(['dns 127.0.0.1:15053']);
  });

  it('gives a listener every inherited socket of its key and kind (one per predecessor worker), once', () => {
    const h = new SocketHandover();
    h.inherit([
      { record: { key: 'dns 127.0.0.1:53', kind: 'udp', port: 53 }, fd: 10 },
      { record: { key: 'dns 127.0.0.1:53', kind: 'tcp', port: 53 }, fd: 11 },
      { record: { key: 'inbound 0.0.0.0:15006', kind: 'tcp', port: 15006 }, fd: 12 },
      { record: { key: 'inbound 0.0.0.0:15006', kind: 'tcp', port: 15006 }, fd: 13 },
    ]);
    expect(h.take('inbound 0.0.0.0:15006', 'tcp')).toEqual([{ fd: 12, port: 15006 }, { fd: 13, port: 15006 }]);
    expect(h.take('inbound 0.0.0.0:15006', 'tcp')).toEqual([]);
    expect(h.take('dns 127.0.0.1:53', 'udp')).toEqual([{ fd: 10, port: 53 }]);
    expect(h.inheriting).toBe(true);
    expect(h.take('dns 127.0.0.1:53', 'tcp')).toEqual([{ fd: 11, port: 53 }]);
    expect(h.inheriting).toBe(false);
  });

  it('runs deferred activations only at commit, at once after it, and never after abandon', async () => {
    const h = new SocketHandover();
    const ran: string[] = [];
    await h.defer(() => Promise.resolve(void ran.push('a')));
    expect(ran).toEqual([]);
    await h.commit();
    expect(ran).toEqual(['a']);
    // A listener made after start-up (in-pod) adopts its inherited socket right away.
    await h.defer(() => Promise.resolve(void ran.push('late')));
    expect(ran).toEqual(['a', 'late']);
    const failed = new SocketHandover();
    await failed.defer(() => Promise.resolve(void ran.push('b')));
    failed.abandon();
    await failed.commit();
    expect(ran).toEqual(['a', 'late']);
  });

  it('names a worker thread\'s pinned addresses as configured, both ways (held and take)', () => {
    const h = new SocketHandover();
    h.setAliases([['127.0.0.1:41234', '127.0.0.1:0']]);
    h.hold({ key: 'localPorts 127.0.0.1:41234 127.0.0.1:41234', kind: 'tcp', port: 41234 }, () => 5);
    expect(h.held().map((s) => s.record.key)).toEqual(['localPorts 127.0.0.1:0 127.0.0.1:0']);
    h.inherit([{ record: { key: 'outbound 127.0.0.1:0', kind: 'tcp', port: 41234 }, fd: 9 }]);
    expect(h.take('outbound 127.0.0.1:41234', 'tcp')).toEqual([{ fd: 9, port: 41234 }]);
  });

  it('extracts the inherited sockets a predicate selects and keeps the rest', () => {
    const h = new SocketHandover();
    h.inherit([
      { record: { key: 'admin 127.0.0.1:0', kind: 'tcp', port: 1 }, fd: 3 },
      { record: { key: 'outbound 127.0.0.1:0', kind: 'tcp', port: 2 }, fd: 4 },
    ]);
    expect(h.extract((r) => !r.key.startsWith('admin ')).map((s) => s.fd)).toEqual([4]);
    expect(h.take('admin 127.0.0.1:0', 'tcp')).toEqual([{ fd: 3, port: 1 }]);
    expect(h.inheriting).toBe(false);
  });

  it('keeps late (in-pod) sockets past commit for their listener, and closes them after the grace period', () => {
    vi.useFakeTimers();
    try {
      const h = new SocketHandover();
      const [early, late] = [openSync('/dev/null', 'r'), openSync('/dev/null', 'r')];
      h.inherit([
        { record: { key: 'gone 127.0.0.1:1', kind: 'tcp', port: 1 }, fd: early },
        { record: { key: 'outbound (pod p) 0.0.0.0:15001', kind: 'tcp', port: 15001, late: true }, fd: late },
      ]);
      expect(h.discardUnused()).toBe(1);
      expect(() => fstatSync(early)).toThrow(/EBADF/);
      expect(fstatSync(late).isCharacterDevice()).toBe(true);
      vi.advanceTimersByTime(LATE_ADOPTION_MS);
      expect(() => fstatSync(late)).toThrow(/EBADF/);
      expect(h.inheriting).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it('closes inherited descriptors nobody adopted', () => {
    const h = new SocketHandover();
    const fd = openSync('/dev/null', 'r');
    h.inherit([{ record: { key: 'gone 127.0.0.1:1', kind: 'tcp', port: 1 }, fd }]);
    expect(h.discardUnused()).toBe(1);
    expect(h.inheriting).toBe(false);
    expect(() => fstatSync(fd)).toThrow(/EBADF/);
  });
});
