// `conclave doctor` checks (owned by the membership feature): every certificate a federation file names — chain,
// validity and expiry (warning 30 days ahead) —, this node's own material (TLS key matches its certificate, signing
// key listed), mutual-TLS reachability of each peer (whoami), and key consistency between the file and what peers
// present (their TLS certificate chains to the CA the file pins; the node signing key they prove possession of —
// a signature over our nonce — is one the file lists). Also the nearest certificate expiry for the
// conclave_cert_nearest_expiry_seconds metric.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FederationConfig } from '../config/types.ts';
import { randomBytes } from 'node:crypto';
import { importPrivateJwk, importPublicJwk, type PrivateJwk, type SigningKey } from '../crypto/ed25519.ts';
import { signEnvelope, verifyEnvelope } from '../crypto/envelope.ts';
import { fromUtf8, toBase64Url } from '../crypto/encoding.ts';
import { PeerClientPool } from '../transport/client.ts';
import { buildPeerTrust, peerIdentity, splitPemCertificates } from './identity.ts';

export const EXPIRY_WARNING_DAYS = 30;

export type DoctorLevel = 'ok' | 'warn' | 'error';

export interface DoctorFinding {
  level: DoctorLevel;
  /** What was checked: `ca/<org>#<n>`, `node/tls`, `node/signing-key`, `peer/<org>`, `keys/<org>`. */
  subject: string;
  message: string;
}

export interface DoctorReport {
  ok: boolean;
  errors: number;
  warnings: number;
  findings: DoctorFinding[];
}

/** Every certificate the file names (member CAs, and this node's own certificate when given), with its expiry. */
export function certificateExpiries(config: FederationConfig, ownCertPem: string | null): { subject: string; validTo: Date }[] {
  const out: { subject: string; validTo: Date }[] = [];
  for (const member of config.members) {
    for (const [i, block] of splitPemCertificates(member.caPem).entries()) {
      try {
        out.push({ subject: `ca/${member.org}#${i}`, validTo: new Date(new X509Certificate(block).validTo) });
      } catch {
        // unparsable: the doctor reports it; the metric skips it
      }
    }
  }
  if (ownCertPem) {
    for (const [i, block] of splitPemCertificates(ownCertPem).entries()) {
      try {
        out.push({ subject: i === 0 ? 'node/tls' : `node/tls#${i}`, validTo: new Date(new X509Certificate(block).validTo) });
      } catch {
        // same
      }
    }
  }
  return out;
}

export function nearestExpiry(config: FederationConfig, ownCertPem: string | null): { subject: string; validTo: Date } | null {
  const all = certificateExpiries(config, ownCertPem);
  return all.reduce<{ subject: string; validTo: Date } | null>((min, c) => (min === null || c.validTo < min.validTo ? c : min), null);
}

function expiryFinding(subject: string, what: string, validTo: Date, now: Date): DoctorFinding {
  const days = (validTo.getTime() - now.getTime()) / 86_400_000;
  if (days < 0) return { level: 'error', subject, message: `${what} expired on ${validTo.toISOString()}` };
  if (days < EXPIRY_WARNING_DAYS) return { level: 'warn', subject, message: `${what} expires in ${Math.floor(days)} days (${validTo.toISOString()}): rotate it now` };
  return { level: 'ok', subject, message: `${what} valid until ${validTo.toISOString()} (${Math.floor(days)} days)` };
}

