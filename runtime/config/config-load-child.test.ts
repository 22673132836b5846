import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from './config-load.js';
import { loadConfigInChild } from './config-load-child.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'weft-config-child-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadConfigInChild', () => {
  it('returns in a child process what loadConfigFile returns in this one, for a valid file', async () => {
    const file = path.join(dir, 'good.yaml');
    await writeFile(file, 'node: a\nworkers: 64\nworkloads:\n  - { name: w, addresses: [10.0.0.1], labels: { app: w } }\nservices:\n  - { name: s, addresses: [10.96.0.1], ports: [{ port: 80 }], selector: { app: w } }\n');
    const inChild = await loadConfigInChild(file, { child: true });
    expect(inChild.ok).toBe(true);
    // Structured clone keeps every field (a warning for 64 workers on this machine included).
    expect(inChild).toEqual(await loadConfigFile(file));
  });

  it('returns every problem with its file:line for a bad file, and a missing file as a problem, not a crash', async () => {
    const file = path.join(dir, 'bad.yaml');
    await writeFile(file, 'node: a\nworkloads:\n  - { name: W, addresses: [nope] }\n');
    const bad = await loadConfigInChild(file, { child: true });
    expect(bad).toEqual(await loadConfigFile(file));
    expect(bad.ok).toBe(false);
    const missing = await loadConfigInChild(path.join(dir, 'nope.yaml'), { child: true });
    expect(missing.ok).toBe(false);
  });
});
