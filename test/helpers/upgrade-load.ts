// Steady HTTP load for hot-upgrade tests and benchmarks: keep-alive and new-connection clients, counting every failed request and the longest run of refused connects.
import http from 'node:http';

export interface LoadTarget {
  /** Label in the results (`l7-keepalive`, `l4-new`). */
  name: string;
  host: string;
  port: number;
  keepAlive: boolean;
  /** Concurrent clients, each sending one request after another. */
  clients: number;
}

export interface LoadResult {
  ok: Record<string, number>;
  failed: Record<string, number>;
  errors: string[];
  /** Longest time from a refused connect to the next successful request of the same client (0 when none was refused). */
  longestRefusedGapMs: number;
}

export interface Load {
  /** Requests completed so far, all targets. */
  completed(): number;
  stop(): Promise<LoadResult>;
}

function get(agent: http.Agent | false, target: LoadTarget): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: target.host, port: target.port, path: '/', agent, headers: { host: 'web' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 && body === 'ok' ? resolve() : reject(new Error(`status ${res.statusCode} body ${body.slice(0, 80)}`))));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

export function startLoad(targets: LoadTarget[]): Load {
  const result: LoadResult = { ok: {}, failed: {}, errors: [], longestRefusedGapMs: 0 };
  let running = true;
  let completed = 0;
  const loops: Promise<void>[] = [];
  for (const target of targets) {
    result.ok[target.name] = 0;
    result.failed[target.name] = 0;
    for (let c = 0; c < target.clients; c++) {
      const agent = target.keepAlive ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false;
      loops.push(
        (async () => {
          let refusedSince: number | undefined;
          while (running) {
            try {
              await get(agent, target);
              result.ok[target.name] = (result.ok[target.name] ?? 0) + 1;
              completed++;
              if (refusedSince !== undefined) result.longestRefusedGapMs = Math.max(result.longestRefusedGapMs, performance.now() - refusedSince);
              refusedSince = undefined;
            } catch (err) {
              result.failed[target.name] = (result.failed[target.name] ?? 0) + 1;
              if (result.errors.length < 20) result.errors.push(`${target.name}: ${(err as Error).message}`);
              if ((err as NodeJS.ErrnoException).code === 'ECONNREFUSED') refusedSince ??= performance.now();
            }
          }
          if (agent !== false) agent.destroy();
        })(),
      );
    }
  }
  return {
    completed: () => completed,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return result;
    },
  };
}
