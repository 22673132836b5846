/** Cross-reference checks for `functions:`: duplicate keys, names shared with services, addresses shared with workloads or VIPs. */
import type { WeftConfig } from '../config/config-schema.js';
import { functionAddress, functionKey } from './function-entities.js';

export interface FunctionProblem {
  path: (string | number)[];
  message: string;
}

export function functionProblems(config: WeftConfig): FunctionProblem[] {
  const problems: FunctionProblem[] = [];
  // The sets below are the size of the whole mesh (150,000 pods in a large cluster): built only when there is something to check.
  if (config.functions.length === 0) return problems;
  const keys = new Map<string, number>();
  const addresses = new Map<string, number>();
  const services = new Set(config.services.map((s) => `${s.name}.${s.namespace}`));
  const workloadIps = new Set(config.workloads.flatMap((w) => w.addresses));
  const vips = new Set(config.services.flatMap((s) => s.addresses));
  config.functions.forEach((f, i) => {
    const key = functionKey(f);
    const other = keys.get(key);
    if (other !== undefined) problems.push({ path: ['functions', i, 'name'], message: `function ${key} is defined twice (also functions[${other}])` });
    keys.set(key, i);
    if (services.has(key)) problems.push({ path: ['functions', i, 'name'], message: `${key} is already a service under services:; a function is its own service, pick another name` });
    const address = functionAddress(f);
    const clash = addresses.get(address);
    if (clash !== undefined && clash !== i) problems.push({ path: ['functions', i, 'name'], message: `function ${key} hashes to the same workload address (${address}) as functions[${clash}]; rename one` });
    addresses.set(address, i);
    if (workloadIps.has(address)) problems.push({ path: ['functions', i, 'name'], message: `function ${key}'s workload address ${address} is used by a workload under workloads:` });
    f.addresses.forEach((vip, j) => {
      if (vips.has(vip)) problems.push({ path: ['functions', i, 'addresses', j], message: `VIP ${vip} is already a service's address` });
    });
  });
  return problems;
}
