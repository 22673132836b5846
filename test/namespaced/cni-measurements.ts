// Measurements for the CNI report (not a test; timings are never assertions): weft-cni ADD latency p50/p99 over 100 pods in tunnel (vxlan)
// and in-pod mode, node setup time, and iperf3 pod -> pod direct, through the tunnel and weft, and through weft in-pod, in one run. Run as root:
//   node --import tsx test/namespaced/cni-measurements.ts
// WEFT_CNI_BENCH=iperf runs only the throughput comparison, interleaved: both modes' nodes exist at once and each round runs
// direct, tunnel, direct, in-pod back to back (medians of WEFT_CNI_BENCH_ROUNDS rounds, default 5), so machine noise hits all alike.
// WEFT_CNI_BENCH=iperf-workers compares in-pod with workers: 1 and workers: 2 the same way (4 streams).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { invokePlugin } from '../helpers/netns-cni-runtime.js';
import { nsRun } from '../helpers/netns-exec.js';
import { SimulatedNode, type Pod } from '../helpers/netns-topology.js';
import { startRuntime } from '../helpers/netns-weft-runtime.js';
import { startAgent, startInpodRuntime, useInpodMode } from '../helpers/netns-inpod.js';

const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

async function addLatency(node: SimulatedNode, pods: number, tag = 'bench'): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < pods; i++) {
    // The primary plugin first (not timed), then weft-cni's ADD alone, as the runtime would chain it.
    const pod = await node.addPod(`${tag}${i}`, 'legacy');
    const attachment = { ...pod.attachment, containerId: `${pod.attachment.containerId}-w`, args: { ...pod.attachment.args, K8S_POD_NAMESPACE: 'mesh' } };
    const conf = { ...node.conflist.plugins[1], cniVersion: '1.0.0', name: 'podnet', prevResult: pod.result };
    const t0 = performance.now();
    const r = await invokePlugin(node.nodeNs, node.cniPath, 'ADD', attachment, conf);
    samples.push(performance.now() - t0);
    if (r.code !== 0) throw new Error(r.stdout);
  }
  return samples.sort((a, b) => a - b);
}

async function iperf(client: Pod, server: Pod, seconds: number, streams = 1): Promise<number> {
  const srv = spawn('ip', ['netns', 'exec', server.ns, 'iperf3', '-s', '-1', '-p', '5201'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300));
  const out = await nsRun(client.ns, 'iperf3', ['-c', server.ip, '-p', '5201', '-t', String(seconds), '-P', String(streams), '-J'], { timeoutMs: (seconds + 20) * 1000 });
  srv.kill();
  const json = JSON.parse(out.stdout) as { end?: { sum_received?: { bits_per_second: number } }; error?: string };
  if (json.end?.sum_received === undefined) throw new Error(`iperf3 failed: ${json.error ?? out.stderr}`);
  return json.end.sum_received.bits_per_second / 1e9;
}

const enroll = async (node: SimulatedNode, pods: Pod[]): Promise<void> => {
  for (const p of pods) {
    const conf = { ...node.conflist.plugins[1], cniVersion: '1.0.0', name: 'podnet', prevResult: p.result };
    const r = await invokePlugin(node.nodeNs, node.cniPath, 'ADD', { ...p.attachment, args: { ...p.attachment.args, K8S_POD_NAMESPACE: 'mesh' } }, conf);
    if (r.code !== 0) throw new Error(r.stdout);
  }
};

