/** The messages between the function pool (main thread) and a function instance's worker thread, both ways. */

export type HeaderPairs = [string, string][];

/** Main → worker; the worker drains them synchronously (receiveMessageOnPort), even while the guest blocks. */
export type ToWorker =
  | { t: 'req'; id: number; requestId: string; method: string; pathWithQuery: string; scheme: string; authority: string; headers: HeaderPairs; cpuBaseline?: undefined }
  | { t: 'req-body'; id: number; chunk: Uint8Array }
  | { t: 'req-end'; id: number }
  | { t: 'req-abort'; id: number }
  /** Credit for the response body: bytes main has handed to the socket. */
  | { t: 'res-ack'; id: number; bytes: number }
  | { t: 'out-head'; oid: number; status: number; headers: HeaderPairs }
  | { t: 'out-body'; oid: number; chunk: Uint8Array }
  | { t: 'out-end'; oid: number }
  | { t: 'out-error'; oid: number; code: string; message: string }
  /** Credit for an outbound request body. */
  | { t: 'out-ack'; oid: number; bytes: number };

/** Why an instance was discarded (the `reason` label of weft_fn_evictions_total). */
export type FailureReason = 'trap' | 'memory' | 'cpu' | 'timeout' | 'exit';

/** Worker → main (postMessage; main handles them on its event loop). */
export type FromWorker =
  | { t: 'ready'; tid: number; memoryBytes: number; instantiateMs: number }
  | { t: 'init-failed'; message: string }
  | { t: 'res-head'; id: number; status: number; headers: HeaderPairs }
  | { t: 'res-body'; id: number; chunk: Uint8Array }
  /** `complete` false: the guest returned without finishing its body. */
  | { t: 'res-end'; id: number; complete: boolean }
  /** The handler returned (or failed); the instance takes the next request unless `failed` says otherwise. */
  | { t: 'done'; id: number; memoryBytes: number; failed?: { reason: FailureReason; message: string } }
  /** Request body bytes the guest consumed (flow control). */
  | { t: 'req-ack'; id: number; bytes: number }
  | { t: 'log'; id: number; stream: 'stdout' | 'stderr'; line: string }
  | { t: 'out-req'; id: number; oid: number; method: string; scheme: string; authority: string; pathWithQuery: string; headers: HeaderPairs; timeoutMs: number | undefined }
  | { t: 'out-body'; oid: number; chunk: Uint8Array }
  | { t: 'out-end'; oid: number }
  | { t: 'out-drop'; oid: number }
  /** Outbound response body bytes the guest consumed (flow control). */
  | { t: 'out-ack'; oid: number; bytes: number };

/**
 * Bytes in flight per direction before the sender waits, so a 100 MB body is never held whole (at most 1 MiB per
 * request across both directions: 512 KiB). Each wait is a hand-off between threads, so the window also sets throughput.
 */
export const STREAM_WINDOW_BYTES = 256 * 1024;
