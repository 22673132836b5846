// The CNI protocol without root: spec error codes for bad input, VERSION, pass-through of prevResult for pods that are not enrolled.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCni } from './cni-command.js';
import type { CommandRunner } from './command-runner.js';

const stateDir = mkdtempSync(path.join(tmpdir(), 'weft-cni-unit-'));
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

/** Any command reaching the system fails the test: bad input must be rejected before side effects. */
const forbidden: CommandRunner = {
  netns: undefined,
  exec: (cmd) => Promise.reject(new Error(`unexpected command ${cmd}`)),
  run: (cmd) => Promise.reject(new Error(`unexpected command ${cmd}`)),
};

const prevResult = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'cni0' }, { name: 'veth1' }, { name: 'eth0', sandbox: '/var/run/netns/p' }],
  ips: [{ address: '10.1.0.7/24', gateway: '10.1.0.1', interface: 2 }],
};
const conf = (extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ cniVersion: '1.0.0', name: 'podnet', type: 'weft-cni', stateDir, enroll: { namespaces: ['mesh'] }, prevResult, ...extra });
const env = (command: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: 'c1',
  CNI_IFNAME: 'eth0',
  CNI_NETNS: '/proc/self/ns/net',
  CNI_PATH: '/opt/cni/bin',
  CNI_ARGS: 'K8S_POD_NAMESPACE=mesh;K8S_POD_NAME=a',
  ...extra,
});

async function errorOf(e: NodeJS.ProcessEnv, stdin: string): Promise<{ code: number; msg: string; details: string }> {
  const out = await runCni(e, stdin, { runner: forbidden });
  expect(out.exitCode).not.toBe(0);
  return JSON.parse(out.stdout) as { code: number; msg: string; details: string };
}

describe('weft-cni protocol', () => {
  it('VERSION lists the spec versions it speaks', async () => {
    const out = await runCni({ CNI_COMMAND: 'VERSION' }, '', { runner: forbidden });
    expect(out.exitCode).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  });

  it('malformed JSON is error 6', async () => {
    expect((await errorOf(env('ADD'), '{"cniVersion": "1.0.0",')).code).toBe(6);
  });

  it('an unknown cniVersion is error 1', async () => {
    const e = await errorOf(env('ADD'), conf({ cniVersion: '9.9.9' }));
    expect(e.code).toBe(1);
    expect(e.msg).toContain('9.9.9');
  });

  it('a missing prevResult is error 7 naming the chaining requirement', async () => {
    const e = await errorOf(env('ADD'), conf({ prevResult: undefined }));
    expect(e.code).toBe(7);
    expect(e.msg).toContain('chained');
  });

  it('a CNI_NETNS that does not exist is error 3', async () => {
    const e = await errorOf(env('ADD', { CNI_NETNS: '/var/run/netns/weft-no-such-ns' }), conf());
    expect(e.code).toBe(3);
    expect(e.msg).toContain('weft-no-such-ns');
  });

  it('missing environment is error 4; an unknown command too', async () => {
    expect((await errorOf(env('ADD', { CNI_CONTAINERID: '' }), conf())).code).toBe(4);
    expect((await errorOf(env('FROB'), conf())).code).toBe(4);
  });

  it('a wrongly typed field is error 7 with the path in details', async () => {
    const e = await errorOf(env('ADD'), conf({ enroll: { namespaces: 'mesh' } }));
    expect(e.code).toBe(7);
    expect(e.details).toContain('enroll.namespaces');
  });

  it('ADD for a pod that is not enrolled passes prevResult through unchanged, in the config version', async () => {
    const out = await runCni(env('ADD', { CNI_ARGS: 'K8S_POD_NAMESPACE=other;K8S_POD_NAME=b' }), conf(), { runner: forbidden });
    expect(out.exitCode).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual(prevResult);
  });

  it('CHECK with a pre-0.4.0 config is error 1', async () => {
    expect((await errorOf(env('CHECK'), conf({ cniVersion: '0.3.1' }))).code).toBe(1);
  });

  it('STATUS before node setup is error 50', async () => {
    expect((await errorOf(env('STATUS'), conf())).code).toBe(50);
  });

  it('GC without cni.dev/valid-attachments is error 7', async () => {
    expect((await errorOf(env('GC'), conf())).code).toBe(7);
  });
});
