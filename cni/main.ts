#!/usr/bin/env node
/** weft-cni: the CNI plugin (CNI_COMMAND + JSON on stdin) and `weft-cni node setup|cleanup|doctor [--config FILE] [--dry-run]`. */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { setLogSink } from '../runtime/log.js';
import { runCni } from './cni-command.js';
import { installCni, uninstallCni } from './cni-install.js';
import { decode, nodeConfigSchema, type NodeConfig } from './cni-config.js';
import { createCommandRunner } from './command-runner.js';
import { runDoctor } from './node-doctor.js';
import { cleanupNode, defaultRunners, resolveInput, setupNode } from './node-setup.js';
import { planNode, planRuntime, renderPlan } from './rule-plan.js';
import { StateStore } from './state-store.js';

const USAGE = [
  'usage: weft-cni                      (the CNI plugin: CNI_COMMAND in the environment, config on stdin)',
  '       weft-cni node setup|cleanup|doctor [--config FILE] [--dry-run]',
  '       weft-cni install --binary FILE --bin-dir DIR --conf-dir DIR [--plugin-config JSON | --plugin-config-file FILE]',
  '       weft-cni uninstall --bin-dir DIR --conf-dir DIR',
].join('\n');

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The DaemonSet learns the runtime pod's IP from the downward API, so the environment may supply it. */
const RUNTIME_IP_ENV = 'WEFT_CNI_RUNTIME_IP';

function loadNodeConfig(file: string | undefined): NodeConfig {
  if (file === undefined) throw new Error('--config FILE is required (JSON or YAML; see cni/README.md)');
  const raw = (parseYaml(readFileSync(file, 'utf8')) ?? {}) as Record<string, unknown>;
  const fromEnv = process.env[RUNTIME_IP_ENV];
  const decoded = decode(nodeConfigSchema, fromEnv === undefined || fromEnv === '' ? raw : { ...raw, runtimeIp: fromEnv });
  if (!decoded.ok) throw new Error(`${file}: invalid node configuration:\n  ${decoded.problems.join('\n  ')}`);
  return decoded.value;
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i < 0 ? undefined : args[i + 1];
}

async function nodeCommand(args: string[]): Promise<number> {
  const [verb] = args;
  const configFile = option(args, '--config');
  switch (verb) {
    case 'setup': {
      const config = loadNodeConfig(configFile);
      if (args.includes('--dry-run')) {
        const runners = defaultRunners(config);
        const { input } = await resolveInput(config, runners, new StateStore(config.stateDir).readNode());
        process.stdout.write(['# node', ...renderPlan(planNode(input)), `# runtime namespace ${config.runtimeNetns}`, ...renderPlan(planRuntime(input))].join('\n') + '\n');
        return 0;
      }
      const state = await setupNode(config);
      process.stdout.write(JSON.stringify({ phase: state.phase, driver: state.input.driver, tunnelPort: state.input.tunnelPort, backend: state.backend }) + '\n');
      return 0;
    }
    case 'cleanup': {
      const config = loadNodeConfig(configFile);
      const removed = await cleanupNode(config);
      process.stdout.write(JSON.stringify({ removed }) + '\n');
      return 0;
    }
    case 'doctor': {
      const config = configFile === undefined ? undefined : loadNodeConfig(configFile);
      const report = await runDoctor(createCommandRunner(), config?.tunnelDriver ?? 'auto');
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      return report.problems.length === 0 ? 0 : 1;
    }
    default:
      process.stderr.write(USAGE + '\n');
      return 2;
  }
}

async function main(): Promise<number> {
  // stdout carries the CNI protocol; logs go to stderr only.
  setLogSink((line) => process.stderr.write(line + '\n'));
  const args = process.argv.slice(2);
  if (args[0] === 'node') {
    try {
      return await nodeCommand(args.slice(1));
    } catch (err) {
      process.stderr.write(`weft-cni node ${args[1] ?? ''}: ${err instanceof Error ? err.message : String(err)}\n`);
      return 1;
    }
  }
  if (args[0] === 'install' || args[0] === 'uninstall') {
    try {
      const need = (name: string): string => {
        const v = option(args, name);
        if (v === undefined) throw new Error(`${name} is required`);
        return v;
      };
      if (args[0] === 'uninstall') uninstallCni(need('--bin-dir'), need('--conf-dir'));
      else {
        const entryFile = option(args, '--plugin-config-file');
        const entryText = entryFile === undefined ? (option(args, '--plugin-config') ?? '{}') : readFileSync(entryFile, 'utf8');
        const entry = JSON.parse(entryText) as Record<string, unknown>;
        const file = installCni({ binary: need('--binary'), binDir: need('--bin-dir'), confDir: need('--conf-dir'), entry });
        process.stdout.write(JSON.stringify({ installed: file }) + '\n');
      }
      return 0;
    } catch (err) {
      process.stderr.write(`weft-cni ${args[0]}: ${err instanceof Error ? err.message : String(err)}\n`);
      return 1;
    }
  }
  if (args[0] === '--help' || args[0] === '-h') {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const stdin = process.env.CNI_COMMAND === 'VERSION' ? '' : await readStdin();
  const outcome = await runCni(process.env, stdin);
  if (outcome.stdout !== '') process.stdout.write(outcome.stdout + '\n');
  return outcome.exitCode;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`weft-cni: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  },
);
