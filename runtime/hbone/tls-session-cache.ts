/** TLS 1.3 session tickets an HBONE client received, per own certificate and server address, so its next connection to that peer resumes instead of repeating the full mutual-TLS handshake. */
import type { X509Certificate } from 'node:crypto';
import type { WorkloadCertificate } from '../identity/workload-certificate.js';

/** OpenSSL servers send two tickets per handshake; a few spares let concurrent new connections to one peer all resume. */
const TICKETS_PER_SERVER = 4;
/** Servers remembered per certificate; the least recently stored is dropped first. */
const SERVERS_PER_CERTIFICATE = 1024;

/** A ticket and the server certificate verified on the connection that received it (a resumed handshake sends none). */
export interface ResumableSession {
  ticket: Buffer;
  peer: X509Certificate;
}

export class TlsSessionCache {
  /** Keyed by the certificate object: a rotated certificate starts empty, so no ticket outlives the key it was issued to. */
  readonly #byCert = new WeakMap<WorkloadCertificate, Map<string, ResumableSession[]>>();

  /**
   * Removes and returns a ticket for `server`. RFC 8446 §C.4: a client should not reuse a ticket (it would link its
   * connections), so each is used once; the resumed connection brings fresh ones.
   */
  take(cert: WorkloadCertificate, server: string): ResumableSession | undefined {
    const servers = this.#byCert.get(cert);
    const tickets = servers?.get(server);
    const ticket = tickets?.pop();
    if (tickets?.length === 0) servers?.delete(server);
    return ticket;
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
