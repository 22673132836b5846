// Node B of the HBONE bench, in its own worker thread: a whole weft runtime plus the stand-in for its TPROXY inbound capture.
import net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { createApp } from '../../runtime/app.js';
import { configSchema } from '../../runtime/config/config-schema.js';
import { setLogLevel } from '../../runtime/log.js';

interface NodeBData {
  raw: Record<string, unknown>;
  inbound: { address: string; port: number };
  target: { address: string; port: number };
}

setLogLevel('warn');
const data = workerData as NodeBData;
const app = await createApp(configSchema.parse(data.raw));
const inbound = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => void app.handleInbound(s, data.target));
await new Promise<void>((resolve) => inbound.listen(data.inbound.port, data.inbound.address, resolve));
// 'cpu': this thread's CPU time so far (µs), so the bench can split a measure's CPU between the nodes; anything else stops.
parentPort?.on('message', (msg) => {
  if (msg === 'cpu') {
    const used = process.threadCpuUsage();
    parentPort?.postMessage(used.user + used.system);
    return;
  }
  inbound.close();
  void app.shutdown(0).then(() => process.exit(0));
});
parentPort?.postMessage('ready');
