/** Chooses the node's CaClient from weft.yaml `identity:`: an Istio CA when `caAddress` is set, else the built-in CA with its root from files, a state directory, or memory. */
import { readFileSync } from 'node:fs';
import type { WeftConfig } from '../config/config-schema.js';
import { WeftError } from '../errors.js';
import { CertificateAuthority, createBuiltinCaClient } from './certificate-authority.js';
import type { IstioCaClientOptions } from './istio-ca-client.js';
import type { CaClient } from './workload-certificate.js';

/** The Istio CA client loads @grpc/grpc-js on first use: a node on the built-in CA never pays for it. */
function lazyIstioCaClient(options: IstioCaClientOptions): CaClient {
  let client: Promise<CaClient> | undefined;
  const get = (): Promise<CaClient> => (client ??= import('./istio-ca-client.js').then((m) => m.createIstioCaClient(options)));
  return {
    fetchCertificate: async (identity, ttlSeconds) => (await get()).fetchCertificate(identity, ttlSeconds),
    close: () => void client?.then((c) => c.close?.()),
  };
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new WeftError('WEFT_ERR_IDENTITY', `cannot read ${what} from ${file}`, { cause: err });
  }
}

export function caClientFromConfig(config: WeftConfig): { caClient: CaClient; ca: CertificateAuthority | undefined } {
  const id = config.identity;
  if (id.caAddress !== undefined) {
    const tokenFile = id.caTokenFile;
    return {
      ca: undefined,
      caClient: lazyIstioCaClient({
        address: id.caAddress,
        ...(id.caRootCertFile === undefined ? {} : { caRootPem: readText(id.caRootCertFile, 'the CA serving root') }),
        // Projected tokens rotate, so the file is read per request.
        ...(tokenFile === undefined ? {} : { token: () => readText(tokenFile, 'the CA token').trim() }),
        ...(id.clusterId === undefined ? {} : { clusterId: id.clusterId }),
      }),
    };
  }
  const ca = CertificateAuthority.load({
    trustDomain: config.trustDomain,
    ...(id.caDir === undefined ? {} : { caDir: id.caDir }),
    ...(id.rootCertFile === undefined ? {} : { rootCertFile: id.rootCertFile }),
    ...(id.rootKeyFile === undefined ? {} : { rootKeyFile: id.rootKeyFile }),
  });
  return { ca, caClient: createBuiltinCaClient(ca) };
}
