// In-pod capture with `workers: 2` on a real kernel (root): the primary holds the one ZDS connection and every worker binds each
// pod's ports inside the pod with SO_REUSEPORT, so one pod's connections are served by both workers (read from each access-log
// line's `worker`, never from timing); each worker answers the pod's DNS on 15053; DEL releases the pod in every worker, a
// restarted runtime gets the replay on both, and a worker thread that dies is replaced and binds every pod again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nsRun } from '../helpers/netns-exec.js';
import { askPeerAddress, resolveTcp, resolveUdp, startAgent, startInpodNode, startPodServers, useInpodMode, type InpodNode, type InpodRuntime, type Proc } from '../helpers/netns-inpod.js';
import { testConfig } from '../helpers/weft-harness.js';
import { createWorkerPrimary, type WorkerPrimary } from '../../runtime/workers/worker-primary.js';
import { resolveWorkerCount } from '../../runtime/workers/worker-count.js';
import { SimulatedNode, type Pod } from '../helpers/netns-topology.js';
import { hasCommand, isRoot } from '../helpers/requirements.js';

const missing = !isRoot() ? 'requires root (CAP_NET_ADMIN, CAP_SYS_ADMIN): run as root, as CI does' : ['iptables-nft-restore', 'ip', 'ss'].find((c) => !hasCommand(c));
if (missing !== undefined) console.log(`inpod-workers: skipped: ${missing.startsWith('requires') ? missing : `requires ${missing} (install the Debian packages listed in .ci/run)`}`);

interface InpodDump {
  inpod: { agent: { state: string }; pods: { name: string; ports: number[]; workers: number[] }[] };
}

/** Connects from a to b until the outbound lines for b name both workers (each try is a new 4-tuple the kernel hashes). */
async function workersServing(runtime: InpodRuntime, a: Pod, b: Pod, tries = 40): Promise<Set<number>> {
  const toB = (): Record<string, unknown>[] => runtime.lines().filter((l) => l.direction === 'outbound' && l.downstream_local_address === `${b.ip}:8080`);
  const before = toB().length;
  for (let i = 1; i <= tries; i++) {
    expect(await askPeerAddress(a, b.ip)).toBe(a.ip);
    // The access-log line is written when the connection closes, just after the client saw the answer.
    await runtime.waitFor(() => toB().length >= before + i);
    const seen = new Set(toB().map((l) => l.worker as number));
    if (seen.size === 2) return seen;
  }
  return new Set(toB().map((l) => l.worker as number));
}

