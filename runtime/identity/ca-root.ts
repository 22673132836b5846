/** Reads and checks a CA root certificate and its key with node:crypto alone, so a node can check a configured root at start without loading the ASN.1 encoder that issuing needs. */
import type { KeyObject, X509Certificate } from 'node:crypto';
// node:crypto is loaded on first use, not at start-up: an idle node holds none of it (test/bench/README.md, idle memory).
import { readFileSync } from 'node:fs';
import { WeftError } from '../errors.js';

export interface CaRoot {
  cert: X509Certificate;
  key: KeyObject;
}

/** Throws unless `cert` is a CA certificate whose public key matches `key`. */
export function checkCaRoot(cert: X509Certificate, key: KeyObject): void {
  if (!cert.ca) throw new WeftError('WEFT_ERR_IDENTITY', 'the CA root certificate lacks basicConstraints CA:TRUE');
  if (!cert.checkPrivateKey(key)) throw new WeftError('WEFT_ERR_IDENTITY', 'the CA root key does not match the root certificate');
}

/** The root in `certFile`/`keyFile` (PEM), checked; an unreadable or invalid pair is a WEFT_ERR_IDENTITY naming both files. */
export function readCaRoot(certFile: string, keyFile: string): CaRoot {
  let certPem: string;
  let keyPem: string;
  try {
    certPem = readFileSync(certFile, 'utf8');
    keyPem = readFileSync(keyFile, 'utf8');
  } catch (err) {
    throw new WeftError('WEFT_ERR_IDENTITY', `cannot read the CA root from ${certFile} and ${keyFile}`, { cause: err });
  }
  try {
    const crypto = process.getBuiltinModule('node:crypto');
    const root = { cert: new crypto.X509Certificate(certPem), key: crypto.createPrivateKey(keyPem) };
    checkCaRoot(root.cert, root.key);
    return root;
  } catch (err) {
    if (err instanceof WeftError) throw err;
    throw new WeftError('WEFT_ERR_IDENTITY', `invalid CA root in ${certFile} / ${keyFile}: ${(err as Error).message}`, { cause: err });
  }
}
