// Worker-thread body for the native transport's teardown test: opens a connection on the addon's batched I/O,
// reports the first bytes it read, and exits with the connection still open.
import net from 'node:net';
import { parentPort } from 'node:worker_threads';
import { createHttp1Transport } from '../../runtime/l7/http1-transport.js';

const server = net.createServer((socket) => {
  const transport = createHttp1Transport(socket, {
    onData: (chunk) => {
      parentPort?.postMessage({ transport: transport.constructor.name, data: chunk.toString() });
      process.exit(0);
    },
    onEnd: () => {},
    onDrain: () => {},
    onClose: () => {},
  });
});
server.listen(0, '127.0.0.1', () => {
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1', () => client.write('hello'));
});
