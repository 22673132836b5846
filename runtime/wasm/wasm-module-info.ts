/** Parses a core WebAssembly module's structure (sections, function types, imports, exports, memory limits) without compiling it. */
import { WeftError } from '../errors.js';
import { WasmReader } from './wasm-reader.js';

export const SectionId = { Custom: 0, Type: 1, Import: 2, Function: 3, Table: 4, Memory: 5, Global: 6, Export: 7, Start: 8, Element: 9, Code: 10, Data: 11, DataCount: 12, Tag: 13 } as const;

export interface SectionSpan {
  id: number;
  /** Offset of the section id byte. */
  start: number;
  /** Offset of the first payload byte. */
  payloadStart: number;
  end: number;
}

/** Value types by their binary code: 0x7f i32, 0x7e i64, 0x7d f32, 0x7c f64, 0x7b v128, 0x70 funcref, 0x6f externref. */
export interface FuncType {
  params: number[];
  results: number[];
}

export type ExternKind = 'func' | 'table' | 'memory' | 'global' | 'tag';
const KINDS: readonly ExternKind[] = ['func', 'table', 'memory', 'global', 'tag'];

export interface ImportEntry {
  module: string;
  name: string;
  kind: ExternKind;
  /** For functions: the type index. */
  typeIndex: number;
}

export interface ExportEntry {
  name: string;
  kind: ExternKind;
  index: number;
}

export interface MemoryLimits {
  min: number;
  max: number | undefined;
  shared: boolean;
  memory64: boolean;
  /** Offset of the limits flag byte and the end of the limits, to let the instrumenter rewrite them. */
  start: number;
  end: number;
}

export interface ModuleInfo {
  sections: SectionSpan[];
  types: FuncType[];
  imports: ImportEntry[];
  importedFuncs: number;
  importedGlobals: number;
  definedGlobals: number;
  exports: ExportEntry[];
  /** Type index of each defined (non-imported) function. */
  functionTypes: number[];
  memory: MemoryLimits | undefined;
  importedMemory: boolean;
}

export function readValType(r: WasmReader): number {
  const t = r.u8();
  if (t === 0x63 || t === 0x64) r.s33(); // (ref null? ht): typed function references
  return t;
}

export function readLimits(r: WasmReader): { min: number; max: number | undefined; shared: boolean; memory64: boolean } {
  const flags = r.u8();
  if (flags > 0x07) r.fail(`unknown limits flags 0x${flags.toString(16)}`);
  const memory64 = (flags & 0x04) !== 0;
  const readNum = (): number => {
    if (!memory64) return r.u32();
    const start = r.pos;
    r.skipLeb(10);
    let v = 0;
    for (let i = r.pos - 1; i >= start; i--) v = v * 128 + (r.bytes[i]! & 0x7f);
    return v;
  };
  const min = readNum();
  const max = (flags & 0x01) !== 0 ? readNum() : undefined;
  return { min, max, shared: (flags & 0x02) !== 0, memory64 };
}

export function parseModuleInfo(bytes: Uint8Array): ModuleInfo {
  if (bytes.length < 8) throw new WeftError('WEFT_ERR_PLUGIN_LOAD', `not a WebAssembly module: ${bytes.length} bytes is shorter than the 8-byte header`);
  if (bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new WeftError('WEFT_ERR_PLUGIN_LOAD', 'not a WebAssembly module: bad magic number (expected \\0asm)');
  }
  const version = bytes[4]! | (bytes[5]! << 8) | (bytes[6]! << 16) | (bytes[7]! << 24);
  if (version !== 1) {
    const what = bytes[6] === 0x01 ? 'a WebAssembly component, not a core module (proxy-wasm needs a core module; set kind: component to run it as a component filter)' : `an unsupported WebAssembly version ${version}`;
    throw new WeftError('WEFT_ERR_PLUGIN_LOAD', `not a proxy-wasm module: ${what}`);
  }
  const info: ModuleInfo = { sections: [], types: [], imports: [], importedFuncs: 0, importedGlobals: 0, definedGlobals: 0, exports: [], functionTypes: [], memory: undefined, importedMemory: false };
  const r = new WasmReader(bytes, 8);
  while (!r.done) {
    const start = r.pos;
    const id = r.u8();
    const size = r.u32();
    const payloadStart = r.pos;
    if (payloadStart + size > bytes.length) r.fail(`truncated: section ${id} declares ${size} bytes but only ${bytes.length - payloadStart} remain`);
    const span = { id, start, payloadStart, end: payloadStart + size };
    info.sections.push(span);
    parseSection(new WasmReader(bytes, payloadStart, span.end), id, info);
    r.pos = span.end;
  }
  return info;
}

function parseSection(r: WasmReader, id: number, info: ModuleInfo): void {
  switch (id) {
    case SectionId.Type: {
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        const form = r.u8();
        if (form !== 0x60) r.fail(`type form 0x${form.toString(16)} (the GC proposal) is not supported`);
        const params: number[] = [];
        for (let p = r.u32(); p > 0; p--) params.push(readValType(r));
        const results: number[] = [];
        for (let p = r.u32(); p > 0; p--) results.push(readValType(r));
        info.types.push({ params, results });
      }
      return;
    }
    case SectionId.Import: {
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        const module = r.name();
        const name = r.name();
        const kindByte = r.u8();
        const kind = KINDS[kindByte] ?? r.fail(`unknown import kind ${kindByte}`);
        let typeIndex = -1;
        if (kind === 'func') {
          typeIndex = r.u32();
          info.importedFuncs++;
        } else if (kind === 'table') {
          readValType(r);
          readLimits(r);
        } else if (kind === 'memory') {
          readLimits(r);
          info.importedMemory = true;
        } else if (kind === 'global') {
          readValType(r);
          r.u8();
          info.importedGlobals++;
        } else {
          r.u8();
          r.u32();
        }
        info.imports.push({ module, name, kind, typeIndex });
      }
      return;
    }
    case SectionId.Memory: {
      const n = r.u32();
      if (n > 1) r.fail('more than one memory (multi-memory) is not supported');
      if (n === 1) {
        const start = r.pos;
        const limits = readLimits(r);
        info.memory = { ...limits, start, end: r.pos };
      }
      return;
    }
    case SectionId.Function:
      for (let n = r.u32(); n > 0; n--) info.functionTypes.push(r.u32());
      return;
    case SectionId.Global:
      info.definedGlobals = r.u32();
      return;
    case SectionId.Export: {
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        const name = r.name();
        const kindByte = r.u8();
        info.exports.push({ name, kind: KINDS[kindByte] ?? r.fail(`unknown export kind ${kindByte}`), index: r.u32() });
      }
      return;
    }
    default:
      return;
  }
}

/** The signature of imported function `entry`, or undefined when it is not a function. */
export function importSignature(info: ModuleInfo, entry: ImportEntry): FuncType | undefined {
  return entry.kind === 'func' ? info.types[entry.typeIndex] : undefined;
}
