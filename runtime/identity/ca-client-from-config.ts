/** Chooses the node's CaClient from weft.yaml `identity:`: an Istio CA when `caAddress` is set, else the built-in CA with its root from files, a state directory, or memory. */
import { readFileSync } from 'node:fs';
import type { WeftConfig } from '../config/config-schema.js';
import { WeftError } from '../errors.js';
import { CertificateAuthority, createBuiltinCaClient } from './certificate-authority.js';
import { createIstioCaClient } from './istio-ca-client.js';
import type { CaClient } from './workload-certificate.js';

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
      caClient: createIstioCaClient({
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
