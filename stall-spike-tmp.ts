import http from 'node:http';
import { functionFixture } from './test/helpers/function-fixtures.ts';
import { startWeft } from './test/helpers/weft-harness.ts';
process.env.WEFT_CACHE_DIR = '/tmp/fnspike/cache2';
const lab = await functionFixture('lab');
const mb = Number(process.argv[2] ?? 32), cap = Number(process.argv[3] ?? 24);
const w = await startWeft({ functions: [{ name: 'bulk', namespace: 'fns', url: lab.url, limits: { memoryMb: cap, cpuMs: 120000, timeoutMs: 600000 } }] });
const t0 = performance.now();
let sent = 0, got = 0;
const prog = setInterval(() => console.log('t', (performance.now()-t0).toFixed(0), 'sent', sent>>20, 'got', got>>20), 3000);
await new Promise<void>((resolve) => {
  const req = http.request({ host: '127.0.0.1', port: w.app.ports.explicitProxy, method: 'POST', path: 'http://bulk.fns/echo', headers: { host: 'bulk.fns', 'content-length': mb << 20 }, agent: false }, (res) => {
    console.log('status', res.statusCode);
    res.on('data', (c: Buffer) => { got += c.length; });
    res.on('end', () => { console.log('END', got); resolve(); });
    res.on('aborted', () => { console.log('ABORTED', got); resolve(); });
    res.on('error', (e) => { console.log('RES ERROR', e.message); resolve(); });
  });
  req.on('error', (e) => { console.log('REQ ERROR', e.message); resolve(); });
  req.on('close', () => console.log('req close'));
  const chunk = Buffer.alloc(1 << 16, 7);
  const write = () => { while (sent < (mb << 20)) { sent += chunk.length; if (!req.write(chunk)) { req.once('drain', write); return; } } req.end(); };
  write();
});
console.log('done', (performance.now()-t0).toFixed(0));
clearInterval(prog); await w.close(); process.exit(0);
