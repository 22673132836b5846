/**
 * Fetched plugin modules by sha256, in memory and (optionally) on disk, plus the last good version of each URL so an
 * unreachable registry or server leaves the cached version serving. Compiled modules are memoized per (sha256, limits).
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger } from '../log.js';
import type { CompiledPlugin } from './plugin-vm.js';

const log = createLogger('wasm');

interface UrlEntry {
  /** sha256 of the module bytes. */
  sha256: string;
  /** For oci:// the manifest digest (hex), which Istio's sha256 field may name instead of the module's. */
  digest?: string;
}

export class PluginCache {
  readonly #dir: string | undefined;
  readonly #bytes = new Map<string, Uint8Array>();
  #urls = new Map<string, UrlEntry>();
  readonly #compiled = new Map<string, Promise<CompiledPlugin>>();
  #indexLoaded = false;

  constructor(dir?: string) {
    this.#dir = dir;
  }

  async #loadIndex(): Promise<void> {
    if (this.#indexLoaded || this.#dir === undefined) return;
    this.#indexLoaded = true;
    try {
      const parsed = JSON.parse(await readFile(join(this.#dir, 'index.json'), 'utf8')) as Record<string, UrlEntry>;
      for (const [url, e] of Object.entries(parsed)) if (!this.#urls.has(url)) this.#urls.set(url, e);
    } catch {
      // No index yet (or an unreadable one): start empty; it is rewritten on the next put.
    }
  }

  /** Cached module bytes whose sha256 (or, for OCI, manifest digest under `url`) is `sha256`. */
  async find(url: string, sha256: string): Promise<Uint8Array | undefined> {
    await this.#loadIndex();
    const byUrl = this.#urls.get(url);
    const moduleSha = byUrl !== undefined && byUrl.digest === sha256 ? byUrl.sha256 : sha256;
    return this.#read(moduleSha);
  }

  /** The last version fetched from `url`, whatever it was. */
  async lastGood(url: string): Promise<{ bytes: Uint8Array; entry: UrlEntry } | undefined> {
    await this.#loadIndex();
    const entry = this.#urls.get(url);
    if (entry === undefined) return undefined;
    const bytes = await this.#read(entry.sha256);
    return bytes === undefined ? undefined : { bytes, entry };
  }

  async #read(sha256: string): Promise<Uint8Array | undefined> {
    const mem = this.#bytes.get(sha256);
    if (mem !== undefined || this.#dir === undefined) return mem;
    try {
      const bytes = new Uint8Array(await readFile(join(this.#dir, `${sha256}.wasm`)));
      this.#bytes.set(sha256, bytes);
      return bytes;
    } catch {
      return undefined;
    }
  }

  async put(url: string, entry: UrlEntry, bytes: Uint8Array): Promise<void> {
    this.#bytes.set(entry.sha256, bytes);
    this.#urls.set(url, entry);
    if (this.#dir === undefined) return;
    try {
      await mkdir(this.#dir, { recursive: true });
      const file = join(this.#dir, `${entry.sha256}.wasm`);
      await writeFile(`${file}.tmp`, bytes);
      await rename(`${file}.tmp`, file);
      const index = join(this.#dir, 'index.json');
      await writeFile(`${index}.tmp`, JSON.stringify(Object.fromEntries(this.#urls)));
      await rename(`${index}.tmp`, index);
    } catch (err) {
      // The disk cache only saves a refetch; failing to write it must not fail the load.
      log.warn({ dir: this.#dir, err }, 'plugin cache write failed');
    }
  }

  /**
   * Forgets compiled modules not in `keepCompiled` and in-memory bytes no URL points at, so repeated reloads do not
   * accumulate every version ever loaded (runtimes still draining keep their own module reference).
   */
  prune(keepCompiled: ReadonlySet<string>): void {
    for (const key of this.#compiled.keys()) if (!keepCompiled.has(key)) this.#compiled.delete(key);
    const wanted = new Set([...this.#urls.values()].map((e) => e.sha256));
    for (const sha of this.#bytes.keys()) if (!wanted.has(sha)) this.#bytes.delete(sha);
  }

  get compiledCount(): number {
    return this.#compiled.size;
  }

  /** Compiles once per (module, limits); concurrent loads of the same module share one compile. */
  compiled(key: string, compile: () => Promise<CompiledPlugin>): Promise<CompiledPlugin> {
    let p = this.#compiled.get(key);
    if (p === undefined) {
      p = compile();
      this.#compiled.set(key, p);
      p.catch(() => this.#compiled.delete(key));
    }
    return p;
  }
}
