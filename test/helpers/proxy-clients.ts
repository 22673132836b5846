// Minimal explicit-proxy clients that write exact bytes: HTTP CONNECT and SOCKS5 (RFC 1928), returning the tunnelled socket.
import net from 'node:net';
import { connect, readBytes } from './tcp-server.js';

/** Sends CONNECT and resolves with the socket once a 200 arrived; rejects with the status line otherwise. */
export async function httpConnect(proxyPort: number, authority: string): Promise<net.Socket> {
  const socket = await connect(proxyPort);
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  const head = await readHead(socket);
  if (!/^HTTP\/1\.1 200 /.test(head)) {
    socket.destroy();
    throw new Error(head);
  }
  return socket;
}

/** Reads up to and including CRLFCRLF, leaving anything after it unread. */
export async function readHead(socket: net.Socket): Promise<string> {
  let text = '';
  for (;;) {
    const b = await readBytes(socket, 1);
    if (b.length === 0) return text;
    text += b.toString('latin1');
    if (text.endsWith('\r\n\r\n')) return text;
  }
}

/** SOCKS5 CONNECT with no authentication; resolves with the socket and the reply code. */
export async function socks5Connect(proxyPort: number, host: string, port: number): Promise<{ socket: net.Socket; reply: number }> {
  const socket = await connect(proxyPort);
  socket.write(Buffer.from([0x05, 0x01, 0x00]));
  const method = await readBytes(socket, 2);
  if (method[1] !== 0x00) return { socket, reply: -1 };
  const isV4 = net.isIPv4(host);
  const addr = isV4 ? Buffer.from([0x01, ...host.split('.').map(Number)]) : Buffer.concat([Buffer.from([0x03, host.length]), Buffer.from(host)]);
  const portBuf = Buffer.alloc(2);
  portBuf.writeUInt16BE(port);
  socket.write(Buffer.concat([Buffer.from([0x05, 0x01, 0x00]), addr, portBuf]));
  const reply = await readBytes(socket, 10);
  return { socket, reply: reply[1] ?? -1 };
}
