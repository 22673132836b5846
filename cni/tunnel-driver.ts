/** Tunnel driver choice (geneve, vxlan, auto) from what the kernel can create, and the UDP port: the first free one from the driver's base, as Istio 1.19+ picks Geneve's. */
import { WeftError } from '../runtime/errors.js';
import { TUNNEL, type TunnelDriver, type TunnelDriverChoice } from './cni-constants.js';
import type { CommandRunner } from './command-runner.js';

/** Asks the kernel: `ip link add` of that type in a throwaway namespace (unshare -n), so nothing is left behind. */
export async function kernelHasLinkType(runner: CommandRunner, type: TunnelDriver): Promise<boolean> {
  const args = type === 'geneve' ? ['id', '1', 'remote', '127.0.0.1'] : ['id', '1', 'remote', '127.0.0.1', 'dstport', String(TUNNEL.vxlanPortBase)];
  const r = await runner.exec('unshare', ['--net', '--', 'ip', 'link', 'add', 'weftprobe0', 'type', type, ...args]);
  return r.code === 0;
}

export async function resolveTunnelDriver(runner: CommandRunner, choice: TunnelDriverChoice): Promise<TunnelDriver> {
  if (choice === 'auto') return (await kernelHasLinkType(runner, 'geneve')) ? 'geneve' : 'vxlan';
  if (!(await kernelHasLinkType(runner, choice))) {
    const other = choice === 'geneve' ? 'vxlan' : 'geneve';
    throw new WeftError(
      'WEFT_ERR_CNI',
      `tunnel driver "${choice}" was asked for but this kernel cannot create ${choice} devices (CONFIG_${choice.toUpperCase()} is not built); ` +
        `use tunnelDriver: "${other}" or "auto"`,
    );
  }
  return choice;
}

/** Local UDP ports bound in the runner's namespace (kernel tunnel sockets included) from /proc/net/udp{,6}. */
export async function boundUdpPorts(runner: CommandRunner): Promise<Set<number>> {
  const ports = new Set<number>();
  for (const file of ['/proc/net/udp', '/proc/net/udp6']) {
    const r = await runner.exec('cat', [file]);
    if (r.code !== 0) continue;
    for (const line of r.stdout.split('\n').slice(1)) {
      const local = line.trim().split(/\s+/)[1];
      const hex = local?.split(':').pop();
      if (hex !== undefined && hex !== '') ports.add(parseInt(hex, 16));
    }
  }
  return ports;
}

/** Destination ports of geneve/vxlan links already in the namespace (a same-port link of another owner would clash). */
export async function tunnelLinkPorts(runner: CommandRunner): Promise<Set<number>> {
  const ports = new Set<number>();
  const r = await runner.exec('ip', ['-d', '-j', 'link', 'show']);
  if (r.code !== 0) return ports;
  const links = JSON.parse(r.stdout || '[]') as { linkinfo?: { info_kind?: string; info_data?: { port?: number } } }[];
  for (const l of links) {
    const kind = l.linkinfo?.info_kind;
    const port = l.linkinfo?.info_data?.port;
    if ((kind === 'geneve' || kind === 'vxlan') && typeof port === 'number') ports.add(port);
  }
  return ports;
}

/** The first port from the driver's base that no namespace in `used` has taken. */
export function firstFreePort(driver: TunnelDriver, used: Set<number>): number {
  const base = driver === 'geneve' ? TUNNEL.genevePortBase : TUNNEL.vxlanPortBase;
  for (let p = base; p < base + 1000; p++) if (!used.has(p)) return p;
  throw new WeftError('WEFT_ERR_CNI', `no free UDP port for the ${driver} tunnel in ${base}..${base + 999}`);
}
