/** Keeps one certificate per identity hosted on this node: prefetches in the background, refreshes at half-life with jitter, retries with backoff, refuses identities not hosted here. */
import { WeftError } from '../errors.js';
import { createLogger } from '../log.js';
import type { CaClient, WorkloadCertificate } from './workload-certificate.js';

const log = createLogger('identity');

/** ztunnel caps per-identity retry backoff at 150 s. */
const MAX_BACKOFF_MS = 150_000;
const INITIAL_BACKOFF_MS = 500;
/** Refresh lands in [half-life - 10% of lifetime, half-life], so a fleet started together does not hit the CA at once. */
const JITTER_FRACTION = 0.1;
const MIN_REFRESH_MS = 250;

export interface CertificateManagerOptions {
  caClient: CaClient;
  ttlSeconds: number;
  /** Node authorization: only identities of workloads on this node may be fetched. */
  isHosted: (identity: string) => boolean;
  random?: () => number;
}

export type RotationListener = (next: WorkloadCertificate, previous: WorkloadCertificate | undefined) => void;

interface Entry {
  identity: string;
  current: WorkloadCertificate | undefined;
  /** The in-flight fetch, shared by every caller waiting for this identity. */
  pending: Promise<WorkloadCertificate> | undefined;
  timer: NodeJS.Timeout | undefined;
  failures: number;
}

export class CertificateManager {
  readonly #options: CertificateManagerOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #listeners = new Set<RotationListener>();
  #closed = false;

  constructor(options: CertificateManagerOptions) {
    this.#options = options;
  }

  /** The current certificate, without waiting; undefined until the first fetch completed. */
  current(identity: string): WorkloadCertificate | undefined {
    return this.#entries.get(identity)?.current;
  }

  /** A usable certificate for a hosted identity, fetching at once (high priority) when none is held. */
  async fetch(identity: string): Promise<WorkloadCertificate> {
    if (this.#closed) throw new WeftError('WEFT_ERR_IDENTITY', 'certificate manager is closed');
    if (!this.#options.isHosted(identity)) {
      log.warn({ identity }, 'refused certificate for identity not hosted on this node');
      throw new WeftError('WEFT_ERR_IDENTITY', `identity ${identity} has no workload on this node; a node only obtains certificates for its own workloads`);
    }
    const entry = this.#entry(identity);
    const cert = entry.current;
    if (cert !== undefined && cert.notAfter.getTime() > Date.now()) return cert;
    return entry.pending ?? this.#refresh(entry);
  }

  /** Declares the identities hosted now: new ones are prefetched in the background, gone ones forgotten. */
  track(identities: Iterable<string>): void {
    if (this.#closed) return;
    const wanted = new Set(identities);
    for (const [identity, entry] of this.#entries) {
      if (wanted.has(identity)) continue;
      if (entry.timer !== undefined) clearTimeout(entry.timer);
      this.#entries.delete(identity);
      log.info({ identity }, 'forgot certificate of identity no longer hosted');
    }
    for (const identity of wanted) {
      const entry = this.#entry(identity);
      if (entry.current === undefined && entry.pending === undefined && entry.timer === undefined) this.#background(entry);
    }
  }

  onRotate(listener: RotationListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  identities(): string[] {
    return [...this.#entries.keys()];
  }

  close(): void {
    this.#closed = true;
    for (const entry of this.#entries.values()) if (entry.timer !== undefined) clearTimeout(entry.timer);
    this.#entries.clear();
    this.#listeners.clear();
    this.#options.caClient.close?.();
  }

  #entry(identity: string): Entry {
    let entry = this.#entries.get(identity);
    if (entry === undefined) {
      entry = { identity, current: undefined, pending: undefined, timer: undefined, failures: 0 };
      this.#entries.set(identity, entry);
    }
    return entry;
  }

  #background(entry: Entry): void {
    this.#refresh(entry).catch(() => {
      // Logged and rescheduled inside #refresh; background callers have nobody to tell.
    });
  }

  #refresh(entry: Entry): Promise<WorkloadCertificate> {
    if (entry.timer !== undefined) {
      clearTimeout(entry.timer);
      entry.timer = undefined;
    }
    const pending = this.#options.caClient.fetchCertificate(entry.identity, this.#options.ttlSeconds).then(
      (cert) => {
        entry.pending = undefined;
        if (cert.identity !== entry.identity) {
          throw new WeftError('WEFT_ERR_IDENTITY', `CA returned a certificate for ${cert.identity}, expected ${entry.identity}`);
        }
        const previous = entry.current;
        entry.current = cert;
        entry.failures = 0;
        if (this.#entries.get(entry.identity) === entry && !this.#closed) {
          this.#schedule(entry, this.#refreshDelay(cert));
          log.info({ identity: cert.identity, notAfter: cert.notAfter.toISOString(), rotated: previous !== undefined }, 'certificate issued');
          for (const listener of this.#listeners) listener(cert, previous);
        }
        return cert;
      },
      (err: unknown) => {
        entry.pending = undefined;
        entry.failures++;
        const delay = Math.min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * 2 ** (entry.failures - 1));
        log.warn({ identity: entry.identity, err, retryInMs: delay }, 'certificate fetch failed');
        if (this.#entries.get(entry.identity) === entry && !this.#closed) this.#schedule(entry, delay);
        throw new WeftError('WEFT_ERR_IDENTITY', `cannot obtain a certificate for ${entry.identity}`, { cause: err });
      },
    );
    entry.pending = pending;
    return pending;
  }

  #refreshDelay(cert: WorkloadCertificate): number {
    const start = cert.notBefore.getTime();
    const lifetime = cert.notAfter.getTime() - start;
    const jitter = (this.#options.random ?? Math.random)() * JITTER_FRACTION * lifetime;
    // The floor keeps a CA that hands out nearly expired certificates from spinning this loop.
    return Math.max(MIN_REFRESH_MS, start + lifetime / 2 - jitter - Date.now());
  }

  #schedule(entry: Entry, delayMs: number): void {
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      this.#background(entry);
    }, delayMs);
    entry.timer.unref();
  }
}