/** In-pod mode on its own node: ADD latency (rules in the pod plus the runtime's ACK), then iperf3 direct and through weft in-pod. */
async function inpod(caDir: string): Promise<{ add: number[]; direct: number; viaWeft: number }> {
  const node = await SimulatedNode.create({ index: 3 });
  const procs: { kill(): Promise<void> }[] = [];
  try {
    const paths = useInpodMode(node);
    const [a, b] = [await node.addPod('ipa', 'legacy'), await node.addPod('ipb', 'legacy')];
    procs.push(await startAgent(node, paths));
    procs.push(await startInpodRuntime(node, paths, { caDir, workloads: [a, b].map((p) => ({ name: p.name, ip: p.ip, node: 3 })) }));
    const add = await addLatency(node, 100, 'inpod');
    const direct = await iperf(a, b, 5);
    await enroll(node, [a, b]);
    const viaWeft = await iperf(a, b, 5);
    return { add, direct, viaWeft };
  } finally {
    for (const p of procs.reverse()) await p.kill();
    await node.destroy();
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Throughput only, interleaved: a tunnel-mode node and an in-pod node side by side, each with an unenrolled pair (direct) and an enrolled one. */
async function interleavedIperf(rounds: number, seconds: number): Promise<void> {
  const caDir = mkdtempSync(path.join(tmpdir(), 'weft-inpod-bench-ca-'));
  const nodes: SimulatedNode[] = [];
  const stops: (() => Promise<void>)[] = [];
  try {
    const tunnel = await SimulatedNode.create({ index: 1 });
    nodes.push(tunnel);
    await tunnel.mustSetup();
    const inpodNode = await SimulatedNode.create({ index: 3 });
    nodes.push(inpodNode);
    const paths = useInpodMode(inpodNode);
    const pair = async (node: SimulatedNode, tag: string): Promise<[Pod, Pod]> => [await node.addPod(`${tag}a`, 'legacy'), await node.addPod(`${tag}b`, 'legacy')];
    const [da, db] = await pair(tunnel, 'd');
    const [ta, tb] = await pair(tunnel, 't');
    const [ja, jb] = await pair(inpodNode, 'j');
    const [ia, ib] = await pair(inpodNode, 'i');
    const tunnelRuntime = await startRuntime(tunnel, { workloads: [ta, tb].map((p) => ({ name: p.name, namespace: 'mesh', ip: p.ip })) });
    stops.push(() => tunnelRuntime.stop());
    for (const proc of [await startAgent(inpodNode, paths), await startInpodRuntime(inpodNode, paths, { caDir, workloads: [ia, ib].map((p) => ({ name: p.name, ip: p.ip, node: 3 })) })]) stops.push(() => proc.kill());
    await enroll(tunnel, [ta, tb]);
    await enroll(inpodNode, [ia, ib]);
    const r = { directT: [] as number[], tunnel: [] as number[], directI: [] as number[], inpod: [] as number[] };
    for (let i = 0; i < rounds; i++) {
      r.directT.push(await iperf(da, db, seconds));
      r.tunnel.push(await iperf(ta, tb, seconds));
      r.directI.push(await iperf(ja, jb, seconds));
      r.inpod.push(await iperf(ia, ib, seconds));
      console.log(`round ${i + 1}: direct ${r.directT.at(-1).toFixed(2)} | tunnel ${r.tunnel.at(-1).toFixed(2)} | direct ${r.directI.at(-1).toFixed(2)} | in-pod ${r.inpod.at(-1).toFixed(2)} Gbit/s`);
    }
    const m = { directT: median(r.directT), tunnel: median(r.tunnel), directI: median(r.directI), inpod: median(r.inpod) };
    console.log(
      `iperf3 same-node pod->pod, 1 stream, ${seconds} s x ${rounds} rounds, medians: direct ${m.directT.toFixed(2)} / ${m.directI.toFixed(2)} Gbit/s, tunnel (vxlan + weft) ${m.tunnel.toFixed(2)}, in-pod ${m.inpod.toFixed(2)}; ` +
        `tunnel / direct ${(m.tunnel / m.directT).toFixed(2)}, in-pod / direct ${(m.inpod / m.directI).toFixed(2)}, in-pod / tunnel ${(m.inpod / m.tunnel).toFixed(2)}`,
    );
  } finally {
    for (const stop of stops.reverse()) await stop();
    for (const n of nodes) await n.destroy();
    rmSync(caDir, { recursive: true, force: true });
  }
}

/** In-pod with `workers: 1` against `workers: 2` (each pod's connections spread over both), 4 streams, interleaved rounds. */
async function inpodWorkersIperf(rounds: number, seconds: number): Promise<void> {
  const caDir = mkdtempSync(path.join(tmpdir(), 'weft-inpod-bench-ca-'));
  const nodes: SimulatedNode[] = [];
  const stops: (() => Promise<void>)[] = [];
  try {
    const pairs: Record<number, [Pod, Pod]> = {};
    for (const [index, workers] of [[3, 1], [4, 2]] as const) {
      const node = await SimulatedNode.create({ index });
      nodes.push(node);
      const paths = useInpodMode(node);
      const [a, b] = [await node.addPod('wa', 'legacy'), await node.addPod('wb', 'legacy')];
      const agent = await startAgent(node, paths);
      const runtime = await startInpodRuntime(node, paths, { caDir, workloads: [a, b].map((p) => ({ name: p.name, ip: p.ip, node: index })), extra: { workers } });
      stops.push(() => agent.kill(), () => runtime.kill());
      await enroll(node, [a, b]);
      pairs[workers] = [a, b];
    }
    const r: Record<number, number[]> = { 1: [], 2: [] };
    for (let i = 0; i < rounds; i++) {
      for (const w of [1, 2]) r[w]!.push(await iperf(pairs[w]![0], pairs[w]![1], seconds, 4));
      console.log(`round ${i + 1}: in-pod workers 1 ${r[1]!.at(-1).toFixed(2)} | workers 2 ${r[2]!.at(-1).toFixed(2)} Gbit/s`);
    }
    console.log(`iperf3 same-node pod->pod in-pod, 4 streams, ${seconds} s x ${rounds} rounds, medians: workers 1 ${median(r[1]!).toFixed(2)}, workers 2 ${median(r[2]!).toFixed(2)} Gbit/s; 2 / 1 ${(median(r[2]!) / median(r[1]!)).toFixed(2)}`);
  } finally {
    for (const stop of stops.reverse()) await stop();
    for (const n of nodes) await n.destroy();
    rmSync(caDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const rounds = Number(process.env.WEFT_CNI_BENCH_ROUNDS ?? '5');
  if (process.env.WEFT_CNI_BENCH === 'iperf') return interleavedIperf(rounds, 3);
  if (process.env.WEFT_CNI_BENCH === 'iperf-workers') return inpodWorkersIperf(rounds, 3);
  const node = await SimulatedNode.create();
  try {
    const t0 = performance.now();
    await node.mustSetup();
    const setupMs = performance.now() - t0;
    const t1 = performance.now();
    await node.mustSetup();
    const resetupMs = performance.now() - t1;
    console.log(`node setup: ${setupMs.toFixed(0)} ms first run, ${resetupMs.toFixed(0)} ms when already set up`);

    const samples = await addLatency(node, 100);
    console.log(`weft-cni ADD over 100 pods: p50 ${quantile(samples, 0.5).toFixed(1)} ms, p99 ${quantile(samples, 0.99).toFixed(1)} ms, max ${samples.at(-1).toFixed(1)} ms`);

    // Same two namespaces measured direct (not enrolled) and then through weft (enrolled by a second ADD).
    const [a, b] = [await node.addPod('ipa', 'legacy'), await node.addPod('ipb', 'legacy')];
    const direct = await iperf(a, b, 5);
    const runtime = await startRuntime(node, { workloads: [a, b].map((p) => ({ name: p.name, namespace: 'mesh', ip: p.ip })) });
    try {
      await enroll(node, [a, b]);
      const viaWeft = await iperf(a, b, 5);
      const logged = runtime.lines().filter((l) => l.dst === `${b.ip}:5201`).length;
      console.log(`iperf3 pod->pod, 1 stream, 5 s: direct ${direct.toFixed(2)} Gbit/s, through vxlan + weft ${viaWeft.toFixed(2)} Gbit/s, ratio ${(viaWeft / direct).toFixed(3)} (${logged} connections in weft's access log)`);
      const caDir = mkdtempSync(path.join(tmpdir(), 'weft-inpod-bench-ca-'));
      try {
        const ip = await inpod(caDir);
        console.log(`in-pod weft-cni ADD over 100 pods (rules in the pod + runtime ACK): p50 ${quantile(ip.add, 0.5).toFixed(1)} ms, p99 ${quantile(ip.add, 0.99).toFixed(1)} ms (tunnel mode p50 ${quantile(samples, 0.5).toFixed(1)} ms, p99 ${quantile(samples, 0.99).toFixed(1)} ms)`);
        console.log(`iperf3 pod->pod in-pod: direct ${ip.direct.toFixed(2)} Gbit/s, through weft in-pod ${ip.viaWeft.toFixed(2)} Gbit/s, ratio ${(ip.viaWeft / ip.direct).toFixed(3)}; in-pod / tunnel ${(ip.viaWeft / viaWeft).toFixed(2)}`);
      } finally {
        rmSync(caDir, { recursive: true, force: true });
      }
    } finally {
      await runtime.stop();
    }
  } finally {
    await node.destroy();
  }
}

await main();
