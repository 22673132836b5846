/** DER/PEM encoding of the few X.509 shapes weft issues (CA root, SPIFFE workload leaf, CSR); ASN.1 via @peculiar/asn1-*, signatures via node:crypto. */
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import * as asn from '@peculiar/asn1-x509';
import { CertificationRequest, CertificationRequestInfo, Attributes } from '@peculiar/asn1-csr';
import { createPublicKey, randomBytes, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { WeftError } from '../errors.js';

const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';
const ORGANIZATION = '2.5.4.10';
const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';

export interface CertificateSpec {
  subjectKey: KeyObject;
  issuerKey: KeyObject;
  /** Subject organization (Istio puts the trust domain there for roots; workload leaves have an empty subject). */
  subjectOrganization?: string;
  issuerOrganization: string;
  notBefore: Date;
  notAfter: Date;
  isCa: boolean;
  uriSans?: string[];
}

function toArrayBuffer(buf: Buffer): ArrayBuffer {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) as ArrayBuffer;
}

function organizationName(org: string | undefined): asn.Name {
  if (org === undefined) return new asn.Name([]);
  return new asn.Name([new asn.RelativeDistinguishedName([new asn.AttributeTypeAndValue({ type: ORGANIZATION, value: new asn.AttributeValue({ utf8String: org }) })])]);
}

function extension(id: string, critical: boolean, value: unknown): asn.Extension {
  return new asn.Extension({ extnID: id, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

function sanExtension(uris: string[]): asn.Extension {
  // RFC 5280 §4.2.1.6: with an empty subject the SAN extension must be critical.
  return extension(asn.id_ce_subjectAltName, true, new asn.SubjectAlternativeName(uris.map((u) => new asn.GeneralName({ uniformResourceIdentifier: u }))));
}

function spkiOf(key: KeyObject): asn.SubjectPublicKeyInfo {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return AsnConvert.parse(pub.export({ format: 'der', type: 'spki' }), asn.SubjectPublicKeyInfo);
}

function serialNumber(): ArrayBuffer {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f; // positive INTEGER without a leading zero byte
  if (bytes[0] === 0) bytes[0] = 1;
  return toArrayBuffer(bytes);
}

export function createCertificate(spec: CertificateSpec): X509Certificate {
  const exts: asn.Extension[] = [extension(asn.id_ce_basicConstraints, true, new asn.BasicConstraints({ cA: spec.isCa }))];
  if (spec.isCa) {
    exts.push(extension(asn.id_ce_keyUsage, true, new asn.KeyUsage(asn.KeyUsageFlags.keyCertSign | asn.KeyUsageFlags.cRLSign | asn.KeyUsageFlags.digitalSignature)));
  } else {
    exts.push(extension(asn.id_ce_keyUsage, true, new asn.KeyUsage(asn.KeyUsageFlags.digitalSignature | asn.KeyUsageFlags.keyEncipherment)));
    exts.push(extension(asn.id_ce_extKeyUsage, false, new asn.ExtendedKeyUsage([asn.id_kp_serverAuth, asn.id_kp_clientAuth])));
  }
  if (spec.uriSans !== undefined && spec.uriSans.length > 0) exts.push(sanExtension(spec.uriSans));
  const algorithm = new asn.AlgorithmIdentifier({ algorithm: ECDSA_WITH_SHA256 });
  const tbs = new asn.TBSCertificate({
    version: asn.Version.v3,
    serialNumber: serialNumber(),
    signature: algorithm,
    issuer: organizationName(spec.issuerOrganization),
    subject: organizationName(spec.subjectOrganization),
    validity: new asn.Validity({ notBefore: spec.notBefore, notAfter: spec.notAfter }),
    subjectPublicKeyInfo: spkiOf(spec.subjectKey),
    extensions: new asn.Extensions(exts),
  });
  const signature = sign('sha256', Buffer.from(AsnConvert.serialize(tbs)), spec.issuerKey);
  const cert = new asn.Certificate({ tbsCertificate: tbs, signatureAlgorithm: algorithm, signatureValue: toArrayBuffer(signature) });
  return new X509Certificate(Buffer.from(AsnConvert.serialize(cert)));
}

/** A PKCS#10 request carrying the SPIFFE URI SAN, as ztunnel's `tls/csr.rs` builds it. */
export function createCsrPem(key: KeyObject, uri: string): string {
  const info = new CertificationRequestInfo({
    version: 0,
    subject: new asn.Name([]),
    subjectPKInfo: spkiOf(key),
    attributes: new Attributes([new asn.Attribute({ type: EXTENSION_REQUEST, values: [AsnConvert.serialize(new asn.Extensions([sanExtension([uri])]))] })]),
  });
  const signature = sign('sha256', Buffer.from(AsnConvert.serialize(info)), key);
  const csr = new CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: new asn.AlgorithmIdentifier({ algorithm: ECDSA_WITH_SHA256 }),
    signature: toArrayBuffer(signature),
  });
  return toPem(Buffer.from(AsnConvert.serialize(csr)), 'CERTIFICATE REQUEST');
}

export interface ParsedCsr {
  publicKey: KeyObject;
  uriSans: string[];
}

/** Parses a PEM CSR and checks its self-signature; throws WEFT_ERR_IDENTITY on anything malformed. */
export function parseCsrPem(pem: string): ParsedCsr {
  try {
    const der = fromPem(pem, 'CERTIFICATE REQUEST');
    const csr = AsnConvert.parse(der, CertificationRequest);
    const info = csr.certificationRequestInfo;
    if (csr.signatureAlgorithm.algorithm !== ECDSA_WITH_SHA256) throw new Error(`unsupported signature algorithm ${csr.signatureAlgorithm.algorithm} (expected ecdsa-with-SHA256)`);
    const publicKey = createPublicKey({ key: Buffer.from(AsnConvert.serialize(info.subjectPKInfo)), format: 'der', type: 'spki' });
    const infoDer = csr.certificationRequestInfoRaw === undefined ? Buffer.from(AsnConvert.serialize(info)) : Buffer.from(csr.certificationRequestInfoRaw);
    if (!verify('sha256', infoDer, publicKey, Buffer.from(csr.signature))) throw new Error('CSR signature does not verify');
    const uris: string[] = [];
    for (const attr of info.attributes ?? []) {
      if (attr.type !== EXTENSION_REQUEST) continue;
      for (const value of attr.values) {
        for (const ext of AsnConvert.parse(value, asn.Extensions)) {
          if (ext.extnID !== asn.id_ce_subjectAltName) continue;
          for (const name of AsnConvert.parse(ext.extnValue.buffer, asn.SubjectAlternativeName)) if (name.uniformResourceIdentifier !== undefined) uris.push(name.uniformResourceIdentifier);
        }
      }
    }
    return { publicKey, uriSans: uris };
  } catch (err) {
    throw new WeftError('WEFT_ERR_IDENTITY', `invalid certificate signing request: ${(err as Error).message}`, { cause: err });
  }
}

export function toPem(der: Buffer, label: string): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

function fromPem(pem: string, label: string): Buffer {
  const m = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`).exec(pem);
  if (m === null) throw new Error(`no ${label} PEM block`);
  return Buffer.from((m[1] ?? '').replace(/\s+/g, ''), 'base64');
}

/** Splits a PEM bundle into its certificates, in order. */
export function splitPemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g)?.map((s) => (s.endsWith('\n') ? s : s + '\n')) ?? [];
}
