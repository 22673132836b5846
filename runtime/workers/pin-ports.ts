/**
 * Port 0 across worker threads: every worker must listen on the same port for SO_REUSEPORT to spread connections, so
 * the first worker binds port 0, and the port the kernel gave it is written into the config the other workers (and
 * replacements, and later reloads) get. `pins` maps an address as configured to the address every worker uses.
 */
import type { WeftConfig } from '../config/config-schema.js';
import { parseSocketAddress } from '../config/socket-address.js';

/** What a worker reports once it listens: App.ports and the HBONE listeners by configured address. */
export interface StartedPorts {
  app: Record<string, unknown> & { localPorts?: Record<string, number> };
  hbone: Record<string, number>;
}

export type PortPins = Map<string, string>;

const DATA_LISTENERS = ['outbound', 'inbound', 'explicitProxy', 'hbone'] as const;

function withPort(address: string, port: number): string {
  return `${address.slice(0, address.lastIndexOf(':'))}:${port}`;
}

function isPortZero(address: string): boolean {
  return parseSocketAddress(address)?.port === 0;
}

/** `config` with each port-0 listen address replaced by its pin; new pins are learned from `started` (the first worker). */
export function pinPorts(config: WeftConfig, pins: PortPins, started?: StartedPorts): WeftConfig {
  const pin = (key: string, address: string, learned: number | undefined): string => {
    if (!isPortZero(address)) return address;
    const known = pins.get(key);
    if (known !== undefined) return known;
    if (learned === undefined || learned === 0) return address;
    const pinned = withPort(address, learned);
    pins.set(key, pinned);
    return pinned;
  };
  const listeners = { ...config.listeners };
  for (const name of DATA_LISTENERS) {
    const l = listeners[name];
    if (l === undefined) continue;
    const learned = name === 'hbone' ? started?.hbone[l.address] : (started?.app[name] as number | undefined);
    listeners[name] = { ...l, address: pin(`listener ${name} ${l.address}`, l.address, learned) };
  }
  // The DNS proxy's UDP and TCP share the port: every worker binds that one pair with SO_REUSEPORT.
  const dns = listeners.dns;
  if (dns !== undefined) listeners.dns = pin(`listener dns ${dns}`, dns, started?.app.dns as number | undefined);
  const localPorts = config.localPorts.map((lp) => ({ ...lp, listen: pin(`local ${lp.listen}`, lp.listen, started?.app.localPorts?.[lp.listen]) }));
  return { ...config, listeners, localPorts };
}

/**
 * A hot upgrade: the ports of the sockets a predecessor handed over, as a first worker would report them, found by
 * the handover keys the listeners use (`outbound 127.0.0.1:0`, `localPorts A A`, socket-handover.ts). Pinning with
 * them before any worker starts gives every worker, the first too, the same addresses as the inherited sockets.
 */
export function inheritedPorts(config: WeftConfig, portOf: (key: string) => number | undefined): StartedPorts {
  const app: StartedPorts['app'] & { localPorts: Record<string, number> } = { localPorts: {} };
  const hbone: Record<string, number> = {};
  const found = (key: string, set: (port: number) => void): void => {
    const port = portOf(key);
    if (port !== undefined) set(port);
  };
  for (const name of DATA_LISTENERS) {
    const l = config.listeners[name];
    if (l === undefined) continue;
    found(`${name} ${l.address}`, (port) => (name === 'hbone' ? (hbone[l.address] = port) : (app[name] = port)));
  }
  const dns = config.listeners.dns;
  if (dns !== undefined) found(`dns ${dns}`, (port) => (app.dns = port));
  for (const lp of config.localPorts) found(`localPorts ${lp.listen} ${lp.listen}`, (port) => (app.localPorts[lp.listen] = port));
  return { app, hbone };
}

/** Each pinned address and the address as configured (port 0): how worker threads name sockets for a handover. */
export function pinAliases(pins: PortPins): [string, string][] {
  return [...pins].map(([key, pinned]) => [pinned, key.slice(key.lastIndexOf(' ') + 1)]);
}

/** The port every worker listens on for a localPorts entry as configured. */
export function pinnedLocalPort(pins: PortPins, listen: string): number | undefined {
  const address = isPortZero(listen) ? pins.get(`local ${listen}`) : listen;
  return address === undefined ? undefined : parseSocketAddress(address)?.port;
}
