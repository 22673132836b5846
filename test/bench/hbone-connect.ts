// HBONE connection setup alone (the last part of the HBONE bench, quicker to repeat and to profile with node --cpu-prof): new connections/s, full and resumed, new tunnels over one pooled connection, and the HAProxy pair with and without TLS session reuse.
import net from 'node:net';
import { setLogLevel } from '../../runtime/log.js';
import { connectionSetup, startNodes, IP } from './hbone.js';

/**
 * `WEFT_BENCH_CONNECT=full,resumed,pooled,haproxy,one-loop` picks the measures (all but `one-loop` by default). Node B
 * runs on its own thread, so weft has two event loops as the HAProxy measure has (HAProxy's process and the client
 * loop's); `one-loop` adds `full` and `resumed` again with node B on the client loop's thread (`_one_loop` rows), and
 * WEFT_BENCH_NODE_B=here moves the main rows there too.
 */
async function main(): Promise<void> {
  setLogLevel('warn');
  const only = new Set((process.env.WEFT_BENCH_CONNECT ?? 'full,resumed,pooled,haproxy').split(','));
  const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  await new Promise<void>((resolve) => echo.listen(0, IP.server, resolve));
  const echoPort = (echo.address() as net.AddressInfo).port;
  const results: Record<string, number> = {};
  try {
    // One-loop rows first: after the HAProxy measure, thousands of loopback ports sit in TIME_WAIT and a second pair
    // of nodes once failed to bind its HBONE port.
    if (only.has('one-loop')) {
      const oneLoop = await startNodes(echoPort, 'here');
      try {
        Object.assign(results, await connectionSetup(oneLoop, echoPort, new Set(['full', 'resumed'].filter((m) => only.has(m))), '_one_loop'));
      } finally {
        await oneLoop.close();
      }
    }
    const nodes = await startNodes(echoPort, process.env.WEFT_BENCH_NODE_B === 'here' ? 'here' : 'thread');
    try {
      Object.assign(results, await connectionSetup(nodes, echoPort, only));
    } finally {
      await nodes.close();
    }
    console.log(JSON.stringify(results, null, 2));
  } finally {
    echo.close();
  }
}

await main();
