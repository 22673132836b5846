// `weft fn new --filter NAME` then `weft fn build`: the scaffolded JS filter builds with componentize-js and behaves as
// its generated test says when run through weft's own filter host (sdk/testing/filter-harness.ts).
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { fnCommand } from '../../sdk/cli/fn-command.js';
import { serveFilter, type FilterUnderTest } from '../../sdk/testing/filter-harness.js';
import { fixtureBuildDir } from '../helpers/function-fixtures.js';

// Inside the checkout (gitignored), so the scaffold's relative paths to weft resolve as they would in functions/NAME.
const parent = join(fixtureBuildDir(), `scaffold-${process.pid}`);
let filter: FilterUnderTest | undefined;

beforeAll(() => {
  mkdirSync(parent, { recursive: true });
  process.env.WEFT_CACHE_DIR ??= join(fixtureBuildDir(), 'cache');
});

afterAll(() => {
  filter?.close();
  rmSync(parent, { recursive: true, force: true });
});

it('scaffolds, builds and runs a JS component filter', async () => {
  expect(await fnCommand(['new', '--filter', 'guard', '--dir', parent])).toBe(0);
  const dir = join(parent, 'guard');
  for (const f of ['filter.js', 'filter.test.ts', 'package.json', 'README.md']) expect(existsSync(join(dir, f))).toBe(true);
  expect(await readFile(join(dir, 'filter.test.ts'), 'utf8')).toContain("serveFilter(`${dir}build/filter.wasm`");
  expect(await fnCommand(['build', dir])).toBe(0);
  filter = await serveFilter(join(dir, 'build', 'filter.wasm'), { config: { denyPrefix: '/private' } });
  const r = await filter.request({ path: '/hello', headers: [['accept', '*/*']] });
  expect(r.reply).toBeUndefined();
  expect(r.headers).toEqual([
    ['accept', '*/*'],
    ['x-filtered', 'guard'],
  ]);
  expect((await r.response(200)).headers).toEqual([['x-filtered-by', 'guard']]);
  expect((await filter.request({ path: '/private/x' })).reply).toMatchObject({ status: 403, body: Buffer.from('forbidden\n') });
  // The name is refused before anything is written when it is not one.
  expect(await fnCommand(['new', '--filter', 'Bad_Name', '--dir', parent])).not.toBe(0);
}, 600_000);