describe.skipIf(missing !== undefined)('in-pod capture with two workers', () => {
  let fixture: InpodNode | undefined;
  let node: SimulatedNode;
  let runtime: InpodRuntime;
  let a: Pod;
  let b: Pod;

  beforeAll(async () => {
    fixture = await startInpodNode({
      plugin: { dnsCapture: true },
      workloads: [
        { name: 'a', ip: '10.61.1.11', node: 1 },
        { name: 'b', ip: '10.61.1.12', node: 1 },
      ],
      extra: {
        workers: 2,
        dns: { enabled: true, upstreams: ['127.0.0.1:1'], timeoutMs: 100, attempts: 1 },
        services: [{ name: 'reviews', namespace: 'mesh', addresses: ['10.96.0.21'], ports: [{ port: 9080 }] }],
      },
    });
    ({ node, runtime } = fixture);
    a = await node.addPod('a');
    b = await node.addPod('b');
    fixture.procs.push(await startPodServers(b));
  }, 120_000);

  afterAll(() => fixture?.close(), 60_000);

  it('binds every pod in both workers, with one ZDS connection held by the primary', async () => {
    const dump = (await runtime.configDump()) as unknown as InpodDump;
    expect(dump.inpod.agent.state).toBe('synced');
    expect(dump.inpod.pods.map((p) => ({ name: p.name, ports: p.ports, workers: p.workers }))).toEqual(
      expect.arrayContaining([
        { name: 'a', ports: [15001, 15006, 15008, 15053], workers: [0, 1] },
        { name: 'b', ports: [15001, 15006, 15008, 15053], workers: [0, 1] },
      ]),
    );
    // Two listening sockets per port inside the pod: one per worker, in one SO_REUSEPORT group.
    const listening = (await nsRun(a.ns, 'ss', ['-Htln', 'sport = :15001'])).stdout.trim().split('\n');
    expect(listening).toHaveLength(2);
  });

  it("spreads one pod's connections over both workers", async () => {
    expect([...(await workersServing(runtime, a, b))].sort()).toEqual([0, 1]);
  }, 60_000);

  it("answers the pod's DNS from the workers' 15053 sockets (one SO_REUSEPORT pair per worker)", async () => {
    expect((await nsRun(a.ns, 'ss', ['-Hlnu', 'sport = :15053'])).stdout.trim().split('\n')).toHaveLength(2);
    for (let i = 0; i < 4; i++) expect(await resolveUdp(a, 'reviews')).toBe('10.96.0.21');
    expect(await resolveTcp(a, 'reviews')).toBe('NOERROR 10.96.0.21');
  });

  it('DEL releases the pod in every worker; a pod added after a runtime restart is replayed to both workers', async () => {
    await node.delPod(a);
    const dump = (await runtime.configDump()) as unknown as InpodDump;
    expect(dump.inpod.pods.map((p) => p.name)).toEqual(['b']);
    await runtime.kill();
    runtime = await fixture!.start();
    a = await node.addPod('a');
    const after = (await runtime.configDump()) as unknown as InpodDump;
    expect(after.inpod.pods.map((p) => ({ name: p.name, workers: p.workers })).sort((x, y) => x.name.localeCompare(y.name))).toEqual([
      { name: 'a', workers: [0, 1] },
      { name: 'b', workers: [0, 1] },
    ]);
    expect(await askPeerAddress(a, b.ip)).toBe(a.ip);
  }, 60_000);
});

describe.skipIf(missing !== undefined)('in-pod capture when a worker thread dies', () => {
  const procs: Proc[] = [];
  let node: SimulatedNode | undefined;
  let primary: WorkerPrimary | undefined;

  afterAll(async () => {
    await primary?.shutdown(0);
    for (const p of procs.reverse()) await p.kill().catch(() => undefined);
    await node?.destroy();
  }, 60_000);

  it('replaces the worker, which binds every pod again before serving it; the other worker serves meanwhile', async () => {
    // The primary runs in this test process: the agent hands it namespaces by fd, wherever the process itself lives.
    node = await SimulatedNode.create({ index: 2 });
    const paths = useInpodMode(node);
    procs.push(await startAgent(node, paths));
    const workloads = ['a', 'b'].map((name, i) => ({ name, namespace: 'mesh', addresses: [`10.62.1.${10 + i}`], node: 'node-2', serviceAccount: name }));
    const config = testConfig({ node: 'node-2', workers: 2, inpod: { socket: paths.zdsSocket }, workloads });
    primary = await createWorkerPrimary(config, { count: resolveWorkerCount(2), accessLogSink: () => undefined });
    const a = await node.addPod('a');
    const b = await node.addPod('b');
    procs.push(await startPodServers(b));
    const listeners = async (): Promise<number> => (await nsRun(b.ns, 'ss', ['-Htln', 'sport = :15006'])).stdout.trim().split('\n').filter((l) => l !== '').length;
    const workersOf = async (name: string): Promise<number[] | undefined> => {
      const dump = (await (await fetch(`http://127.0.0.1:${String(primary!.ports.admin)}/config_dump`)).json()) as { inpod: { pods: { name: string; workers: number[] }[] } };
      return dump.inpod.pods.find((p) => p.name === name)?.workers;
    };
    expect(await listeners()).toBe(2);
    expect(await workersOf('b')).toEqual([0, 1]);
    await primary.terminateWorker(1);
    // Worker 0's listeners stay; the kernel stops routing to the dead worker's.
    expect(await askPeerAddress(a, b.ip)).toBe(a.ip);
    await primary.waitForWorker(1, 20_000);
    for (let i = 0; (await listeners()) < 2; i++) {
      if (i > 100) throw new Error('the replacement worker did not bind the pod');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await workersOf('b')).toEqual([0, 1]);
    expect(await askPeerAddress(a, b.ip)).toBe(a.ip);
  }, 90_000);
});
