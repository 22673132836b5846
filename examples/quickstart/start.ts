/** `npm start`: runs the quickstart mesh — demo services on loopback addresses and weft in local mode — and prints curl lines that go through it. */
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApp } from '../../runtime/app.js';
import { loadConfigFile } from '../../runtime/config/config-load.js';
import { formatProblem } from '../../runtime/config/config-problem.js';

// This file runs as dist/examples/quickstart/start.js (npm start) or from source (tsx); the YAML stays in the source tree.
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, HERE.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');
const CONFIG = path.join(ROOT, 'examples/quickstart/weft.yaml');

/** A demo service: answers with its name, version and the headers it received (so plugin edits are visible). */
function startDemo(name: string, version: string, address: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const mesh = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-') || k === 'traceparent'));
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ service: name, version, path: req.url, headers: mesh }) + '\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => resolve(server));
  });
}

async function main(): Promise<void> {
  const loaded = await loadConfigFile(CONFIG);
  if (!loaded.ok) {
    for (const p of loaded.problems) process.stderr.write(formatProblem(p) + '\n');
    process.exitCode = 1;
    return;
  }
  const demos = await Promise.all([
    startDemo('productpage', 'v1', '127.0.0.10', 19090),
    startDemo('reviews', 'v1', '127.0.0.11', 19091),
    startDemo('reviews', 'v2', '127.0.0.12', 19091),
    startDemo('ratings', 'v1', '127.0.0.13', 19092),
  ]);
  const app = await createApp(loaded.config, { onQuit: () => void stop() });
  const p = app.ports;
  process.stdout.write(`
weft quickstart is running (config: ${path.relative(process.cwd(), CONFIG)}). Try:

  # explicit proxy, by service name; reviews has the header-rewrite Wasm plugin attached (L7):
  curl -si -x http://127.0.0.1:${p.explicitProxy} http://reviews.default:9080/

  # the same with HTTP_PROXY, by VIP; ratings has nothing attached and stays at L4:
  http_proxy=http://127.0.0.1:${p.explicitProxy} curl -s http://10.96.0.12:9080/

  # SOCKS5 and HTTP CONNECT through the same port:
  curl -s --socks5-hostname 127.0.0.1:${p.explicitProxy} http://ratings.default.svc.cluster.local:9080/
  curl -s -p -x http://127.0.0.1:${p.explicitProxy} http://productpage.default:9080/

  # a local port forwarded to productpage, like kubectl port-forward:
  curl -s http://127.0.0.1:${p.localPorts['127.0.0.1:19080']}/

  # what weft saw:
  curl -s http://127.0.0.1:${p.metrics}/stats/prometheus | grep -E '^istio_(tcp_connections_opened|requests)_total'
  curl -s http://127.0.0.1:${p.admin}/config_dump

Access-log lines appear below, one per connection (L4) or request (L7). Ctrl-C stops.
`);
  let stopping = false;
  async function stop(): Promise<void> {
    if (stopping) return;
    stopping = true;
    await app.shutdown(1_000);
    await Promise.all(demos.map((d) => new Promise((r) => d.close(r))));
  }
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

main().catch((err: unknown) => {
  process.stderr.write(`quickstart failed: ${(err as Error).message}\n`);
  process.exitCode = 1;
});
