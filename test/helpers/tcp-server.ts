// Real TCP test servers on 127.0.0.x port 0: echo, or a server that sends a fixed reply; closed by the returned close().
import net from 'node:net';

export interface TestServer {
  port: number;
  address: string;
  connections: number;
  close(): Promise<void>;
}

export type ServerMode = 'echo' | { reply: string } | 'drain';

export async function startTcpServer(mode: ServerMode = 'echo', host = '127.0.0.1', port = 0): Promise<TestServer> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0 };
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    if (mode === 'echo') socket.pipe(socket);
    else if (mode === 'drain') {
      socket.resume();
      socket.on('end', () => socket.end());
    } else {
      // Consume what the client sends, or its FIN is never seen and the socket never closes.
      socket.resume();
      socket.end(mode.reply);
    }
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    address: host,
    get connections() {
      return state.connections;
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Connects, writes `payload`, half-closes, and collects everything until the server closes. */
export function roundTrip(port: number, payload: Buffer | string, host = '127.0.0.1'): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ port, host, allowHalfOpen: true }, () => socket.end(payload));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks)));
    socket.on('error', reject);
  });
}

export function connect(port: number, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host, allowHalfOpen: true }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Reads from a socket until `n` bytes arrived (or it ends). */
export function readBytes(socket: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (c: Buffer): void => {
      chunks.push(c);
      total += c.length;
      if (total >= n) done();
    };
    const done = (): void => {
      // Stop flowing: without a 'data' listener, bytes after the first n would be dropped.
      socket.pause();
      socket.off('data', onData);
      socket.off('end', done);
      socket.off('error', reject);
      const all = Buffer.concat(chunks);
      if (all.length > n) socket.unshift(all.subarray(n));
      resolve(all.subarray(0, n));
    };
    socket.on('data', onData);
    socket.once('end', done);
    socket.once('error', reject);
    socket.resume();
  });
}

/** Collects everything a socket delivers until its end. */
export function readAll(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
    socket.resume();
  });
}
