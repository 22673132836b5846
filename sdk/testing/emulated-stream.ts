/**
 * One request through the emulator: feeds headers, bodies and trailers to the plugin through the runtime's own
 * FilterChain and keeps what the plugin did (edited headers, local response, reset) for assertions.
 */
import type { FilterAction, FilterChain } from '../../runtime/wasm/filter-chain.js';
import type { HeaderPairs } from '../../runtime/wasm/header-map-codec.js';
import type { LocalResponse } from '../../runtime/wasm/stream-context.js';
import { toPairs } from './http-call-queue.js';

export type HeaderInit = HeaderPairs | Record<string, string>;

/** What a step did: `continue` (with the body to forward), `buffer`, `pause`, `localResponse` or `reset`. */
export interface StepResult {
  action: FilterAction['kind'];
  /** Body bytes released by this step (body and trailer steps). */
  body: Uint8Array | undefined;
  /** For `pause`: settles with what the plugin decided once it resumes. */
  resume: Promise<StepResult> | undefined;
  localResponse: LocalResponse | undefined;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function toStep(a: FilterAction): StepResult {
  return {
    action: a.kind,
    body: a.kind === 'continue' ? a.body : undefined,
    resume: a.kind === 'pause' ? a.resume.then(toStep) : undefined,
    localResponse: a.kind === 'localResponse' ? a.response : undefined,
  };
}

export class EmulatedStream {
  readonly #chain: FilterChain;
  /** The live maps the plugin edits (in place). */
  requestHeaders: HeaderPairs = [];
  responseHeaders: HeaderPairs = [];
  requestTrailers: HeaderPairs = [];
  responseTrailers: HeaderPairs = [];
  /** Set once the plugin answered locally (or failed under FAIL_CLOSE). */
  localResponse: LocalResponse | undefined;
  reset = false;

  constructor(chain: FilterChain) {
    this.#chain = chain;
  }

  #track(a: FilterAction): StepResult {
    if (a.kind === 'localResponse') this.localResponse = a.response;
    if (a.kind === 'reset') this.reset = true;
    const step = toStep(a);
    if (step.resume !== undefined) {
      step.resume = step.resume.then((r) => {
        if (r.localResponse !== undefined) this.localResponse = r.localResponse;
        if (r.action === 'reset') this.reset = true;
        return r;
      });
    }
    return step;
  }

  sendRequestHeaders(headers: HeaderInit, endOfStream = false): StepResult {
    this.requestHeaders = toPairs(headers).map(([k, v]) => [k.toLowerCase(), v]);
    return this.#track(this.#chain.onRequestHeaders(this.requestHeaders, endOfStream));
  }

  sendRequestBody(chunk: string | Uint8Array, endOfStream = false): StepResult {
    return this.#track(this.#chain.onRequestBody(typeof chunk === 'string' ? encoder.encode(chunk) : chunk, endOfStream));
  }

  sendRequestTrailers(trailers: HeaderInit): StepResult {
    this.requestTrailers = toPairs(trailers);
    return this.#track(this.#chain.onRequestTrailers(this.requestTrailers));
  }

  sendResponseHeaders(headers: HeaderInit, endOfStream = false): StepResult {
    this.responseHeaders = toPairs(headers).map(([k, v]) => [k.toLowerCase(), v]);
    return this.#track(this.#chain.onResponseHeaders(this.responseHeaders, endOfStream));
  }

  sendResponseBody(chunk: string | Uint8Array, endOfStream = false): StepResult {
    return this.#track(this.#chain.onResponseBody(typeof chunk === 'string' ? encoder.encode(chunk) : chunk, endOfStream));
  }

  sendResponseTrailers(trailers: HeaderInit): StepResult {
    this.responseTrailers = toPairs(trailers);
    return this.#track(this.#chain.onResponseTrailers(this.responseTrailers));
  }

  /** Ends the stream: on_done, on_log, on_delete. Idempotent. */
  end(): void {
    this.#chain.done();
  }

  /** First value of request header `name`. */
  requestHeader(name: string): string | undefined {
    return this.requestHeaders.find(([k]) => k === name)?.[1];
  }

  responseHeader(name: string): string | undefined {
    return this.responseHeaders.find(([k]) => k === name)?.[1];
  }

  /** Every value of a request header, in order. */
  requestHeaderValues(name: string): string[] {
    return this.requestHeaders.filter(([k]) => k === name).map(([, v]) => v);
  }

  responseHeaderValues(name: string): string[] {
    return this.responseHeaders.filter(([k]) => k === name).map(([, v]) => v);
  }

  /** The local response body as text. */
  get localResponseText(): string | undefined {
    return this.localResponse === undefined ? undefined : decoder.decode(this.localResponse.body);
  }

  localResponseHeader(name: string): string | undefined {
    return this.localResponse?.headers.find(([k]) => k === name)?.[1];
  }
}
