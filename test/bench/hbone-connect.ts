// HBONE connection setup alone (the last part of the HBONE bench, quicker to repeat and to profile with node --cpu-prof): new connections/s, full and resumed, new tunnels over one pooled connection, and the HAProxy pair with and without TLS session reuse.
import net from 'node:net';
import { setLogLevel } from '../../runtime/log.js';
import { connectionSetup, startNodes, IP } from './hbone.js';

/** `WEFT_BENCH_CONNECT=full,resumed,pooled,haproxy` picks the measures (all by default). */
async function main(): Promise<void> {
  setLogLevel('warn');
  const only = new Set((process.env.WEFT_BENCH_CONNECT ?? 'full,resumed,pooled,haproxy').split(','));
  const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  await new Promise<void>((resolve) => echo.listen(0, IP.server, resolve));
  const echoPort = (echo.address() as net.AddressInfo).port;
  try {
    const nodes = await startNodes(echoPort);
    try {
      console.log(JSON.stringify(await connectionSetup(nodes, echoPort, only), null, 2));
    } finally {
      await nodes.close();
    }
  } finally {
    echo.close();
  }
}

await main();
