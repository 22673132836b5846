/** In-pod capture wired together: the per-pod proxies and the ZDS client that feeds them, started when weft.yaml has `inpod`; in a worker thread the primary's ZDS client feeds them instead (pod-fanout.ts). */
import type { InpodConfig } from '../config/config-schema.js';
import type { Egress } from '../l4/egress.js';
import { PodProxies, type PodProxiesOptions } from './pod-proxies.js';
import { ZdsClient } from './zds-client.js';

/** The pods' handlers and ports; the mark comes from the config. `fedByPrimary`: a worker thread, no ZDS client of its own. */
export type InpodCaptureOptions = Omit<PodProxiesOptions, 'mark' | 'borrowedFds'> & { config: InpodConfig; fedByPrimary?: boolean };

export class InpodCapture {
  readonly pods: PodProxies;
  readonly zds: ZdsClient | undefined;

  constructor(opts: InpodCaptureOptions) {
    const { config, fedByPrimary = false, ...handlers } = opts;
    this.pods = new PodProxies({ ...handlers, mark: config.mark, borrowedFds: fedByPrimary });
    this.zds = fedByPrimary ? undefined : new ZdsClient({ path: config.socket, handler: this.pods });
  }

  start(): void {
    this.zds?.start();
  }

  egressFor(ip: string): Egress | undefined {
    return this.pods.egressFor(ip);
  }

  /** Drain: stop accepting in every pod and leave the agent, which then replays to the new runtime. */
  async stopAccepting(): Promise<void> {
    this.zds?.stop();
    await this.pods.stopAccepting();
  }

  async close(): Promise<void> {
    this.zds?.stop();
    await this.pods.close();
  }

  dump(): unknown {
    return { agent: this.zds?.dump(), pods: this.pods.dump() };
  }
}
