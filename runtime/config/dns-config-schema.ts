/** The `dns:` section of weft.yaml: the DNS proxy on 15053 (ztunnel's DNS capture), its cluster domain and its upstream resolvers. */
import { z } from 'zod';
import { parseSocketAddress } from './socket-address.js';
import { isIP } from 'node:net';

/** An upstream resolver: an IP (port 53) or "ip:port" / "[v6]:port". */
const upstream = z.string().refine((s) => isIP(s) !== 0 || parseSocketAddress(s) !== undefined, { message: 'expected an IP or "ip:port"' });

export const dnsSchema = z.strictObject({
  /** Runs the proxy on `listeners.dns` (default 127.0.0.1:15053); setting `listeners.dns` turns it on as well. */
  enabled: z.boolean().default(false),
  /** Suffix of `name.namespace.svc.<clusterDomain>`; defaults to trustDomain (both are cluster.local in a default install). */
  clusterDomain: z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'expected a DNS domain such as cluster.local').optional(),
  /** Where unknown names go: these resolvers, else the `nameserver` lines of `resolvConf`. */
  upstreams: z.array(upstream).optional(),
  resolvConf: z.string().default('/etc/resolv.conf'),
  /** Per attempt; a query that gets no answer in attempts × timeoutMs is answered SERVFAIL (glibc: timeout 5 s, attempts 2). */
  timeoutMs: z.number().int().min(10).max(30_000).default(2_000),
  attempts: z.number().int().min(1).max(5).default(2),
  /** TTL of the answers weft gives from its own state (ztunnel's 30 s). */
  ttlSeconds: z.number().int().min(0).max(86_400).default(30),
  /** Forwarded answers kept for their TTL (least recently used evicted first); 0 turns the cache off. */
  cacheEntries: z.number().int().min(0).max(1_000_000).default(1_000),
});

export type DnsConfig = z.infer<typeof dnsSchema>;
