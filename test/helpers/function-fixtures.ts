// Builds the JS function fixtures (test/fixtures/functions/*.js) with componentize-js once, cached by the hash of the
// source, the world and the componentize-js version under test/fixtures/functions/.build (gitignored): a build takes
// tens of seconds to minutes, the cached component is reused by every later run.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { buildJsComponent, packageDir, sdkWitDir, witFileOf, type ComponentWorld } from '../../runtime/functions/component-build.js';

const DIR = fileURLToPath(new URL('../fixtures/functions/', import.meta.url)).replace(`${sep}dist${sep}test${sep}`, `${sep}test${sep}`);
const componentizeVersion = (JSON.parse(readFileSync(join(packageDir('@bytecodealliance/componentize-js'), 'package.json'), 'utf8')) as { version: string }).version;

/** Where built fixtures (and the tests' shared transpile cache) live; gitignored. */
export function fixtureBuildDir(): string {
  return join(DIR, '.build');
}

export interface FunctionFixture {
  path: string;
  url: string;
  sha256: string;
  bytes: Uint8Array;
}

/** The component built from test/fixtures/functions/<name>.js (cached). */
export async function functionFixture(name: string, world: ComponentWorld = 'function'): Promise<FunctionFixture> {
  const source = await readFile(join(DIR, `${name}.js`));
  const wit = await readFile(join(sdkWitDir(), witFileOf(world)));
  const key = createHash('sha256').update(source).update(world).update(wit).update(componentizeVersion).digest('hex').slice(0, 16);
  const path = join(DIR, '.build', `${name}-${key}.wasm`);
  if (!existsSync(path)) {
    const { component } = await buildJsComponent(join(DIR, `${name}.js`), world);
    await mkdir(join(DIR, '.build'), { recursive: true });
    await writeFile(`${path}.${process.pid}.tmp`, component);
    await rename(`${path}.${process.pid}.tmp`, path);
  }
  const bytes = new Uint8Array(await readFile(path));
  return { path, url: `file://${path}`, sha256: createHash('sha256').update(bytes).digest('hex'), bytes };
}
