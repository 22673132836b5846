// Heads the L7 path changes nothing in leave as they came: the request gains only its traceparent, the response goes
// out byte for byte, a `connection: keep-alive` line included; a head with any other field the proxy must drop or
// re-create is written anew (names lower-cased, hop-by-hop fields gone). A request field a filter changed is rewritten
// in its own line (l7-spliced-heads.test.ts has the removals).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type net from 'node:net';
import type { WeftConfig } from '../../runtime/config/config-schema.js';
import type { HeaderList } from '../../runtime/l7/header-list.js';
import type { L7Filter } from '../../runtime/l7/l7-filter.js';
import { makeConfig, rawExchange, startProxy, startRawUpstream, type ProxyHarness } from './l7-harness.js';

let upstream: net.Server;
let harness: ProxyHarness;
let config: WeftConfig;
/** Requests (head and any content-length body) as the upstream received them. */
const received: string[] = [];
/** The response the upstream sends next (head and body). */
let answer = '';

beforeAll(async () => {
  const started = await startRawUpstream('127.0.0.2', (request) => {
    received.push(request);
    return answer;
  });
  upstream = started.server;
  const port = started.port;
  config = makeConfig({
    workloads: [{ name: 'web-1', addresses: ['127.0.0.2'], labels: { app: 'web' } }],
    services: [{ name: 'web', addresses: ['10.96.0.30'], ports: [{ port: 80, targetPort: port, appProtocol: 'http' }], selector: { app: 'web' } }],
  });
  harness = await startProxy(config, 'web.default', 80);
});

afterAll(async () => {
  await harness.close();
  upstream.close();
});

/** One request through a proxy whose filter edits the request and response headers; the client's bytes and the head the upstream got. */
async function exchangeThrough(editRequest: (h: HeaderList) => void, editResponse: (h: HeaderList) => void): Promise<{ text: string; head: string }> {
  const filter: L7Filter = { name: 'edit', start: () => ({ onRequestHeaders: (h) => void editRequest(h), onResponseHeaders: (_s, h) => void editResponse(h) }) };
  const h = await startProxy(config, 'web.default', 80, { extraFilters: () => [filter] });
  try {
    answer = 'HTTP/1.1 200 OK\r\nX-Case: Mixed\r\nContent-Length: 2\r\n\r\nok';
    const { text } = await rawExchange(h.port, 'GET / HTTP/1.1\r\nHost: web\r\nX-Client: Case\r\n\r\n');
    return { text, head: received.at(-1) ?? '' };
  } finally {
    await h.close();
  }
}

const TRACEPARENT = /^traceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]\r\n$/;

describe('verbatim heads', () => {
  it('forwards an unedited request with its own spelling plus a traceparent, and the response byte for byte', async () => {
    answer = 'HTTP/1.1 200 OK\r\nX-Case: Mixed\r\nContent-Length: 2\r\n\r\nok';
    const { text } = await rawExchange(harness.port, 'GET /v?q=1 HTTP/1.1\r\nHost: web\r\nX-Client: Case\r\n\r\n');
    expect(text).toBe(answer);
    const head = received.at(-1);
    expect(head.startsWith('GET /v?q=1 HTTP/1.1\r\nHost: web\r\nX-Client: Case\r\n')).toBe(true);
    expect(head.slice('GET /v?q=1 HTTP/1.1\r\nHost: web\r\nX-Client: Case\r\n'.length, -2)).toMatch(TRACEPARENT);
    expect(head.endsWith('\r\n\r\n')).toBe(true);
  });

  it('keeps a connection: keep-alive line in both heads, and the connection after them', async () => {
    answer = 'HTTP/1.1 201 Created\r\nConnection: keep-alive\r\nX-Case: Mixed\r\nContent-Length: 2\r\n\r\nok';
    const request = 'GET / HTTP/1.1\r\nHost: web\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n';
    const { text } = await rawExchange(harness.port, request + request);
    expect(text).toBe(answer + answer);
    const head = received.at(-1);
    expect(head.startsWith('GET / HTTP/1.1\r\nHost: web\r\nConnection: keep-alive\r\nAccept: */*\r\ntraceparent: ')).toBe(true);
  });

  it('writes a head anew when it carries another hop-by-hop field', async () => {
    answer = 'HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Case: Mixed\r\nContent-Length: 2\r\n\r\nok';
    const { text } = await rawExchange(harness.port, 'GET / HTTP/1.1\r\nHost: web\r\nKeep-Alive: timeout=9\r\n\r\n');
    expect(text).toBe('HTTP/1.1 200 OK\r\nx-case: Mixed\r\ncontent-length: 2\r\n\r\nok');
    const head = received.at(-1);
    expect(head).toMatch(/^GET \/ HTTP\/1\.1\r\nhost: web\r\ntraceparent: /);
    expect(head).not.toMatch(/keep-alive/i);
  });

  it('forwards heads that filters only added fields to as they came, with the added lines before the blank line', async () => {
    const { text, head } = await exchangeThrough((req) => req.set('x-added', 'req'), (res) => res.add('x-added', 'res'));
    expect(text).toBe('HTTP/1.1 200 OK\r\nX-Case: Mixed\r\nContent-Length: 2\r\nx-added: res\r\n\r\nok');
    expect(head).toMatch(/^GET \/ HTTP\/1\.1\r\nHost: web\r\nX-Client: Case\r\nx-added: req\r\ntraceparent: [^\r]+\r\n\r\n$/);
  });

  it('rewrites a request field a filter changed in place (test/direct/l7-spliced-heads.test.ts), and writes a head anew when a filter added a framing field', async () => {
    const { text, head } = await exchangeThrough((req) => req.set('x-client', 'edited'), (res) => res.add('transfer-encoding', 'chunked'));
    expect(text).toBe('HTTP/1.1 200 OK\r\nx-case: Mixed\r\ncontent-length: 2\r\n\r\nok');
    expect(head).toMatch(/^GET \/ HTTP\/1\.1\r\nHost: web\r\nX-Client: edited\r\ntraceparent: [^\r]+\r\n\r\n$/);
  });

  it('keeps the connection for the next request after a verbatim exchange (pipelined pair)', async () => {
    answer = 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA';
    const { text } = await rawExchange(harness.port, 'GET /1 HTTP/1.1\r\nHost: web\r\n\r\nGET /2 HTTP/1.1\r\nHost: web\r\n\r\n');
    expect(text).toBe(answer + answer);
  });
});
