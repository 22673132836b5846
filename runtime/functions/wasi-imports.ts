/**
 * The import object a transpiled function component gets inside its worker: weft's wasi:io and wasi:http, plus
 * wasi:cli (only the configured env, stdout/stderr as log lines), clocks, random, and a file system with no preopens.
 * No wasi:sockets: a function reaches the network only through wasi:http/outgoing-handler, i.e. through the mesh.
 */
import { randomBytes } from 'node:crypto';
import { InputStream, IoError, OutputStream, Pollable, ByteQueue, poll, type ByteSink } from './wasi-io.js';
import type { WasiHttp } from './wasi-http.js';

/** Guest output, one line at a time, with a cap on how much a single line holds. */
export class LineSink implements ByteSink {
  readonly failure = undefined;
  #partial = '';
  readonly #emit: (line: string) => void;
  readonly #decoder = new TextDecoder();

  constructor(emit: (line: string) => void) {
    this.#emit = emit;
  }

  write(chunk: Uint8Array): void {
    const text = this.#partial + this.#decoder.decode(chunk, { stream: true });
    const lines = text.split('\n');
    this.#partial = lines.pop() ?? '';
    if (this.#partial.length > 16_384) {
      lines.push(this.#partial);
      this.#partial = '';
    }
    for (const line of lines) this.#emit(line);
  }

  flushLine(): void {
    if (this.#partial !== '') this.#emit(this.#partial);
    this.#partial = '';
  }

  credit(): number {
    return 1 << 20;
  }
}

class Descriptor {}

class ExitRequested extends Error {
  readonly ok: boolean;
  constructor(ok: boolean) {
    super(ok ? 'the guest called exit(ok)' : 'the guest called exit(err)');
    this.ok = ok;
  }
}

export interface GuestEnv {
  env: () => [string, string][];
  stdout: LineSink;
  stderr: LineSink;
}

export function wasiImports(http: WasiHttp, guest: GuestEnv): Record<string, Record<string, unknown>> {
  const stdout = new OutputStream(guest.stdout);
  const stderr = new OutputStream(guest.stderr);
  const emptyStdin = new ByteQueue();
  emptyStdin.ended = true;
  const stdin = new InputStream(emptyStdin);
  const monotonic = {
    now: () => process.hrtime.bigint(),
    resolution: () => 1n,
    subscribeInstant: (at: bigint) => new Pollable(() => false, at),
    subscribeDuration: (ns: bigint) => new Pollable(() => false, process.hrtime.bigint() + ns),
  };
  const wall = () => {
    const ms = Date.now();
    return { seconds: BigInt(Math.floor(ms / 1000)), nanoseconds: (ms % 1000) * 1_000_000 };
  };
  const random = {
    getRandomBytes: (len: bigint) => new Uint8Array(randomBytes(Number(len))),
    getRandomU64: () => randomBytes(8).readBigUInt64LE(0),
  };
  return {
    'wasi:cli/environment': { getEnvironment: guest.env, getArguments: () => [], initialCwd: () => undefined },
    'wasi:cli/exit': {
      exit: (status: { tag: 'ok' | 'err' }) => {
        throw new ExitRequested(status.tag === 'ok');
      },
    },
    'wasi:cli/stdin': { getStdin: () => stdin },
    'wasi:cli/stdout': { getStdout: () => stdout },
    'wasi:cli/stderr': { getStderr: () => stderr },
    'wasi:cli/terminal-input': { TerminalInput: class TerminalInput {} },
    'wasi:cli/terminal-output': { TerminalOutput: class TerminalOutput {} },
    'wasi:cli/terminal-stdin': { getTerminalStdin: () => undefined },
    'wasi:cli/terminal-stdout': { getTerminalStdout: () => undefined },
    'wasi:cli/terminal-stderr': { getTerminalStderr: () => undefined },
    'wasi:clocks/monotonic-clock': monotonic,
    'wasi:clocks/wall-clock': { now: wall, resolution: () => ({ seconds: 0n, nanoseconds: 1_000_000 }) },
    'wasi:filesystem/preopens': { getDirectories: () => [] },
    'wasi:filesystem/types': { Descriptor, DirectoryEntryStream: class DirectoryEntryStream {}, filesystemErrorCode: () => undefined },
    'wasi:io/error': { Error: IoError },
    'wasi:io/poll': { Pollable, poll },
    'wasi:io/streams': { InputStream, OutputStream },
    'wasi:random/random': random,
    'wasi:random/insecure': random,
    'wasi:random/insecure-seed': { insecureSeed: () => [randomBytes(8).readBigUInt64LE(0), randomBytes(8).readBigUInt64LE(0)] },
    'wasi:http/types': http.types,
    'wasi:http/outgoing-handler': http.outgoingHandler,
  };
}

export { ExitRequested };
