// An opt-in allocator for what the host writes into the plugin, for values of any size up to MAX_RECYCLED bytes (a
// bearer token, a long path): each block is allocated at its power-of-two size class and, once released with
// recycleSizedBlock, kept on that class's free list for the next value of the class, so a plugin that reads a value per
// request and releases it pays a pop and a push, not an allocation and a free in the general allocator (whose free
// lists, block headers and merges a cold request would otherwise touch). A plugin opts in by re-exporting
// proxy_on_memory_allocate and malloc from this module after the SDK's exports, and releasing its blocks with
// recycleSizedBlock (small-blocks.ts is the same for values of at most 64 bytes).
import { HostBlock } from "./host-block";

/** The smallest class: 2^MIN_SHIFT bytes. */
const MIN_SHIFT: u32 = 6;
/** The largest class: blocks above 2^MAX_SHIFT bytes come from and go back to the general allocator. */
const MAX_SHIFT: u32 = 12;
export const MAX_RECYCLED: usize = 1 << MAX_SHIFT;
/** Free blocks kept per class: a request's reads are released before the next request's, so a few cover steady traffic. */
const KEEP: i32 = 4;
const CLASSES: i32 = <i32>(MAX_SHIFT - MIN_SHIFT + 1);

const free = new StaticArray<usize>(CLASSES * KEEP);
const counts = new StaticArray<i32>(CLASSES);

/** The class of a block holding `size` bytes (1 <= size <= MAX_RECYCLED): 0 for up to 64 bytes, 1 for 65-128, ... */
// @ts-ignore: decorator
@inline function classOf(size: usize): i32 {
  const shift = size <= <usize>(1 << MIN_SHIFT) ? MIN_SHIFT : 32 - <u32>clz<u32>(<u32>size - 1);
  return <i32>(shift - MIN_SHIFT);
}

/** The host's allocator: a recycled block of `size`'s class when one is free, else a fresh one of the class's size. */
export function allocateSized(size: usize): usize {
  if (size == 0) return 0;
  if (size > MAX_RECYCLED) return heap.alloc(size);
  const c = classOf(size);
  const n = unchecked(counts[c]);
  if (n > 0) {
    unchecked((counts[c] = n - 1));
    return unchecked(free[c * KEEP + n - 1]);
  }
  return heap.alloc(<usize>1 << (<u32>c + MIN_SHIFT));
}

/**
 * Releases `block` (filled through allocateSized, e.g. by headerValueInto or propertyBytesInto), keeping it for the next
 * value of its class; empties it like HostBlock.release. A block's length is what the host asked for, so it names the
 * class the block was allocated in. Blocks beyond MAX_RECYCLED, or beyond what a class keeps, are freed.
 */
export function recycleSizedBlock(block: HostBlock): void {
  const ptr = block.ptr;
  if (ptr == 0) return;
  const len = block.len;
  block.ptr = 0;
  block.len = 0;
  if (len == 0 || len > MAX_RECYCLED) {
    heap.free(ptr);
    return;
  }
  const c = classOf(len);
  const n = unchecked(counts[c]);
  if (n >= KEEP) {
    heap.free(ptr);
    return;
  }
  unchecked((free[c * KEEP + n] = ptr));
  unchecked((counts[c] = n + 1));
}

/** `export { proxy_on_memory_allocate, malloc } from "@weft/sdk/assembly/sized-blocks";` after the SDK's exports. */
export function proxy_on_memory_allocate(size: usize): usize {
  return allocateSized(size);
}

export function malloc(size: usize): usize {
  return allocateSized(size);
}