/** Offline checks of the file's certificates and this node's own material. */
export function checkCertificates(config: FederationConfig, now = new Date()): DoctorFinding[] {
  const findings: DoctorFinding[] = [];
  for (const member of config.members) {
    const blocks = splitPemCertificates(member.caPem);
    if (blocks.length === 0) findings.push({ level: 'error', subject: `ca/${member.org}`, message: 'no CERTIFICATE block in the CA PEM' });
    if (blocks.length > 1) findings.push({ level: 'ok', subject: `ca/${member.org}`, message: `${blocks.length} CA certificates (a rotation overlap: certificates from any of them are accepted)` });
    for (const [i, block] of blocks.entries()) {
      const subject = `ca/${member.org}#${i}`;
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(block);
      } catch (error) {
        findings.push({ level: 'error', subject, message: `cannot parse: ${(error as Error).message}` });
        continue;
      }
      if (!cert.ca) findings.push({ level: 'error', subject, message: 'not a CA certificate (basicConstraints CA:FALSE)' });
      else if (!cert.checkIssued(cert) || !cert.verify(cert.publicKey)) findings.push({ level: 'error', subject, message: 'not self-signed: an org CA is pinned as a root' });
      if (now < new Date(cert.validFrom)) findings.push({ level: 'error', subject, message: `not valid before ${new Date(cert.validFrom).toISOString()}` });
      findings.push(expiryFinding(subject, `CA of ${member.org}`, new Date(cert.validTo), now));
    }
  }

  // This node's own certificate, key and signing key.
  let certPem: string | null = null;
  try {
    certPem = readFileSync(config.node.tlsCertFile, 'utf8');
  } catch (error) {
    findings.push({ level: 'error', subject: 'node/tls', message: `cannot read ${config.node.tlsCertFile}: ${(error as Error).message}` });
  }
  if (certPem) {
    try {
      const identity = peerIdentity(certPem, buildPeerTrust(config.members), now);
      if (identity.org !== config.node.org) findings.push({ level: 'error', subject: 'node/tls', message: `the certificate identifies org ${identity.org}, not ${config.node.org}` });
      else findings.push({ level: 'ok', subject: 'node/tls', message: `chains to ${config.node.org}'s CA; SAN names node ${identity.node}` });
      findings.push(expiryFinding('node/tls', 'this node\'s TLS certificate', identity.validTo, now));
    } catch (error) {
      findings.push({ level: 'error', subject: 'node/tls', message: (error as Error).message });
    }
    try {
      const key = createPrivateKey(readFileSync(config.node.tlsKeyFile, 'utf8'));
      if (!new X509Certificate(certPem).checkPrivateKey(key)) findings.push({ level: 'error', subject: 'node/tls-key', message: `${config.node.tlsKeyFile} is not the key of ${config.node.tlsCertFile}` });
    } catch (error) {
      findings.push({ level: 'error', subject: 'node/tls-key', message: `cannot check ${config.node.tlsKeyFile}: ${(error as Error).message}` });
    }
  }
  try {
    const signingKey = importPrivateJwk(JSON.parse(readFileSync(config.node.signingKeyFile, 'utf8')) as PrivateJwk);
    const own = config.members.find((m) => m.org === config.node.org);
    if (!own?.nodeKeys.some((k) => k.x === signingKey.publicJwk.x)) {
      findings.push({ level: 'error', subject: 'node/signing-key', message: `${config.node.signingKeyFile} is not among org ${config.node.org}'s nodeKeys` });
    } else {
      const listed = own.nodeKeys.length;
      findings.push({ level: 'ok', subject: 'node/signing-key', message: `listed in nodeKeys${listed > 1 ? ` (one of ${listed}: a rotation overlap)` : ''}` });
    }
  } catch (error) {
    findings.push({ level: 'error', subject: 'node/signing-key', message: `cannot read ${config.node.signingKeyFile}: ${(error as Error).message}` });
  }
  return findings;
}

/** The orgs this node talks to: members of the swarms it belongs to (or every member when it belongs to none). */
function peersOf(config: FederationConfig): string[] {
  const orgs = new Set<string>();
  for (const swarm of config.swarms) if (swarm.members.includes(config.node.org)) for (const org of swarm.members) orgs.add(org);
  if (orgs.size === 0) for (const member of config.members) orgs.add(member.org);
  orgs.delete(config.node.org);
  return [...orgs].filter((org) => config.members.some((m) => m.org === org)).sort();
}

/** Online checks: mutual TLS to every peer (whoami), and the node keys its checkpoints carry. */
export async function checkPeers(config: FederationConfig, options: { timeoutMs?: number } = {}): Promise<DoctorFinding[]> {
  const findings: DoctorFinding[] = [];
  const timeoutMs = options.timeoutMs ?? 5000;
  let tls: { certPem: string; keyPem: string };
  try {
    tls = { certPem: readFileSync(config.node.tlsCertFile, 'utf8'), keyPem: readFileSync(config.node.tlsKeyFile, 'utf8') };
  } catch (error) {
    return [{ level: 'error', subject: 'peers', message: `cannot test peers without this node's TLS material: ${(error as Error).message}` }];
  }
  const peers = peersOf(config);
  const members = config.members.filter((m) => peers.includes(m.org) || m.org === config.node.org).map((m) => ({ org: m.org, peerUrl: m.peerUrl, caPem: m.caPem }));
  const pool = new PeerClientPool({ self: config.node.org, tls, members, breakerThreshold: 1000 });
  try {
    await Promise.all(
      peers.map(async (org) => {
        const member = config.members.find((m) => m.org === org)!;
        try {
          const who = await pool.whoami(org, { timeoutMs });
          if (who.org !== config.node.org) findings.push({ level: 'error', subject: `peer/${org}`, message: `${member.peerUrl} identifies us as org ${who.org}, not ${config.node.org}` });
          else findings.push({ level: 'ok', subject: `peer/${org}`, message: `${member.peerUrl}: mutual TLS works (it sees us as ${who.org}/${who.node}; its certificate chains to the CA the file pins for ${org})` });
        } catch (error) {
          const e = error as Error & { code?: string };
          findings.push({ level: 'error', subject: `peer/${org}`, message: `${member.peerUrl} is not reachable over mutual TLS (${e.code ?? 'error'}): ${e.message}` });
        }
        findings.push(await checkPeerKey(config, pool, org, timeoutMs));
      }),
    );
  } finally {
    await pool.close().catch(() => undefined);
  }
  return findings.sort((a, b) => (a.subject < b.subject ? -1 : a.subject > b.subject ? 1 : 0));
}

