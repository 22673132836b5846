/** Loads the native socket addon built by node-gyp at install (IP_TRANSPARENT, SO_ORIGINAL_DST, SO_MARK; the L4 copy pump, weft-copy.c; the L7 path's batched I/O, weft-io.c); absent off Linux or unbuilt. */
import { createRequire } from 'node:module';
import type net from 'node:net';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { WeftError } from '../errors.js';

export interface NativeSocket {
  /** `reusePort` sets SO_REUSEPORT too, so several event loops can each listen on the address (addons built before it ignore it). */
  listenTransparent(host: string, port: number, backlog?: number, reusePort?: boolean): number;
  originalDestination(fd: number): { address: string; port: number };
  setMark(fd: number, mark: number): void;
  /** An unconnected TCP socket with IP_TRANSPARENT bound to `source` (kernel-chosen port), for Node to connect. */
  bindTransparent(source: string, mark?: number): number;
  /** Once per thread after start-up (weft-memory.cc): a memory-reducing GC of this thread's isolate, then malloc_trim(0). Absent from addons built before it. */
  releaseMemory?(): boolean;
  /** malloc_trim(0) alone: hands freed heap pages back to the kernel. */
  trimMemory(): boolean;
  /** The L4 copy pump (weft-copy.c) on duplicates of `fdA` and `fdB`; `onEnd` once both are closed. Absent from addons built before it. */
  copyStart?(fdA: number, fdB: number, onEnd: (aToB: number, bToA: number, errSide: number, errCode: number) => void): object;
  copyAbort?(handle: object): void;
  copyDrain?(handle: object): void;
  copyIdleMs?(handle: object): number;
  /** Batched socket I/O (weft-io.c): `onBatch(count)` reads `count` records of four int32s; returns the arena and the records' memory. */
  ioInit?(onBatch: (count: number) => void): [Buffer, ArrayBuffer];
  ioOpen?(fd: number, id: number): object;
  /**
   * The connection's slot: the per-request calls name it by (slot, id), not by the object ioOpen returned (which the
   * caller keeps: its finalizer closes a connection that was dropped unclosed). A closed connection's slot is reused;
   * its id, never, so a call naming a closed connection does nothing (a write answers 0). Absent from addons built
   * before it, whose calls below take the object instead.
   */
  ioSlot?(conn: object): number;
  /** 1: go on; 0: wait for the drain record; negative: -errno, the connection failed. */
  ioWrite?(slot: number, id: number, data: Buffer | string, body?: Buffer): number;
  /** As ioWrite: `head` (ending in its blank line) with the field lines `lines` before its final CRLF, then `body`. */
  ioWriteSpliced?(slot: number, id: number, head: Buffer, lines: string, body?: Buffer): number;
  /** 1 when the FIN went out at once, 0 when a shutdown record follows the queued bytes. */
  ioEnd?(slot: number, id: number): number;
  ioPause?(slot: number, id: number): void;
  ioResume?(slot: number, id: number): void;
  ioClose?(conn: object): void;
  ioRelease?(conn: object): Buffer | undefined;
  /** Hot upgrade (weft-fdpass.c): a blocking unix-socket connect, and descriptors sent/received as SCM_RIGHTS. */
  unixConnect?(path: string): number;
  fdSend?(sock: number, data: Buffer, fds: number[]): number;
  fdReceive?(sock: number, timeoutMs: number): { data: Buffer; fds: number[]; truncated: boolean } | null;
  closeFd?(fd: number): void;
  /** A close-on-exec duplicate of `fd` (weft-fdpass.c). */
  dupFd?(fd: number): number;
  /** _exit(code): ends the process without Node's teardown (weft-fdpass.c says when that is needed). */
  exitNow?(code: number): never;
}

let cached: NativeSocket | null | undefined;

/** Finds the addon whether running from sources (runtime/native) or from dist/runtime/native. */
function addonPath(): string | undefined {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [
    // A bundled build (weft-cni's single-file bundle, an image) names the addon explicitly.
    ...(process.env.WEFT_NATIVE_ADDON === undefined ? [] : [process.env.WEFT_NATIVE_ADDON]),
    path.join(here, 'build/Release/weft_socket.node'),
    path.join(here, '../../../runtime/native/build/Release/weft_socket.node'),
  ];
  return candidates.find((p) => existsSync(p));
}

/** A connected net.Socket's file descriptor, for the addon calls that take one (the copy pump, batched I/O). */
export function socketFd(socket: net.Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

export function loadNativeSocket(): NativeSocket | null {
  if (cached !== undefined) return cached;
  const file = addonPath();
  cached = file === undefined ? null : (createRequire(import.meta.url)(file) as NativeSocket);
  return cached;
}

export function requireNativeSocket(feature: string): NativeSocket {
  const native = loadNativeSocket();
  if (native === null) {
    throw new WeftError(
      'WEFT_ERR_NATIVE_UNAVAILABLE',
      `${feature} needs the native socket addon, which is not built; run \`npm install\` (node-gyp and a C compiler are required)`,
    );
  }
  return native;
}
