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

/**
 * Field lines for the fields a filter or route appended to an otherwise unchanged head (HeaderList.appendedFrom), so
 * that the head's own bytes (MessageHead.verbatim) can still be forwarded with these lines after them; '' when nothing
 * was appended, undefined when the head must be written anew: an original field changed or went, or an appended one
 * is a field the writers drop or re-create (hop-by-hop and framing fields; a request's host and traceparent). A caller
 * that spliced the original fields' edits into the head (http1-head-splice.ts) passes `from` = HeaderList.addedFrom.
 */
export function appendedFieldLines(headers: HeaderList, isRequest: boolean, from = headers.appendedFrom): string | undefined {
  if (from < 0) return undefined;
  // A list whose original fields are still undecoded holds the added ones apart: read those without decoding the rest.
  const added = headers.addedUndecoded;
  const f = added ?? headers.flat;
  let out = '';
  for (let i = added === undefined ? from : from - headers.addedFrom; i < f.length; i += 2) {
    const name = f[i]!;
    if (HOP_BY_HOP.has(name) || (isRequest && (name === 'host' || name === 'traceparent'))) return undefined;
    out += `${name}: ${f[i + 1]!}\r\n`;
  }
  return out;
}

/** A verbatim head (see MessageHead.verbatim) with `lines` (whole field lines) before its blank line, and `bodyBytes` of `body` after it, in one buffer. */
export function extendedVerbatimHead(raw: Buffer, lines: string, body?: Buffer, bodyBytes = 0): Buffer {
  const out = Buffer.allocUnsafe(raw.length + lines.length + bodyBytes);
  let at = raw.copy(out, 0, 0, raw.length - 2);
  at += out.write(`${lines}\r\n`, at, 'latin1');
  if (body !== undefined) body.copy(out, at, 0, bodyBytes);
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
