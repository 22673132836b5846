/** Decides how to speak to a connection handed to L7: the service port's appProtocol when declared, otherwise the first bytes (an HTTP/1.x method token, or the HTTP/2 connection preface). */

export type L7Protocol = 'http1' | 'h2c' | 'opaque';

/** RFC 9113 §3.4: the client connection preface starts with this line. */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

const METHOD_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,20} /;

export type DetectResult = L7Protocol | 'need-more';

/**
 * `appProtocol` http2/grpc selects h2c only when the bytes agree (a gRPC client always sends the preface);
 * without enough bytes to decide, the caller waits for more (bounded by its own timeout).
 */
export function detectProtocol(appProtocol: string | undefined, firstBytes: Buffer): DetectResult {
  const n = Math.min(firstBytes.length, H2_PREFACE.length);
  if (n > 0 && firstBytes.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) {
    return n === H2_PREFACE.length ? 'h2c' : 'need-more';
  }
  if (appProtocol === 'tcp') return 'opaque';
  const head = firstBytes.toString('latin1', 0, Math.min(firstBytes.length, 24));
  if (METHOD_TOKEN.test(head)) return 'http1';
  // Still reading the method token: wait unless it already cannot be one.
  if (/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{0,20}$/.test(head) && firstBytes.length < 21) return 'need-more';
  return appProtocol === 'http' || appProtocol === 'http2' || appProtocol === 'grpc' ? 'http1' : 'opaque';
}
