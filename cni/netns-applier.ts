/** Applies a NetnsPlan to one namespace step by step, each step idempotent and recorded before it is made, and undoes a record in reverse; both tolerate a half-done previous run. */
import { readFile, writeFile } from 'node:fs/promises';
import { WeftError } from '../runtime/errors.js';
import type { CommandRunner } from './command-runner.js';
import { dropEmptyNftTable, installChains, listNftTables, removeChains, type IptablesBackend } from './iptables-backend.js';
import { linkAddArgs, type IpRulePlan, type IpsetPlan, type LinkPlan, type NetnsPlan, type RoutePlan, type SysctlPlan } from './rule-plan.js';
import type { AppliedRecord, SysctlRecord } from './state-store.js';

/** `net.ipv4.conf.<dev>.<name>` as a /proc/sys path, so interface names with dots stay intact. */
export function sysctlPath(key: string): string {
  const prefix = 'net.ipv4.conf.';
  if (!key.startsWith(prefix)) return key.replaceAll('.', '/');
  const rest = key.slice(prefix.length);
  const cut = rest.lastIndexOf('.');
  return `net/ipv4/conf/${rest.slice(0, cut)}/${rest.slice(cut + 1)}`;
}

/**
 * In our own namespace /proc/sys is read and written directly (a file open is per the opener's
 * namespace, and ADD's latency is mostly process spawns); elsewhere through `sysctl` in that namespace.
 */
export async function readSysctl(runner: CommandRunner, key: string): Promise<string | undefined> {
  if (runner.netns === undefined) {
    try {
      return (await readFile(`/proc/sys/${sysctlPath(key)}`, 'utf8')).trim();
    } catch {
      return undefined;
    }
  }
  const r = await runner.exec('sysctl', ['-n', sysctlPath(key)]);
  return r.code === 0 ? r.stdout.trim() : undefined;
}

export async function writeSysctl(runner: CommandRunner, key: string, value: string): Promise<void> {
  if (runner.netns === undefined) {
    try {
      await writeFile(`/proc/sys/${sysctlPath(key)}`, value);
      return;
    } catch (err) {
      throw new WeftError('WEFT_ERR_CNI', `cannot set sysctl ${key}=${value}`, { cause: err });
    }
  }
  await runner.run('sysctl', ['-q', '-w', `${sysctlPath(key)}=${value}`]);
}

interface JsonRule {
  priority?: number;
  src?: string;
  fwmark?: string;
  fwmask?: string;
  table?: string;
  goto?: number;
}

/** Compares `ip -j rule` output with a planned rule by meaning (0x40 equals 0x040). */
export function ruleMatches(j: JsonRule, plan: IpRulePlan): boolean {
  if (j.priority !== plan.priority || (j.src !== undefined && j.src !== 'all')) return false;
  const arg = (name: string): string | undefined => {
    const i = plan.args.indexOf(name);
    return i < 0 ? undefined : plan.args[i + 1];
  };
  const fwmark = arg('fwmark');
  if (fwmark !== undefined) {
    const [mark, mask] = fwmark.split('/');
    if (Number(j.fwmark) !== Number(mark) || Number(j.fwmask ?? '0xffffffff') !== Number(mask ?? '0xffffffff')) return false;
  } else if (j.fwmark !== undefined) return false;
  const lookup = arg('lookup');
  const target = arg('goto');
  if (lookup !== undefined) return j.table === lookup && j.goto === undefined;
  if (target !== undefined) return j.goto === Number(target);
  return false;
}

export async function listRules(runner: CommandRunner): Promise<JsonRule[]> {
  return JSON.parse((await runner.run('ip', ['-j', 'rule', 'show'])) || '[]') as JsonRule[];
}

interface JsonLink {
  ifname: string;
  linkinfo?: { info_kind?: string; info_data?: { id?: number; remote?: string; port?: number } };
}

async function showLink(runner: CommandRunner, name: string): Promise<JsonLink | undefined> {
  const r = await runner.exec('ip', ['-d', '-j', 'link', 'show', 'dev', name]);
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout || '[]') as JsonLink[])[0];
}

export class NetnsApplier {
  private readonly runner: CommandRunner;
  private readonly record: AppliedRecord;
  private readonly persist: () => void;

  /** `persist` writes the record that `record` belongs to; it is called before every change. */
  constructor(runner: CommandRunner, record: AppliedRecord, persist: () => void) {
    this.runner = runner;
    this.record = record;
    this.persist = persist;
  }

  async apply(plan: NetnsPlan, backend: IptablesBackend): Promise<void> {
    for (const link of plan.links) await this.ensureLink(link);
    for (const s of plan.sysctls) await this.ensureSysctl(s);
    for (const set of plan.ipsets) await this.ensureIpset(set);
    if (plan.chains.length > 0) await this.ensureChains(plan, backend);
    for (const r of plan.routes) await this.ensureRoute(r);
    for (const r of plan.ipRules) await this.ensureIpRule(r);
  }

