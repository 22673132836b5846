/** Istio's ZDS messages (ztunnel proto/zds.proto, package istio.workload.zds) encoded and decoded as protobuf by hand: the few fields the protocol has, byte-compatible with istio-cni and ztunnel. */
import { WeftError } from '../errors.js';

/** zds.proto `Version`: V1 is the only one. */
export const ZDS_VERSION_V1 = 1;

export interface WorkloadInfo {
  name: string;
  namespace: string;
  serviceAccount: string;
}

/** `WorkloadRequest` (agent → runtime); `add` travels with the pod's netns fd as SCM_RIGHTS. */
export type WorkloadRequest =
  | { kind: 'add'; uid: string; info?: WorkloadInfo }
  | { kind: 'keep'; uid: string }
  | { kind: 'del'; uid: string }
  | { kind: 'snapshotSent' };

const WIRE_VARINT = 0;
const WIRE_LEN = 2;

class Writer {
  readonly #parts: Buffer[] = [];

  varint(value: number): this {
    const bytes: number[] = [];
    let v = value >>> 0;
    while (v > 0x7f) {
      bytes.push((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    bytes.push(v);
    this.#parts.push(Buffer.from(bytes));
    return this;
  }

  tag(field: number, wire: number): this {
    return this.varint((field << 3) | wire);
  }

  /** proto3: empty strings are not written. */
  string(field: number, value: string): this {
    if (value === '') return this;
    return this.bytes(field, Buffer.from(value, 'utf8'));
  }

  /** A sub-message is written even when empty: presence is what a oneof member means. */
  bytes(field: number, value: Buffer): this {
    this.tag(field, WIRE_LEN).varint(value.length);
    this.#parts.push(value);
    return this;
  }

  finish(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

/** Fields of one message: field number → last value (varints as numbers, length-delimited as Buffers). */
function readFields(buf: Buffer, what: string): Map<number, number | Buffer> {
  const out = new Map<number, number | Buffer>();
  let i = 0;
  const varint = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (i >= buf.length) throw new WeftError('WEFT_ERR_ZDS', `${what}: truncated varint`);
      const b = buf[i++] as number;
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
      if (shift > 63) throw new WeftError('WEFT_ERR_ZDS', `${what}: varint too long`);
    }
  };
  while (i < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === WIRE_VARINT) out.set(field, varint());
    else if (wire === WIRE_LEN) {
      const len = varint();
      if (i + len > buf.length) throw new WeftError('WEFT_ERR_ZDS', `${what}: field ${field} runs past the end`);
      out.set(field, buf.subarray(i, i + len));
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new WeftError('WEFT_ERR_ZDS', `${what}: unsupported wire type ${wire}`);
  }
  return out;
}

const str = (v: number | Buffer | undefined): string => (Buffer.isBuffer(v) ? v.toString('utf8') : '');

export function encodeHello(version = ZDS_VERSION_V1): Buffer {
  return new Writer().tag(1, WIRE_VARINT).varint(version).finish();
}

export function decodeHello(buf: Buffer): { version: number } {
  const v = readFields(buf, 'ZdsHello').get(1);
  return { version: typeof v === 'number' ? v : 0 };
}

export function encodeRequest(req: WorkloadRequest): Buffer {
  const w = new Writer();
  switch (req.kind) {
    case 'add': {
      const add = new Writer().string(1, req.uid);
      if (req.info !== undefined) add.bytes(2, new Writer().string(1, req.info.name).string(2, req.info.namespace).string(3, req.info.serviceAccount).finish());
      return w.bytes(1, add.finish()).finish();
    }
    case 'keep':
      return w.bytes(5, new Writer().string(1, req.uid).finish()).finish();
    case 'del':
      return w.bytes(2, new Writer().string(2, req.uid).finish()).finish();
    case 'snapshotSent':
      return w.bytes(3, Buffer.alloc(0)).finish();
  }
}

export function decodeRequest(buf: Buffer): WorkloadRequest {
  const fields = readFields(buf, 'WorkloadRequest');
  const sub = (n: number): Map<number, number | Buffer> | undefined => {
    const v = fields.get(n);
    return Buffer.isBuffer(v) ? readFields(v, `WorkloadRequest field ${n}`) : undefined;
  };
  const add = sub(1);
  if (add !== undefined) {
    const infoRaw = add.get(2);
    const info = Buffer.isBuffer(infoRaw) ? readFields(infoRaw, 'WorkloadInfo') : undefined;
    return {
      kind: 'add',
      uid: str(add.get(1)),
      ...(info === undefined ? {} : { info: { name: str(info.get(1)), namespace: str(info.get(2)), serviceAccount: str(info.get(3)) } }),
    };
  }
  const del = sub(2);
  if (del !== undefined) return { kind: 'del', uid: str(del.get(2)) };
  const keep = sub(5);
  if (keep !== undefined) return { kind: 'keep', uid: str(keep.get(1)) };
  if (sub(3) !== undefined) return { kind: 'snapshotSent' };
  throw new WeftError('WEFT_ERR_ZDS', 'WorkloadRequest carries no payload weft knows (add, keep, del, snapshot_sent)');
}

/** `WorkloadResponse{ack: Ack{error}}`: an empty error is an ACK. */
export function encodeAck(error = ''): Buffer {
  return new Writer().bytes(1, new Writer().string(1, error).finish()).finish();
}

export function decodeAck(buf: Buffer): { error: string } {
  const ack = readFields(buf, 'WorkloadResponse').get(1);
  if (!Buffer.isBuffer(ack)) throw new WeftError('WEFT_ERR_ZDS', 'WorkloadResponse carries no ack');
  return { error: str(readFields(ack, 'Ack').get(1)) };
}
