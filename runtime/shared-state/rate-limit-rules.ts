/** Compiles the rateLimits config into a lookup from (domain, descriptor) to the most specific rule and its counter id (envoyproxy/ratelimit matching, flattened). */
import type { RateLimitDomainConfig, RateLimitRuleConfig } from '../config/config-schema.js';
import { escapeIdPart, type LimitAlgorithm, type LimitSpec } from './state-backend.js';

export const UNIT_MS = { second: 1_000, minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;
export type RateLimitUnit = keyof typeof UNIT_MS;

export interface RateLimitEntry {
  readonly key: string;
  readonly value: string;
}

export interface CompiledRule {
  readonly domain: string;
  readonly name: string;
  readonly entries: readonly { key: string; value: string | undefined }[];
  readonly requestsPerUnit: number;
  readonly unit: RateLimitUnit;
  readonly windowMs: number;
  readonly algorithm: LimitAlgorithm;
  readonly burst: number;
  readonly mode: 'strict' | 'local';
  readonly failMode: 'open' | 'closed' | 'local';
  /** Fraction of the limit this node enforces alone under failMode local. */
  readonly localShare: number;
  readonly shadowMode: boolean;
  readonly unlimited: boolean;
  /** Entries with a fixed value; the most specific match wins at equal depth. */
  readonly specificity: number;
}

const SEP = '\u0000';

export function compileRule(domain: string, rule: RateLimitRuleConfig, defaultFailMode: 'open' | 'closed'): CompiledRule {
  const entries = rule.entries.map((e) => ({ key: e.key, value: e.value === '*' ? undefined : e.value }));
  return {
    domain,
    name: rule.name ?? [domain, ...entries.map((e) => (e.value === undefined ? e.key : `${e.key}=${e.value}`))].join('.'),
    entries,
    requestsPerUnit: rule.requestsPerUnit,
    unit: rule.unit,
    windowMs: UNIT_MS[rule.unit],
    algorithm: rule.algorithm,
    burst: rule.burst ?? Math.max(1, rule.requestsPerUnit),
    mode: rule.mode,
    failMode: rule.failMode ?? defaultFailMode,
    localShare: rule.localShare,
    shadowMode: rule.shadowMode,
    unlimited: rule.unlimited,
    specificity: entries.filter((e) => e.value !== undefined).length,
  };
}

export class RateLimitRules {
  /** domain -> key signature -> candidate rules, most specific first. */
  readonly #index = new Map<string, Map<string, CompiledRule[]>>();

  constructor(domains: readonly RateLimitDomainConfig[], defaultFailMode: 'open' | 'closed') {
    for (const d of domains) {
      let byKeys = this.#index.get(d.domain);
      if (byKeys === undefined) {
        byKeys = new Map<string, CompiledRule[]>();
        this.#index.set(d.domain, byKeys);
      }
      for (const r of d.descriptors) {
        const rule = compileRule(d.domain, r, defaultFailMode);
        const signature = rule.entries.map((e) => e.key).join(SEP);
        const list = byKeys.get(signature) ?? [];
        list.push(rule);
        list.sort((a, b) => b.specificity - a.specificity);
        byKeys.set(signature, list);
      }
    }
  }

  hasDomain(domain: string): boolean {
    return this.#index.has(domain);
  }

  match(domain: string, entries: readonly RateLimitEntry[]): CompiledRule | undefined {
    const byKeys = this.#index.get(domain);
    if (byKeys === undefined) return undefined;
    let signature = '';
    for (let i = 0; i < entries.length; i++) signature += (i === 0 ? '' : SEP) + entries[i]!.key;
    const candidates = byKeys.get(signature);
    if (candidates === undefined) return undefined;
    for (const rule of candidates) {
      let ok = true;
      for (let i = 0; i < rule.entries.length; i++) {
        const want = rule.entries[i]!.value;
        if (want !== undefined && want !== entries[i]!.value) {
          ok = false;
          break;
        }
      }
      if (ok) return rule;
    }
    return undefined;
  }
}

/** The counter a request descriptor maps to: every distinct value of a wildcard entry counts separately. */
export function counterSpec(rule: CompiledRule, entries: readonly RateLimitEntry[]): LimitSpec {
  let id = escapeIdPart(rule.domain);
  for (const e of entries) id += `|${escapeIdPart(e.key)}=${escapeIdPart(e.value)}`;
  return { id, algorithm: rule.algorithm, limit: rule.requestsPerUnit, windowMs: rule.windowMs, burst: rule.burst };
}
