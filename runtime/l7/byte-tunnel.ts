/** Turns a downstream and an upstream connection into a byte tunnel (WebSocket and other upgrades, CONNECT): pending bytes first, then both directions piped, each side's close ending the other. */
import type { Duplex } from 'node:stream';

/**
 * `toDownstream` (the 101/200 answer and any bytes already read from upstream) and `toUpstream` (bytes the client
 * sent after its request head) are written before piping starts. Listeners the HTTP layer left on either socket
 * must be removed by the caller first.
 */
export function spliceTunnel(down: Duplex, up: Duplex, toDownstream: (string | Buffer)[], toUpstream: Buffer | null): void {
  for (const chunk of toDownstream) down.write(chunk);
  if (toUpstream !== null) up.write(toUpstream);
  up.on('error', () => down.destroy());
  down.on('error', () => up.destroy());
  up.pipe(down);
  down.pipe(up);
  down.on('close', () => up.destroy());
  up.on('close', () => down.destroy());
}
