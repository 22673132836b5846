// The node agent's plugin-event socket across a DaemonSet surge (no root): a second agent on the same node takes the path
// over atomically, and the first one stopping afterwards leaves the successor's socket in place and answering.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadNetnsNative } from '../runtime/native/weft-netns.js';
import { callAgent } from './agent-client.js';
import { InpodAgent } from './inpod-agent.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

describe.skipIf(loadNetnsNative() === undefined)('weft-cni agent: the plugin-event socket', () => {
  it('is taken over by a successor without a gap, and the predecessor stopping does not remove it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'weft-agent-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const agentSocket = path.join(dir, 'pluginevent.sock');
    const agent = (n: number): InpodAgent => {
      const a = new InpodAgent({ zdsSocket: path.join(dir, `ztunnel-${n}.sock`), agentSocket, stateDir: path.join(dir, 'state') });
      cleanups.push(() => a.close());
      return a;
    };
    const first = agent(1);
    await first.start();
    await callAgent(agentSocket, { op: 'del', uid: 'nobody' }, 2000);
    const second = agent(2);
    await second.start();
    first.close();
    expect(existsSync(agentSocket)).toBe(true);
    await callAgent(agentSocket, { op: 'del', uid: 'nobody' }, 2000);
    second.close();
    expect(existsSync(agentSocket)).toBe(false);
    expect(existsSync(`${agentSocket}.${process.pid}`)).toBe(false);
  });
});
