// The in-pod DaemonSet's rolling upgrade on a real kernel (root), as examples/kubernetes-inpod runs it with maxSurge: a second
// agent and runtime start on the node while the first pair serves. The new agent takes the plugin-event socket over, rebuilds its
// pods from weft-cni's records and replays them, so the new runtime binds beside the old one in every pod; then the old pair
// stops (the agent by SIGTERM, as the kubelet does) and capture goes on through the new runtime, with new pods enrolled by it.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nsRun } from '../helpers/netns-exec.js';
import { askPeerAddress, startAgent, startInpodNode, startInpodRuntime, startPodServers, type InpodNode, type InpodRuntime, type InpodWorkload, type Proc } from '../helpers/netns-inpod.js';
import type { Pod } from '../helpers/netns-topology.js';
import { hasCommand, isRoot } from '../helpers/requirements.js';

const missing = !isRoot() ? 'requires root (CAP_NET_ADMIN, CAP_SYS_ADMIN): run as root, as CI does' : ['iptables-nft-restore', 'ip', 'ss'].find((c) => !hasCommand(c));
if (missing !== undefined) console.log(`inpod-surge: skipped: ${missing.startsWith('requires') ? missing : `requires ${missing} (install the Debian packages listed in .ci/run)`}`);

const workloads: InpodWorkload[] = [
  { name: 'a', ip: '10.61.1.11', node: 1 },
  { name: 'b', ip: '10.61.1.12', node: 1 },
  { name: 'c', ip: '10.61.1.13', node: 1 },
];

describe.skipIf(missing !== undefined)('in-pod rolling upgrade with a surge pod (agent and runtime side by side)', () => {
  let fixture: InpodNode | undefined;
  let oldAgent: Proc;
  let oldRuntime: InpodRuntime;
  let newRuntime: InpodRuntime;
  let a: Pod;
  let b: Pod;

  beforeAll(async () => {
    fixture = await startInpodNode({ workloads });
    oldAgent = fixture.procs[0]!;
    oldRuntime = fixture.runtime;
    a = await fixture.node.addPod('a');
    b = await fixture.node.addPod('b');
    fixture.procs.push(await startPodServers(b));
  }, 120_000);

  afterAll(() => fixture?.close(), 60_000);

  it('the new pair binds beside the old one in every pod, from the records alone', async () => {
    const f = fixture!;
    const zdsSocket = path.join(f.node.workDir, 'ztunnel-new.sock');
    const agentConfig = path.join(f.node.workDir, 'agent-new.json');
    writeFileSync(agentConfig, JSON.stringify({ mode: 'inpod', stateDir: f.node.stateDir, zdsSocket, agentSocket: f.paths.agentSocket }));
    const paths = { ...f.paths, zdsSocket, agentConfig };
    f.procs.push(await startAgent(f.node, paths));
    newRuntime = await startInpodRuntime(f.node, paths, { caDir: f.caDir, workloads, adminPort: 15100 });
    f.procs.push(newRuntime);
    const dump = (await newRuntime.configDump()) as { inpod: { agent: { state: string }; pods: { name: string }[] } };
    expect(dump.inpod.agent.state).toBe('synced');
    expect(dump.inpod.pods.map((p) => p.name).sort()).toEqual(['a', 'b']);
    // Two outbound listeners in the pod: the old runtime's and the new one's, one SO_REUSEPORT group.
    expect((await nsRun(a.ns, 'ss', ['-Htln', 'sport = :15001'])).stdout.trim().split('\n')).toHaveLength(2);
  }, 60_000);

  it('after the old pair stops, capture goes on through the new runtime and new pods are enrolled by the new agent', async () => {
    const stopped = new Promise<void>((resolve) => oldAgent.child.once('exit', () => resolve()));
    oldAgent.child.kill('SIGTERM');
    await stopped;
    await oldRuntime.kill();
    expect((await nsRun(a.ns, 'ss', ['-Htln', 'sport = :15001'])).stdout.trim().split('\n')).toHaveLength(1);
    expect(await askPeerAddress(a, b.ip)).toBe(a.ip);
    await newRuntime.waitFor((l) => l.direction === 'outbound' && l.downstream_local_address === `${b.ip}:8080`);
    // The plugin-event socket is the new agent's: the old one's exit did not remove it.
    const c = await fixture!.node.addPod('c');
    expect(await askPeerAddress(c, b.ip)).toBe(c.ip);
    const dump = (await newRuntime.configDump()) as { inpod: { pods: { name: string }[] } };
    expect(dump.inpod.pods.map((p) => p.name).sort()).toEqual(['a', 'b', 'c']);
  }, 60_000);
});
