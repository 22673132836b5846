/** TLS 1.3 session tickets an HBONE client received, per own certificate and server address, so its next connection to that peer resumes instead of repeating the full mutual-TLS handshake. */
import type { X509Certificate } from 'node:crypto';
import type { WorkloadCertificate } from '../identity/workload-certificate.js';

/** Tickets kept per server: the newest is used; the one before it is a spare should the server drop the newest's key. */
const TICKETS_PER_SERVER = 2;
/** Servers (a destination pod's or waypoint's HBONE address) remembered per certificate; the least recently stored goes first. */
const SERVERS_PER_CERTIFICATE = 512;

export interface ResumableSession {
  ticket: Buffer;
  peer: X509Certificate;
}

export class TlsSessionCache {
  /** Keyed by the certificate object: a rotated certificate starts empty, so no ticket outlives the key it was issued to. */
  readonly #byCert = new WeakMap<WorkloadCertificate, Map<string, ResumableSession[]>>();

  /**
   * The newest ticket for `server`. It is reused until a newer one arrives: Node's servers (and OpenSSL's by default)
   * send new tickets on full handshakes only, so single use (RFC 8446 §C.4's privacy advice) would make every other
   * connection a full handshake. The cost is that an observer can link connections resuming one ticket, which between
   * two mesh nodes' fixed addresses reveals nothing new. The server bounds a ticket's life (Node: 300 s).
   */
  get(cert: WorkloadCertificate, server: string): ResumableSession | undefined {
    return this.#byCert.get(cert)?.get(server)?.at(-1);
  }

  put(cert: WorkloadCertificate, server: string, ticket: Buffer, peer: X509Certificate): void {
    let servers = this.#byCert.get(cert);
    if (servers === undefined) {
      servers = new Map();
      this.#byCert.set(cert, servers);
    }
    const tickets = servers.get(server) ?? [];
    servers.delete(server);
    tickets.push({ ticket, peer });
    if (tickets.length > TICKETS_PER_SERVER) tickets.shift();
    servers.set(server, tickets);
    if (servers.size > SERVERS_PER_CERTIFICATE) servers.delete(servers.keys().next().value as string);
  }

  /** Drops every ticket for `server` (its identity no longer matched, so nothing it issued is trusted again). */
  forget(cert: WorkloadCertificate, server: string): void {
    this.#byCert.get(cert)?.delete(server);
  }
}
