/**
 * Caps the linear memory of a component's core modules: each defined memory gets a maximum, so a guest growing past
 * its share traps in memory.grow (V8 has no store limiter; a wasm memory lives outside the worker's heap limits).
 * The cap is split over the memories the component defines, so the limit holds for their sum (spin#3705).
 */
import { WeftError } from '../errors.js';
import { parseModuleInfo, SectionId } from '../wasm/wasm-module-info.js';
import { WasmWriter } from '../wasm/wasm-writer.js';

const PAGE = 65536;

/** Pages of the memory a core module defines (undefined: none), and whether it is shared or 64-bit (left alone). */
export function definedMemoryPages(bytes: Uint8Array): { min: number; max: number | undefined } | undefined {
  const info = parseModuleInfo(bytes);
  return info.memory === undefined ? undefined : { min: info.memory.min, max: info.memory.max };
}

/** `bytes` with its memory's maximum set to `maxPages` (kept when lower); throws when its minimum is above. */
export function capMemory(bytes: Uint8Array, maxPages: number, what: string): Uint8Array {
  const info = parseModuleInfo(bytes);
  const mem = info.memory;
  if (mem === undefined || mem.shared || mem.memory64) return bytes;
  if (mem.min > maxPages) {
    throw new WeftError('WEFT_ERR_FN_LOAD', `${what} starts with ${((mem.min * PAGE) / 1048576).toFixed(1)} MiB of memory, above its limits.memoryMb share (${((maxPages * PAGE) / 1048576).toFixed(1)} MiB); raise limits.memoryMb`);
  }
  const max = mem.max === undefined ? maxPages : Math.min(mem.max, maxPages);
  const section = info.sections.find((s) => s.id === SectionId.Memory);
  if (section === undefined) return bytes;
  const w = new WasmWriter(bytes.length + 16);
  w.bytes(bytes.subarray(0, section.start));
  w.section(SectionId.Memory, (s) => {
    s.u32(1);
    s.byte(0x01);
    s.u32(mem.min);
    s.u32(max);
  });
  w.bytes(bytes.subarray(section.end));
  return w.finish();
}
