/** Reloads the config file on change and on SIGHUP; an invalid file is rejected with every problem logged and the running config keeps serving. */
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { createLogger } from '../log.js';
import { formatProblem } from './config-problem.js';
import { loadConfigInChild } from './config-load-child.js';
import type { WeftConfig } from './config-schema.js';

const log = createLogger('config');
/** Editors write files in several steps (truncate, write, rename); wait for them to settle. */
const DEBOUNCE_MS = 100;

export interface ConfigWatcherTarget {
  /** Rejects (ok: false) when the config is valid but cannot be applied, e.g. a plugin fails to load. */
  reload(config: WeftConfig): Promise<{ ok: boolean }>;
  recordRejectedReload(): void;
}

export class ConfigWatcher {
  readonly #file: string;
  readonly #target: ConfigWatcherTarget;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();
  #lastText: string | undefined;
  readonly #onHup = (): void => this.trigger('sighup');

  constructor(file: string, target: ConfigWatcherTarget) {
    this.#file = path.resolve(file);
    this.#target = target;
  }

  start(): void {
    // Watch the directory: an atomic rename replaces the inode, which a watch on the file itself would lose.
    this.#watcher = watch(path.dirname(this.#file), (_event, name) => {
      if (name === path.basename(this.#file)) this.trigger('file');
    });
    process.on('SIGHUP', this.#onHup);
  }

  stop(): void {
    this.#watcher?.close();
    clearTimeout(this.#timer);
    process.off('SIGHUP', this.#onHup);
  }

  trigger(cause: 'file' | 'sighup'): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#running = this.#running.then(async () => {
        await this.reloadNow(cause);
      });
    }, DEBOUNCE_MS);
  }

  /** Validates and applies; resolves true when the new config is serving. */
  async reloadNow(cause: string): Promise<boolean> {
    const result = await loadConfigInChild(this.#file);
    if (!result.ok) {
      this.#target.recordRejectedReload();
      log.error({ file: this.#file, cause, problems: result.problems.map(formatProblem) }, 'configuration rejected; the previous configuration keeps serving');
      return false;
    }
    const text = JSON.stringify(result.config);
    if (cause === 'file' && text === this.#lastText) return true;
    const applied = await this.#target.reload(result.config);
    if (applied.ok) this.#lastText = text;
    return applied.ok;
  }
}
