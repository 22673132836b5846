/** Starts a weft that can be upgraded in place: with `--takeover` it first inherits the running weft's sockets and tells it to let go once serving; either way it then listens for its own successor. */
import { createLogger } from '../log.js';
import { socketHandover, type HandoverSocket } from './socket-handover.js';
import { takeOver } from './takeover-client.js';
import { takeoverSocketPath } from './takeover-protocol.js';
import { TakeoverServer } from './takeover-server.js';

const log = createLogger('takeover');

/** What a hot upgrade needs of the running runtime (an App, or the primary of several worker threads). */
export interface UpgradableRuntime {
  /** Stops accepting everywhere and asks clients to reconnect (the successor serves the same sockets). */
  stopAccepting(handedOver: boolean): Promise<void>;
}

/** Where the listening sockets live: this thread (one event loop), or every worker thread plus the primary. */
export interface HandoverSockets {
  /** Every listening socket, as descriptors valid until `release` (after they were sent). */
  lend(): Promise<{ sockets: HandoverSocket[]; release(): void }>;
  /** Inherited sockets start accepting; those nobody adopted are closed (their count is returned). */
  commit(): Promise<number>;
}

/** One event loop: the sockets are this thread's. */
export const threadSockets: HandoverSockets = {
  lend: () => Promise.resolve({ sockets: socketHandover.held(), release: () => undefined }),
  commit: async () => {
    await socketHandover.commit();
    return socketHandover.discardUnused();
  },
};

export interface UpgradableOptions<T extends UpgradableRuntime> {
  configFile: string;
  /** `weft run --takeover`: take the sockets of the weft running with this config. */
  takeover: boolean;
  createApp: () => Promise<T>;
  /** The runtime's sockets (default: this thread's). */
  sockets?: (app: T) => HandoverSockets;
  /** A successor took over and this process stopped accepting: drain and exit. */
  onTakenOver: (successorPid: number) => void;
}

export interface Upgradable<T> {
  app: T;
  /** Closes the control socket (on shutdown). */
  close(): void;
}

/**
 * The order is what makes the handover safe: every step that can fail (config, plugins, certificates, fresh binds,
 * every worker thread's start) runs before an inherited socket accepts anything, and the predecessor stops accepting
 * only after this process does. A failure before `ready` leaves the predecessor serving exactly as before.
 */
export async function startUpgradable<T extends UpgradableRuntime>(opts: UpgradableOptions<T>): Promise<Upgradable<T>> {
  const path = takeoverSocketPath(opts.configFile);
  const predecessor = opts.takeover ? takeOver(path) : undefined;
  let app: T;
  let sockets: HandoverSockets;
  let unused: number;
  try {
    app = await opts.createApp();
    sockets = opts.sockets?.(app) ?? threadSockets;
    unused = await sockets.commit();
  } catch (err) {
    socketHandover.abandon();
    predecessor?.abort();
    throw err;
  }
  if (unused > 0) log.info({ sockets: unused }, 'inherited sockets the new configuration does not use were closed');
  if (predecessor !== undefined) {
    try {
      await predecessor.complete();
    } catch (err) {
      // Both processes serve the same sockets until the predecessor is stopped another way: nothing is refused.
      log.error({ err, predecessor: predecessor.pid }, 'the predecessor did not confirm it stopped accepting');
    }
  }
  const control = await TakeoverServer.start(path, {
    lend: () => sockets.lend(),
    release: () => app.stopAccepting(true),
    onTakenOver: opts.onTakenOver,
  });
  return { app, close: () => control?.close() };
}
