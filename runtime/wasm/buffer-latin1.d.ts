// Node's Buffer has native latin1Slice/latin1Write (the fast paths behind toString('latin1') and write(..., 'latin1'))
// that @types/node does not declare; the header codec uses them to move byte strings without intermediate copies.
export {};

declare global {
  interface Buffer {
    latin1Slice(start: number, end: number): string;
    latin1Write(text: string, offset: number, length: number): number;
  }
}
