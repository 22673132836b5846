/** Where the API server is and how to authenticate to it: in-cluster (service-account token, CA, KUBERNETES_SERVICE_HOST/PORT) or a KUBECONFIG file (token or client-certificate users). */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { WeftError } from '../errors.js';
import { ENV } from '../config/defaults.js';

/** The kubelet mounts the service account's projected token, the cluster CA and the namespace here. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeConnection {
  /** `https://host:port` (IPv6 bracketed), no trailing slash. */
  server: string;
  /** PEM bundle the server's certificate must chain to; undefined means the system roots. */
  ca: string | undefined;
  insecureSkipTlsVerify: boolean;
  /** Bearer token read from this file on every refresh (projected tokens rotate). */
  tokenFile: string | undefined;
  /** A literal bearer token from a kubeconfig. */
  token: string | undefined;
  clientCert: string | undefined;
  clientKey: string | undefined;
  /** What to print: `in-cluster` or `kubeconfig FILE (context NAME)`. */
  origin: string;
}

type Env = Record<string, string | undefined>;

function read(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new WeftError('WEFT_ERR_CONFIG_READ', `cannot read ${what} from ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** In a pod: the API server's service address from the environment, credentials from the mounted service account. */
export function inClusterConnection(env: Env = process.env, dir = SERVICE_ACCOUNT_DIR): KubeConnection {
  const host = env[ENV.kubernetesServiceHost];
  const port = env[ENV.kubernetesServicePort];
  if (host === undefined || host === '' || port === undefined || port === '') {
    throw new WeftError('WEFT_ERR_CONFIG_INVALID', `not in a cluster: ${ENV.kubernetesServiceHost} and ${ENV.kubernetesServicePort} are unset; set ${ENV.kubeconfig} to use a kubeconfig file`);
  }
  const tokenFile = path.join(dir, 'token');
  if (!existsSync(tokenFile)) throw new WeftError('WEFT_ERR_CONFIG_READ', `no service-account token at ${tokenFile} (automountServiceAccountToken: false?)`);
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return { server: `https://${hostPart}:${port}`, ca: read(path.join(dir, 'ca.crt'), 'the cluster CA'), insecureSkipTlsVerify: false, tokenFile, token: undefined, clientCert: undefined, clientKey: undefined, origin: 'in-cluster' };
}

interface KubeconfigFile {
  'current-context'?: string;
  contexts?: { name: string; context: { cluster: string; user: string } }[];
  clusters?: { name: string; cluster: { server: string; 'certificate-authority'?: string; 'certificate-authority-data'?: string; 'insecure-skip-tls-verify'?: boolean } }[];
  users?: { name: string; user: { token?: string; tokenFile?: string; 'client-certificate'?: string; 'client-certificate-data'?: string; 'client-key'?: string; 'client-key-data'?: string; exec?: unknown } }[];
}

/** KUBECONFIG's files merged as kubectl does: the first file to set a name (or current-context) wins. */
export function kubeconfigConnection(files: string[], contextName?: string): KubeConnection {
  const docs = files.filter((f) => f !== '' && existsSync(f)).map((file) => ({ file, doc: (parseYaml(read(file, 'the kubeconfig')) ?? {}) as KubeconfigFile }));
  if (docs.length === 0) throw new WeftError('WEFT_ERR_CONFIG_READ', `no kubeconfig file found in ${files.join(path.delimiter)}`);
  const first = <T extends { name: string }>(pick: (d: KubeconfigFile) => T[] | undefined, name: string): { item: T; file: string } | undefined => {
    for (const { file, doc } of docs) {
      const item = pick(doc)?.find((x) => x.name === name);
      if (item !== undefined) return { item, file };
    }
    return undefined;
  };
  const current = contextName ?? docs.map((d) => d.doc['current-context']).find((c) => c !== undefined && c !== '');
  if (current === undefined) throw new WeftError('WEFT_ERR_CONFIG_INVALID', `kubeconfig ${files.join(path.delimiter)} sets no current-context`);
  const context = first((d) => d.contexts, current)?.item.context;
  if (context === undefined) throw new WeftError('WEFT_ERR_CONFIG_INVALID', `kubeconfig has no context "${current}"`);
  const cluster = first((d) => d.clusters, context.cluster);
  const user = first((d) => d.users, context.user);
  if (cluster === undefined) throw new WeftError('WEFT_ERR_CONFIG_INVALID', `kubeconfig context "${current}" names cluster "${context.cluster}", which is not defined`);
  if (user?.item.user.exec !== undefined) throw new WeftError('WEFT_ERR_CONFIG_INVALID', `kubeconfig user "${context.user}" uses an exec credential plugin, which weft does not run; use a token, tokenFile or client certificate`);
  // Relative paths in a kubeconfig are relative to the file that holds them.
  const resolve = (file: string, p: string): string => path.resolve(path.dirname(file), p);
  const c = cluster.item.cluster;
  const u = user?.item.user ?? {};
  const userFile = user?.file ?? cluster.file;
  const fromData = (data: string | undefined): string | undefined => (data === undefined ? undefined : Buffer.from(data, 'base64').toString('utf8'));
  const fromFile = (file: string | undefined, what: string): string | undefined => (file === undefined ? undefined : read(resolve(userFile, file), what));
  return {
    server: c.server.replace(/\/+$/, ''),
    ca: fromData(c['certificate-authority-data']) ?? (c['certificate-authority'] === undefined ? undefined : read(resolve(cluster.file, c['certificate-authority']), 'the cluster CA')),
    insecureSkipTlsVerify: c['insecure-skip-tls-verify'] === true,
    tokenFile: u.tokenFile === undefined ? undefined : resolve(userFile, u.tokenFile),
    token: u.token,
    clientCert: fromData(u['client-certificate-data']) ?? fromFile(u['client-certificate'], 'the client certificate'),
    clientKey: fromData(u['client-key-data']) ?? fromFile(u['client-key'], 'the client key'),
    origin: `kubeconfig ${cluster.file} (context ${current})`,
  };
}

/** KUBECONFIG when set (outside a cluster), else the in-cluster service account, as client-go's default loading rules. */
export function loadKubeConnection(env: Env = process.env, serviceAccountDir = SERVICE_ACCOUNT_DIR): KubeConnection {
  const kubeconfig = env[ENV.kubeconfig];
  if (kubeconfig !== undefined && kubeconfig !== '') return kubeconfigConnection(kubeconfig.split(path.delimiter));
  return inClusterConnection(env, serviceAccountDir);
}
