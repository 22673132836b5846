/** What the L7 path tells the plugin host about a request's connection and peers; the source of proxy_get_property answers. */
import type { PropertyValue } from './properties.js';

export interface PeerInfo {
  /** IP literal. */
  address: string;
  port: number;
  /** SPIFFE identity (`spiffe://td/ns/NS/sa/SA`) when the peer authenticated with mTLS. */
  principal?: string;
}

export interface ConnectionInfo {
  id?: number;
  mtls?: boolean;
  tlsVersion?: string;
  requestedServerName?: string;
  uriSanPeerCertificate?: string;
  uriSanLocalCertificate?: string;
  dnsSanPeerCertificate?: string;
  dnsSanLocalCertificate?: string;
  subjectPeerCertificate?: string;
  subjectLocalCertificate?: string;
  sha256PeerCertificateDigest?: string;
}

export interface StreamInfo {
  source?: PeerInfo;
  destination?: PeerInfo;
  upstream?: PeerInfo;
  connection?: ConnectionInfo;
  request?: {
    /** `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`. */
    protocol?: string;
    /** When the request started; request.duration counts from here. */
    time?: Date;
    id?: string;
  };
  /** Anything else, by dotted path: `route_name`, `cluster_name`, `listener_direction`, `source.workload`, ... */
  properties?: Record<string, PropertyValue>;
}

export const EMPTY_STREAM_INFO: StreamInfo = Object.freeze({});
