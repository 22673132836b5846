/**
 * Kubernetes' protobuf wire format (k8s.io/apimachinery runtime/serializer/protobuf) as the API server sends it for
 * built-in types: a body is the magic `k8s\0` then a runtime.Unknown {typeMeta, raw, contentEncoding, contentType} whose
 * raw is the object (a list: ListMeta then the items); a watch is a stream of frames, each a 4-byte big-endian length
 * then a WatchEvent {type, object: RawExtension} encoded without the envelope, whose object's raw is an enveloped object.
 * Bad bytes throw ProtobufDecodeError (a SyntaxError, so they count as `decode` errors) naming what they were.
 */
import protobuf from 'protobufjs';
import type { ListHead, ListPage } from './kube-list-pager.js';
import type { Stripped } from './kube-reflector.js';
import { LIST_META, STATUS, UNKNOWN, WATCH_EVENT, int64, type ProtoCodec } from './kube-protobuf-objects.js';

export const PROTOBUF_MEDIA_TYPE = 'application/vnd.kubernetes.protobuf';
/** What a client that prefers protobuf asks for: the server answers JSON where it has no protobuf (CRDs). */
export const PROTOBUF_ACCEPT = `${PROTOBUF_MEDIA_TYPE}, application/json`;
const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);
/** A watch frame longer than this is refused: etcd holds objects of at most ~1.5 MiB, and a corrupt length must not make the client buffer gigabytes. */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

export class ProtobufDecodeError extends SyntaxError {
  override readonly name = 'ProtobufDecodeError';
}

/** Whether an answer is protobuf (by its content-type; `;stream=watch` on watches). */
export function isProtobuf(headers: Record<string, string | string[] | undefined>): boolean {
  const ct = headers['content-type'];
  return (Array.isArray(ct) ? ct[0] : ct)?.startsWith(PROTOBUF_MEDIA_TYPE) === true;
}

function decodeError(what: string, err: unknown): ProtobufDecodeError {
  return err instanceof ProtobufDecodeError ? err : new ProtobufDecodeError(`${what}: not a valid protobuf message (${(err as Error).message})`);
}

const opt = (s: string | undefined): string | undefined => (s === undefined || s === '' ? undefined : s);

/** The object inside the envelope, with the kind the envelope names. */
export function unwrap(bytes: Uint8Array, what: string): { kind: string; raw: Uint8Array } {
  if (bytes.length < MAGIC.length || !MAGIC.equals(bytes.subarray(0, MAGIC.length))) throw new ProtobufDecodeError(`${what}: no k8s protobuf prefix (${bytes.length} bytes)`);
  let unknown: { typeMeta?: { kind: string }; raw: Uint8Array; contentEncoding: string; contentType: string };
  try {
    unknown = UNKNOWN.decode(bytes.subarray(MAGIC.length)) as unknown as typeof unknown;
  } catch (err) {
    throw decodeError(what, err);
  }
  if (unknown.contentEncoding !== '') throw new ProtobufDecodeError(`${what}: content encoding "${unknown.contentEncoding}" is not supported`);
  if (unknown.contentType !== '' && unknown.contentType !== PROTOBUF_MEDIA_TYPE) throw new ProtobufDecodeError(`${what}: the envelope holds ${unknown.contentType}, not protobuf`);
  return { kind: unknown.typeMeta?.kind ?? '', raw: unknown.raw };
}

/** One list page: its metadata and its items converted to slim objects. */
export function decodeList(bytes: Uint8Array, codec: ProtoCodec, what: string): ListPage<Stripped> {
  const { kind, raw } = unwrap(bytes, what);
  if (kind !== codec.listKind) throw new ProtobufDecodeError(`${what}: the envelope holds a ${kind || 'nameless kind'}, not a ${codec.listKind}`);
  let list: { metadata?: { resourceVersion: string; continue: string; remainingItemCount?: unknown }; items: unknown[] };
  try {
    list = codec.list.decode(raw) as unknown as typeof list;
  } catch (err) {
    throw decodeError(what, err);
  }
  const md = list.metadata;
  let items: Stripped[];
  try {
    items = list.items.map((m) => codec.fromProto(m));
  } catch (err) {
    throw decodeError(what, err);
  }
  return {
    items,
    resourceVersion: opt(md?.resourceVersion),
    continue: opt(md?.continue),
    // A pointer in Go: absent from the wire when the server does not know it.
    remainingItemCount: md != null && Object.hasOwn(md, 'remainingItemCount') ? int64(md.remainingItemCount) : undefined,
  };
}

/**
 * A list's metadata from the first bytes of its body (the read-ahead's `continue`): undefined while more bytes are
 * needed; a head without a token when the body does not start as a list does (the full decode then says why).
 */
