// The quickstart example stays runnable: its weft.yaml loads, the demo mesh answers through the explicit proxy, and the attached plugin edits headers.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfigFile } from '../../runtime/config/config-load.js';
import { listenersSchema } from '../../runtime/config/config-schema.js';
import { createApp, type App } from '../../runtime/app.js';
import { TEST_LISTENERS } from '../helpers/weft-harness.js';
import { requireCommands } from '../helpers/requirements.js';
const run = promisify(execFile);
let app: App;
const demos: http.Server[] = [];

beforeAll(async () => {
  expect(existsSync('plugins/header-rewrite/build/release.wasm'), 'npm install builds the plugins').toBe(true);
  const loaded = await loadConfigFile('examples/quickstart/weft.yaml');
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  for (const [ip, port, name] of [['127.0.0.11', 19091, 'reviews'], ['127.0.0.12', 19091, 'reviews'], ['127.0.0.13', 19092, 'ratings']] as const) {
    const s = http.createServer((req, res) => res.end(JSON.stringify({ name, mesh: req.headers['x-mesh'] ?? null })));
    await new Promise<void>((r) => s.listen(port, ip, r));
    demos.push(s);
  }
  // The example's fixed ports may be taken on a developer machine; everything else is the example as shipped.
  app = await createApp({ ...loaded.config, listeners: listenersSchema.parse(TEST_LISTENERS), localPorts: [] }, { accessLogSink: () => undefined });
});

afterAll(async () => {
  await app.shutdown(100);
  for (const s of demos) await new Promise((r) => s.close(r));
});

it('serves the curl lines it prints', async (ctx) => {
  requireCommands(ctx, 'curl');
  const proxy = `http://127.0.0.1:${app.ports.explicitProxy}`;
  const l7 = await run('curl', ['-si', '-x', proxy, 'http://reviews.default:9080/']);
  expect(l7.stdout).toMatch(/x-served-by: weft header-rewrite plugin/);
  expect(l7.stdout).toContain('"mesh":"weft"');
  const l4 = await run('curl', ['-s', '--socks5-hostname', `127.0.0.1:${app.ports.explicitProxy}`, 'http://ratings.default.svc.cluster.local:9080/']);
  expect(JSON.parse(l4.stdout)).toEqual({ name: 'ratings', mesh: null });
});
