/** Responses weft generates itself (errors, denials, limits): a small text body, `x-weft-error: <code>`, and the Envoy response flag they are logged with. */
import type { LocalReply } from './l7-filter.js';

/** Reason phrases of RFC 9110 §15 (and 429/431 of RFC 6585), for status lines weft writes itself. */
const REASONS: Record<number, string> = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 203: 'Non-Authoritative Information', 204: 'No Content', 205: 'Reset Content',
  206: 'Partial Content', 300: 'Multiple Choices', 301: 'Moved Permanently', 302: 'Found', 303: 'See Other',
  304: 'Not Modified', 307: 'Temporary Redirect', 308: 'Permanent Redirect', 400: 'Bad Request', 401: 'Unauthorized',
  402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 406: 'Not Acceptable',
  407: 'Proxy Authentication Required', 408: 'Request Timeout', 409: 'Conflict', 410: 'Gone', 411: 'Length Required',
  412: 'Precondition Failed', 413: 'Payload Too Large', 414: 'URI Too Long', 415: 'Unsupported Media Type',
  416: 'Range Not Satisfiable', 417: 'Expectation Failed', 418: "I'm a Teapot", 421: 'Misdirected Request',
  422: 'Unprocessable Content', 426: 'Upgrade Required', 428: 'Precondition Required', 429: 'Too Many Requests',
  431: 'Request Header Fields Too Large', 451: 'Unavailable For Legal Reasons', 500: 'Internal Server Error',
  501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout', 505: 'HTTP Version Not Supported',
};

export function reasonPhrase(status: number): string {
  return REASONS[status] ?? 'Unknown';
}

/** Stable `x-weft-error` codes of the L7 path (a subset of runtime/errors.ts plus protocol-level ones). */
export const L7_ERROR = {
  badRequest: 'WEFT_ERR_BAD_REQUEST',
  methodNotAllowed: 'WEFT_ERR_METHOD_NOT_ALLOWED',
  headersTooLarge: 'WEFT_ERR_HEADERS_TOO_LARGE',
  headersTimeout: 'WEFT_ERR_HEADERS_TIMEOUT',
  bodyTooLarge: 'WEFT_ERR_BODY_TOO_LARGE',
  noRoute: 'WEFT_ERR_NO_ROUTE',
  noHealthyUpstream: 'WEFT_ERR_NO_HEALTHY_UPSTREAM',
  upstreamConnect: 'WEFT_ERR_UPSTREAM_CONNECT',
  upstreamReset: 'WEFT_ERR_UPSTREAM_RESET',
  upstreamTimeout: 'WEFT_ERR_UPSTREAM_TIMEOUT',
  upstreamProtocol: 'WEFT_ERR_UPSTREAM_PROTOCOL',
  overflow: 'WEFT_ERR_CIRCUIT_OPEN',
  denied: 'WEFT_ERR_POLICY_DENIED',
  pluginFailed: 'WEFT_ERR_PLUGIN_FAILED',
  internal: 'WEFT_ERR_INTERNAL',
} as const;

export function localReply(status: number, code: string, flag: string, message: string): LocalReply {
  return { status, code, flag, body: message + '\n' };
}

/** Serialises a local reply as an HTTP/1.1 response; `close` adds `connection: close`. */
export function serializeLocalReply(reply: LocalReply, close: boolean, headOnly: boolean): Buffer {
  const body = reply.body === undefined ? Buffer.alloc(0) : typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body;
  let head = `HTTP/1.1 ${reply.status} ${reasonPhrase(reply.status)}\r\n`;
  let hasType = false;
  for (const [n, v] of reply.headers ?? []) {
    if (n.toLowerCase() === 'content-type') hasType = true;
    head += `${n}: ${v}\r\n`;
  }
  if (!hasType && body.length > 0) head += 'content-type: text/plain; charset=utf-8\r\n';
  if (reply.code !== undefined) head += `x-weft-error: ${reply.code}\r\n`;
  head += `content-length: ${body.length}\r\n`;
  if (close) head += 'connection: close\r\n';
  head += '\r\n';
  const headBuf = Buffer.from(head, 'latin1');
  return headOnly || body.length === 0 ? headBuf : Buffer.concat([headBuf, body]);
}