  async ensureLink(link: LinkPlan): Promise<void> {
    const existing = await showLink(this.runner, link.name);
    const ours = this.record.links.includes(link.name);
    if (existing !== undefined && !ours) {
      throw new WeftError('WEFT_ERR_CNI', `device ${link.name} already exists and was not created by weft-cni; choose other names (names.*) or remove it`);
    }
    const data = existing?.linkinfo?.info_data;
    const same = existing?.linkinfo?.info_kind === link.driver && data?.id === link.vni && data.remote === link.remote && data.port === link.port;
    if (!ours) {
      this.record.links.push(link.name);
      this.persist();
    }
    if (existing !== undefined && !same) await this.runner.run('ip', ['link', 'del', link.name]);
    if (!same) await this.runner.run('ip', linkAddArgs(link));
    await this.runner.run('ip', ['addr', 'replace', link.address, 'dev', link.name]);
    await this.runner.run('ip', ['link', 'set', link.name, 'up']);
  }

  async ensureSysctl(s: SysctlPlan): Promise<void> {
    await ensureSysctlRecorded(this.runner, this.record.sysctls, s, this.persist);
  }

  async ensureIpset(set: IpsetPlan): Promise<void> {
    const names = (await this.runner.run('ipset', ['list', '-n'])).split('\n');
    if (!names.includes(set.name)) {
      if (!this.record.ipsets.includes(set.name)) {
        this.record.ipsets.push(set.name);
        this.persist();
      }
      await this.runner.run('ipset', ['create', set.name, set.type, 'comment', '-exist']);
    }
  }

  async ensureChains(plan: NetnsPlan, backend: IptablesBackend): Promise<void> {
    if (backend === 'nft') {
      const before = await listNftTables(this.runner);
      const fresh = [...new Set(plan.chains.map((c) => c.table))].filter((t) => !before.includes(t) && !this.record.nftTables.includes(t));
      this.record.nftTables.push(...fresh);
    }
    for (const c of plan.chains) {
      if (!this.record.chains.some((r) => r.table === c.table && r.chain === c.chain)) this.record.chains.push(c);
    }
    this.persist();
    await installChains(this.runner, backend, plan.chains, plan.rules);
  }

  async ensureRoute(route: RoutePlan): Promise<void> {
    if (!this.record.routes.some((r) => sameRoute(r, route))) {
      this.record.routes.push(route);
      this.persist();
    }
    await this.runner.run('ip', ['route', 'replace', 'table', String(route.table), ...route.args]);
  }

  async ensureIpRule(rule: IpRulePlan): Promise<void> {
    if (!this.record.ipRules.some((r) => r.priority === rule.priority && r.args.join(' ') === rule.args.join(' '))) {
      this.record.ipRules.push(rule);
      this.persist();
    }
    if ((await listRules(this.runner)).some((j) => ruleMatches(j, rule))) return;
    await this.runner.run('ip', ['rule', 'add', 'priority', String(rule.priority), ...rule.args]);
  }
}

export const sameRoute = (a: RoutePlan, b: RoutePlan): boolean => a.table === b.table && a.args.join(' ') === b.args.join(' ');

/** Writes a sysctl, recording the value it had the first time weft touched it. */
export async function ensureSysctlRecorded(runner: CommandRunner, records: SysctlRecord[], s: SysctlPlan, persist: () => void): Promise<void> {
  if (!records.some((r) => r.key === s.key)) {
    const previous = await readSysctl(runner, s.key);
    if (previous === undefined) throw new WeftError('WEFT_ERR_CNI', `sysctl ${s.key} does not exist in ${runner.netns ?? 'this namespace'}`);
    records.push({ key: s.key, previous });
    persist();
  }
  await writeSysctl(runner, s.key, s.value);
}

export async function deleteRoute(runner: CommandRunner, route: RoutePlan): Promise<void> {
  await runner.exec('ip', ['route', 'del', 'table', String(route.table), ...route.args]);
}

/** Removes everything in `record`, newest kind first; what is already gone is skipped, and sysctls get their old values back. */
export async function undoRecord(runner: CommandRunner, record: AppliedRecord, backend: IptablesBackend): Promise<void> {
  const rules = await listRules(runner);
  for (const rule of [...record.ipRules].reverse()) {
    for (let n = rules.filter((j) => ruleMatches(j, rule)).length; n > 0; n--) {
      await runner.exec('ip', ['rule', 'del', 'priority', String(rule.priority), ...rule.args]);
    }
  }
  for (const route of [...record.routes].reverse()) await deleteRoute(runner, route);
  if (record.chains.length > 0) await removeChains(runner, backend, record.chains);
  for (const table of record.nftTables) await dropEmptyNftTable(runner, table);
  for (const set of record.ipsets) await runner.exec('ipset', ['destroy', set]);
  for (const s of [...record.sysctls].reverse()) {
    if ((await readSysctl(runner, s.key)) !== undefined) await writeSysctl(runner, s.key, s.previous);
  }
  for (const link of record.links) await runner.exec('ip', ['link', 'del', link]);
}
