/**
 * A deliberately lenient HTTP/1.1 origin for desync tests: it records every byte it receives and frames requests the
 * way permissive servers do (RFC 9112 §2.2 lets a recipient take a lone LF as a line end; obs-fold is unfolded; a
 * transfer-encoding that mentions chunked wins over content-length; chunk sizes are read up to the first non-hex
 * byte). Whatever such a server would see as a request it answers, so a test can compare the requests the origin
 * framed with the answers a client got through a proxy. Answers can be scripted to play a malformed upstream.
 */
import net from 'node:net';
import { once } from 'node:events';

export interface FramedRequest {
  method: string;
  target: string;
  version: string;
  /** Lower-cased names, values trimmed, in order. */
  headers: [string, string][];
  body: string;
  /** Which accepted connection (0-based) carried it. */
  connection: number;
}

export interface LenientOrigin {
  port: number;
  /** Every request framed so far, in order. */
  requests: FramedRequest[];
  /** Every byte received, per connection, as latin1 text. */
  received: string[];
  /** Connections accepted so far. */
  readonly connections: number;
  /** Everything received on all connections. */
  allReceived(): string;
  close(): Promise<void>;
}

/**
 * What the origin writes for a request: the default echoes method and target in a well-formed 200. A list is written
 * piece by piece, 50 ms apart (a response whose head and body arrive in separate reads).
 */
export type OriginAnswer = (req: FramedRequest, index: number) => string | Buffer | (string | Buffer)[];

export const echoAnswer: OriginAnswer = (req, index) => {
  const body = `${req.method} ${req.target}`;
  return `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nx-origin-seq: ${index}\r\n\r\n${body}`;
};

type Frame = { end: number; req: Omit<FramedRequest, 'connection'> } | 'more' | 'broken';

/** A line ending at LF (a CR before it dropped), from `at`; undefined when no LF yet. */
function line(text: string, at: number): { value: string; next: number } | undefined {
  const lf = text.indexOf('\n', at);
  if (lf === -1) return undefined;
  const value = text.slice(at, lf);
  return { value: value.endsWith('\r') ? value.slice(0, -1) : value, next: lf + 1 };
}

function frame(text: string, start: number): Frame {
  let p = start;
  let l = line(text, p);
  while (l !== undefined && l.value === '') {
    p = l.next;
    l = line(text, p);
  }
  if (l === undefined) return 'more';
  const [method = '', target = '', version = ''] = l.value.split(' ');
  p = l.next;
  const headers: [string, string][] = [];
  for (;;) {
    l = line(text, p);
    if (l === undefined) return 'more';
    p = l.next;
    if (l.value === '') break;
    const last = headers[headers.length - 1];
    if ((l.value.startsWith(' ') || l.value.startsWith('\t')) && last !== undefined) {
      last[1] = `${last[1]} ${l.value.trim()}`;
      continue;
    }
    const colon = l.value.indexOf(':');
    if (colon === -1) continue;
    headers.push([l.value.slice(0, colon).trim().toLowerCase(), l.value.slice(colon + 1).trim()]);
  }
  const te = headers.filter(([n]) => n === 'transfer-encoding').map(([, v]) => v.toLowerCase());
  const cl = headers.find(([n]) => n === 'content-length')?.[1];
  let body = '';
  if (te.some((v) => v.includes('chunked'))) {
    for (;;) {
      l = line(text, p);
      if (l === undefined) return 'more';
      const size = parseInt(l.value.trim(), 16);
      if (Number.isNaN(size)) return 'broken';
      p = l.next;
      if (size === 0) {
        // Trailer lines up to an empty line, whatever they hold.
        for (;;) {
          l = line(text, p);
          if (l === undefined) return 'more';
          p = l.next;
          if (l.value === '') break;
        }
        break;
      }
      if (text.length < p + size) return 'more';
      body += text.slice(p, p + size);
      p += size;
      l = line(text, p);
      if (l === undefined) return 'more';
      p = l.next;
    }
  } else if (cl !== undefined) {
    const n = parseInt(cl, 10);
    if (Number.isNaN(n)) return 'broken';
    if (text.length < p + n) return 'more';
    body = text.slice(p, p + n);
    p += n;
  }
  return { end: p, req: { method, target, version, headers, body } };
}

export async function startLenientOrigin(answer: OriginAnswer = echoAnswer): Promise<LenientOrigin> {
  const requests: FramedRequest[] = [];
  const received: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    const connection = received.length;
    received.push('');
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let text = '';
    let at = 0;
    socket.on('data', (d: Buffer) => {
      const chunk = d.toString('latin1');
      received[connection] += chunk;
      text += chunk;
      for (;;) {
        const f = frame(text, at);
        if (f === 'more') return;
        if (f === 'broken') {
          socket.destroy();
          return;
        }
        at = f.end;
        const req = { ...f.req, connection };
        requests.push(req);
        const out = answer(req, requests.length - 1);
        if (!Array.isArray(out)) {
          if (!socket.destroyed) socket.write(out);
          continue;
        }
        out.forEach((piece, i) => {
          setTimeout(() => {
            if (!socket.destroyed) socket.write(piece);
          }, i * 50);
        });
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    requests,
    received,
    get connections() {
      return received.length;
    },
    allReceived: () => received.join(''),
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close').catch(() => undefined);
    },
  };
}
