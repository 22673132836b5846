import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { installImportResolver, resolveOwnImport } from './import-resolver.js';

// From sources this module sits in runtime/, so its root is the repository (dist/ when compiled).
const root = pathToFileURL(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..') + '/').href;
const repo = fileURLToPath(root);
const IMPORT = ['node', 'import', 'node-addons'];

describe('resolveOwnImport', () => {
  it('joins a relative .js import of a module under the root', () => {
    expect(resolveOwnImport('./l4/listener.js', `${root}runtime/app.js`, IMPORT)).toBe(`${root}runtime/l4/listener.js`);
    expect(resolveOwnImport('../log.js', `${root}runtime/l4/listener.js`, IMPORT)).toBe(`${root}runtime/log.js`);
  });

  it("leaves Node's resolver everything else", () => {
    expect(resolveOwnImport('prom-client', `${root}runtime/app.js`, IMPORT)).toBeUndefined();
    expect(resolveOwnImport('node:net', `${root}runtime/app.js`, IMPORT)).toBeUndefined();
    expect(resolveOwnImport('./data.json', `${root}runtime/app.js`, IMPORT)).toBeUndefined();
    expect(resolveOwnImport('./x.js', `${root}runtime/app.js`, ['node', 'require'])).toBeUndefined();
    expect(resolveOwnImport('./x.js', 'file:///elsewhere/app.js', IMPORT)).toBeUndefined();
    expect(resolveOwnImport('./x.js', undefined, IMPORT)).toBeUndefined();
    expect(resolveOwnImport('../../outside.js', `${root}runtime/app.js`, IMPORT)).toBeUndefined();
  });

  it('does not install from TypeScript sources, where .js specifiers name .ts files', () => {
    expect(installImportResolver()).toBe(false);
  });
});

/** The module URLs a process loads importing `entries` from dist/, with or without the resolver installed first. */
function loadedUrls(withResolver: boolean, entries: string[]): string[] {
  const script = `
    import { registerHooks } from 'node:module';
    const loaded = new Set();
    registerHooks({ load(url, context, next) { loaded.add(url); return next(url, context); } });
    ${withResolver ? `const r = await import(${JSON.stringify(`${root}dist/runtime/import-resolver.js`)}); if (!r.installImportResolver()) throw new Error('not installed');` : ''}
    for (const e of ${JSON.stringify(entries)}) await import(e);
    process.stdout.write(JSON.stringify([...loaded].filter((u) => !u.endsWith('import-resolver.js')).sort()));
  `;
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: repo, encoding: 'utf8' })) as string[];
}

// dist/ exists after `npm install` (its prepare script builds it).
describe('the resolver in a compiled process (dist/)', () => {
  it("loads the same modules, at the same URLs, as Node's resolver", () => {
    const entries = ['app.js', 'workers/worker-primary.js', 'workers/worker-thread.js', 'l7-runtime.js'].map((f) => `${root}dist/runtime/${f}`);
    const own = loadedUrls(true, entries);
    expect(own.length).toBeGreaterThan(80);
    expect(own).toEqual(loadedUrls(false, entries));
  });
});
