/** One @grpc/grpc-js generic client per upstream address, shared by every plugin VM; messages stay raw bytes end to end. */
import type { Client } from '@grpc/grpc-js';
import { lazyGrpc } from '../lazy-packages.js';
import type { GrpcTarget } from './host-services.js';

export class GrpcClients {
  readonly #clients = new Map<string, Client>();

  get(target: GrpcTarget): Client {
    const key = `${target.tls === true ? 'tls' : 'plain'}:${target.address}`;
    let client = this.#clients.get(key);
    if (client === undefined) {
      const grpc = lazyGrpc();
      client = new grpc.Client(target.address, target.tls === true ? grpc.credentials.createSsl() : grpc.credentials.createInsecure());
      this.#clients.set(key, client);
    }
    return client;
  }

  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }
}

export const identity = (b: Buffer): Buffer => b;
