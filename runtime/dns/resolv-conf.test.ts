import { describe, expect, it } from 'vitest';
import { parseResolvConf, parseUpstream } from './resolv-conf.js';

describe('resolv.conf', () => {
  it('takes the first three nameserver lines, skipping comments, options and zone-indexed addresses', () => {
    const text = '# generated\nsearch default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\nnameserver fe80::1%eth0\nnameserver ::1\n nameserver 1.1.1.1\nnameserver 8.8.8.8\n';
    expect(parseResolvConf(text)).toEqual([
      { address: '10.96.0.10', port: 53 },
      { address: '::1', port: 53 },
      { address: '1.1.1.1', port: 53 },
    ]);
  });

  it('reads upstreams as an IP (port 53) or ip:port', () => {
    expect(parseUpstream('10.0.0.2')).toEqual({ address: '10.0.0.2', port: 53 });
    expect(parseUpstream('127.0.0.1:5353')).toEqual({ address: '127.0.0.1', port: 5353 });
    expect(parseUpstream('[::1]:5353')).toEqual({ address: '::1', port: 5353 });
    expect(parseUpstream('resolver.local')).toBeUndefined();
  });
});
