#!/usr/bin/env node
/** weft-cni: the CNI plugin (CNI_COMMAND + JSON on stdin) and `weft-cni node setup|cleanup|doctor [--config FILE] [--dry-run]`. */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { setLogSink } from '../runtime/log.js';
import { runCni } from './cni-command.js';
import { decode, nodeConfigSchema, type NodeConfig } from './cni-config.js';
import { createCommandRunner } from './command-runner.js';
import { runDoctor } from './node-doctor.js';
import { cleanupNode, defaultRunners, resolveInput, setupNode } from './node-setup.js';
import { planNode, planRuntime, renderPlan } from './rule-plan.js';
import { StateStore } from './state-store.js';

const USAGE = 'usage: weft-cni (CNI plugin; CNI_COMMAND in the environment)\n       weft-cni node setup|cleanup|doctor [--config FILE] [--dry-run]';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function loadNodeConfig(file: string | undefined): NodeConfig {
  if (file === undefined) throw new Error('--config FILE is required (JSON or YAML; see cni/README.md)');
  const decoded = decode(nodeConfigSchema, parseYaml(readFileSync(file, 'utf8')) as unknown);
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
