import { describe, expect, it } from 'vitest';
import { fstatSync, openSync } from 'node:fs';
import { SocketHandover } from './socket-handover.js';

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

  it('runs deferred activations only at commit, and never after abandon', async () => {
    const h = new SocketHandover();
    const ran: string[] = [];
    h.defer(() => Promise.resolve(void ran.push('a')));
    expect(ran).toEqual([]);
    await h.commit();
    expect(ran).toEqual(['a']);
    h.defer(() => Promise.resolve(void ran.push('b')));
    h.abandon();
    await h.commit();
    expect(ran).toEqual(['a']);
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
