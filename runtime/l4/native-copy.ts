/**
 * The L4 copy in C (runtime/native/weft-copy.c): the addon duplicates both sockets' fds, polls the duplicates on
 * Node's own libuv loop and moves bytes with recv/send, so a proxied chunk runs no JavaScript at all. Node's sockets
 * are then destroyed (closing only Node's descriptors), which also frees their JS objects for the connection's life.
 * Byte counts and the first error come back once, at the end. Same contract as handle-copy.ts, which copy.ts uses
 * when the addon is not built, is older than this file, or WEFT_L4_NATIVE_COPY=0.
 */
import type net from 'node:net';
import { ENV, envValue } from '../config/defaults.js';
import { loadNativeSocket, socketFd, type NativeSocket } from '../native/weft-socket.js';
import type { HandleCopy, HandleCopyEnd } from './handle-copy.js';

type NativeCopy = Required<Pick<NativeSocket, 'copyStart' | 'copyAbort' | 'copyDrain' | 'copyIdleMs'>>;

function loadNativeCopy(): NativeCopy | undefined {
  if (envValue(ENV.l4NativeCopy) === '0' || envValue(ENV.l4StreamCopy) === '1') return undefined;
  const native = loadNativeSocket();
  if (native === null || typeof native.copyStart !== 'function' || typeof native.copyAbort !== 'function' || typeof native.copyDrain !== 'function' || typeof native.copyIdleMs !== 'function') return undefined;
  return native as NativeCopy;
}

const native = loadNativeCopy();

/**
 * True when the pump can take both sockets: the addon has it, both are connected TCP sockets with a descriptor, and
 * neither holds bytes in Node's buffers (unsent in its Writable or unread in its Readable), which only Node could move.
 */
export function canCopyNatively(a: net.Socket, b: net.Socket): boolean {
  return native !== undefined && !a.destroyed && !b.destroyed && !a.connecting && !b.connecting && a.writableLength === 0 && b.writableLength === 0 && a.readableLength === 0 && b.readableLength === 0 && socketFd(a) !== undefined && socketFd(b) !== undefined;
}

/**
 * Starts the pump on `a` ⇄ `b`; the sockets are destroyed here and the connection lives on in the pump. Undefined,
 * with both sockets untouched, when the pump could not start (EMFILE on the dup): the caller copies another way.
 */
export function copyNatively(a: net.Socket, b: net.Socket): HandleCopy | undefined {
  const pump = native as NativeCopy;
  let resolve: (end: HandleCopyEnd) => void = () => {};
  const done = new Promise<HandleCopyEnd>((r) => (resolve = r));
  let handle: object;
  try {
    handle = pump.copyStart(socketFd(a) as number, socketFd(b) as number, (aToB, bToA, errSide, errCode) => {
      resolve({ aToB, bToA, ...(errSide < 0 ? {} : { error: { side: errSide === 0 ? 'a' : 'b', code: errCode } }) });
    });
  } catch {
    return undefined;
  }
  // Closing Node's descriptors leaves the connection to the duplicates: no FIN, no RST. libuv takes the originals
  // out of its epoll set before closing them, so they raise no events for the pump's duplicates.
  a.destroy();
  b.destroy();
  return { abort: () => pump.copyAbort(handle), drain: () => pump.copyDrain(handle), idleFor: () => pump.copyIdleMs(handle), done };
}
