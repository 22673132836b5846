/** Cross-reference checks the schema cannot express: duplicate names and addresses, references to services and plugins that do not exist. */
import type { WeftConfig } from './config-schema.js';
import { parseSocketAddress } from './socket-address.js';
import { PLUGINS_ANNOTATION, parsePluginList, pluginConfigProblems } from '../state/plugin-attachment.js';
import { securityProblems } from '../authz/policy-problems.js';
import { functionProblems } from '../functions/function-problems.js';

export interface CrossProblem {
  path: (string | number)[];
  message: string;
}

/** Rules about the file itself (not the model it builds): with a Kubernetes source, the cluster owns the workloads. */
export function fileSourceProblems(config: WeftConfig): CrossProblem[] {
  if (config.source !== 'kubernetes' || config.workloads.length === 0) return [];
  return [{ path: ['workloads'], message: "with source: kubernetes the workloads come from the cluster's Pods; remove workloads: from the file or set source: file" }];
}

export function crossReferenceProblems(config: WeftConfig): CrossProblem[] {
  const problems: CrossProblem[] = [];

  const workloadIps = new Map<string, number>();
  config.workloads.forEach((w, i) => {
    w.addresses.forEach((ip, j) => {
      const other = workloadIps.get(ip);
      if (other !== undefined) problems.push({ path: ['workloads', i, 'addresses', j], message: `address ${ip} is already used by workloads[${other}]` });
      else workloadIps.set(ip, i);
    });
  });

  const serviceKeys = new Map<string, number>();
  const vipPorts = new Map<string, number>();
  config.services.forEach((s, i) => {
    const key = `${s.name}.${s.namespace}`;
    if (serviceKeys.has(key)) problems.push({ path: ['services', i, 'name'], message: `service ${key} is defined twice (also services[${serviceKeys.get(key)}])` });
    serviceKeys.set(key, i);
    const seen = new Set<number>();
    s.ports.forEach((p, j) => {
      if (seen.has(p.port)) problems.push({ path: ['services', i, 'ports', j, 'port'], message: `port ${p.port} is listed twice` });
      seen.add(p.port);
      for (const vip of s.addresses) {
        const vp = `${vip}:${p.port}`;
        const other = vipPorts.get(vp);
        if (other !== undefined && other !== i) problems.push({ path: ['services', i, 'addresses'], message: `${vp} is already served by services[${other}]` });
        vipPorts.set(vp, i);
      }
    });
  });

  const pluginNames = new Set<string>();
  config.plugins.forEach((p, i) => {
    if (pluginNames.has(p.name)) problems.push({ path: ['plugins', i, 'name'], message: `plugin "${p.name}" is defined twice` });
    pluginNames.add(p.name);
  });
  const checkAnnotations = (annotations: Record<string, string>, path: (string | number)[]): void => {
    for (const p of pluginConfigProblems(annotations)) problems.push({ path: [...path, 'annotations', p.key], message: p.message });
    const list = annotations[PLUGINS_ANNOTATION];
    if (list === undefined) return;
    for (const plugin of parsePluginList(list)) {
      if (!pluginNames.has(plugin)) problems.push({ path: [...path, 'annotations', PLUGINS_ANNOTATION], message: `plugin "${plugin}" is not defined under plugins:` });
    }
  };
  config.workloads.forEach((w, i) => checkAnnotations(w.annotations, ['workloads', i]));
  config.services.forEach((s, i) => checkAnnotations(s.annotations, ['services', i]));
  config.namespaces.forEach((n, i) => checkAnnotations(n.annotations, ['namespaces', i]));

  const listens = new Set<string>();
  config.localPorts.forEach((lp, i) => {
    const addr = parseSocketAddress(lp.listen);
    if (addr !== undefined && addr.port !== 0) {
      if (listens.has(lp.listen)) problems.push({ path: ['localPorts', i, 'listen'], message: `${lp.listen} is used by another localPorts entry` });
      listens.add(lp.listen);
    }
    const service = findService(config, lp.service);
    if (service === undefined) {
      problems.push({ path: ['localPorts', i, 'service'], message: `no service "${lp.service}" (expected name.namespace or a service VIP)` });
    } else if (!service.ports.some((p) => p.port === lp.port)) {
      problems.push({ path: ['localPorts', i, 'port'], message: `service ${service.name}.${service.namespace} has no port ${lp.port} (it has ${service.ports.map((p) => p.port).join(', ')})` });
    }
  });

  config.policies.forEach((p, i) => {
    if (p.selector !== undefined && p.targetRef !== undefined) problems.push({ path: ['policies', i], message: 'set either selector or targetRef, not both' });
  });
  problems.push(...securityProblems(config));
  problems.push(...functionProblems(config));
  return problems;
}

function findService(config: WeftConfig, ref: string): WeftConfig['services'][number] | undefined {
  return config.services.find((s) => s.addresses.includes(ref) || `${s.name}.${s.namespace}` === ref || ref.startsWith(`${s.name}.${s.namespace}.svc.`));
}
