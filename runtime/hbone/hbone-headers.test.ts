import { describe, expect, it } from 'vitest';
import { formatAuthority, formatForwarded, isTraceparent, newTraceparent, parseAuthority, parseBaggage, parseForwarded } from './hbone-headers.js';

describe('HBONE headers', () => {
  it('formats and parses :authority for IPv4 and IPv6, refusing hostnames and bad ports', () => {
    expect(formatAuthority({ address: '10.0.0.1', port: 8080 })).toBe('10.0.0.1:8080');
    expect(formatAuthority({ address: 'fd00::1', port: 80 })).toBe('[fd00::1]:80');
    expect(parseAuthority('[fd00::1]:80')).toEqual({ address: 'fd00::1', port: 80 });
    expect(parseAuthority('10.0.0.1:8080')).toEqual({ address: '10.0.0.1', port: 8080 });
    for (const bad of ['reviews:9080', '10.0.0.1', '10.0.0.1:0', '10.0.0.1:70000', '999.0.0.1:80', undefined]) expect(parseAuthority(bad)).toBeUndefined();
  });

  it('round-trips forwarded (RFC 7239, quoted for ip:port) with the optional host', () => {
    const text = formatForwarded({ address: '10.0.1.5', port: 43210 }, 'echo.default.svc.cluster.local');
    expect(text).toBe('for="10.0.1.5:43210";host=echo.default.svc.cluster.local');
    expect(parseForwarded(text)).toEqual({ for: { address: '10.0.1.5', port: 43210 }, host: 'echo.default.svc.cluster.local' });
    expect(parseForwarded('for="[fd00::5]:1234", for=1.2.3.4')).toEqual({ for: { address: 'fd00::5', port: 1234 } });
    expect(parseForwarded('garbage')).toEqual({});
  });

  it('parses baggage and makes W3C traceparents', () => {
    expect(parseBaggage('k8s.namespace.name=default, k8s.pod.name=sleep;prop=1')).toEqual({ 'k8s.namespace.name': 'default', 'k8s.pod.name': 'sleep' });
    const tp = newTraceparent();
    expect(isTraceparent(tp)).toBe(true);
    expect(newTraceparent()).not.toBe(tp);
    expect(isTraceparent('00-xyz')).toBe(false);
  });

  it('keeps traceparents valid and distinct across refills of the random pool', () => {
    const seen = new Set(Array.from({ length: 1000 }, () => newTraceparent()));
    expect(seen.size).toBe(1000);
    for (const tp of seen) expect(isTraceparent(tp)).toBe(true);
    expect(new Set([...seen].map((tp) => tp.slice(3, 35))).size).toBe(1000);
  });
});
