// Hot upgrade with in-pod capture (root): a runtime with two worker threads is taken over twice while a pod keeps opening
// connections to another pod through the listeners inside both pods; the per-pod sockets travel with the handover and no
// connection fails.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nsRun } from '../helpers/netns-exec.js';
import { askPeerAddress, startAgent, startInpodRuntime, startPodServers, useInpodMode, type InpodPaths, type InpodRuntime, type Proc } from '../helpers/netns-inpod.js';
import { SimulatedNode, type Pod } from '../helpers/netns-topology.js';
import { hasCommand, isRoot } from '../helpers/requirements.js';

const missing = !isRoot() ? 'requires root (CAP_NET_ADMIN, CAP_SYS_ADMIN): run as root, as CI does' : ['iptables-nft-restore', 'ip'].find((c) => !hasCommand(c));
if (missing !== undefined) console.log(`inpod-takeover: skipped: ${missing.startsWith('requires') ? missing : `requires ${missing} (install the Debian packages listed in .ci/run)`}`);

/**
 * From inside `pod`, for `ms`: one connection after another to ip:8080, each read to its end (the server answers with the
 * address it saw). Resolves with how many got the client's own address back and every other outcome.
 */
async function connectLoop(pod: Pod, ip: string, ms: number): Promise<{ ok: number; failures: string[] }> {
  const script = `
    const net = require('node:net');
    const until = Date.now() + ${ms};
    let ok = 0; const failures = [];
    const once = () => new Promise((resolve) => {
      const s = net.connect({ port: 8080, host: '${ip}' });
      let d = '';
      s.setTimeout(5000, () => s.destroy(new Error('timeout')));
      s.on('data', (c) => (d += c));
      s.on('end', () => { d.trim() === '${pod.ip}' ? ok++ : failures.push('answer ' + d.trim()); resolve(); });
      s.on('error', (e) => { failures.push(e.code ?? e.message); resolve(); });
    });
    (async () => { while (Date.now() < until) await once(); process.stdout.write(JSON.stringify({ ok, failures })); })();`;
  return JSON.parse((await nsRun(pod.ns, process.execPath, ['-e', script], { timeoutMs: ms + 20_000 })).stdout) as { ok: number; failures: string[] };
}

describe.skipIf(missing !== undefined)('hot upgrade with in-pod capture (weft run --takeover, workers: 2)', () => {
  const procs: Proc[] = [];
  let node: SimulatedNode;
  let paths: InpodPaths;
  let caDir: string;
  let a: Pod;
  let b: Pod;
  const workloads = [
    { name: 'a', ip: '10.61.1.11', node: 1 },
    { name: 'b', ip: '10.61.1.12', node: 1 },
  ];

  beforeAll(async () => {
    caDir = mkdtempSync(path.join(tmpdir(), 'weft-inpod-takeover-ca-'));
    node = await SimulatedNode.create({ index: 1 });
    paths = useInpodMode(node);
    procs.push(await startAgent(node, paths));
  }, 120_000);

  afterAll(async () => {
    for (const p of procs.reverse()) await p.kill().catch(() => undefined);
    await node?.destroy();
    rmSync(caDir, { recursive: true, force: true });
  }, 60_000);

  it('hands the pods\' listeners over twice while a pod connects to another: no connection fails', async () => {
    let current: InpodRuntime = await startInpodRuntime(node, paths, { workloads, caDir, workers: 2 });
    procs.push(current);
    a = await node.addPod('a');
    b = await node.addPod('b');
    procs.push(await startPodServers(b));
    expect(await askPeerAddress(a, b.ip)).toBe(a.ip);
    for (let round = 1; round <= 2; round++) {
      const traffic = connectLoop(a, b.ip, 8_000);
      await new Promise((r) => setTimeout(r, 1_500));
      const exited = new Promise<void>((resolve) => current.child.once('exit', () => resolve()));
      const next = await startInpodRuntime(node, paths, { workloads, caDir, workers: 2, takeover: true, accessLog: current.accessLog });
      procs.push(next);
      await exited;
      const { ok, failures } = await traffic;
      expect(failures, `round ${round}`).toEqual([]);
      expect(ok).toBeGreaterThan(5);
      // The successor serves the pods on the sockets it inherited (no new listener could have been bound next to them).
      expect(next.log()).toContain('"inherited the listening sockets of the running weft"');
      expect(await askPeerAddress(a, b.ip)).toBe(a.ip);
      const dump = (await next.configDump()) as { inpod?: { pods: unknown[] } };
      expect(dump.inpod?.pods).toHaveLength(2);
      current = next;
    }
  }, 120_000);
});
