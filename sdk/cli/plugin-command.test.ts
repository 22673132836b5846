// `weft plugin new` scaffolds a plugin whose own emulator test passes as generated; `weft plugin build` compiles it to
// an optimized release and a debug build; bad names, existing folders and non-plugin folders get clear errors.
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pluginCommand } from './plugin-command.js';

const run = promisify(execFile);
// Inside the repository (under a gitignored build/ folder) so `@weft/sdk` and vitest resolve as they do for plugins/.
const WORK = fileURLToPath(new URL(`../build/scaffold-test-${process.pid}/`, import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

beforeAll(async () => {
  await mkdir(WORK, { recursive: true });
});

afterAll(async () => {
  await rm(WORK, { recursive: true, force: true });
});

describe('weft plugin', () => {
  it('new scaffolds a plugin; build compiles it; its generated test passes', async () => {
    expect(await pluginCommand(['new', 'hello-weft', '--dir', WORK])).toBe(0);
    const dir = join(WORK, 'hello-weft');
    for (const f of ['package.json', 'asconfig.json', 'assembly/index.ts', 'assembly/tsconfig.json', 'README.md', 'test/hello-weft.test.ts']) {
      expect((await stat(join(dir, f))).isFile(), f).toBe(true);
    }
    expect(JSON.parse(await readFile(join(dir, 'asconfig.json'), 'utf8'))).toEqual({ extends: '../../../asconfig.base.json' });
    expect(await pluginCommand(['build', dir])).toBe(0);
    const release = await stat(join(dir, 'build/release.wasm'));
    const debug = await stat(join(dir, 'build/debug.wasm'));
    expect(release.size).toBeGreaterThan(1000);
    expect(debug.size).toBeGreaterThan(release.size);
    expect((await stat(join(dir, 'build/debug.wat'))).size).toBeGreaterThan(0);
    const { stdout } = await run(join(ROOT, 'node_modules/.bin/vitest'), ['run', '--root', dir, '--reporter', 'dot'], { cwd: dir, timeout: 120_000 });
    expect(stdout).toMatch(/2 passed/);
  });

  it('refuses a bad name, an existing folder, a folder that is not a plugin and unknown commands', async () => {
    expect(await pluginCommand(['new', 'Bad Name', '--dir', WORK])).toBe(1);
    await mkdir(join(WORK, 'taken'), { recursive: true });
    expect(await pluginCommand(['new', 'taken', '--dir', WORK])).toBe(1);
    expect(await pluginCommand(['build', join(WORK, 'taken')])).toBe(1);
    expect(await pluginCommand(['build'])).toBe(2);
    expect(await pluginCommand(['build', WORK, '--target', 'fast'])).toBe(2);
    expect(await pluginCommand(['frobnicate'])).toBe(2);
  });
});
