/** SOCKS5 (RFC 1928) handshake parsing and replies: no-auth method, CONNECT only; pure functions over the bytes received so far. */

export const SOCKS_VERSION = 0x05;
/** RFC 1928 §6 reply codes. */
export const SOCKS_REPLY = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;
export type SocksReplyCode = (typeof SOCKS_REPLY)[keyof typeof SOCKS_REPLY];

export type Parse<T> = { state: 'more' } | { state: 'invalid'; reason: string; reply?: Buffer } | ({ state: 'done'; used: number } & T);

/** Greeting: VER NMETHODS METHODS...; we accept "no authentication required" (0x00) only. */
export function parseGreeting(buf: Buffer): Parse<{ reply: Buffer }> {
  if (buf.length < 2) return { state: 'more' };
  if (buf[0] !== SOCKS_VERSION) return { state: 'invalid', reason: `not SOCKS5 (version byte ${buf[0]})` };
  const n = buf[1] as number;
  if (n === 0) return { state: 'invalid', reason: 'SOCKS5 greeting lists no authentication method', reply: Buffer.from([SOCKS_VERSION, 0xff]) };
  if (buf.length < 2 + n) return { state: 'more' };
  const methods = buf.subarray(2, 2 + n);
  if (!methods.includes(0x00)) {
    return { state: 'invalid', reason: 'SOCKS5 client offers no method weft supports (only "no authentication")', reply: Buffer.from([SOCKS_VERSION, 0xff]) };
  }
  return { state: 'done', used: 2 + n, reply: Buffer.from([SOCKS_VERSION, 0x00]) };
}

/** Request: VER CMD RSV ATYP DST.ADDR DST.PORT. */
export function parseRequest(buf: Buffer): Parse<{ host: string; port: number }> {
  if (buf.length < 5) return { state: 'more' };
  if (buf[0] !== SOCKS_VERSION) return { state: 'invalid', reason: `bad SOCKS5 request version ${buf[0]}`, reply: socksReply(SOCKS_REPLY.generalFailure) };
  if (buf[1] !== 0x01) return { state: 'invalid', reason: `SOCKS5 command ${buf[1]} is not supported (only CONNECT)`, reply: socksReply(SOCKS_REPLY.commandNotSupported) };
  const atyp = buf[3];
  let host: string;
  let offset: number;
  if (atyp === 0x01) {
    if (buf.length < 10) return { state: 'more' };
    host = `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`;
    offset = 8;
  } else if (atyp === 0x03) {
    const len = buf[4] as number;
    if (len === 0) return { state: 'invalid', reason: 'SOCKS5 domain name is empty', reply: socksReply(SOCKS_REPLY.generalFailure) };
    if (buf.length < 5 + len + 2) return { state: 'more' };
    host = buf.toString('latin1', 5, 5 + len);
    if (!/^[A-Za-z0-9.-]+$/.test(host)) return { state: 'invalid', reason: 'SOCKS5 domain name has invalid characters', reply: socksReply(SOCKS_REPLY.hostUnreachable) };
    offset = 5 + len;
  } else if (atyp === 0x04) {
    if (buf.length < 22) return { state: 'more' };
    const parts: string[] = [];
    for (let i = 0; i < 16; i += 2) parts.push(buf.readUInt16BE(4 + i).toString(16));
    host = parts.join(':');
    offset = 20;
  } else {
    return { state: 'invalid', reason: `SOCKS5 address type ${atyp} is not supported`, reply: socksReply(SOCKS_REPLY.addressTypeNotSupported) };
  }
  const port = buf.readUInt16BE(offset);
  if (port === 0) return { state: 'invalid', reason: 'SOCKS5 destination port 0', reply: socksReply(SOCKS_REPLY.generalFailure) };
  return { state: 'done', used: offset + 2, host, port };
}

/** A reply with an all-zero bound address: clients ignore BND for CONNECT, and it hides weft's own address. */
export function socksReply(code: SocksReplyCode): Buffer {
  return Buffer.from([SOCKS_VERSION, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
}
