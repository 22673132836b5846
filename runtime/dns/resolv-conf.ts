/** Reads the upstream resolvers for names weft does not own: `dns.upstreams`, else the `nameserver` lines of resolv.conf (resolv.conf(5)). */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { DnsConfig } from '../config/dns-config-schema.js';
import { parseSocketAddress } from '../config/socket-address.js';
import type { SocketAddr } from '../l4/original-destination.js';

/** resolv.conf(5): at most MAXNS (3) name servers are used. */
const MAXNS = 3;

export function parseUpstream(text: string): SocketAddr | undefined {
  if (isIP(text) !== 0) return { address: text, port: 53 };
  const addr = parseSocketAddress(text);
  return addr === undefined ? undefined : { address: addr.host, port: addr.port };
}

/** `nameserver` lines in order; a zone index (`fe80::1%eth0`) is dropped with the address, as Node's sockets cannot use it. */
export function parseResolvConf(text: string): SocketAddr[] {
  const servers: SocketAddr[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m?.[1] === undefined || isIP(m[1]) === 0 || m[1].includes('%')) continue;
    servers.push({ address: m[1], port: 53 });
    if (servers.length === MAXNS) break;
  }
  return servers;
}

/** The resolvers to forward to; an unreadable resolv.conf gives none (every forwarded query is then SERVFAIL, and logged). */
export function upstreamResolvers(config: DnsConfig): SocketAddr[] {
  if (config.upstreams !== undefined) return config.upstreams.map(parseUpstream).filter((a) => a !== undefined);
  try {
    return parseResolvConf(readFileSync(config.resolvConf, 'utf8'));
  } catch {
    return [];
  }
}
