import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority } from './certificate-authority.js';
import { addIstioCertificateService, createIstioCaClient, decodeRequest, encodeRequest } from './istio-ca-client.js';
import { identityOfCertificate } from './spiffe-id.js';

const HOSTED = 'spiffe://cluster.local/ns/default/sa/sleep';
const ca = CertificateAuthority.generate('cluster.local');
const server = new grpc.Server();
const seen: { identity: string; auth: string | undefined; cluster: string | undefined }[] = [];
let address = '';

beforeAll(async () => {
  addIstioCertificateService(server, ca, (identity, md) => {
    seen.push({ identity, auth: md.get('authorization')[0]?.toString(), cluster: md.get('clusterid')[0]?.toString() });
    return identity === HOSTED; // node authorization: only this node's workloads
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err === null ? resolve(p) : reject(err))),
  );
  address = `127.0.0.1:${port}`;
});

afterAll(() => {
  server.forceShutdown();
});

describe('Istio CreateCertificate client', () => {
  it('round-trips the request encoding, including the Struct metadata', () => {
    const req = { csr: 'PEM', validityDuration: 86_400, metadata: { ImpersonatedIdentity: HOSTED, ClusterID: 'c1' } };
    expect(decodeRequest(encodeRequest(req))).toEqual(req);
  });

  it('obtains a leaf for the impersonated identity with token and cluster headers', async () => {
    const client = createIstioCaClient({ address, token: () => 'tok', clusterId: 'Kubernetes' });
    try {
      const cert = await client.fetchCertificate(HOSTED, 3600);
      expect(identityOfCertificate(cert.leaf)).toBe(HOSTED);
      expect(cert.rootsPem).toEqual([ca.rootPem]);
      expect(cert.leaf.verify(ca.rootCert.publicKey)).toBe(true);
      expect(seen.at(-1)).toEqual({ identity: HOSTED, auth: 'Bearer tok', cluster: 'Kubernetes' });
      expect(cert.notAfter.getTime() - Date.now()).toBeGreaterThan(3500_000);
    } finally {
      client.close?.();
    }
  });

  it('surfaces the CA refusing an identity not on the node as WEFT_ERR_IDENTITY', async () => {
    const client = createIstioCaClient({ address });
    try {
      await expect(client.fetchCertificate('spiffe://cluster.local/ns/default/sa/other', 3600)).rejects.toMatchObject({
        code: 'WEFT_ERR_IDENTITY',
        cause: expect.objectContaining({ code: grpc.status.PERMISSION_DENIED }),
      });
    } finally {
      client.close?.();
    }
  });
});
