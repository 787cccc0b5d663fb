// Peer identity from a TLS certificate: the org is the member whose pinned CA issued the leaf, and the leaf's SAN
// (`conclave://org/<org>/node/<node>`) must name that same org. Synchronous, node:crypto only.
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { parseNodeSanUri } from './certs.ts';

/** Stable codes for a refused peer certificate (also the `code` of the 403 the peer server answers). */
export type PeerRefusalCode =
  | 'PEER_NO_CERT'
  | 'PEER_BAD_CERT'
  | 'PEER_UNKNOWN_CA'
  | 'PEER_AMBIGUOUS_CA'
  | 'PEER_SAN_MISMATCH'
  | 'PEER_CERT_EXPIRED'
  | 'PEER_CERT_NOT_YET_VALID';

export class PeerIdentityError extends Error {
  override readonly name = 'PeerIdentityError';
  constructor(
    readonly code: PeerRefusalCode,
    message: string,
  ) {
    super(message);
  }
}

export interface PeerIdentity {
  org: string;
  node: string;
  /** SHA-256 fingerprint of the leaf, colon-separated hex as node:crypto prints it. */
  fingerprint256: string;
  /** The leaf stops being accepted after this instant. */
  validTo: Date;
}

export interface TrustAnchor {
  org: string;
  cert: X509Certificate;
}

/** The pinned CA certificates of every member, one or more per org (more during a CA rotation). */
export interface PeerTrust {
  anchors: TrustAnchor[];
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every CERTIFICATE block of a PEM text, each ending with a newline. */
export function splitPemCertificates(pem: string): string[] {
  return (pem.match(PEM_CERT) ?? []).map((block) => block + '\n');
}

export function buildPeerTrust(members: readonly { org: string; caPem: string }[]): PeerTrust {
  const anchors: TrustAnchor[] = [];
  for (const member of members) {
    for (const block of splitPemCertificates(member.caPem)) anchors.push({ org: member.org, cert: new X509Certificate(block) });
  }
  return { anchors };
}

/** The `URI:` entries of a SAN as node:crypto prints it (`URI:a, DNS:b, IP Address:c`, quoted when needed). */
export function sanUris(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  const uris: string[] = [];
  const entry = /(?:^|, )([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)/g;
  for (const match of subjectAltName.matchAll(entry)) {
    if (match[1] !== 'URI') continue;
    const raw = match[2]!;
    uris.push(raw.startsWith('"') ? (JSON.parse(raw) as string) : raw);
  }
  return uris;
}

/** Parses whatever a TLS socket or a caller holds into a leaf certificate; null when there is no certificate. */
function toLeaf(chain: PeerCertificate | X509Certificate | Uint8Array | string | null | undefined): X509Certificate | null {
  if (chain === null || chain === undefined) return null;
  if (chain instanceof X509Certificate) return chain;
  if (typeof chain === 'string' || chain instanceof Uint8Array) return new X509Certificate(chain);
  // getPeerCertificate() answers {} when the peer sent no certificate.
  if (!chain.raw || chain.raw.length === 0) return null;
  return new X509Certificate(chain.raw);
}

/**
 * Who is speaking, from the peer's certificate (as `socket.getPeerCertificate(true)` returns it, or a parsed
 * certificate). Throws PeerIdentityError with a stable code and a reason an operator can act on.
 * Node certificates are issued directly by the org CA (no intermediates).
 */
export function peerIdentity(
  chain: PeerCertificate | X509Certificate | Uint8Array | string | null | undefined,
  trust: PeerTrust,
  now: Date = new Date(),
): PeerIdentity {
  let leaf: X509Certificate | null;
  try {
    leaf = toLeaf(chain);
  } catch (error) {
    throw new PeerIdentityError('PEER_BAD_CERT', `the peer certificate cannot be parsed: ${(error as Error).message}`);
  }
  if (!leaf) throw new PeerIdentityError('PEER_NO_CERT', 'the peer presented no client certificate');
  if (leaf.ca) throw new PeerIdentityError('PEER_BAD_CERT', `a CA certificate (${leaf.subject.replace(/\n/g, ', ')}) cannot identify a node`);

  const issuers = trust.anchors.filter((anchor) => leaf.checkIssued(anchor.cert) && leaf.verify(anchor.cert.publicKey));
  if (issuers.length === 0) {
    throw new PeerIdentityError(
      'PEER_UNKNOWN_CA',
      `the certificate was issued by "${leaf.issuer.replace(/\n/g, ', ')}", which is not the pinned CA of any member`,
    );
  }
  const orgs = [...new Set(issuers.map((anchor) => anchor.org))];
  if (orgs.length > 1) {
    throw new PeerIdentityError('PEER_AMBIGUOUS_CA', `the issuing CA is pinned for more than one org (${orgs.join(', ')})`);
  }
  const org = orgs[0]!;

  const validFrom = new Date(leaf.validFrom);
  const validTo = new Date(leaf.validTo);
  if (now.getTime() < validFrom.getTime()) {
    throw new PeerIdentityError('PEER_CERT_NOT_YET_VALID', `the certificate of org ${org} is not valid before ${validFrom.toISOString()}`);
  }
  if (now.getTime() > validTo.getTime()) {
    throw new PeerIdentityError('PEER_CERT_EXPIRED', `the certificate of org ${org} expired at ${validTo.toISOString()}`);
  }
  const caExpired = issuers.find((anchor) => now.getTime() > new Date(anchor.cert.validTo).getTime());
  if (caExpired) {
    throw new PeerIdentityError('PEER_CERT_EXPIRED', `the CA of org ${org} expired at ${new Date(caExpired.cert.validTo).toISOString()}`);
  }

  const named = sanUris(leaf.subjectAltName)
    .map((uri) => parseNodeSanUri(uri))
    .filter((value): value is { org: string; node: string } => value !== null);
  if (named.length !== 1) {
    throw new PeerIdentityError(
      'PEER_SAN_MISMATCH',
      named.length === 0
        ? `the certificate issued by org ${org}'s CA names no conclave://org/<org>/node/<node> URI in its SAN`
        : `the certificate issued by org ${org}'s CA names ${named.length} conclave node URIs; exactly one is allowed`,
    );
  }
  const claimed = named[0]!;
  if (claimed.org !== org) {
    throw new PeerIdentityError(
      'PEER_SAN_MISMATCH',
      `the certificate was issued by org ${org}'s CA but its SAN claims org ${claimed.org}: an org's CA can only vouch for its own nodes`,
    );
  }
  return { org, node: claimed.node, fingerprint256: leaf.fingerprint256, validTo };
}
