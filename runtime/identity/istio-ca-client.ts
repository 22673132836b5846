/** A CaClient for Istio's `istio.v1.auth.IstioCertificateService/CreateCertificate` over @grpc/grpc-js, with the shared-mode ImpersonatedIdentity metadata; also a server helper so the built-in CA can serve the same RPC. */
import * as grpc from '@grpc/grpc-js';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { WeftError } from '../errors.js';
import { identityOfCertificate } from './spiffe-id.js';
import { createCsrPem } from './x509-encode.js';
import type { CertificateAuthority } from './certificate-authority.js';
import type { CaClient, WorkloadCertificate } from './workload-certificate.js';

export const CREATE_CERTIFICATE_PATH = '/istio.v1.auth.IstioCertificateService/CreateCertificate';

export interface IstioCertificateRequest {
  csr: string;
  validityDuration: number;
  /** google.protobuf.Struct with string values only (ImpersonatedIdentity, ClusterID, ...). */
  metadata: Record<string, string>;
}

// Hand-rolled protobuf for two tiny messages keeps protobufjs and a .proto file out of the runtime.
// Field numbers from istio/api security/v1alpha1/ca.proto: csr=1, validity_duration=3, metadata=4; cert_chain=1.
function varint(n: number): Buffer {
  const out: number[] = [];
  let v = BigInt(n);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Buffer.from(out);
}

function lengthDelimited(field: number, payload: Buffer): Buffer {
  return Buffer.concat([varint((field << 3) | 2), varint(payload.length), payload]);
}

function stringField(field: number, value: string): Buffer {
  return lengthDelimited(field, Buffer.from(value, 'utf8'));
}

export function encodeRequest(req: IstioCertificateRequest): Buffer {
  const parts = [stringField(1, req.csr)];
  if (req.validityDuration > 0) parts.push(varint((3 << 3) | 0), varint(req.validityDuration));
  const entries = Object.entries(req.metadata).map(([k, v]) => lengthDelimited(1, Buffer.concat([stringField(1, k), lengthDelimited(2, stringField(3, v))])));
  if (entries.length > 0) parts.push(lengthDelimited(4, Buffer.concat(entries)));
  return Buffer.concat(parts);
}

interface Field {
  field: number;
  wire: number;
  value: Buffer | number;
}

function readVarint(buf: Buffer, at: number): [number, number] {
  let result = 0n;
  let shift = 0n;
  for (let i = at; i < buf.length && shift < 70n; i++) {
    const byte = buf[i] ?? 0;
    result |= BigInt(byte & 0x7f) << shift;
    shift += 7n;
    if ((byte & 0x80) === 0) return [Number(result), i + 1];
  }
  throw new Error('truncated varint');
}

