/** Parses the head of a forward-proxy request (CONNECT or absolute-form) strictly, and rewrites absolute-form to origin-form for the upstream. */

export interface ProxyRequestHead {
  method: string;
  /** CONNECT: authority host:port; otherwise the absolute URL. */
  target: string;
  version: string;
  /** Header lines as received, name and value split, in order. */
  headers: [string, string][];
  /** Bytes of the head including the final CRLFCRLF. */
  headLength: number;
}

export type HeadParse = { state: 'more' } | { state: 'invalid'; status: 400 | 431 | 505; reason: string } | { state: 'done'; head: ProxyRequestHead };

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// RFC 9110 field-value: visible ASCII, obs-text, SP and HTAB; no CR, LF or NUL.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

export function parseProxyRequestHead(buf: Buffer, maxBytes: number): HeadParse {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return buf.length > maxBytes ? { state: 'invalid', status: 431, reason: `request head larger than ${maxBytes} bytes` } : { state: 'more' };
  if (end + 4 > maxBytes) return { state: 'invalid', status: 431, reason: `request head larger than ${maxBytes} bytes` };
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  const requestLine = lines[0] ?? '';
  const m = /^([^ ]+) ([^ ]+) (HTTP\/\d\.\d)$/.exec(requestLine);
  if (m === null) return { state: 'invalid', status: 400, reason: 'malformed request line' };
  const [, method = '', target = '', version = ''] = m;
  if (!TOKEN.test(method)) return { state: 'invalid', status: 400, reason: 'invalid method token' };
  if (!version.startsWith('HTTP/1.')) return { state: 'invalid', status: 505, reason: `${version} is not supported by the explicit proxy` };
  const headers: [string, string][] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line.startsWith(' ') || line.startsWith('\t')) return { state: 'invalid', status: 400, reason: 'obsolete line folding in header (RFC 9112 §5.2)' };
    const colon = line.indexOf(':');
    if (colon <= 0) return { state: 'invalid', status: 400, reason: 'header line without a name' };
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    if (!TOKEN.test(name)) return { state: 'invalid', status: 400, reason: `invalid header name "${name}"` };
    if (!FIELD_VALUE.test(value)) return { state: 'invalid', status: 400, reason: `invalid characters in header ${name}` };
    headers.push([name, value]);
  }
  // RFC 9110 §2.5: a later HTTP/1.x is handled as the highest minor version weft implements.
  return { state: 'done', head: { method, target, version: version === 'HTTP/1.0' ? version : 'HTTP/1.1', headers, headLength: end + 4 } };
}

/** Splits `host:port` / `[v6]:port`; undefined when malformed. */
export function splitAuthority(authority: string, defaultPort?: number): { host: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]/]+)(?::(\d{1,5}))?$/.exec(authority);
  if (m === null) return undefined;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port === undefined || port < 1 || port > 65535) return undefined;
  return { host: m[1] as string, port };
}

/**
 * Absolute-form → origin-form with `Connection: close`: the client's connection then carries exactly one
 * request to one upstream, so later requests on it can never reach the wrong host; clients reconnect. The Host
 * line is the target's authority, whatever the client's said (RFC 9112 §3.2.2): the destination was picked by it, so
 * the origin, and L7 authorization when the destination is handled at L7, must see that same authority.
 */
export function toOriginForm(head: ProxyRequestHead, url: URL): Buffer {
  const out = [`${head.method} ${url.pathname}${url.search} ${head.version}`, `Host: ${url.host}`];
  for (const [name, value] of head.headers) {
    const lower = name.toLowerCase();
    if (lower === 'host' || lower === 'proxy-connection' || lower === 'proxy-authorization' || lower === 'connection' || lower === 'keep-alive') continue;
    out.push(`${name}: ${value}`);
  }
  out.push('Connection: close', '', '');
  return Buffer.from(out.join('\r\n'), 'latin1');
}