export function listHead(prefix: Uint8Array): ListHead | undefined {
  const none: ListHead = { continue: undefined, remainingItemCount: undefined };
  if (prefix.length < MAGIC.length) return undefined;
  if (!MAGIC.equals(prefix.subarray(0, MAGIC.length))) return none;
  try {
    const r = protobuf.Reader.create(prefix.subarray(MAGIC.length));
    while (r.pos < r.len) {
      const tag = r.uint32();
      if (tag >>> 3 !== 2 || (tag & 7) !== 2) {
        r.skipType(tag & 7);
        continue;
      }
      r.uint32(); // raw's length: the list may run past these bytes
      if (r.uint32() !== ((1 << 3) | 2)) return none; // raw's first field is the list's ListMeta
      const end = r.uint32() + r.pos;
      if (end > r.len) return undefined;
      const md = LIST_META.decode(r.buf.subarray(r.pos, end)) as unknown as { continue: string; remainingItemCount?: unknown };
      return { continue: opt(md.continue), remainingItemCount: Object.hasOwn(md, 'remainingItemCount') ? int64(md.remainingItemCount) : undefined };
    }
    return undefined;
  } catch (err) {
    // Only running out of bytes is expected here.
    if (err instanceof RangeError) return undefined;
    return none;
  }
}

export interface StatusFields {
  code: number;
  reason: string;
  message: string;
}

/** A Status object (an error answer's body, or an ERROR watch event's object). */
export function decodeStatus(bytes: Uint8Array, what: string): StatusFields {
  const { kind, raw } = unwrap(bytes, what);
  if (kind !== 'Status') throw new ProtobufDecodeError(`${what}: expected a Status, got ${kind || 'a nameless kind'}`);
  try {
    const s = STATUS.decode(raw) as unknown as StatusFields;
    return { code: s.code, reason: s.reason, message: s.message };
  } catch (err) {
    throw decodeError(what, err);
  }
}

export interface DecodedWatchEvent {
  type: string;
  /** ADDED/MODIFIED/DELETED: the object, slim. */
  object: Stripped | undefined;
  resourceVersion: string | undefined;
  /** ERROR: the Status it carries. */
  status: StatusFields | undefined;
}

export function decodeWatchEvent(frame: Uint8Array, codec: ProtoCodec, what: string): DecodedWatchEvent {
  let event: { type: string; object?: { raw: Uint8Array } };
  try {
    event = WATCH_EVENT.decode(frame) as unknown as typeof event;
  } catch (err) {
    throw decodeError(what, err);
  }
  const raw = event.object?.raw ?? new Uint8Array();
  if (event.type === 'ERROR') return { type: event.type, object: undefined, resourceVersion: undefined, status: decodeStatus(raw, `${what} (ERROR event)`) };
  const { kind, raw: inner } = unwrap(raw, `${what} (${event.type} event)`);
  let message: { metadata?: { resourceVersion: string } };
  try {
    message = codec.item.decode(inner) as unknown as typeof message;
  } catch (err) {
    throw decodeError(`${what} (${event.type} event, ${kind})`, err);
  }
  // A bookmark is the resource's kind with only its resourceVersion set: nothing else is read from it.
  if (event.type === 'BOOKMARK') return { type: event.type, object: undefined, resourceVersion: opt(message.metadata?.resourceVersion), status: undefined };
  let object: Stripped;
  try {
    object = codec.fromProto(message);
  } catch (err) {
    throw decodeError(`${what} (${event.type} event, ${kind})`, err);
  }
  return { type: event.type, object, resourceVersion: opt(object.resourceVersion), status: undefined };
}

/** Splits a watch body into its length-prefixed frames; what is left of a frame cut short stays pending. */
export class WatchFrameReader {
  #buffered: Buffer = Buffer.alloc(0);

  /** Adds a chunk and returns every frame now whole. */
  push(chunk: Buffer, what: string): Buffer[] {
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    const frames: Buffer[] = [];
    let at = 0;
    while (this.#buffered.length - at >= 4) {
      const length = this.#buffered.readUInt32BE(at);
      if (length > MAX_FRAME_BYTES) throw new ProtobufDecodeError(`${what}: a watch frame of ${length} bytes (over ${MAX_FRAME_BYTES}): the stream is corrupt`);
      if (this.#buffered.length - at - 4 < length) break;
      frames.push(this.#buffered.subarray(at + 4, at + 4 + length));
      at += 4 + length;
    }
    this.#buffered = this.#buffered.subarray(at);
    return frames;
  }

  /** Bytes of a frame not yet whole (a stream that ends with some was cut). */
  get pending(): number {
    return this.#buffered.length;
  }
}
