// SO_REUSEPORT on every kind of data listener: several event loops (worker threads) bind one address, ordinary sockets
// through Node's reusePort and transparent (TPROXY) sockets through the addon; without it the second bind fails.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { listen, type BoundListener } from '../../runtime/l4/listener.js';
import { requireRoot } from '../helpers/requirements.js';

const open: BoundListener[] = [];
afterEach(async () => {
  for (const l of open.splice(0)) {
    await l.close();
    l.destroyConnections();
  }
});

async function bind(address: string, reusePort: boolean, transparent = false): Promise<BoundListener> {
  const l = await listen('test', { address, reusePort, transparent }, (s) => s.end(`${address}\n`));
  open.push(l);
  return l;
}

/** Connects `count` times and returns how many connections each listener accepted. */
async function spread(port: number, listeners: BoundListener[], count: number): Promise<number[]> {
  const accepted = listeners.map(() => 0);
  listeners.forEach((l, i) => l.server.on('connection', () => accepted[i]!++));
  for (let i = 0; i < count; i++) {
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', reject).on('close', () => resolve()).resume();
    });
  }
  return accepted;
}

describe('listen({ reusePort })', () => {
  it('lets two listeners share one port and the kernel spreads connections between them', async () => {
    const a = await bind('127.0.0.1:0', true);
    const b = await bind(`127.0.0.1:${a.port}`, true);
    expect(b.port).toBe(a.port);
    const accepted = await spread(a.port, [a, b], 64);
    expect(accepted[0]! + accepted[1]!).toBe(64);
    expect(accepted.every((n) => n > 0)).toBe(true);
  });

  it('refuses a second bind without it (the single-worker default)', async () => {
    const a = await bind('127.0.0.1:0', false);
    await expect(bind(`127.0.0.1:${a.port}`, false)).rejects.toMatchObject({ code: 'WEFT_ERR_LISTEN' });
  });

  it('sets SO_REUSEPORT on the addon’s transparent sockets too (root: IP_TRANSPARENT needs CAP_NET_ADMIN)', async (ctx) => {
    requireRoot(ctx);
    const a = await bind('127.0.0.1:0', true, true);
    const b = await bind(`127.0.0.1:${a.port}`, true, true);
    expect([a.transparent, b.transparent]).toEqual([true, true]);
    const accepted = await spread(a.port, [a, b], 64);
    expect(accepted[0]! + accepted[1]!).toBe(64);
    await expect(bind(`127.0.0.1:${a.port}`, false, true)).rejects.toMatchObject({ code: 'WEFT_ERR_LISTEN' });
  });
});
