/** Chooses the node's CaClient from weft.yaml `identity:`: an Istio CA when `caAddress` is set, else the built-in CA with its root from files, a state directory, or memory. */
import { readFileSync } from 'node:fs';
// node:crypto is loaded on first use, not at start-up: an idle node holds none of it (test/bench/README.md, idle memory).
import type { WeftConfig } from '../config/config-schema.js';
import { WeftError } from '../errors.js';
import { readCaRoot } from './ca-root.js';
import type * as CaModule from './certificate-authority.js';
import type { CertificateAuthority } from './certificate-authority.js';
import type { IstioCaClientOptions } from './istio-ca-client.js';
import type { CaClient } from './workload-certificate.js';

/**
 * A CaClient made on first use. A node whose workloads never speak HBONE never needs a certificate, so it never pays
 * for the CA's ASN.1 encoder, its root key or (for an Istio CA) @grpc/grpc-js: several MB of an idle node's RSS.
 * A failed creation is not cached: the next certificate fetch (the manager retries with backoff) tries again.
 */
function lazyCaClient(create: () => Promise<CaClient>): CaClient {
  let client: Promise<CaClient> | undefined;
  const get = async (): Promise<CaClient> => {
    client ??= create();
    try {
      return await client;
    } catch (err) {
      client = undefined;
      throw err;
    }
  };
  return {
    fetchCertificate: async (identity, ttlSeconds) => (await get()).fetchCertificate(identity, ttlSeconds),
    close: () => void client?.then((c) => c.close?.(), () => undefined),
  };
}

function builtinCa(create: (m: typeof CaModule) => CertificateAuthority): CaClient {
  return lazyCaClient(async () => {
    const m = await import('./certificate-authority.js');
    return m.createBuiltinCaClient(create(m));
  });
}

/** PEMs of the in-memory root every worker thread of this process signs with (runtime/workers), so their certificates chain to one root. */
export interface SharedCaRoot {
  certPem: string;
  keyPem: string;
}
/** Asked on a worker's first certificate (the primary generates the root once), so a node without HBONE never makes one. */
export type SharedCaRootSource = () => Promise<SharedCaRoot>;
let sharedRoot: SharedCaRootSource | undefined;

/** Worker threads call this before building their node: the embedded default CA then uses that root instead of generating its own. */
export function useSharedCaRoot(source: SharedCaRootSource | undefined): void {
  sharedRoot = source;
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new WeftError('WEFT_ERR_IDENTITY', `cannot read ${what} from ${file}`, { cause: err });
  }
}

/**
 * The node's CA client. Configuration mistakes an operator can fix (root files given alone, unreadable or not a CA
 * pair) throw here, at start; the root itself is loaded or generated when the first certificate is needed.
 */
export function caClientFromConfig(config: WeftConfig): { caClient: CaClient } {
  const id = config.identity;
  if (id.caAddress !== undefined) {
    const tokenFile = id.caTokenFile;
    const options: IstioCaClientOptions = {
      address: id.caAddress,
      ...(id.caRootCertFile === undefined ? {} : { caRootPem: readText(id.caRootCertFile, 'the CA serving root') }),
      // Projected tokens rotate, so the file is read per request.
      ...(tokenFile === undefined ? {} : { token: () => readText(tokenFile, 'the CA token').trim() }),
      ...(id.clusterId === undefined ? {} : { clusterId: id.clusterId }),
    };
    return { caClient: lazyCaClient(async () => (await import('./istio-ca-client.js')).createIstioCaClient(options)) };
  }
  const trustDomain = config.trustDomain;
  if (id.rootCertFile !== undefined || id.rootKeyFile !== undefined) {
    if (id.rootCertFile === undefined || id.rootKeyFile === undefined) {
      throw new WeftError('WEFT_ERR_IDENTITY', 'identity.rootCertFile and identity.rootKeyFile must be given together');
    }
    const root = readCaRoot(id.rootCertFile, id.rootKeyFile);
    return { caClient: builtinCa((m) => new m.CertificateAuthority(trustDomain, root.cert, root.key)) };
  }
  const caDir = id.caDir;
  const shared = caDir === undefined ? sharedRoot : undefined;
  if (shared !== undefined) {
    return {
      caClient: lazyCaClient(async () => {
        const [m, root] = await Promise.all([import('./certificate-authority.js'), shared()]);
        const crypto = process.getBuiltinModule('node:crypto');
        return m.createBuiltinCaClient(new m.CertificateAuthority(trustDomain, new crypto.X509Certificate(root.certPem), crypto.createPrivateKey(root.keyPem)));
      }),
    };
  }
  return { caClient: builtinCa((m) => m.CertificateAuthority.load({ trustDomain, ...(caDir === undefined ? {} : { caDir }) })) };
}
