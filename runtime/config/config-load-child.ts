/** Validates a config file in a short-lived child process, so the YAML parser, the schema library and the heap they grow never stay in the data plane's process. */
import { fork } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ConfigResult } from './config-problem.js';

/**
 * A worker thread did this before, but on Node 24 a finished, terminated thread leaves about 20 MB of RSS in the
 * process (its isolate's pages and malloc arenas are not given back); loading in-process keeps the parser's modules and
 * a young generation grown by the parse (about 15 MB). A child process returns everything when it exits, for about
 * 50 ms of start-up per load.
 */
const CHILD_FLAG = '--weft-load-config';
const THIS_FILE = fileURLToPath(import.meta.url);

// This module is the child's main script: argv[1] names it (as given, so compared after resolving symlinks).
if (process.argv[2] === CHILD_FLAG && process.send !== undefined && process.argv[1] !== undefined && realpathSync(process.argv[1]) === THIS_FILE) {
  const { loadConfigFile } = await import('./config-load.js');
  const result = await loadConfigFile(process.argv[3] as string);
  process.send(result, () => process.disconnect());
}

const FROM_SOURCES = THIS_FILE.endsWith('.ts');

/**
 * Same answer as loadConfigFile. In a child process when running compiled JS; in-process from TypeScript sources
 * (tests, tsx), where the start-up of a child through tsx would cost more than the memory is worth, unless `child`.
 */
export async function loadConfigInChild(file: string, opts: { child?: boolean } = {}): Promise<ConfigResult> {
  if (!(opts.child ?? !FROM_SOURCES)) return (await import('./config-load.js')).loadConfigFile(file);
  return new Promise((resolve, reject) => {
    // 'advanced' serialization is the structured clone a worker's postMessage used. No flags of this process (a
    // --max-semi-space-size or --import meant for the data plane) are passed on; the sources need tsx's loader.
    const execArgv = FROM_SOURCES ? ['--import', 'tsx'] : [];
    const child = fork(THIS_FILE, [CHILD_FLAG, file], { serialization: 'advanced', execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let answered = false;
    child.once('message', (result: ConfigResult) => {
      answered = true;
      resolve(result);
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (!answered) reject(new Error(`config loader process exited with ${signal ?? `code ${code}`} before answering`));
    });
  });
}