/** The peer call that answers with proof of the node signing key a node uses now. */
export const NODE_IDENTITY_CHANNEL = 'node.identity';
const IDENTITY_DOMAIN = 'node-identity';

/** What a node answers on NODE_IDENTITY_CHANNEL: its key id and a signature binding the caller's nonce to it. */
export interface NodeIdentityProof {
  org: string;
  kid: string;
  signature: string;
}

/** A node's answer to `caller`'s identity challenge (body: {"nonce": base64url}). */
export function proveNodeIdentity(key: SigningKey, org: string, caller: string, body: Uint8Array): NodeIdentityProof {
  const { nonce } = JSON.parse(fromUtf8(body)) as { nonce?: unknown };
  if (typeof nonce !== 'string' || nonce.length < 16 || nonce.length > 128) throw new Error('an identity challenge needs a nonce of 16..128 characters');
  return { org, kid: key.kid, signature: signEnvelope(IDENTITY_DOMAIN, { nonce, org, caller, kid: key.kid }, key) };
}

/** The node key a peer proves it holds (a signature over a fresh nonce) must be among the nodeKeys the file lists. */
async function checkPeerKey(config: FederationConfig, pool: PeerClientPool, org: string, timeoutMs: number): Promise<DoctorFinding> {
  const member = config.members.find((m) => m.org === org)!;
  const subject = `keys/${org}`;
  const swarm = config.swarms.find((s) => s.members.includes(org) && s.members.includes(config.node.org))?.id ?? config.swarms[0]?.id;
  if (!swarm) return { level: 'warn', subject, message: 'no swarm to ask the peer through' };
  const nonce = toBase64Url(randomBytes(24));
  let proof: NodeIdentityProof;
  try {
    proof = JSON.parse(fromUtf8(await pool.call(org, swarm, NODE_IDENTITY_CHANNEL, Buffer.from(JSON.stringify({ nonce })), { timeoutMs }))) as NodeIdentityProof;
  } catch (error) {
    return { level: 'warn', subject, message: `could not ask ${org}'s node which signing key it uses: ${(error as Error).message}` };
  }
  const listed = member.nodeKeys.map((jwk) => importPublicJwk(jwk)).find((key) => key.kid === proof.kid);
  if (!listed) {
    return { level: 'error', subject, message: `${org}'s node signs with node key ${proof.kid}, which the file does not list under ${org}'s nodeKeys: add it (or the node uses a key it should not)` };
  }
  if (proof.org !== org || !verifyEnvelope(IDENTITY_DOMAIN, { nonce, org, caller: config.node.org, kid: proof.kid }, proof.signature, listed)) {
    return { level: 'error', subject, message: `${org}'s node names node key ${proof.kid} but its signature over our challenge does not verify with it` };
  }
  const overlap = member.nodeKeys.length > 1 ? ` (one of ${member.nodeKeys.length} listed: a rotation overlap)` : '';
  return { level: 'ok', subject, message: `${org}'s node proved it holds node key ${proof.kid}, listed in the file${overlap}` };
}

export async function runDoctor(config: FederationConfig, options: { offline?: boolean; timeoutMs?: number; now?: Date } = {}): Promise<DoctorReport> {
  const findings = checkCertificates(config, options.now);
  if (!options.offline) findings.push(...(await checkPeers(config, options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs })));
  const errors = findings.filter((f) => f.level === 'error').length;
  const warnings = findings.filter((f) => f.level === 'warn').length;
  return { ok: errors === 0, errors, warnings, findings };
}
