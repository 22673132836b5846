// A real OCI registry for plugin fetch tests: Debian's docker-registry on a loopback port with a throw-away config and
// storage, plus pushes over the distribution API (Wasm OCI artifacts) and OCI image layouts for skopeo to push.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { freePort } from './free-port.js';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export interface Registry {
  /** `127.0.0.1:PORT`, as it appears in oci:// URLs. */
  host: string;
  stop(): Promise<void>;
}

export async function startRegistry(): Promise<Registry> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-registry-'));
  const port = await freePort();
  const config = join(dir, 'config.yml');
  await writeFile(
    config,
    ['version: 0.1', 'log:', '  level: error', 'storage:', '  filesystem:', `    rootdirectory: ${join(dir, 'data')}`, 'http:', `  addr: 127.0.0.1:${port}`, ''].join('\n'),
  );
  const child: ChildProcess = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const host = `127.0.0.1:${port}`;
  // Readiness: the registry answers /v2/ once it listens (bounded: 100 tries, 50 ms apart).
  for (let i = 0; ; i++) {
    try {
      const res = await fetch(`http://${host}/v2/`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (i >= 100 || child.exitCode !== null) {
      child.kill();
      throw new Error(`docker-registry did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function pushBlob(host: string, repo: string, bytes: Uint8Array): Promise<string> {
  const digest = `sha256:${sha(bytes)}`;
  const start = await fetch(`http://${host}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`blob upload start: ${start.status}`);
  const location = new URL(start.headers.get('location')!, `http://${host}`);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, { method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
  if (put.status !== 201) throw new Error(`blob upload: ${put.status} ${await put.text()}`);
  return digest;
}

/** Pushes `wasm` as a Wasm OCI artifact (the layout Istio documents); returns the manifest digest (hex). */
export async function pushWasmArtifact(host: string, repo: string, tag: string, wasm: Uint8Array, layerMediaType = 'application/vnd.module.wasm.content.layer.v1+wasm'): Promise<string> {
  const config = Buffer.from('{}');
  const configDigest = await pushBlob(host, repo, config);
  const layerDigest = await pushBlob(host, repo, wasm);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.module.wasm.config.v1+json', digest: configDigest, size: config.length },
      layers: [{ mediaType: layerMediaType, digest: layerDigest, size: wasm.length }],
    }),
  );
  const res = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: manifest, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
  if (res.status !== 201) throw new Error(`manifest push: ${res.status} ${await res.text()}`);
  return sha(manifest);
}

/** A one-file POSIX tar. */
function tarOf(name: string, data: Uint8Array): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 'latin1');
  header.write('0000644\0', 100, 'latin1');
  header.write('0000000\0', 108, 'latin1');
  header.write('0000000\0', 116, 'latin1');
  header.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  header.write('00000000000\0', 136, 'latin1');
  header.write('        ', 148, 'latin1');
  header.write('0', 156, 'latin1');
  header.write('ustar\x0000', 257, 'latin1');
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  const padded = Buffer.alloc(Math.ceil(data.length / 512) * 512);
  padded.set(data);
  return Buffer.concat([header, padded, Buffer.alloc(1024)]);
}

/** Writes an OCI image layout whose single gzipped layer holds /plugin.wasm (the container-image form). */
export async function writeImageLayout(wasm: Uint8Array, tag: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-oci-layout-'));
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const blob = async (b: Uint8Array): Promise<string> => {
    const h = sha(b);
    await writeFile(join(dir, 'blobs', 'sha256', h), b);
    return `sha256:${h}`;
  };
  const tar = tarOf('plugin.wasm', wasm);
  const layer = gzipSync(tar);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [`sha256:${sha(tar)}`] } }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await blob(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: await blob(layer), size: layer.length }],
    }),
  );
  const manifestDigest = await blob(manifest);
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': tag } }],
    }),
  );
  return dir;
}

export async function skopeoPush(layoutDir: string, tag: string, dest: string): Promise<void> {
  await promisify(execFile)('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layoutDir}:${tag}`, `docker://${dest}`], { timeout: 60_000 });
}
