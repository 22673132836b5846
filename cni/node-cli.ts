/** The node-side commands of weft-cni: `node setup|cleanup|doctor` and `install|uninstall`, loaded only when asked for. */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_STATE_DIR } from './cni-config.js';
import { hostPayload } from './cni-host-payload.js';
import { runInstallDaemon, installLockFile } from './cni-install-daemon.js';
import { installCni, installRecordFile, PLUGIN_TYPE, uninstallCni } from './cni-install.js';
import { acquireFileLock } from './file-lock.js';
import { WEFT_CNI_USAGE } from './cni-constants.js';
import { createCommandRunner } from './command-runner.js';
import { decode, nodeConfigSchema, type NodeConfig } from './node-config.js';
import { runDoctor } from './node-doctor.js';
import { cleanupNode, defaultRunners, resolveInput, setupNode } from './node-setup.js';
import { planNode, planRuntime, renderPlan } from './rule-plan.js';
import { StateStore } from './state-store.js';

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

export async function nodeCommand(args: string[]): Promise<number> {
  const [verb] = args;
  const configFile = option(args, '--config');
  switch (verb) {
    case 'setup': {
      const config = loadNodeConfig(configFile);
      if (config.mode === 'inpod') {
        // In-pod mode adds nothing to the node namespace; each pod's ADD programs that pod.
        process.stdout.write(JSON.stringify({ phase: 'ready', mode: 'inpod', nodeRules: [] }) + '\n');
        return 0;
      }
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
      const report = await runDoctor(createCommandRunner(), config?.tunnelDriver ?? 'auto', config?.mode ?? 'tunnel');
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      return report.problems.length === 0 ? 0 : 1;
    }
    default:
      process.stderr.write(WEFT_CNI_USAGE + '\n');
      return 2;
  }
}

/** `install` (once, or `--watch` until SIGTERM) and `uninstall`; all take the install lock in the state dir. */
export async function installCommand(args: string[]): Promise<number> {
  try {
    const need = (name: string): string => {
      const v = option(args, name);
      if (v === undefined) throw new Error(`${name} is required`);
      return v;
    };
    const [binDir, confDir] = [need('--bin-dir'), need('--conf-dir')];
    const stateDir = option(args, '--state-dir') ?? DEFAULT_STATE_DIR;
    const recordFile = installRecordFile(stateDir);
    if (args[0] === 'uninstall') {
      const lock = await acquireFileLock(installLockFile(stateDir), 60_000);
      try {
        uninstallCni(binDir, confDir, recordFile);
      } finally {
        await lock.release();
      }
      return 0;
    }
    const entryFile = option(args, '--plugin-config-file');
    const entryText = entryFile === undefined ? (option(args, '--plugin-config') ?? '{}') : readFileSync(entryFile, 'utf8');
    const entry = JSON.parse(entryText) as Record<string, unknown>;
    const binary = option(args, '--binary');
    const script = option(args, '--plugin-script');
    if ((binary === undefined) === (script === undefined)) throw new Error('give exactly one of --binary FILE (a self-contained weft-cni) or --plugin-script FILE (the bundled plugin, shipped with this Node)');
    const payload = binary !== undefined ? [{ path: PLUGIN_TYPE, source: binary, mode: 0o755 }] : hostPayload(script!);
    const install = { binDir, confDir, payload, entry, recordFile };
    if (args.includes('--watch')) {
      const stop = new AbortController();
      process.once('SIGTERM', () => stop.abort());
      process.once('SIGINT', () => stop.abort());
      await runInstallDaemon({ install, stateDir, readyFile: option(args, '--ready-file'), recheckMs: 30_000, signal: stop.signal });
      return 0;
    }
    const lock = await acquireFileLock(installLockFile(stateDir), 60_000);
    try {
      const file = installCni(install);
      if (file === undefined) throw new Error(`no CNI network config in ${confDir}; install the primary CNI first`);
      process.stdout.write(JSON.stringify({ installed: file }) + '\n');
    } finally {
      await lock.release();
    }
    return 0;
  } catch (err) {
    process.stderr.write(`weft-cni ${args[0]}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

/** `weft-cni agent --config FILE`: the in-pod node agent, until SIGTERM. */
export async function agentCommand(args: string[]): Promise<number> {
  const config = loadNodeConfig(option(args, '--config'));
  const { InpodAgent } = await import('./inpod-agent.js');
  const agent = new InpodAgent({ zdsSocket: config.zdsSocket, agentSocket: config.agentSocket, stateDir: config.stateDir });
  await agent.start();
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  agent.close();
  return 0;
}
