import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { accessLogTime, HttpAccessLog, type HttpAccessEntry } from './http-access-log.js';

const entry = (pathName: string): HttpAccessEntry => ({
  start_time: '2026-12-07T00:00:00.000Z', method: 'GET', path: pathName, protocol: 'HTTP/1.1', authority: 'a', response_code: 200, response_flags: '-',
  grpc_status: '-', bytes_received: 0, bytes_sent: 2, duration_ms: 1, upstream_host: '127.0.0.1:1', upstream_cluster: 'c', upstream_attempts: 1,
  route_name: '-', request_id: 'r', trace_id: '-', span_id: '-', source_address: '127.0.0.1:2', source_principal: '-', destination_service: '-', user_agent: '-', error: '-',
});

afterEach(() => {
  vi.useRealTimers();
});

describe('HttpAccessLog', () => {
  it('hands a sink every line of a loop turn in one batch, on the next turn', async () => {
    const batches: string[] = [];
    const log = new HttpAccessLog({ sink: (text) => batches.push(text), worker: 1 });
    log.write(entry('/a'));
    log.write(entry('/b'));
    expect(batches).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(batches).toHaveLength(1);
    expect(batches[0]?.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)).toMatchObject([{ kind: 'http', worker: 1, path: '/a' }, { path: '/b' }]);
  });

  it('writes a file in batches held up to 50 ms, and close() writes what is still held, in order', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'weft-http-log-'));
    try {
      const file = path.join(dir, 'access.log');
      vi.useFakeTimers({ toFake: ['setTimeout', 'setImmediate'] });
      const log = new HttpAccessLog({ path: file });
      for (let i = 0; i < 3; i++) log.write(entry(`/${i}`));
      // One timer for the batch (no setImmediate per loop turn), released after 50 ms.
      expect(vi.getTimerCount()).toBe(1);
      vi.advanceTimersByTime(49);
      expect(vi.getTimerCount()).toBe(1);
      vi.advanceTimersByTime(1);
      expect(vi.getTimerCount()).toBe(0);
      log.write(entry('/3'));
      vi.useRealTimers();
      await log.close();
      const paths = (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { path: string }).path);
      expect(paths).toEqual(['/0', '/1', '/2', '/3']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('accessLogTime', () => {
  it('is the ISO time of the millisecond, whatever was asked before', () => {
    for (const ms of [1_765_065_600_000.9, 1_765_065_600_000.1, 1_765_065_600_001, 0, 1_765_065_600_000.5, 1_765_065_599_999]) {
      expect(accessLogTime(ms)).toBe(new Date(ms).toISOString());
    }
  });
});
