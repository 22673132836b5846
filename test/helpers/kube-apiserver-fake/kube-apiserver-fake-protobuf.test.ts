// The fake API server's protobuf contract, read with a bare wire-format reader (not weft's decoder): negotiation, the
// envelope, paged lists at one resourceVersion, Status errors, watch frames with BOOKMARK and ERROR 410, corrupt bytes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import protobuf from 'protobufjs';
import { request } from 'undici';
import { KubeApiServerFake } from './kube-apiserver-fake.js';
import { encodeObject } from './fake-protobuf.js';

const TOKEN = 'token-p';
const PROTO = 'application/vnd.kubernetes.protobuf';
let fake: KubeApiServerFake;

/** Every field of one message: number -> values (varints as numbers, length-delimited as bytes). */
function fields(bytes: Uint8Array): Map<number, (number | Uint8Array)[]> {
  const r = protobuf.Reader.create(bytes);
  const out = new Map<number, (number | Uint8Array)[]>();
  while (r.pos < r.len) {
    const tag = r.uint32();
    const value = (tag & 7) === 0 ? r.uint32() : (tag & 7) === 2 ? r.bytes() : (r.skipType(tag & 7), -1);
    out.set(tag >>> 3, [...(out.get(tag >>> 3) ?? []), value]);
  }
  return out;
}
const bytesOf = (m: Map<number, (number | Uint8Array)[]>, n: number, i = 0): Uint8Array => m.get(n)?.[i] as Uint8Array;
const str = (m: Map<number, (number | Uint8Array)[]>, n: number): string | undefined => (m.has(n) ? Buffer.from(bytesOf(m, n)).toString() : undefined);

/** The envelope: magic, then Unknown {1 typeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType}. */
function unwrap(body: Uint8Array): { apiVersion?: string; kind?: string; raw: Uint8Array; rest: Map<number, (number | Uint8Array)[]> } {
  expect(Buffer.from(body.subarray(0, 4))).toEqual(Buffer.from('k8s\0', 'latin1'));
  const unknown = fields(body.subarray(4));
  const typeMeta = fields(bytesOf(unknown, 1));
  return { apiVersion: str(typeMeta, 1), kind: str(typeMeta, 2), raw: bytesOf(unknown, 2), rest: unknown };
}

async function get(path: string, accept: string | undefined, token: string | null = TOKEN): Promise<{ status: number; type: string; body: Buffer }> {
  const headers: Record<string, string> = { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...(accept === undefined ? {} : { accept }) };
  const res = await request(fake.url + path, { headers });
  return { status: res.statusCode, type: String(res.headers['content-type']), body: Buffer.from(await res.body.arrayBuffer()) };
}

/** Reads a protobuf watch until `enough` frames arrived (or the server ends it); each frame's WatchEvent type and object envelope. */
async function watchFrames(path: string, enough: number): Promise<{ type: string; frames: { event: string; kind?: string; object: Uint8Array }[] }> {
  const ac = new AbortController();
  const res = await request(fake.url + path, { headers: { authorization: `Bearer ${TOKEN}`, accept: `${PROTO}, application/json` }, signal: ac.signal });
  let buf = Buffer.alloc(0);
  const frames: { event: string; kind?: string; object: Uint8Array }[] = [];
  try {
    for await (const chunk of res.body) {
      buf = Buffer.concat([buf, chunk as Buffer]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const event = fields(buf.subarray(4, 4 + buf.readUInt32BE(0)));
        buf = buf.subarray(4 + buf.readUInt32BE(0));
        // A corrupt object stays bytes: the test looks at it undecoded.
        let raw: Uint8Array;
        try {
          raw = bytesOf(fields(bytesOf(event, 2)), 1);
        } catch {
          raw = bytesOf(event, 2);
        }
        const env = raw[0] === 0x6b ? unwrap(raw) : { kind: undefined, raw };
        frames.push({ event: str(event, 1) ?? '', kind: env.kind, object: env.raw });
      }
      if (frames.length >= enough) ac.abort();
    }
  } catch {
    // aborted here, or ended by the server
  }
  return { type: String(res.headers['content-type']), frames };
}

const pod = (name: string) => ({ metadata: { name, namespace: 'shop', labels: { app: 'web' } }, spec: { nodeName: 'node-1', containers: [{ name: 'app', ports: [{ name: 'http', containerPort: 8080 }] }] }, status: { phase: 'Running', podIP: '10.0.0.1' } });

beforeAll(async () => {
  fake = await new KubeApiServerFake({ tokens: [TOKEN], bookmarkIntervalMs: 100 }).start();
  for (const n of ['a', 'b', 'c']) fake.store.create('pods', pod(n));
});

afterAll(async () => {
  await fake.close();
});

