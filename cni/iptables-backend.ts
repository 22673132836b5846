/** iptables through iptables-restore --noflush, touching only weft's own chains and their hook jumps, with the legacy-vs-nft backend detected as istio-cni does. */
import { WeftError } from '../runtime/errors.js';
import type { CommandRunner } from './command-runner.js';
import type { ChainPlan, IptablesRulePlan, IptablesTable } from './rule-plan.js';

export const IPTABLES_BACKENDS = ['nft', 'legacy'] as const;
export type IptablesBackend = (typeof IPTABLES_BACKENDS)[number];

/** kubelet creates these in whichever backend the node uses (reference §2.2 "iptables binary choice"). */
const KUBELET_HINTS = ['KUBE-IPTABLES-HINT', 'KUBE-KUBELET-CANARY'];

export interface BackendDetection {
  backend: IptablesBackend;
  reason: string;
}

/** Looks for kubelet's hint chains in iptables-nft-save -t mangle, then ip6tables-nft-save, then iptables-legacy-save; defaults to nft. */
export async function detectIptablesBackend(runner: CommandRunner): Promise<BackendDetection> {
  const probes: [IptablesBackend, string, string[]][] = [
    ['nft', 'iptables-nft-save', ['-t', 'mangle']],
    ['nft', 'ip6tables-nft-save', ['-t', 'mangle']],
    ['legacy', 'iptables-legacy-save', []],
  ];
  for (const [backend, command, args] of probes) {
    const r = await runner.exec(command, args).catch(() => undefined);
    if (r === undefined || r.code !== 0) continue;
    const hint = KUBELET_HINTS.find((h) => r.stdout.includes(h));
    if (hint !== undefined) return { backend, reason: `${hint} found by ${command}` };
  }
  return { backend: 'nft', reason: 'no kubelet hint chain found; nft is the default' };
}

export const saveCommand = (b: IptablesBackend): string => (b === 'nft' ? 'iptables-nft-save' : 'iptables-legacy-save');
export const restoreCommand = (b: IptablesBackend): string => (b === 'nft' ? 'iptables-nft-restore' : 'iptables-legacy-restore');

export interface SavedTable {
  chains: Set<string>;
  /** `-A ...` lines as iptables-save prints them. */
  rules: string[];
}

/** Parses iptables-save output into tables, chains and rule lines. */
export function parseIptablesSave(text: string): Map<string, SavedTable> {
  const tables = new Map<string, SavedTable>();
  let current: SavedTable | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      current = { chains: new Set(), rules: [] };
      tables.set(line.slice(1).trim(), current);
    } else if (current !== undefined && line.startsWith(':')) current.chains.add(line.slice(1).split(' ')[0] ?? '');
    else if (current !== undefined && line.startsWith('-A ')) current.rules.push(line.trim());
  }
  return tables;
}

const jumpLine = (c: ChainPlan): string => `-A ${c.hook} -j ${c.chain}`;

/**
 * The iptables-restore --noflush input that installs our chains: declaring a chain creates or
 * flushes it (so a rerun after a crash rewrites it whole), hook jumps are inserted only where missing,
 * and each table commits atomically.
 */
export function renderInstall(chains: ChainPlan[], rules: IptablesRulePlan[], present: Map<string, SavedTable>): string {
  const out: string[] = [];
  for (const table of tablesOf(chains)) {
    const ours = chains.filter((c) => c.table === table);
    const saved = present.get(table);
    out.push(`*${table}`);
    for (const c of ours) out.push(`:${c.chain} - [0:0]`);
    for (const c of ours) if (!(saved?.rules.includes(jumpLine(c)) ?? false)) out.push(`-I ${c.hook} -j ${c.chain}`);
    for (const r of rules) if (r.table === table) out.push(r.line);
    out.push('COMMIT');
  }
  return out.join('\n') + '\n';
}

/** The input that removes exactly our hook jumps (every copy) and chains, skipping what is already gone. */
export function renderRemove(chains: ChainPlan[], present: Map<string, SavedTable>): string {
  const out: string[] = [];
  for (const table of tablesOf(chains)) {
    const saved = present.get(table);
    if (saved === undefined) continue;
    const lines: string[] = [];
    for (const c of chains.filter((x) => x.table === table)) {
      for (const rule of saved.rules) if (rule === jumpLine(c)) lines.push(`-D ${c.hook} -j ${c.chain}`);
    }
    for (const c of chains.filter((x) => x.table === table && saved.chains.has(x.chain))) lines.push(`-F ${c.chain}`, `-X ${c.chain}`);
    if (lines.length > 0) out.push(`*${table}`, ...lines, 'COMMIT');
  }
  return out.length === 0 ? '' : out.join('\n') + '\n';
}

function tablesOf(chains: ChainPlan[]): IptablesTable[] {
  return [...new Set(chains.map((c) => c.table))];
}

export async function readIptables(runner: CommandRunner, backend: IptablesBackend): Promise<Map<string, SavedTable>> {
  return parseIptablesSave(await runner.run(saveCommand(backend), []));
}

export async function installChains(runner: CommandRunner, backend: IptablesBackend, chains: ChainPlan[], rules: IptablesRulePlan[]): Promise<void> {
  const text = renderInstall(chains, rules, await readIptables(runner, backend));
  await runRestore(runner, backend, text);
}

export async function removeChains(runner: CommandRunner, backend: IptablesBackend, chains: ChainPlan[]): Promise<void> {
  const text = renderRemove(chains, await readIptables(runner, backend));
  if (text !== '') await runRestore(runner, backend, text);
}

async function runRestore(runner: CommandRunner, backend: IptablesBackend, text: string): Promise<void> {
  const r = await runner.exec(restoreCommand(backend), ['--noflush'], text);
  if (r.code !== 0) {
    throw new WeftError('WEFT_ERR_CNI', `${restoreCommand(backend)} --noflush rejected weft's rules (nothing in that table was applied): ${r.stderr.trim()}`);
  }
}

/**
 * nft tables that exist in the namespace (`table ip mangle` ...). iptables-nft creates a table with
 * its built-in chains on first use, so cleanup deletes a table weft brought into being once it is
 * empty again; with the legacy backend tables are kernel modules and stay.
 */
export async function listNftTables(runner: CommandRunner): Promise<string[]> {
  const r = await runner.exec('nft', ['list', 'tables', 'ip']);
  if (r.code !== 0) return [];
  return r.stdout
    .split('\n')
    .map((l) => /^table ip (\S+)$/.exec(l.trim())?.[1])
    .filter((t): t is string => t !== undefined);
}

/** Deletes a table we created if it holds no rules and only built-in chains. */
export async function dropEmptyNftTable(runner: CommandRunner, table: string): Promise<void> {
  const saved = (await readIptables(runner, 'nft')).get(table);
  if (saved === undefined) return;
  const builtin = new Set(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']);
  if (saved.rules.length > 0 || [...saved.chains].some((c) => !builtin.has(c))) return;
  const listing = await runner.exec('nft', ['list', 'table', 'ip', table]);
  // A policy other than accept means someone else configured the table since.
  if (listing.code !== 0 || /policy drop/.test(listing.stdout)) return;
  await runner.run('nft', ['delete', 'table', 'ip', table]);
}
