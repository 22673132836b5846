// An opt-in allocator for what the host writes into the plugin: blocks of up to SMALL_BLOCK bytes (header values,
// principals, paths) are recycled through a short free list instead of going back to the general allocator, so a plugin
// that reads a few small values per request and releases them pays a pop and a push per value, not an allocation and a
// free. A plugin opts in by re-exporting proxy_on_memory_allocate and malloc from this module after the SDK's exports,
// and releasing its blocks with recycleBlock.
import { HostBlock } from "./host-block";

/** Every block this allocator hands out holds at least this many bytes, so any recycled one fits any small request. */
export const SMALL_BLOCK: usize = 64;
/** Free blocks kept: a request's reads are released before the next request's, so a few cover steady traffic. */
const KEEP: i32 = 16;

const free = new StaticArray<usize>(KEEP);
let freeCount: i32 = 0;

/** The host's allocator: a recycled small block when one is free, else a fresh one of at least SMALL_BLOCK bytes. */
export function allocateSmallFirst(size: usize): usize {
  if (size == 0) return 0;
  if (size > SMALL_BLOCK) return heap.alloc(size);
  if (freeCount > 0) return unchecked(free[--freeCount]);
  return heap.alloc(SMALL_BLOCK);
}

/**
 * Releases `block` (filled through allocateSmallFirst, e.g. by headerValueInto or propertyBytesInto), keeping a small one
 * for the next read; empties it like HostBlock.release. Blocks longer than SMALL_BLOCK are freed.
 */
export function recycleBlock(block: HostBlock): void {
  const ptr = block.ptr;
  if (ptr == 0) return;
  // A block's length is what the host asked for, so one of at most SMALL_BLOCK bytes was allocated SMALL_BLOCK long.
  if (block.len <= SMALL_BLOCK && freeCount < KEEP) unchecked((free[freeCount++] = ptr));
  else heap.free(ptr);
  block.ptr = 0;
  block.len = 0;
}

/** `export { proxy_on_memory_allocate, malloc } from "@weft/sdk/assembly/small-blocks";` after the SDK's exports. */
export function proxy_on_memory_allocate(size: usize): usize {
  return allocateSmallFirst(size);
}

export function malloc(size: usize): usize {
  return allocateSmallFirst(size);
}
