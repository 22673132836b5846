// The DNS proxy through real UDP and TCP sockets: every name form, forwarding, upstream timeouts, malformed input, truncation and TCP fallback, reloads.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import dnsPacket from 'dns-packet';
import { startWeft, testConfig, metricValue, type WeftUnderTest } from '../helpers/weft-harness.js';
import { addressesOf, encodeQuery, rcodeOf, startTestResolver, tcpExchange, tcpQuery, udpExchange, udpQuery, type TestResolver } from '../helpers/dns-client.js';

/** 40 endpoints of a headless service: about 700 bytes of A records, over the 512 bytes of plain UDP. */
const manyPods = Array.from({ length: 40 }, (_, i) => ({ name: `big-${i}`, namespace: 'shop', addresses: [`10.1.0.${i + 1}`], labels: { app: 'big' } }));

function config(resolverPort: number, reviewsVip = '10.96.0.11', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listeners: { ...testConfig().listeners, dns: '127.0.0.1:0' },
    dns: { upstreams: [`127.0.0.1:${resolverPort}`], timeoutMs: 200, attempts: 2 },
    workloads: [
      // The clients: 127.0.0.1 is a pod in namespace shop, 127.0.0.2 one in namespace default.
      { name: 'client-shop', namespace: 'shop', addresses: ['127.0.0.1'] },
      { name: 'client-default', namespace: 'default', addresses: ['127.0.0.2'] },
      ...manyPods,
    ],
    services: [
      { name: 'reviews', namespace: 'default', addresses: [reviewsVip, 'fd00::11'], ports: [{ port: 9080, name: 'http' }, { port: 9443, name: 'GRPC-tls' }] },
      { name: 'cart', namespace: 'shop', addresses: ['10.96.1.7'], ports: [{ port: 80 }] },
      { name: 'big', namespace: 'shop', ports: [{ port: 80 }], selector: { app: 'big' } },
    ],
    ...extra,
  };
}