describe('fake API server, protobuf', () => {
  it('answers protobuf only to a client that takes it, and JSON for CRDs (406 when JSON is refused)', async () => {
    expect((await get('/api/v1/pods', undefined)).type).toBe('application/json');
    expect((await get('/api/v1/pods', 'application/json')).type).toBe('application/json');
    const list = await get('/api/v1/pods', `${PROTO}, application/json`);
    expect(list.type).toBe(PROTO);
    const env = unwrap(list.body);
    expect(env).toMatchObject({ apiVersion: 'v1', kind: 'PodList' });
    // contentEncoding and contentType are written empty, as Go writes them.
    expect(env.rest.get(3)?.[0]).toHaveLength(0);
    expect(env.rest.get(4)?.[0]).toHaveLength(0);
    fake.installCrd('wasmplugins');
    expect((await get('/apis/extensions.istio.io/v1alpha1/wasmplugins', `${PROTO}, application/json`)).type).toBe('application/json');
    expect((await get('/apis/extensions.istio.io/v1alpha1/wasmplugins', PROTO)).status).toBe(406);
  });

  it('pages a PodList {1 ListMeta, 2 items} at one resourceVersion with continue and remainingItemCount', async () => {
    const first = fields(unwrap((await get('/api/v1/pods?limit=2', PROTO)).body).raw);
    const meta = fields(bytesOf(first, 1));
    expect(first.get(2)).toHaveLength(2);
    expect(meta.get(4)).toEqual([1]);
    const names = (list: Map<number, (number | Uint8Array)[]>): (string | undefined)[] => (list.get(2) ?? []).map((item) => str(fields(bytesOf(fields(item as Uint8Array), 1)), 1));
    expect(names(first)).toEqual(['a', 'b']);
    fake.store.create('pods', pod('d'));
    const second = fields(unwrap((await get(`/api/v1/pods?limit=2&continue=${str(meta, 3) ?? ''}`, PROTO)).body).raw);
    expect(names(second)).toEqual(['c']);
    expect(str(fields(bytesOf(second, 1)), 2)).toBe(str(meta, 2));
    expect(fields(bytesOf(second, 1)).has(3)).toBe(false);
    fake.store.delete('pods', 'shop', 'd');
  });

  it('encodes errors as a protobuf Status {2 status, 3 message, 4 reason, 6 code}', async () => {
    const denied = await get('/api/v1/pods', PROTO, null);
    expect([denied.status, denied.type]).toEqual([401, PROTO]);
    const status = unwrap(denied.body);
    expect(status.kind).toBe('Status');
    const s = fields(status.raw);
    expect([str(s, 2), str(s, 4), s.get(6)?.[0]]).toEqual(['Failure', 'Unauthorized', 401]);
    const expired = await get('/api/v1/pods?limit=1&continue=eyJpZCI6Im5vbmUiLCJvZmZzZXQiOjF9', PROTO);
    expect(expired.status).toBe(410);
    expect(str(fields(unwrap(expired.body).raw), 4)).toBe('Expired');
  });

  it('streams a watch as length-prefixed WatchEvents (object enveloped), BOOKMARKs with only a resourceVersion, ERROR 410', async () => {
    const w = await watchFrames('/api/v1/pods?watch=1&resourceVersion=0&allowWatchBookmarks=true&timeoutSeconds=1', 4);
    expect(w.type).toBe(`${PROTO};stream=watch`);
    expect(w.frames.slice(0, 3).map((f) => [f.event, f.kind])).toEqual([['ADDED', 'Pod'], ['ADDED', 'Pod'], ['ADDED', 'Pod']]);
    const bookmark = w.frames[3];
    expect(bookmark?.event).toBe('BOOKMARK');
    const bookmarkMeta = fields(bytesOf(fields(bookmark?.object ?? new Uint8Array()), 1));
    expect([...bookmarkMeta.keys()]).toEqual([6]);
    expect(str(bookmarkMeta, 6)).toBe(String(fake.store.resourceVersion));
    fake.store.compact(fake.store.resourceVersion);
    const gone = await watchFrames('/api/v1/pods?watch=1&resourceVersion=2', 1);
    expect(gone.frames.map((f) => [f.event, f.kind])).toEqual([['ERROR', 'Status']]);
    expect(fields(gone.frames[0]?.object ?? new Uint8Array()).get(6)).toEqual([410]);
  });

  it('injects a corrupt frame (right length, bytes no decoder reads) and goes on', async () => {
    fake.inject({ fault: { kind: 'corrupt', afterEvents: 1 }, verb: 'watch', resource: 'pods' });
    const w = await watchFrames('/api/v1/pods?watch=1&resourceVersion=0&timeoutSeconds=1', 4);
    expect(w.frames.map((f) => f.event)).toEqual(['ADDED', 'ADDED', 'ADDED', 'ADDED']);
    expect(w.frames[1]?.kind).toBeUndefined();
    expect(() => fields(w.frames[1]?.object ?? new Uint8Array())).toThrow();
  });

  it('refuses to encode a field its schema lacks instead of dropping it', () => {
    expect(() => encodeObject('Pod', { metadata: { name: 'x' }, spec: { notAField: 1 } })).toThrow(/no field Pod\.spec\.notAField/);
  });
});
