/** `weft-cni node doctor`: which kernel features the redirection needs are present (geneve, vxlan, TPROXY, socket and set matches, ipset types, iptables backend) and the mode setup would use. */
import type { CommandRunner } from './command-runner.js';
import { detectIptablesBackend, restoreCommand, type IptablesBackend } from './iptables-backend.js';
import { kernelHasLinkType } from './tunnel-driver.js';
import type { TunnelDriver, TunnelDriverChoice } from './cni-constants.js';
import type { CaptureMode } from './cni-config.js';

export interface DoctorReport {
  features: Record<string, boolean>;
  iptablesBackend: { backend: IptablesBackend; reason: string };
  /** The driver `auto` picks, or the configured one; undefined when the kernel has neither. */
  tunnelDriver: TunnelDriver | undefined;
  /** Problems of the configured mode (what the exit status reflects). */
  problems: string[];
  /** Each capture mode with what it lacks on this node. */
  modes: Record<CaptureMode, { usable: boolean; problems: string[] }>;
  mode: CaptureMode;
}

/** Loads rules into a throwaway namespace (unshare -n): the kernel either accepts the match/target or not, and nothing on the node changes. */
async function acceptsRules(runner: CommandRunner, backend: IptablesBackend, rules: string, ipset = false, table = 'mangle'): Promise<boolean> {
  const restore = restoreCommand(backend);
  // Fixed script; only our own binary name and rule text are substituted, both from this file.
  const script = `${ipset ? 'ipset create weftprobe hash:ip comment || exit 1; ' : ''}${restore}`;
  const r = await runner.exec('unshare', ['--net', '--', 'sh', '-c', script], `*${table}\n${rules}\nCOMMIT\n`);
  return r.code === 0;
}

export async function runDoctor(runner: CommandRunner, driverChoice: TunnelDriverChoice = 'auto', mode: CaptureMode = 'tunnel'): Promise<DoctorReport> {
  const detection = await detectIptablesBackend(runner);
  const b = detection.backend;
  const features: Record<string, boolean> = {
    geneve: await kernelHasLinkType(runner, 'geneve'),
    vxlan: await kernelHasLinkType(runner, 'vxlan'),
    tproxy: await acceptsRules(runner, b, '-A PREROUTING -p tcp -j TPROXY --on-port 15001 --on-ip 127.0.0.1 --tproxy-mark 0x400/0xfff'),
    socketMatch: await acceptsRules(runner, b, '-A PREROUTING -p tcp -m socket --transparent -j RETURN'),
    ownerMatch: await acceptsRules(runner, b, '-A OUTPUT -m owner --socket-exists -p tcp -j RETURN'),
    connmark: await acceptsRules(runner, b, '-A FORWARD -m mark --mark 0x220/0x220 -j CONNMARK --save-mark --nfmask 0x220 --ctmask 0x220'),
    setMatch: await acceptsRules(runner, b, '-A PREROUTING -p tcp -m set --match-set weftprobe src -j RETURN', true),
    ipsetHashIp: (await runner.exec('unshare', ['--net', '--', 'ipset', 'create', 'weftprobe', 'hash:ip', 'comment'])).code === 0,
    // In-pod mode's rules (reference §2.9): REDIRECT in nat, mark matches, CONNMARK restore, and setns into pods.
    redirect: await acceptsRules(runner, b, '-A OUTPUT -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001', false, 'nat'),
    connmarkRestore: await acceptsRules(runner, b, '-A OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff'),
    setns: process.getuid?.() === 0,
  };
  let tunnelDriver: TunnelDriver | undefined;
  if (driverChoice === 'auto') tunnelDriver = features.geneve ? 'geneve' : features.vxlan ? 'vxlan' : undefined;
  else tunnelDriver = features[driverChoice] ? driverChoice : undefined;
  const problems: string[] = [];
  if (tunnelDriver === undefined) problems.push(driverChoice === 'auto' ? 'the kernel has neither geneve nor vxlan' : `the kernel lacks ${driverChoice}; use "auto"`);
  for (const f of ['tproxy', 'socketMatch', 'ownerMatch', 'connmark', 'setMatch', 'ipsetHashIp']) {
    if (features[f] !== true) problems.push(`missing ${f}`);
  }
  const inpod = ['redirect', 'connmarkRestore', 'setns'].filter((f) => features[f] !== true).map((f) => `missing ${f}`);
  const modes = { tunnel: { usable: problems.length === 0, problems }, inpod: { usable: inpod.length === 0, problems: inpod } };
  return { features, iptablesBackend: detection, tunnelDriver, problems: modes[mode].problems, modes, mode };
}
