// The `weft` command as a user runs it: validate's exit code and file:line problems, run with SIGHUP reload and SIGTERM drain.
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { freePort } from '../helpers/free-port.js';

const run = promisify(execFile);
const CLI = ['--import', 'tsx', 'runtime/cli.ts'];
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'weft-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function weft(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [...CLI, ...args]);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('weft validate', () => {
  it('exits 0 on a valid file and 1 listing every problem with file:line:column', async () => {
    const good = path.join(dir, 'good.yaml');
    await writeFile(good, 'node: a\nworkloads:\n  - { name: w, addresses: [10.0.0.1] }\n');
    expect(await weft(['validate', good])).toMatchObject({ code: 0, stdout: expect.stringContaining('valid (1 workloads') });
    const bad = path.join(dir, 'bad.yaml');
    await writeFile(bad, 'node: a\nworkloads:\n  - { name: W, addresses: [nope] }\nservices:\n  - { name: s, ports: [{ port: 70000 }] }\n');
    const r = await weft(['validate', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`${bad}:3:\\d+: workloads\\[0\\]\\.name: `));
    expect(r.stderr).toMatch(new RegExp(`${bad}:3:\\d+: workloads\\[0\\]\\.addresses\\[0\\]: expected an IPv4 or IPv6 address`));
    expect(r.stderr).toMatch(new RegExp(`${bad}:5:\\d+: services\\[0\\]\\.ports\\[0\\]\\.port: `));
    expect(r.stderr).toContain('3 problems');
  });

  it('explains unknown commands and a missing file', async () => {
    expect((await weft(['frobnicate'])).code).toBe(2);
    const missing = await weft(['validate', path.join(dir, 'nope.yaml')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('cannot read the file');
  });
});

describe('weft run', () => {
  it.each([1, 2])('workers: %i — reloads on SIGHUP, keeps the old config on a bad edit, and drains on SIGTERM', async (workers) => {
    const ports = { admin: await freePort(), metrics: await freePort(), readiness: await freePort() };
    const file = path.join(dir, `weft-${workers}.yaml`);
    const config = (node: string): Record<string, unknown> => ({
      node,
      workers,
      listeners: {
        outbound: { address: '127.0.0.1:0' },
        inbound: { address: '127.0.0.1:0' },
        explicitProxy: { address: '127.0.0.1:0' },
        admin: `127.0.0.1:${ports.admin}`,
        metrics: `127.0.0.1:${ports.metrics}`,
        readiness: `127.0.0.1:${ports.readiness}`,
      },
    });
    await writeFile(file, stringify(config('first')));
    const child = spawn(process.execPath, [...CLI, 'run', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const dump = async (): Promise<{ node: string; version: number }> => (await fetch(`http://127.0.0.1:${ports.admin}/config_dump`)).json() as Promise<{ node: string; version: number }>;
      await expect.poll(() => dump().catch(() => undefined), { timeout: 30_000 }).toMatchObject({ node: 'first', version: 1 });
      // How many event loops run, and why.
      expect(await dump()).toMatchObject({ workers: { count: workers, requested: workers, running: workers, reason: expect.stringContaining(`workers: ${workers}`) as unknown } });

      await writeFile(file, stringify(config('second')));
      child.kill('SIGHUP');
      await expect.poll(() => dump(), { timeout: 10_000 }).toMatchObject({ node: 'second', version: 2 });

      await writeFile(file, 'node: [broken');
      child.kill('SIGHUP');
      await expect.poll(() => stderr, { timeout: 10_000 }).toContain('configuration rejected; the previous configuration keeps serving');
      expect(await dump()).toMatchObject({ node: 'second' });

      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(stderr).toContain('"msg":"draining"');
      expect(stderr).toContain('"msg":"weft stopped"');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
