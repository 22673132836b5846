/**
 * Pulls a plugin from an OCI registry over the distribution API, in the image layouts Istio's WasmPlugin accepts:
 * the Wasm OCI artifact (layer `application/vnd.module.wasm.content.layer.v1+wasm`), the CNCF wasm artifact
 * (`application/wasm` layer), and a container image whose layer tarball holds `plugin.wasm`. Anonymous bearer tokens
 * (WWW-Authenticate) are followed; image pull secrets are not supported.
 */
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import type * as Undici from 'undici';
import { lazyUndici } from '../lazy-packages.js';
import { type Dispatcher, type FetchOptions, type Fetched, fetchBytes, fetchError } from './plugin-fetcher.js';

export const WASM_LAYER_MEDIA_TYPES = ['application/vnd.module.wasm.content.layer.v1+wasm', 'application/wasm'];
const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

export interface OciReference {
  registry: string;
  repository: string;
  /** A tag or a `sha256:...` digest. */
  reference: string;
}

export function parseOciUrl(url: string): OciReference {
  const rest = url.replace(/^oci:\/\//, '');
  const slash = rest.indexOf('/');
  if (slash <= 0) throw fetchError(url, 'expected oci://REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST]');
  const registry = rest.slice(0, slash);
  let path = rest.slice(slash + 1);
  let reference = 'latest';
  const at = path.indexOf('@');
  if (at >= 0) {
    reference = path.slice(at + 1);
    path = path.slice(0, at);
  } else {
    const colon = path.lastIndexOf(':');
    if (colon > path.lastIndexOf('/')) {
      reference = path.slice(colon + 1);
      path = path.slice(0, colon);
    }
  }
  if (path === '') throw fetchError(url, 'missing repository name');
  return { registry, repository: path, reference };
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  platform?: { os?: string; architecture?: string };
}
interface Manifest {
  mediaType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
}

function isLoopback(host: string): boolean {
  const h = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || h.startsWith('127.');
}

class RegistryClient {
  readonly #base: string;
  readonly #dispatcher: Dispatcher;
  readonly #signal: AbortSignal;
  readonly #url: string;
  #token: string | undefined;

  constructor(url: string, ref: OciReference, options: FetchOptions, dispatcher: Dispatcher, signal: AbortSignal) {
    const plain = isLoopback(ref.registry) || (options.insecureRegistries ?? []).includes(ref.registry);
    this.#base = `${plain ? 'http' : 'https'}://${ref.registry}/v2/${ref.repository}`;
    this.#dispatcher = dispatcher;
    this.#signal = signal;
    this.#url = url;
  }

  async get(path: string, accept: string): Promise<{ body: Uint8Array; digest: string | null; contentType: string | null }> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const headers: Record<string, string> = { accept };
      if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
      let res: Awaited<ReturnType<typeof Undici.fetch>>;
      try {
        res = await lazyUndici().fetch(`${this.#base}${path}`, { dispatcher: this.#dispatcher.agent, signal: this.#signal, headers });
      } catch (err) {
        const cause = (err as { cause?: unknown }).cause;
        throw fetchError(this.#url, `registry unreachable: ${cause instanceof Error ? cause.message : (err as Error).message}`, err);
      }
      if (res.status === 401 && attempt === 0) {
        await res.body?.cancel();
        await this.#authenticate(res.headers.get('www-authenticate'));
        continue;
      }
      if (!res.ok) {
        await res.body?.cancel();
        throw fetchError(this.#url, `registry answered ${res.status} for ${path}`);
      }
      return { body: new Uint8Array(await res.arrayBuffer()), digest: res.headers.get('docker-content-digest'), contentType: res.headers.get('content-type') };
    }
    throw fetchError(this.#url, 'registry refused the anonymous token (private images need credentials, which weft does not support yet)');
  }

  async #authenticate(header: string | null): Promise<void> {
    const m = header === null ? null : /^Bearer\s+(.*)$/i.exec(header);
    if (m === null) throw fetchError(this.#url, `registry requires authentication (${header ?? 'no challenge'})`);
    const params = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((p) => [p[1]!, p[2]!]));
    if (params.realm === undefined) throw fetchError(this.#url, 'registry auth challenge has no realm');
    const tokenUrl = new URL(params.realm);
    if (params.service !== undefined) tokenUrl.searchParams.set('service', params.service);
    if (params.scope !== undefined) tokenUrl.searchParams.set('scope', params.scope);
    const body = await fetchBytes(tokenUrl.toString(), this.#dispatcher, this.#signal, 1 << 20, {});
    const parsed = JSON.parse(Buffer.from(body).toString('utf8')) as { token?: string; access_token?: string };
    this.#token = parsed.token ?? parsed.access_token;
    if (this.#token === undefined) throw fetchError(this.#url, 'token endpoint returned no token');
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export async function fetchOciModule(url: string, options: FetchOptions, dispatcher: Dispatcher, signal: AbortSignal, maxBytes: number): Promise<Fetched> {
  const ref = parseOciUrl(url);
  const client = new RegistryClient(url, ref, options, dispatcher, signal);
  let got = await client.get(`/manifests/${ref.reference}`, MANIFEST_ACCEPT);
  const topDigest = sha256(got.body);
  if (ref.reference.startsWith('sha256:') && ref.reference !== `sha256:${topDigest}`) throw fetchError(url, `manifest digest is sha256:${topDigest}, not the ${ref.reference} the URL pins`);
  let manifest = JSON.parse(Buffer.from(got.body).toString('utf8')) as Manifest;
  if (manifest.manifests !== undefined) {
    const pick =
      manifest.manifests.find((d) => d.platform?.os === 'wasip1' || d.platform?.architecture === 'wasm') ??
      manifest.manifests.find((d) => d.platform?.os === 'linux' && d.platform.architecture === 'amd64') ??
      manifest.manifests[0];
    if (pick === undefined) throw fetchError(url, 'image index lists no manifests');
    got = await client.get(`/manifests/${pick.digest}`, MANIFEST_ACCEPT);
    manifest = JSON.parse(Buffer.from(got.body).toString('utf8')) as Manifest;
  }
  const layers = manifest.layers ?? [];
  const blob = async (d: Descriptor): Promise<Uint8Array> => {
    if ((d.size ?? 0) > maxBytes * 4) throw fetchError(url, `layer ${d.digest} is ${d.size} bytes, too large for a plugin`);
    const body = (await client.get(`/blobs/${d.digest}`, '*/*')).body;
    if (`sha256:${sha256(body)}` !== d.digest) throw fetchError(url, `layer ${d.digest} does not match its digest`);
    return body;
  };
  const wasmLayer = layers.find((l) => WASM_LAYER_MEDIA_TYPES.includes(l.mediaType ?? ''));
  if (wasmLayer !== undefined) return { bytes: await blob(wasmLayer), digest: topDigest };
  // Container-image layout: the module is `plugin.wasm` inside one of the (possibly gzipped) layer tarballs.
  for (const layer of [...layers].reverse()) {
    const data = await blob(layer);
    const tar = data[0] === 0x1f && data[1] === 0x8b ? gunzipSync(data, { maxOutputLength: maxBytes * 2 }) : data;
    const found = findInTar(tar, 'plugin.wasm');
    if (found !== undefined) {
      if (found.length > maxBytes) throw fetchError(url, `plugin.wasm is ${found.length} bytes, over the ${maxBytes}-byte limit`);
      return { bytes: found, digest: topDigest };
    }
  }
  throw fetchError(url, `image has no Wasm layer (${WASM_LAYER_MEDIA_TYPES.join(' or ')}) and no plugin.wasm in its ${layers.length} layer(s)`);
}

/** The contents of `name` (at the archive root) in a POSIX/GNU tar, or undefined. */
export function findInTar(tar: Uint8Array, name: string): Uint8Array | undefined {
  const buf = Buffer.from(tar.buffer, tar.byteOffset, tar.byteLength);
  for (let off = 0; off + 512 <= buf.length; ) {
    const header = buf.subarray(off, off + 512);
    if (header.every((b) => b === 0)) return undefined;
    const field = (start: number, len: number): string => header.toString('latin1', start, start + len).replace(/\0.*$/s, '');
    const prefix = field(345, 155);
    const entry = (prefix === '' ? '' : `${prefix}/`) + field(0, 100);
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const type = field(156, 1);
    const dataStart = off + 512;
    if ((type === '0' || type === '') && entry.replace(/^\.?\//, '') === name) return tar.slice(dataStart, dataStart + size);
    off = dataStart + Math.ceil(size / 512) * 512;
  }
  return undefined;
}
