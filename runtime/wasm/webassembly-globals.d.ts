// The WebAssembly JS API subset weft uses: TypeScript only ships these types in lib.dom, which a Node project leaves out.
export {};

declare global {
  namespace WebAssembly {
    type ImportValue = ((...args: never[]) => unknown) | Global | Memory | Table;
    type Imports = Record<string, Record<string, unknown>>;
    type ExportValue = ((...args: never[]) => unknown) | Global | Memory | Table;
    type Exports = Record<string, ExportValue>;
    type BufferSource = ArrayBufferView | ArrayBuffer;

    interface ModuleExportDescriptor {
      kind: 'function' | 'table' | 'memory' | 'global' | 'tag';
      name: string;
    }
    interface ModuleImportDescriptor extends ModuleExportDescriptor {
      module: string;
    }

    class Module {
      constructor(bytes: BufferSource);
      static exports(module: Module): ModuleExportDescriptor[];
      static imports(module: Module): ModuleImportDescriptor[];
    }
    class Instance {
      constructor(module: Module, imports?: Imports);
      readonly exports: Exports;
    }
    class Memory {
      constructor(descriptor: { initial: number; maximum?: number; shared?: boolean });
      readonly buffer: ArrayBuffer;
      grow(delta: number): number;
    }
    class Table {
      constructor(descriptor: { element: 'anyfunc' | 'externref'; initial: number; maximum?: number });
      readonly length: number;
    }
    class Global {
      constructor(descriptor: { value: 'i32' | 'i64' | 'f32' | 'f64'; mutable?: boolean }, value?: number | bigint);
      value: number | bigint;
    }
    class CompileError extends Error {}
    class LinkError extends Error {}
    class RuntimeError extends Error {}

    function compile(bytes: BufferSource): Promise<Module>;
    function validate(bytes: BufferSource): boolean;
    function instantiate(bytes: BufferSource, imports?: Imports): Promise<{ module: Module; instance: Instance }>;
    function instantiate(module: Module, imports?: Imports): Promise<Instance>;
  }
}
