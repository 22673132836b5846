/** Serializes the HTTP/1.1 heads weft forwards: the request head sent upstream and the start of the response head sent downstream, hop-by-hop fields dropped (RFC 9110 §7.6.1) and framing fields left to the caller's framing decision. */
import type { HeaderList } from './header-list.js';
import { HOP_BY_HOP, type RequestHead, type ResponseHead } from './http1-head-parser.js';
import { reasonPhrase } from './local-reply.js';

export interface UpstreamRequestHead {
  /** The request target after route rewrites. */
  target: string;
  /** Host from the route's authority rewrite; replaces the client's. */
  rewriteAuthority: string | undefined;
  /** Host for a request that had none (HTTP/1.0). */
  authority: string;
  traceparent: string;
  /** A body a filter replaced (its length frames the request); undefined keeps the client's framing. */
  replacedBodyLength: number | undefined;
}

/** The complete request head for the upstream, blank line included. */
export function requestHeadText(h: RequestHead, headers: HeaderList, o: UpstreamRequestHead): string {
  let out = `${h.method} ${o.target} HTTP/1.1\r\n`;
  const f = headers.flat;
  const tokens = h.connectionTokens;
  for (let i = 0; i < f.length; i += 2) {
    const name = f[i]!;
    if (HOP_BY_HOP.has(name) || name === 'traceparent' || (name === 'host' && o.rewriteAuthority !== undefined)) continue;
    if (tokens !== undefined && tokens.includes(name)) continue;
    out += `${name}: ${f[i + 1]!}\r\n`;
  }
  if (o.rewriteAuthority !== undefined) out += `host: ${o.rewriteAuthority}\r\n`;
  else if (h.host === undefined && o.authority !== '') out += `host: ${o.authority}\r\n`;
  out += `traceparent: ${o.traceparent}\r\n`;
  if (o.replacedBodyLength !== undefined) out += `content-length: ${o.replacedBodyLength}\r\n`;
  else if (h.chunked) out += 'transfer-encoding: chunked\r\n';
  else if (h.contentLength !== -1) out += `content-length: ${h.contentLength}\r\n`;
  if (h.upgrade) out += `connection: upgrade\r\nupgrade: ${headers.get('upgrade') ?? ''}\r\n`;
  return out + '\r\n';
}

/** An unedited request head (see MessageHead.verbatim) as it came, with the trace context added before its blank line. */
export function verbatimRequestHead(raw: Buffer, traceparent: string): Buffer {
  const tail = `traceparent: ${traceparent}\r\n\r\n`;
  const out = Buffer.allocUnsafe(raw.length - 2 + tail.length);
  out.write(tail, raw.copy(out, 0, 0, raw.length - 2), 'latin1');
  return out;
}

/** Status line and the forwarded fields of a response; the caller appends framing and connection fields and the blank line. */
export function responseHeadStart(res: ResponseHead, headers: HeaderList): string {
  let out = `HTTP/1.1 ${res.status} ${res.reason === '' ? reasonPhrase(res.status) : res.reason}\r\n`;
  const f = headers.flat;
  const tokens = res.connectionTokens;
  for (let i = 0; i < f.length; i += 2) {
    const name = f[i]!;
    if (HOP_BY_HOP.has(name)) continue;
    if (tokens !== undefined && tokens.includes(name)) continue;
    out += `${name}: ${f[i + 1]!}\r\n`;
  }
  return out;
}

/** The 101 answer of an upgrade: every field but the connection-specific ones, with `connection: upgrade`. */
export function switchingProtocolsHead(res: ResponseHead): string {
  let out = `HTTP/1.1 101 ${res.reason === '' ? 'Switching Protocols' : res.reason}\r\n`;
  const f = res.headers;
  for (let i = 0; i < f.length; i += 2) {
    if (f[i] === 'connection' || f[i] === 'keep-alive') continue;
    out += `${f[i]!}: ${f[i + 1]!}\r\n`;
  }
  return out + 'connection: upgrade\r\n\r\n';
}
