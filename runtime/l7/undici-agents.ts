/** undici Agents whose connections come from weft's upstream connector, one per identity they are opened for, so an HTTP/1 client pool never mixes connections made for different workloads. */
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Agent } from 'undici';
import { lazyUndici } from '../lazy-packages.js';
import { isConnecting, type ConnectFn } from './http1-pool.js';

export class UndiciAgents {
  readonly #agents = new Map<string, Agent>();
  readonly #connect: ConnectFn;
  readonly #options: Omit<Agent.Options, 'connect'>;

  constructor(connect: ConnectFn, options: Omit<Agent.Options, 'connect'>) {
    this.#connect = connect;
    this.#options = options;
  }

  /** The agent for connections opened on behalf of `identity` (plain connections when undefined). */
  for(identity: string | undefined): Agent {
    const key = identity ?? '';
    let agent = this.#agents.get(key);
    if (agent === undefined) this.#agents.set(key, (agent = this.#create(identity)));
    return agent;
  }

  async close(): Promise<void> {
    const agents = [...this.#agents.values()];
    this.#agents.clear();
    await Promise.all(agents.map((a) => a.close()));
  }

  destroy(): void {
    for (const a of this.#agents.values()) void a.destroy();
    this.#agents.clear();
  }

  #create(identity: string | undefined): Agent {
    const { Agent: UndiciAgent } = lazyUndici();
    return new UndiciAgent({
      ...this.#options,
      connect: (opts, cb) => {
        let socket: Duplex;
        try {
          socket = this.#connect(opts.hostname, Number(opts.port), identity);
        } catch (err) {
          return cb(err as Error, null);
        }
        // undici drives any Duplex; it is typed as a socket.
        if (!isConnecting(socket)) return cb(null, socket as net.Socket);
        const onError = (err: Error): void => cb(err, null);
        socket.once('error', onError);
        socket.once('connect', () => {
          socket.off('error', onError);
          cb(null, socket as net.Socket);
        });
      },
    });
  }
}
