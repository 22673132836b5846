/** The wall clock in nanoseconds since the Unix epoch, as the guest's clock hostcalls answer it, without a BigInt. */

/** Read once: a thread's time origin never changes, and the getter showed in per-request profiles. */
const TIME_ORIGIN_MS = performance.timeOrigin;

/**
 * Nanoseconds since the epoch as an integer-valued double. Past 2^53 a double keeps only multiples of 256 ns, which is
 * finer than the microsecond performance.now() promises, and the u64 written from it (GuestMemory.writeU64Number) is
 * exactly the BigInt of the same value.
 */
export function epochNanos(): number {
  return Math.round((TIME_ORIGIN_MS + performance.now()) * 1e6);
}