function* fields(buf: Buffer): Generator<Field> {
  let at = 0;
  while (at < buf.length) {
    const [tag, next] = readVarint(buf, at);
    at = next;
    const wire = tag & 7;
    const field = tag >>> 3;
    if (wire === 0) {
      const [v, n] = readVarint(buf, at);
      at = n;
      yield { field, wire, value: v };
    } else if (wire === 2) {
      const [len, n] = readVarint(buf, at);
      if (n + len > buf.length) throw new Error('truncated field');
      yield { field, wire, value: buf.subarray(n, n + len) };
      at = n + len;
    } else if (wire === 1) {
      at += 8;
    } else if (wire === 5) {
      at += 4;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
}

export function decodeRequest(buf: Buffer): IstioCertificateRequest {
  const req: IstioCertificateRequest = { csr: '', validityDuration: 0, metadata: {} };
  for (const f of fields(buf)) {
    if (f.field === 1 && Buffer.isBuffer(f.value)) req.csr = f.value.toString('utf8');
    else if (f.field === 3 && typeof f.value === 'number') req.validityDuration = f.value;
    else if (f.field === 4 && Buffer.isBuffer(f.value)) {
      for (const entry of fields(f.value)) {
        if (entry.field !== 1 || !Buffer.isBuffer(entry.value)) continue;
        let key = '';
        let value = '';
        for (const kv of fields(entry.value)) {
          if (kv.field === 1 && Buffer.isBuffer(kv.value)) key = kv.value.toString('utf8');
          if (kv.field === 2 && Buffer.isBuffer(kv.value)) for (const v of fields(kv.value)) if (v.field === 3 && Buffer.isBuffer(v.value)) value = v.value.toString('utf8');
        }
        req.metadata[key] = value;
      }
    }
  }
  return req;
}

export function encodeResponse(certChain: string[]): Buffer {
  return Buffer.concat(certChain.map((c) => stringField(1, c)));
}

export function decodeResponse(buf: Buffer): string[] {
  const chain: string[] = [];
  for (const f of fields(buf)) if (f.field === 1 && Buffer.isBuffer(f.value)) chain.push(f.value.toString('utf8'));
  return chain;
}

export interface IstioCaClientOptions {
  /** `host:port` of the CA (istiod: 15012). */
  address: string;
  /** PEM root that signs the CA's serving certificate; omit only for a plaintext CA in tests. */
  caRootPem?: string;
  /** Bearer token source (a projected SA token with audience istio-ca). */
  token?: () => string | undefined;
  clusterId?: string;
  /** Per-call deadline. */
  timeoutMs?: number;
}

export function createIstioCaClient(options: IstioCaClientOptions): CaClient {
  const credentials = options.caRootPem === undefined ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(Buffer.from(options.caRootPem));
  const client = new grpc.Client(options.address, credentials);
  const call = (req: IstioCertificateRequest): Promise<string[]> =>
    new Promise((resolve, reject) => {
      const metadata = new grpc.Metadata();
      const token = options.token?.();
      if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
      if (options.clusterId !== undefined) metadata.set('clusterid', options.clusterId);
      client.makeUnaryRequest(
        CREATE_CERTIFICATE_PATH,
        (r: IstioCertificateRequest) => encodeRequest(r),
        decodeResponse,
        req,
        metadata,
        { deadline: Date.now() + (options.timeoutMs ?? 10_000) },
        (err, chain) => (err === null && chain !== undefined ? resolve(chain) : reject(err ?? new Error('empty response'))),
      );
    });

  return {
    async fetchCertificate(identity: string, ttlSeconds: number): Promise<WorkloadCertificate> {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      let chain: string[];
      try {
        chain = await call({ csr: createCsrPem(privateKey, identity), validityDuration: ttlSeconds, metadata: { ImpersonatedIdentity: identity } });
      } catch (err) {
        throw new WeftError('WEFT_ERR_IDENTITY', `CreateCertificate for ${identity} at ${options.address} failed`, { cause: err });
      }
      if (chain.length === 0) throw new WeftError('WEFT_ERR_IDENTITY', `CA at ${options.address} returned an empty chain for ${identity}`);
      const leaf = new X509Certificate(chain[0] ?? '');
      // ztunnel checks the returned leaf carries exactly the impersonated identity.
      if (identityOfCertificate(leaf) !== identity) {
        throw new WeftError('WEFT_ERR_IDENTITY', `CA at ${options.address} returned a certificate for ${identityOfCertificate(leaf) ?? 'no SPIFFE ID'}, expected ${identity}`);
      }
      if (!leaf.checkPrivateKey(privateKey)) throw new WeftError('WEFT_ERR_IDENTITY', `CA at ${options.address} returned a certificate for a different key`);
      const root = chain.length > 1 ? chain[chain.length - 1] : undefined;
      return {
        identity,
        privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
        certChainPem: chain.length > 1 ? chain.slice(0, -1) : chain,
        rootsPem: root === undefined ? [] : [root],
        leaf,
        notBefore: new Date(leaf.validFrom),
        notAfter: new Date(leaf.validTo),
      };
    },
    close: () => client.close(),
  };
}

/**
 * Serves CreateCertificate from a CertificateAuthority (what istiod does), with node authorization delegated to
 * `authorize(identity, metadata)`; used to run a mesh CA from one weft node and by the client's tests.
 */
export function addIstioCertificateService(
  server: grpc.Server,
  ca: CertificateAuthority,
  authorize: (identity: string, metadata: grpc.Metadata) => boolean,
): void {
  const handler: grpc.handleUnaryCall<IstioCertificateRequest, string[]> = (callObj, callback) => {
    const identity = callObj.request.metadata.ImpersonatedIdentity;
    if (identity === undefined || identity === '') {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: 'ImpersonatedIdentity metadata is required' });
      return;
    }
    if (!authorize(identity, callObj.metadata)) {
      callback({ code: grpc.status.PERMISSION_DENIED, details: `caller may not obtain ${identity}` });
      return;
    }
    try {
      callback(null, ca.signCsr(callObj.request.csr, identity, callObj.request.validityDuration || 86_400));
    } catch (err) {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: (err as Error).message });
    }
  };
  server.addService(
    {
      CreateCertificate: {
        path: CREATE_CERTIFICATE_PATH,
        requestStream: false,
        responseStream: false,
        requestSerialize: encodeRequest,
        requestDeserialize: decodeRequest,
        responseSerialize: encodeResponse,
        responseDeserialize: decodeResponse,
      },
    },
    { CreateCertificate: handler },
  );
}