describe('DNS proxy', () => {
  let weft: WeftUnderTest;
  let resolver: TestResolver;
  let port: number;

  beforeAll(async () => {
    resolver = await startTestResolver({ 'example.com': ['93.184.216.34'], 'tcp.example.com': ['93.184.216.35'], 'cached.example.com': ['93.184.216.36'] });
    weft = await startWeft(config(resolver.port));
    port = weft.app.ports.dns ?? 0;
  });
  afterAll(async () => {
    await weft.close();
    await resolver.close();
  });

  it('answers every name form of a Service from state, over UDP and TCP', async () => {
    for (const query of [udpQuery, tcpQuery]) {
      for (const name of ['reviews.default.svc.cluster.local', 'reviews.default.svc', 'reviews.default', 'REVIEWS.default.svc.cluster.local.']) {
        const reply = await query(port, name);
        expect(rcodeOf(reply), name).toBe('NOERROR');
        expect(reply.flag_aa, name).toBe(true);
        expect(addressesOf(reply), name).toEqual(['10.96.0.11']);
      }
      expect(addressesOf(await query(port, 'reviews.default', { type: 'AAAA' }))).toEqual(['fd00::11']);
    }
    expect(resolver.seen).toEqual([]);
  });

  it('answers a single label inside the asking pod\'s namespace (search-path semantics)', async () => {
    // 127.0.0.1 is a pod in shop: "cart" is cart.shop; from 127.0.0.2 (a pod in default) "reviews" is reviews.default.
    expect(addressesOf(await udpQuery(port, 'cart'))).toEqual(['10.96.1.7']);
    expect(addressesOf(await udpQuery(port, 'reviews', { from: '127.0.0.2' }))).toEqual(['10.96.0.11']);
    // "cart" asked from default is not a Service there: it goes upstream (NXDOMAIN from the test resolver).
    const foreign = await udpQuery(port, 'cart', { from: '127.0.0.2' });
    expect(rcodeOf(foreign)).toBe('NXDOMAIN');
    expect(resolver.seen).toContain('cart A udp');
  });

  it('answers NODATA for a known name without an address of the asked type', async () => {
    const reply = await udpQuery(port, 'cart.shop', { type: 'AAAA' });
    expect(rcodeOf(reply)).toBe('NOERROR');
    expect(reply.answers).toEqual([]);
    const txt = await udpQuery(port, 'cart.shop', { type: 'TXT' });
    expect(rcodeOf(txt)).toBe('NOERROR');
  });

  it('answers SRV for named Service ports in every name form, with the target\'s addresses, over UDP and TCP', async () => {
    for (const query of [udpQuery, tcpQuery]) {
      for (const name of ['_http._tcp.reviews.default.svc.cluster.local', '_http._tcp.reviews.default.svc', '_http._tcp.reviews.default']) {
        const reply = await query(port, name, { type: 'SRV' });
        expect(rcodeOf(reply), name).toBe('NOERROR');
        expect(reply.flag_aa, name).toBe(true);
        expect(reply.answers, name).toEqual([{ type: 'SRV', class: 'IN', name, ttl: 30, flush: false, data: { priority: 10, weight: 100, port: 9080, target: 'reviews.default.svc.cluster.local' } }]);
        expect((reply.additionals ?? []).map((a) => `${a.name} ${a.type} ${a.type === 'A' || a.type === 'AAAA' ? a.data : ''}`), name).toEqual(['reviews.default.svc.cluster.local A 10.96.0.11', 'reviews.default.svc.cluster.local AAAA fd00::11']);
      }
    }
    // Port names are case-insensitive like every DNS label; a bare label completes in the asking pod's namespace.
    expect((await udpQuery(port, '_grpc-tls._tcp.reviews.default', { type: 'SRV' })).answers).toMatchObject([{ data: { port: 9443 } }]);
    expect((await udpQuery(port, '_http._tcp.reviews', { type: 'SRV', from: '127.0.0.2' })).answers).toMatchObject([{ data: { port: 9080 } }]);
    // A port without a name has no SRV record: the name is not weft's, so it goes upstream (NXDOMAIN there).
    expect(rcodeOf(await udpQuery(port, '_http._tcp.cart.shop', { type: 'SRV' }))).toBe('NXDOMAIN');
    expect(resolver.seen).toContain('_http._tcp.cart.shop SRV udp');
    // SRV of the Service name itself: a known name with no record of that type (NODATA).
    const nodata = await udpQuery(port, 'reviews.default', { type: 'SRV' });
    expect(rcodeOf(nodata)).toBe('NOERROR');
    expect(nodata.answers).toEqual([]);
  });

  it('answers pod names (kube-dns pod records)', async () => {
    expect(addressesOf(await udpQuery(port, '10-1-0-3.shop.pod.cluster.local'))).toEqual(['10.1.0.3']);
  });

  it('forwards unknown names to the upstream resolver, over UDP and TCP', async () => {
    const viaUdp = await udpQuery(port, 'example.com', { id: 4242 });
    expect(viaUdp.id).toBe(4242);
    expect(addressesOf(viaUdp)).toEqual(['93.184.216.34']);
    const viaTcp = await tcpQuery(port, 'tcp.example.com');
    expect(addressesOf(viaTcp)).toEqual(['93.184.216.35']);
    expect(resolver.seen).toEqual(expect.arrayContaining(['example.com A udp', 'tcp.example.com A tcp']));
    const metrics = await weft.metrics();
    expect(metricValue(metrics, 'weft_dns_queries_total', { result: 'forwarded' })).toBeGreaterThanOrEqual(2);
    expect(metricValue(metrics, 'weft_dns_queries_total', { result: 'answered' })).toBeGreaterThan(0);
  });

  it('answers a forwarded name again from its cache within the TTL, over UDP and TCP, and NXDOMAIN without a SOA never', async () => {
    const first = await udpQuery(port, 'cached.example.com');
    const asked = resolver.seen.filter((q) => q.startsWith('cached.example.com ')).length;
    const again = await udpQuery(port, 'Cached.Example.com', { id: 777 });
    const overTcp = await tcpQuery(port, 'cached.example.com');
    expect(resolver.seen.filter((q) => q.startsWith('cached.example.com ')).length).toBe(asked);
    expect(again.id).toBe(777);
    expect(again.questions?.[0]?.name).toBe('Cached.Example.com');
    expect([addressesOf(first), addressesOf(again), addressesOf(overTcp)]).toEqual([['93.184.216.36'], ['93.184.216.36'], ['93.184.216.36']]);
    expect(metricValue(await weft.metrics(), 'weft_dns_queries_total', { result: 'cached' })).toBeGreaterThanOrEqual(2);
    // The test resolver's NXDOMAIN carries no SOA: nothing says how long it may be kept (RFC 2308), so it is asked again.
    await udpQuery(port, 'missing.example.com');
    await udpQuery(port, 'missing.example.com');
    expect(resolver.seen.filter((q) => q === 'missing.example.com A udp')).toHaveLength(2);
  });

  it('sets TC on a UDP answer over 512 bytes, and answers it in full over TCP', async () => {
    const udp = await udpQuery(port, 'big.shop.svc.cluster.local');
    expect(udp.flag_tc).toBe(true);
    expect(udp.answers).toEqual([]);
    const tcp = await tcpQuery(port, 'big.shop.svc.cluster.local');
    expect(tcp.flag_tc).toBe(false);
    expect(addressesOf(tcp)).toHaveLength(40);
    // With EDNS the client's larger buffer holds the answer, no truncation.
    const edns = await udpQuery(port, 'big.shop', { ednsSize: 1232 });
    expect(edns.flag_tc).toBe(false);
    expect(addressesOf(edns)).toHaveLength(40);
  });

  it('answers several pipelined queries on one TCP connection', async () => {
    const replies = await tcpExchange(port, [encodeQuery('cart.shop', { id: 1 }), encodeQuery('example.com', { id: 2 }), encodeQuery('reviews.default', { id: 3 })]);
    const byId = new Map(replies.map((r) => dnsPacket.decode(r)).map((r) => [r.id, addressesOf(r)]));
    expect(byId).toEqual(new Map([[1, ['10.96.1.7']], [2, ['93.184.216.34']], [3, ['10.96.0.11']]]));
  });

  it('answers FORMERR to a malformed query with a header, drops bytes without one, and keeps answering', async () => {
    const headerOnlyClaimingAQuestion = Buffer.from([0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
    const formerr = await udpExchange(port, headerOnlyClaimingAQuestion);
    expect(formerr).toBeDefined();
    const decoded = dnsPacket.decode(formerr as Buffer);
    expect(decoded.id).toBe(0x1234);
    expect(rcodeOf(decoded)).toBe('FORMERR');
    expect(await udpExchange(port, Buffer.from([1, 2, 3]), { timeoutMs: 300 })).toBeUndefined();
    const [tcpFormerr] = await tcpExchange(port, [headerOnlyClaimingAQuestion]);
    expect(rcodeOf(dnsPacket.decode(tcpFormerr as Buffer))).toBe('FORMERR');
    expect(addressesOf(await udpQuery(port, 'cart.shop'))).toEqual(['10.96.1.7']);
    expect(metricValue(await weft.metrics(), 'weft_dns_queries_total', { result: 'failed' })).toBeGreaterThanOrEqual(2);
  });

  it('closes both fds it was handed when attaching them fails, and keeps answering', async () => {
    const dns = weft.app.dns;
    expect(dns).toBeDefined();
    const udp = fs.openSync(process.execPath, 'r');
    const tcp = fs.openSync(process.execPath, 'r');
    await expect(dns?.attach({ udp, tcp }, 4, 'shop')).rejects.toThrow(/fd/i);
    for (const fd of [udp, tcp]) expect(() => fs.fstatSync(fd)).toThrow(/EBADF/);
    expect(addressesOf(await udpQuery(port, 'cart.shop.svc.cluster.local'))).toEqual(['10.96.1.7']);
  });

  it('gives the new address after a reload changes a Service', async () => {
    expect(addressesOf(await udpQuery(port, 'reviews.default'))).toEqual(['10.96.0.11']);
    const applied = await weft.app.reload(testConfig(config(resolver.port, '10.96.0.99')));
    expect(applied.ok).toBe(true);
    expect(addressesOf(await udpQuery(port, 'reviews.default'))).toEqual(['10.96.0.99']);
    expect(addressesOf(await tcpQuery(port, 'reviews.default.svc.cluster.local'))).toEqual(['10.96.0.99']);
  });
});

describe('DNS proxy with an upstream that never answers', () => {
  it('answers SERVFAIL after every attempt timed out, and keeps serving state', async () => {
    const silent = await startTestResolver({}, { silent: true });
    const weft = await startWeft(config(silent.port));
    try {
      const port = weft.app.ports.dns ?? 0;
      // The bound is attempts × timeoutMs = 400 ms; the client waits far longer, so a reply at all proves the bound.
      const reply = await udpQuery(port, 'nowhere.example', { timeoutMs: 5_000 });
      expect(rcodeOf(reply)).toBe('SERVFAIL');
      expect(silent.seen.filter((s) => s === 'nowhere.example A udp')).toHaveLength(2);
      const overTcp = await tcpQuery(port, 'nowhere.example', { timeoutMs: 5_000 });
      expect(rcodeOf(overTcp)).toBe('SERVFAIL');
      expect(addressesOf(await udpQuery(port, 'cart.shop'))).toEqual(['10.96.1.7']);
    } finally {
      await weft.close();
      await silent.close();
    }
  });
});
