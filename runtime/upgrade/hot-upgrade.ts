/** Starts a weft that can be upgraded in place: with `--takeover` it first inherits the running weft's sockets and tells it to let go once serving; either way it then listens for its own successor. */
import type { App } from '../app.js';
import { createLogger } from '../log.js';
import { socketHandover } from './socket-handover.js';
import { takeOver } from './takeover-client.js';
import { takeoverSocketPath } from './takeover-protocol.js';
import { TakeoverServer } from './takeover-server.js';

const log = createLogger('takeover');

export interface UpgradableOptions {
  configFile: string;
  /** `weft run --takeover`: take the sockets of the weft running with this config. */
  takeover: boolean;
  createApp: () => Promise<App>;
  /** A successor took over and this process stopped accepting: drain and exit. */
  onTakenOver: (successorPid: number) => void;
}

export interface Upgradable {
  app: App;
  /** Closes the control socket (on shutdown). */
  close(): void;
}

/**
 * The order is what makes the handover safe: every step that can fail (config, plugins, certificates, fresh binds)
 * runs before an inherited socket accepts anything, and the predecessor stops accepting only after this process
 * does. A failure before `ready` leaves the predecessor serving exactly as before.
 */
export async function startUpgradable(opts: UpgradableOptions): Promise<Upgradable> {
  const path = takeoverSocketPath(opts.configFile);
  const predecessor = opts.takeover ? takeOver(path) : undefined;
  let app: App;
  try {
    app = await opts.createApp();
  } catch (err) {
    socketHandover.abandon();
    predecessor?.abort();
    throw err;
  }
  await socketHandover.commit();
  const unused = socketHandover.discardUnused();
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
    release: () => app.stopAccepting(true),
    onTakenOver: opts.onTakenOver,
  });
  return { app, close: () => control?.close() };
}
