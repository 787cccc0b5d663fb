// Org CA and node TLS certificates: creation with @peculiar/x509 (ECDSA P-256, SHA-256) and the SAN URI that binds a
// node certificate to its org. Parsing and verification live in pki/identity.ts (node:crypto, synchronous).
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { randomBytes, webcrypto } from 'node:crypto';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/**
 * Certificates use ECDSA P-256: Node 20 TLS 1.3 and undici accept both P-256 and Ed25519 for mutual TLS, but P-256
 * is what every other TLS stack (curl, Go, Java, browsers, load balancers) also accepts, so operators can debug a
 * peer port with ordinary tools.
 */
const KEY_ALGORITHM: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING_ALGORITHM: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

const DAY_MS = 24 * 60 * 60 * 1000;

export const ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** The SAN URI naming a node of an org: `conclave://org/<org>/node/<node>`. */
export function nodeSanUri(org: string, node: string): string {
  return `conclave://org/${org}/node/${node}`;
}

const SAN_URI = /^conclave:\/\/org\/([a-z0-9][a-z0-9-]{0,62})\/node\/([a-z0-9][a-z0-9-]{0,62})$/;

/** Parses a `conclave://org/<org>/node/<node>` URI, or returns null when it is not one. */
export function parseNodeSanUri(uri: string): { org: string; node: string } | null {
  const match = SAN_URI.exec(uri);
  return match ? { org: match[1]!, node: match[2]! } : null;
}

export interface PemKeyPair {
  certPem: string;
  keyPem: string;
}

export interface CreateCaOptions {
  org: string;
  notBefore?: Date;
  notAfter?: Date;
  /** Validity in days from now when notAfter is not given (default 3650). */
  days?: number;
}

function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f; // positive INTEGER
  if (bytes[0] === 0) bytes[0] = 1; // no leading zero byte, so the DER length stays 16
  return bytes.toString('hex');
}

async function generateKeys(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

async function privateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n';
}

async function importPrivateKeyPem(pem: string): Promise<webcrypto.CryptoKey> {
  const der = x509.PemConverter.decode(pem)[0];
  if (!der) throw new Error('no PEM block in private key');
  return webcrypto.subtle.importKey('pkcs8', der, KEY_ALGORITHM, false, ['sign']);
}

/** A self-signed CA for one org (CA:true, pathLen 0, keyCertSign + cRLSign). */
export async function createOrgCa(options: CreateCaOptions): Promise<PemKeyPair> {
  const keys = await generateKeys();
  const notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = options.notAfter ?? new Date(Date.now() + (options.days ?? 3650) * DAY_MS);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=Conclave CA ${options.org}, O=${options.org}`,
    notBefore,
    notAfter,
    signingAlgorithm: SIGNING_ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await privateKeyPem(keys.privateKey) };
}

export interface IssueNodeCertOptions {
  ca: PemKeyPair;
  org: string;
  node: string;
  /** Extra DNS names or IP addresses for the SAN (always included: localhost, 127.0.0.1, ::1). */
  hosts?: string[];
  notBefore?: Date;
  notAfter?: Date;
  /** Validity in days from now when notAfter is not given (default 365). */
  days?: number;
  /**
   * The org the SAN names; defaults to `org`. Only tests set it differently, to mint the rogue certificate that
   * peerIdentity must refuse.
   */
  sanOrg?: string;
}

function isIpAddress(host: string): boolean {
  return /^\d{1,3}(?:\.\d{1,3}){3}$/.test(host) || host.includes(':');
}

/** A node's TLS certificate signed by its org CA: serverAuth + clientAuth, SAN URI + DNS/IP names. */
export async function issueNodeCert(options: IssueNodeCertOptions): Promise<PemKeyPair> {
  const caCert = new x509.X509Certificate(options.ca.certPem);
  const caKey = await importPrivateKeyPem(options.ca.keyPem);
  const keys = await generateKeys();
  const notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = options.notAfter ?? new Date(Date.now() + (options.days ?? 365) * DAY_MS);
  const hosts = [...new Set(['localhost', '127.0.0.1', '::1', ...(options.hosts ?? [])])];
  const names: x509.JsonGeneralNames = [
    { type: 'url', value: nodeSanUri(options.sanOrg ?? options.org, options.node) },
    ...hosts.map((host) => ({ type: isIpAddress(host) ? ('ip' as const) : ('dns' as const), value: host })),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${options.node}.${options.org}, O=${options.org}`,
    issuer: caCert.subject,
    notBefore,
    notAfter,
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await privateKeyPem(keys.privateKey) };
}
