import { describe, expect, it } from 'vitest';
import dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, Question } from 'dns-packet';
import { DnsCache } from './dns-cache.js';

const question: Question = { type: 'A', class: 'IN', name: 'www.example.com' };
const query = (id: number, name = question.name): DecodedPacket => dnsPacket.decode(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ ...question, name }] }));
const raw = (id: number, name = question.name): Buffer => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ ...question, name }] });
const reply = (rcode: number, answers: Answer[], authorities: Answer[] = [], flags = 0): Buffer =>
  dnsPacket.encode({ type: 'response', id: 7, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcode | flags, questions: [question], answers, authorities });
const a = (ttl: number, data: string): Answer => ({ type: 'A', class: 'IN', name: question.name, ttl, data });
const soa = (ttl: number, minimum: number): Answer => ({
  type: 'SOA',
  class: 'IN',
  name: 'example.com',
  ttl,
  data: { mname: 'ns.example.com', rname: 'hostmaster.example.com', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
});

function cacheAt(clock: { t: number }, maxEntries = 10): DnsCache {
  return new DnsCache({ maxEntries: () => maxEntries, now: () => clock.t });
}

describe('DnsCache', () => {
  it('serves an answer until its shortest TTL runs out, with TTLs counted down and the asker\'s ID and question', () => {
    const clock = { t: 0 };
    const cache = cacheAt(clock);
    const key = DnsCache.key(question, query(1));
    cache.set(key, reply(0, [a(60, '192.0.2.1'), a(20, '192.0.2.2')]));
    clock.t = 5_500;
    const hit = dnsPacket.decode(cache.get(key, query(99, 'WWW.example.com'), raw(99, 'WWW.example.com')) as Buffer);
    expect(hit.id).toBe(99);
    expect(hit.questions?.[0]?.name).toBe('WWW.example.com');
    expect(hit.answers?.map((r) => (r.type === 'OPT' ? -1 : r.ttl))).toEqual([55, 15]);
    // Later in the same second: the same bytes, another ID; a second on, one second less.
    clock.t = 5_900;
    expect(dnsPacket.decode(cache.get(key, query(100), raw(100)) as Buffer)).toMatchObject({ id: 100, answers: [{ ttl: 55 }, { ttl: 15 }] });
    clock.t = 6_000;
    expect(dnsPacket.decode(cache.get(key, query(101), raw(101)) as Buffer)).toMatchObject({ id: 101, answers: [{ ttl: 54 }, { ttl: 14 }] });
    clock.t = 20_000;
    expect(cache.get(key, query(3), raw(3))).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('keeps a negative answer for min(SOA TTL, SOA minimum), and not at all without a SOA (RFC 2308)', () => {
    const clock = { t: 0 };
    const cache = cacheAt(clock);
    const key = DnsCache.key(question, query(1));
    cache.set(key, reply(3, [], [soa(300, 10)]));
    clock.t = 9_000;
    expect(cache.get(key, query(2), raw(2))).toBeDefined();
    clock.t = 10_000;
    expect(cache.get(key, query(2), raw(2))).toBeUndefined();
    cache.set(key, reply(3, []));
    expect(cache.size).toBe(0);
  });

  it('never keeps SERVFAIL, truncated answers or a zero TTL, and keeps nothing when off', () => {
    const clock = { t: 0 };
    const cache = cacheAt(clock);
    const key = DnsCache.key(question, query(1));
    cache.set(key, reply(2, []));
    cache.set(key, reply(0, [a(60, '192.0.2.1')], [], 0x0200));
    cache.set(key, reply(0, [a(0, '192.0.2.1')]));
    expect(cache.size).toBe(0);
    const off = cacheAt(clock, 0);
    off.set(key, reply(0, [a(60, '192.0.2.1')]));
    expect(off.size).toBe(0);
  });

  it('evicts the least recently used entry when full', () => {
    const clock = { t: 0 };
    const cache = cacheAt(clock, 2);
    const keys = ['a.test', 'b.test', 'c.test'].map((name) => DnsCache.key({ ...question, name }, query(1, name)));
    cache.set(keys[0] as string, reply(0, [a(60, '192.0.2.1')]));
    cache.set(keys[1] as string, reply(0, [a(60, '192.0.2.2')]));
    expect(cache.get(keys[0] as string, query(1), raw(1))).toBeDefined();
    cache.set(keys[2] as string, reply(0, [a(60, '192.0.2.3')]));
    expect(cache.get(keys[1] as string, query(1), raw(1))).toBeUndefined();
    expect(cache.get(keys[0] as string, query(1), raw(1))).toBeDefined();
  });

  it('tells apart queries that upstream answers differently (type, EDNS), not names that differ in case', () => {
    const plain = DnsCache.key(question, query(1));
    expect(DnsCache.key({ ...question, name: 'WWW.Example.com.' }, query(1))).toBe(plain);
    expect(DnsCache.key({ ...question, type: 'AAAA' }, query(1))).not.toBe(plain);
    const dnssec = dnsPacket.decode(dnsPacket.encode({ type: 'query', id: 1, flags: dnsPacket.RECURSION_DESIRED, questions: [question], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: dnsPacket.DNSSEC_OK } as unknown as Answer] }));
    expect(DnsCache.key(question, dnssec)).not.toBe(plain);
  });
});
