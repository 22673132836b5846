// Real redis-server processes for tests: single, 3-master cluster (redis-cli --cluster create) and master+replica with sentinels, on free loopback ports in temp dirs.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './free-port.js';

const execFileAsync = promisify(execFile);

/** Sends one inline command and resolves with the first reply line (or rejects on timeout/refusal). */
export function rawCommand(port: number, command: string, timeoutMs = 500): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis on ${port} did not answer ${command} within ${timeoutMs} ms`));
    }, timeoutMs);
    let buffer = '';
    socket.on('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      if (buffer.includes('\r\n')) {
        clearTimeout(timer);
        socket.end();
        resolve(buffer);
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 });
  return stdout.trim();
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface RedisProcess {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** The running child, replaced by restart(). */
  process(): ChildProcess;
  signal(sig: NodeJS.Signals): void;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
  /** Starts again on the same port and directory. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface StartRedisOptions {
  args?: string[];
  /** Extra lines for a config file (sentinel mode needs a writable one). */
  configLines?: string[];
  sentinel?: boolean;
  port?: number;
}

export async function startRedis(options: StartRedisOptions = {}): Promise<RedisProcess> {
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'weft-redis-'));
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const launch = async (): Promise<void> => {
    let args: string[];
    if (options.configLines !== undefined) {
      const file = join(dir, options.sentinel === true ? 'sentinel.conf' : 'redis.conf');
      writeFileSync(file, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, ...options.configLines].join('\n') + '\n');
      args = [file, ...(options.sentinel === true ? ['--sentinel'] : [])];
    } else {
      args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...(options.args ?? [])];
    }
    const c = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    exited = new Promise((resolve) => c.once('exit', () => resolve()));
    // NOAUTH is an answer too: a password-protected server is up.
    await waitFor(`redis-server on 127.0.0.1:${port}`, async () => /^(\+PONG|-NOAUTH)/.test(await rawCommand(port, 'PING')));
  };

  const kill = async (): Promise<void> => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  };

  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    process: () => child as ChildProcess,
    signal: (sig) => child?.kill(sig),
    kill,
    restart: launch,
    stop: async () => {
      child?.kill('SIGCONT');
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RedisClusterProcess {
  readonly nodes: RedisProcess[];
  readonly urls: string[];
  stop(): Promise<void>;
}

/** Three masters, no replicas, slots split by redis-cli --cluster create. */
export async function startRedisCluster(masters = 3): Promise<RedisClusterProcess> {
  const nodes: RedisProcess[] = [];
  for (let i = 0; i < masters; i++) {
    const port = await freePort();
    const busPort = await freePort();
    nodes.push(
      await startRedis({
        port,
        args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000', '--cluster-port', String(busPort)],
      }),
    );
  }
  try {
    await execFileAsync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], {
      timeout: 30_000,
    });
    for (const n of nodes) {
      await waitFor(`cluster_state:ok on ${n.port}`, async () => (await cli(n.port, 'CLUSTER', 'INFO')).includes('cluster_state:ok'), 20_000);
    }
  } catch (err) {
    for (const n of nodes) await n.stop();
    throw err;
  }
  return {
    nodes,
    urls: nodes.map((n) => n.url),
    stop: async () => {
      for (const n of nodes) await n.stop();
    },
  };
}

/** Node id of the cluster node at `port`. */
export async function clusterNodeId(port: number): Promise<string> {
  return cli(port, 'CLUSTER', 'MYID');
}

/**
 * Moves one slot between masters the way redis-cli --cluster reshard does (IMPORTING/MIGRATING, MIGRATE keys,
 * SETSLOT NODE everywhere); clients see ASK while keys move and MOVED afterwards. `pauseMs` holds the
 * MIGRATING phase open so traffic runs through it.
 */
export async function migrateSlot(cluster: RedisClusterProcess, slot: number, fromPort: number, toPort: number, pauseMs = 0): Promise<void> {
  const fromId = await clusterNodeId(fromPort);
  const toId = await clusterNodeId(toPort);
  await cli(toPort, 'CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', fromId);
  await cli(fromPort, 'CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', toId);
  if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
  for (;;) {
    const keys = (await cli(fromPort, 'CLUSTER', 'GETKEYSINSLOT', String(slot), '100')).split('\n').filter((k) => k.length > 0);
    if (keys.length === 0) break;
    await cli(fromPort, 'MIGRATE', '127.0.0.1', String(toPort), '', '0', '5000', 'KEYS', ...keys);
  }
  for (const n of cluster.nodes) await cli(n.port, 'CLUSTER', 'SETSLOT', String(slot), 'NODE', toId);
}

export interface RedisSentinelProcess {
  readonly masterName: string;
  readonly master: RedisProcess;
  readonly replica: RedisProcess;
  readonly sentinels: RedisProcess[];
  /** Port of the master the sentinels currently report. */
  currentMasterPort(): Promise<number>;
  stop(): Promise<void>;
}

/** A master/replica pair watched by two sentinels (quorum 1, 500 ms down-after) for fast, real failovers. */
export async function startRedisSentinel(masterName = 'weftmaster'): Promise<RedisSentinelProcess> {
  const master = await startRedis();
  const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
  const sentinels: RedisProcess[] = [];
  const stopAll = async (): Promise<void> => {
    for (const x of [...sentinels, replica, master]) await x.stop();
  };
  try {
    await waitFor('replica in sync', async () => (await cli(replica.port, 'INFO', 'replication')).includes('master_link_status:up'));
    for (let i = 0; i < 2; i++) {
      sentinels.push(
        await startRedis({
          sentinel: true,
          configLines: [
            `sentinel monitor ${masterName} 127.0.0.1 ${master.port} 1`,
            `sentinel down-after-milliseconds ${masterName} 500`,
            `sentinel failover-timeout ${masterName} 3000`,
            `sentinel parallel-syncs ${masterName} 1`,
          ],
        }),
      );
    }
    await waitFor('sentinels see each other and the replica', async () => {
      const info = await cli(sentinels[0]!.port, 'SENTINEL', 'MASTER', masterName);
      const lines = info.split('\n');
      const field = (name: string): number => Number(lines[lines.indexOf(name) + 1]);
      return field('num-slaves') >= 1 && field('num-other-sentinels') >= 1;
    });
  } catch (err) {
    await stopAll();
    throw err;
  }
  return {
    masterName,
    master,
    replica,
    sentinels,
    currentMasterPort: async () => Number((await cli(sentinels[0]!.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName)).split('\n')[1]),
    stop: stopAll,
  };
}
