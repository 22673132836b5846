// ZDS messages byte for byte as protobuf encodes them (field numbers from ztunnel's proto/zds.proto), and back.
import { describe, expect, it } from 'vitest';
import { WeftError } from '../errors.js';
import { decodeAck, decodeHello, decodeRequest, encodeAck, encodeHello, encodeRequest, type WorkloadRequest } from './zds-codec.js';

const hex = (b: Buffer): string => b.toString('hex');

describe('ZDS codec (istio.workload.zds)', () => {
  it('encodes each WorkloadRequest exactly as protobuf does', () => {
    // add = 1 { uid = 1, workload_info = 2 { name = 1, namespace = 2, service_account = 3 } }
    expect(hex(encodeRequest({ kind: 'add', uid: 'u1', info: { name: 'a', namespace: 'b', serviceAccount: 'c' } }))).toBe('0a0f0a0275311209' + '0a0161120162' + '1a0163');
    // del = 2 { uid = 2 }, keep = 5 { uid = 1 }, snapshot_sent = 3 {} (present though empty: a oneof member)
    expect(hex(encodeRequest({ kind: 'del', uid: 'u1' }))).toBe('120412027531');
    expect(hex(encodeRequest({ kind: 'keep', uid: 'u1' }))).toBe('2a040a027531');
    expect(hex(encodeRequest({ kind: 'snapshotSent' }))).toBe('1a00');
  });

  it('round-trips requests, leaving empty proto3 strings out', () => {
    const requests: WorkloadRequest[] = [
      { kind: 'add', uid: '5f1e-pod', info: { name: 'reviews-v1', namespace: 'default', serviceAccount: '' } },
      { kind: 'add', uid: 'no-info' },
      { kind: 'del', uid: 'x' },
      { kind: 'keep', uid: 'y' },
      { kind: 'snapshotSent' },
    ];
    for (const r of requests) expect(decodeRequest(encodeRequest(r))).toEqual(r);
    expect(hex(encodeRequest({ kind: 'add', uid: 'u', info: { name: '', namespace: '', serviceAccount: '' } }))).toBe('0a050a01751200');
  });

  it('hello and ack', () => {
    expect(hex(encodeHello())).toBe('0801');
    expect(decodeHello(Buffer.from('0801', 'hex'))).toEqual({ version: 1 });
    expect(hex(encodeAck())).toBe('0a00');
    expect(hex(encodeAck('x'))).toBe('0a030a0178');
    expect(decodeAck(encodeAck('no netns'))).toEqual({ error: 'no netns' });
    expect(decodeAck(encodeAck())).toEqual({ error: '' });
  });

  it('skips fields it does not know (a newer agent) and rejects what is not ZDS', () => {
    // AddWorkload with an extra field 3 (windows_namespace in later protos) and an unknown varint field 9 on the request.
    const add = Buffer.concat([Buffer.from('0a0b0a02753112001a03', 'hex'), Buffer.from('abc'), Buffer.from('4801', 'hex')]);
    expect(decodeRequest(add)).toEqual({ kind: 'add', uid: 'u1', info: { name: '', namespace: '', serviceAccount: '' } });
    expect(() => decodeRequest(Buffer.from('0a09', 'hex'))).toThrow(WeftError);
    expect(() => decodeRequest(Buffer.alloc(0))).toThrow(/no payload/);
    expect(() => decodeAck(Buffer.from('0801', 'hex'))).toThrow(/no ack/);
  });
});
