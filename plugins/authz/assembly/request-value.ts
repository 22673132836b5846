// One request attribute as the host wrote it (a header or property value in a HostBlock): an ASCII value is matched
// and searched as bytes in place and decoded only if a string is asked for; any other value is decoded at once (invalid
// UTF-8 becomes U+FFFD, as HeaderMap.get returns it) and matched as that string, so both give get()'s answers.
import { HostBlock, StringMatcher, isAsciiBytes } from "@weft/sdk/assembly/index";
import { recycleSizedBlock } from "@weft/sdk/assembly/sized-blocks";

export class RequestValue {
  /** Filled by headerValueInto/propertyInto; empty when the value was absent or is held as `text`. */
  block: HostBlock = new HostBlock();
  present: bool = false;
  private ascii: bool = true;
  private text: string | null = null;

  /** Call after the block was filled: `found` is what headerValueInto/propertyInto answered. */
  took(found: bool): void {
    this.present = found;
    this.text = null;
    this.ascii = isAsciiBytes(this.block.ptr, this.block.len);
    if (!this.ascii) {
      this.text = this.block.text();
      recycleSizedBlock(this.block);
    }
  }

  /** Length in the unit ranges are given in: bytes for an ASCII value (one per character), code units otherwise. */
  get length(): i32 {
    return this.ascii ? <i32>this.block.len : this.text!.length;
  }

  /** The value as a string ("" when absent). */
  str(): string {
    let t = this.text;
    if (t === null) {
      t = this.block.text();
      this.text = t;
    }
    return t!;
  }

  /** The first index of the ASCII character `c` from `from`, or -1. */
  indexOfChar(c: u32, from: i32): i32 {
    const n = this.length;
    if (this.ascii) {
      const ptr = this.block.ptr;
      for (let i = from; i < n; i++) if (<u32>load<u8>(ptr + <usize>i) == c) return i;
      return -1;
    }
    const t = this.text!;
    for (let i = from; i < n; i++) if (<u32>t.charCodeAt(i) == c) return i;
    return -1;
  }

  /** The first index of the ASCII text `needle` from `from`, or -1. */
  indexOf(needle: string, from: i32): i32 {
    if (!this.ascii) return this.text!.indexOf(needle, from);
    const ptr = this.block.ptr;
    const first = <u32>needle.charCodeAt(0);
    const last = <i32>this.block.len - needle.length;
    for (let i = from; i <= last; i++) if (<u32>load<u8>(ptr + <usize>i) == first && this.at(ptr, i, needle)) return i;
    return -1;
  }

  startsWith(prefix: string): bool {
    if (!this.ascii) return this.text!.startsWith(prefix);
    return <i32>this.block.len >= prefix.length && this.at(this.block.ptr, 0, prefix);
  }

  /** Whether `m` matches the characters [start, end). */
  matches(m: StringMatcher, start: i32, end: i32): bool {
    return this.ascii ? m.matchesAscii(this.block.ptr, start, end) : m.matchesRange(this.text!, start, end);
  }

  release(): void {
    recycleSizedBlock(this.block);
    this.text = null;
    this.present = false;
    this.ascii = true;
  }

  private at(ptr: usize, i: i32, lit: string): bool {
    for (let j = 0; j < lit.length; j++) if (<u32>load<u8>(ptr + <usize>(i + j)) != <u32>lit.charCodeAt(j)) return false;
    return true;
  }
}
