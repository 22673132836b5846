// Measurements for the CNI report (not a test; timings are never assertions): weft-cni ADD latency p50/p99 over 100 pods in tunnel (vxlan)
// and in-pod mode, node setup time, and iperf3 pod -> pod direct, through the tunnel and weft, and through weft in-pod, in one run. Run as root:
//   node --import tsx test/namespaced/cni-measurements.ts
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

async function iperf(client: Pod, server: Pod, seconds: number): Promise<number> {
  const srv = spawn('ip', ['netns', 'exec', server.ns, 'iperf3', '-s', '-1', '-p', '5201'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300));
  const out = await nsRun(client.ns, 'iperf3', ['-c', server.ip, '-p', '5201', '-t', String(seconds), '-J'], { timeoutMs: (seconds + 20) * 1000 });
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

async function main(): Promise<void> {
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
