/** The HTTP/1 path's clock: inside one batch of the addon's socket I/O, the wall clock and the monotonic clock are read once each and shared by everything the batch runs; outside a batch, each call reads the clock. */
import { performance } from 'node:perf_hooks';

/**
 * One batch is the bytes of every socket that was ready in one poll of the event loop, and it runs in a few hundred
 * microseconds at most; requests, completions, pool returns and load-balancer picks in it see the time it started
 * (0: not read yet in this batch). A request's duration thus runs from the batch that read its head to the batch that
 * finished it, the time the client waited, without a clock read per request and per event (each 20–40 ns).
 */
let inBatch = false;
let wall = 0;
let mono = 0;

/** Called by the batched transport around the JavaScript it runs for one batch. */
export function batchStarted(): void {
  inBatch = true;
  wall = 0;
  mono = 0;
}

export function batchEnded(): void {
  inBatch = false;
}

/** Milliseconds since the epoch (Date.now). */
export function wallNow(): number {
  if (!inBatch) return Date.now();
  if (wall === 0) wall = Date.now();
  return wall;
}

/** Milliseconds on the monotonic clock (performance.now), for durations. */
export function monoNow(): number {
  if (!inBatch) return performance.now();
  if (mono === 0) mono = performance.now();
  return mono;
}
