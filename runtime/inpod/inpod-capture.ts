/** In-pod capture wired together: the per-pod proxies and the ZDS client that feeds them, started when weft.yaml has `inpod`. */
import type { InpodConfig } from '../config/config-schema.js';
import type { Egress } from '../l4/egress.js';
import { PodProxies, type PodProxiesOptions } from './pod-proxies.js';
import { ZdsClient } from './zds-client.js';

/** The pods' handlers and ports; the mark comes from the config. */
export type InpodCaptureOptions = Omit<PodProxiesOptions, 'mark'> & { config: InpodConfig };

export class InpodCapture {
  readonly pods: PodProxies;
  readonly zds: ZdsClient;

  constructor(opts: InpodCaptureOptions) {
    const { config: _config, ...handlers } = opts;
    this.pods = new PodProxies({ ...handlers, mark: opts.config.mark });
    this.zds = new ZdsClient({ path: opts.config.socket, handler: this.pods });
  }

  start(): void {
    this.zds.start();
  }

  egressFor(ip: string): Egress | undefined {
    return this.pods.egressFor(ip);
  }

  /** Drain: stop accepting in every pod and leave the agent, which then replays to the new runtime. */
  async stopAccepting(): Promise<void> {
    this.zds.stop();
    await this.pods.stopAccepting();
  }

  async close(): Promise<void> {
    this.zds.stop();
    await this.pods.close();
  }

  dump(): unknown {
    return { agent: this.zds.dump(), pods: this.pods.dump() };
  }
}
