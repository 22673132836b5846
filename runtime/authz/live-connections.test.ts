import { describe, expect, it } from 'vitest';
import { configSchema } from '../config/config-schema.js';
import { ProxyState } from '../state/proxy-state.js';
import { LiveConnections } from './live-connections.js';

describe('LiveConnections', () => {
  it('closes exactly the connections a new policy denies, with the reason', () => {
    const base = { workloads: [{ name: 'echo', addresses: ['10.0.0.2'] }] };
    const state = new ProxyState(configSchema.parse(base));
    const live = new LiveConnections();
    const stop = live.watch(state);
    const destination = state.current.workloadByIp('10.0.0.2');
    if (destination === undefined) throw new Error('fixture');
    const closed: string[] = [];
    const attrs = (id: string) => ({ sourceIdentity: `spiffe://cluster.local/ns/default/sa/${id}`, sourceIp: '10.0.1.1', destination, destinationIp: '10.0.0.2', destinationPort: 80 });
    live.add(attrs('a'), (r) => closed.push(`a: ${r}`));
    const removeB = live.add(attrs('b'), (r) => closed.push(`b: ${r}`));
    live.add(attrs('c'), (r) => closed.push(`c: ${r}`));
    removeB();
    state.update(configSchema.parse({ ...base, policies: [{ name: 'deny-a-b', action: 'DENY', rules: [{ from: [{ source: { principals: ['*/sa/a', '*/sa/b'] } }] }] }] }));
    expect(closed).toEqual(['a: connection closed due to policy rejection: explicitly denied by: default/deny-a-b']);
    expect(live.size).toBe(1);
    stop();
  });
});
