/** The facts about one request that filters may read (FilterRequestInfo), shared by the HTTP/1 and h2 exchanges; the request id is drawn only when something reads it. */
import type { HeaderList } from './header-list.js';
import type { FilterRequestInfo } from './l7-filter.js';
import type { L7Target } from './l7-context.js';
import { newRequestId } from './traceparent.js';

/** Where an attempt went: what `upstream.address` and `upstream.port` answer. */
export interface UpstreamHost {
  readonly address: string;
  readonly port: number;
}

/**
 * A class, not a literal: one shape for every request, and `upstreamHost`/`requestId` on the prototype. It holds no
 * reference to its exchange: a Wasm stream context may keep its request info after the request ended.
 */
export class ExchangeRequestInfo implements FilterRequestInfo {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly protocol: string;
  readonly sourceAddress: string;
  readonly sourcePort: number;
  readonly destinationAddress: string;
  readonly destinationPort: number;
  readonly sourceIdentity: string | undefined;
  readonly destinationService: string | undefined;
  /** The endpoint of the latest attempt, kept after it ended (plugins read upstream.address in later callbacks). */
  endpoint: UpstreamHost | undefined = undefined;
  #requestId: string | undefined;

  constructor(method: string, path: string, authority: string, protocol: string, target: L7Target, destinationService: string | undefined, headers: HeaderList) {
    this.method = method;
    this.path = path;
    this.authority = authority;
    this.protocol = protocol;
    this.sourceAddress = target.source.address;
    this.sourcePort = target.source.port;
    this.destinationAddress = target.originalDst.address;
    this.destinationPort = target.originalDst.port;
    this.sourceIdentity = target.sourceIdentity;
    this.destinationService = destinationService;
    // The client's id as it came, before any filter edits the headers.
    this.#requestId = headers.get('x-request-id');
  }

  upstreamHost(): UpstreamHost | undefined {
    return this.endpoint;
  }

  /** The client's x-request-id, else a new random one (a random draw costs; most requests are never asked). */
  get requestId(): string {
    return (this.#requestId ??= newRequestId());
  }
}

/** The request id the access log records: the filters' one when they had the request, else the client's or a new one. */
export function requestIdOf(info: ExchangeRequestInfo | undefined, headers: HeaderList): string {
  return info?.requestId ?? headers.get('x-request-id') ?? newRequestId();
}
