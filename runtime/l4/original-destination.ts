/** Where a captured connection was headed: the local address under TPROXY, SO_ORIGINAL_DST under REDIRECT, nothing for an ordinary connection. */
import type net from 'node:net';
import { loadNativeSocket } from '../native/weft-socket.js';

export interface SocketAddr {
  address: string;
  port: number;
}

/** Strips the IPv4-mapped prefix so lookups by IP see the same text the config uses. */
export function normalizeIp(ip: string | undefined): string {
  if (ip === undefined) return '';
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

export function originalDestination(socket: net.Socket, transparent: boolean): SocketAddr | undefined {
  if (transparent) return { address: normalizeIp(socket.localAddress), port: socket.localPort ?? 0 };
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  const native = loadNativeSocket();
  if (native === null || fd === undefined || fd < 0) return undefined;
  try {
    return native.originalDestination(fd);
  } catch {
    // ENOENT: the connection was not NATed, so there is no original destination to recover.
    return undefined;
  }
}

export function remoteOf(socket: net.Socket): SocketAddr {
  return { address: normalizeIp(socket.remoteAddress), port: socket.remotePort ?? 0 };
}

export function formatAddr(a: SocketAddr): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}
