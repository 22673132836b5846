// Port 0 with several workers: the first worker's ports are pinned into everyone's config and kept across reloads.
import { describe, expect, it } from 'vitest';
import { configSchema } from '../config/config-schema.js';
import { inheritedPorts, pinAliases, pinPorts, pinnedLocalPort, type PortPins } from './pin-ports.js';

const config = configSchema.parse({
  listeners: { outbound: { address: '127.0.0.1:0' }, inbound: { address: '127.0.0.1:15006' }, hbone: { address: '127.0.0.1:0' }, dns: '127.0.0.1:0' },
  services: [{ name: 'a', addresses: ['10.0.0.1'], ports: [{ port: 80 }] }],
  localPorts: [{ listen: '127.0.0.1:0', service: 'a.default', port: 80 }, { listen: '127.0.0.2:9000', service: 'a.default', port: 80 }],
});

describe('pinPorts', () => {
  it('replaces port 0 with the ports the first worker got, leaves fixed ports alone, and remembers the pins', () => {
    const pins: PortPins = new Map();
    const pinned = pinPorts(config, pins, { app: { outbound: 41000, inbound: 15006, dns: 44000, localPorts: { '127.0.0.1:0': 42000, '127.0.0.2:9000': 9000 } }, hbone: { '127.0.0.1:0': 43000 } });
    expect(pinned.listeners.dns).toBe('127.0.0.1:44000');
    expect(pinned.listeners.outbound?.address).toBe('127.0.0.1:41000');
    expect(pinned.listeners.inbound?.address).toBe('127.0.0.1:15006');
    expect(pinned.listeners.hbone?.address).toBe('127.0.0.1:43000');
    expect(pinned.localPorts.map((lp) => lp.listen)).toEqual(['127.0.0.1:42000', '127.0.0.2:9000']);
    expect(pinnedLocalPort(pins, '127.0.0.1:0')).toBe(42000);
    expect(pinnedLocalPort(pins, '127.0.0.2:9000')).toBe(9000);
    // A reload of the same addresses keeps the pins without asking a worker again.
    expect(pinPorts(config, pins).localPorts[0]?.listen).toBe('127.0.0.1:42000');
  });

  it('pins the DNS proxy too (UDP and TCP share the port)', () => {
    const pins: PortPins = new Map();
    expect(pinPorts(config, pins, { app: { dns: 45000 }, hbone: {} }).listeners.dns).toBe('127.0.0.1:45000');
  });

  it('pins to the ports of inherited sockets before any worker starts (hot upgrade), found by handover key', () => {
    const ports = new Map([
      ['outbound 127.0.0.1:0', 41000],
      ['hbone 127.0.0.1:0', 43000],
      ['dns 127.0.0.1:0', 45000],
      ['localPorts 127.0.0.1:0 127.0.0.1:0', 42000],
    ]);
    const pins: PortPins = new Map();
    const pinned = pinPorts(config, pins, inheritedPorts(config, (key) => ports.get(key)));
    expect(pinned.listeners.outbound?.address).toBe('127.0.0.1:41000');
    expect(pinned.listeners.hbone?.address).toBe('127.0.0.1:43000');
    expect(pinned.listeners.dns).toBe('127.0.0.1:45000');
    expect(pinned.localPorts.map((lp) => lp.listen)).toEqual(['127.0.0.1:42000', '127.0.0.2:9000']);
    // How a worker names these sockets for the next handover: the configured address.
    expect(new Map(pinAliases(pins)).get('127.0.0.1:42000')).toBe('127.0.0.1:0');
  });

  it('leaves a new port-0 address as it is until a worker reports its port', () => {
    const pins: PortPins = new Map();
    expect(pinPorts(config, pins).listeners.outbound?.address).toBe('127.0.0.1:0');
    expect(pinnedLocalPort(pins, '127.0.0.1:0')).toBeUndefined();
  });
});
