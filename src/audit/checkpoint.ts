// Signed checkpoints (tree heads): their signing bytes, signing, merging, verification against the federation's
// node keys, the PBFT commit-certificate rule, and the policy deciding when a node checkpoints.
import type { ConsensusMode, FederationConfig } from '../config/types.ts';
import { signEnvelope, envelopeSigningBytes } from '../crypto/envelope.ts';
import { fromBase64Url } from '../crypto/encoding.ts';
import type { SigningKey } from '../crypto/ed25519.ts';
import { Keyring } from '../verdict/keyring.ts';

/** Envelope domain of a checkpoint signature: "conclave/checkpoint/v1\n" || canonical JSON of the unsigned body. */
export const CHECKPOINT_DOMAIN = 'checkpoint';

export interface CheckpointSignature {
  org: string;
  kid: string;
  /** base64url (no padding) of the 64-byte Ed25519 signature. */
  sig: string;
}

/** The signed fields of a checkpoint. */
export interface CheckpointBody {
  v: 1;
  federation: string;
  swarm: string;
  /** Tree size = index of the last record covered. */
  size: number;
  /** Lowercase hex Merkle root of the first `size` records. */
  root: string;
  /** Unix seconds, chosen by the signing node (the caller supplies it). */
  time: number;
  mode: ConsensusMode;
}

export interface Checkpoint extends CheckpointBody {
  signatures: CheckpointSignature[];
}

export type CheckpointProblemCode =
  | 'CHECKPOINT_MALFORMED'
  | 'CHECKPOINT_UNSIGNED'
  | 'CHECKPOINT_UNKNOWN_KEY'
  | 'CHECKPOINT_NOT_MEMBER'
  | 'CHECKPOINT_BAD_SIGNATURE'
  | 'CHECKPOINT_DUPLICATE_SIGNER';

export interface CheckpointProblem {
  code: CheckpointProblemCode;
  org?: string;
  kid?: string;
  message: string;
}

export interface CheckpointVerification {
  /** Distinct swarm-member orgs with a valid node signature, sorted. */
  validOrgs: string[];
  problems: CheckpointProblem[];
  /** Member orgs needed for a PBFT commit certificate (pbftQuorum of the swarm size), when members are known. */
  quorum: number | null;
  /** pbft mode, no problem, and at least `quorum` valid member signatures. */
  certificate: boolean;
}

const HEX64 = /^[0-9a-f]{64}$/;
const BODY_KEYS = ['v', 'federation', 'swarm', 'size', 'root', 'time', 'mode'];

/** The unsigned body of a checkpoint: exactly the signed members. */
export function checkpointBody(cp: CheckpointBody): CheckpointBody {
  return { v: 1, federation: cp.federation, swarm: cp.swarm, size: cp.size, root: cp.root, time: cp.time, mode: cp.mode };
}

/** The bytes every node signs: "conclave/checkpoint/v1\n" || canonical JSON of the body. */
export function checkpointSigningBytes(cp: CheckpointBody): Uint8Array {
  return envelopeSigningBytes(CHECKPOINT_DOMAIN, checkpointBody(cp));
}

/** Why a parsed value is not a well-formed checkpoint, or null. */
export function checkpointShapeProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'a checkpoint must be a JSON object';
  const c = value as Record<string, unknown>;
  for (const key of Object.keys(c)) if (!BODY_KEYS.includes(key) && key !== 'signatures') return `unknown checkpoint member ${JSON.stringify(key)}`;
  if (c.v !== 1) return 'checkpoint.v must be 1';
  if (typeof c.federation !== 'string' || c.federation === '') return 'checkpoint.federation must be a non-empty string';
  if (typeof c.swarm !== 'string' || c.swarm === '') return 'checkpoint.swarm must be a non-empty string';
  if (typeof c.size !== 'number' || !Number.isSafeInteger(c.size) || c.size < 0) return 'checkpoint.size must be an integer >= 0';
  if (typeof c.root !== 'string' || !HEX64.test(c.root)) return 'checkpoint.root must be 64 lowercase hex digits';
  if (typeof c.time !== 'number' || !Number.isSafeInteger(c.time) || c.time < 0) return 'checkpoint.time must be an integer >= 0 (unix seconds)';
  if (c.mode !== 'raft' && c.mode !== 'pbft') return 'checkpoint.mode must be "raft" or "pbft"';
  if (!Array.isArray(c.signatures)) return 'checkpoint.signatures must be an array';
  for (const s of c.signatures as unknown[]) {
    if (typeof s !== 'object' || s === null) return 'each checkpoint signature is an object {org, kid, sig}';
    const sig = s as Record<string, unknown>;
    if (Object.keys(sig).some((k) => k !== 'org' && k !== 'kid' && k !== 'sig')) return 'a checkpoint signature has exactly {org, kid, sig}';
    if (typeof sig.org !== 'string' || typeof sig.kid !== 'string' || typeof sig.sig !== 'string') return 'checkpoint signature members are strings';
  }
  return null;
}

function sortSignatures(signatures: CheckpointSignature[]): CheckpointSignature[] {
  return signatures.sort((a, b) => (a.org < b.org ? -1 : a.org > b.org ? 1 : a.kid < b.kid ? -1 : a.kid > b.kid ? 1 : 0));
}

/**
 * Adds this node's signature to a checkpoint (or signs a bare body). A signature by the same org and kid replaces
 * the old one; signatures stay sorted by org, then kid.
 */
export function signCheckpoint(cp: CheckpointBody | Checkpoint, org: string, key: SigningKey): Checkpoint {
  const body = checkpointBody(cp);
  if (!HEX64.test(body.root)) throw new RangeError('checkpoint root must be 64 lowercase hex digits');
  const sig = signEnvelope(CHECKPOINT_DOMAIN, body, key);
  const existing = 'signatures' in cp ? cp.signatures.filter((s) => !(s.org === org && s.kid === key.kid)) : [];
  return { ...body, signatures: sortSignatures([...existing, { org, kid: key.kid, sig }]) };
}

/** The union of the signatures of checkpoints over the same body; throws when the bodies differ. */
export function mergeCheckpointSignatures(...checkpoints: Checkpoint[]): Checkpoint {
  if (checkpoints.length === 0) throw new RangeError('nothing to merge');
  const first = checkpointBody(checkpoints[0]!);
  const firstBytes = JSON.stringify(first);
  const byKey = new Map<string, CheckpointSignature>();
  for (const cp of checkpoints) {
    if (JSON.stringify(checkpointBody(cp)) !== firstBytes) {
      throw new RangeError(`cannot merge checkpoints over different bodies (size ${cp.size} root ${cp.root} time ${cp.time} vs size ${first.size} root ${first.root} time ${first.time})`);
    }
    for (const s of cp.signatures) byKey.set(`${s.org}\n${s.kid}\n${s.sig}`, { org: s.org, kid: s.kid, sig: s.sig });
  }
  return { ...first, signatures: sortSignatures([...byKey.values()]) };
}

/**
 * Checkpoint gossip, one size: what a node keeps after receiving `incoming` (already verified, same size and root as
 * its own tree), or null when nothing changes — and only a change is passed on to the peers. Bodies of one size can
 * differ only in `time` (each node stamps its own clock); a strict order picks one everywhere: more signatures
 * first, then the earlier time. Since a node's kept checkpoint only ever moves up that order, and the order is
 * finite, the gossip ends. (Keeping "whichever has at least as many signatures" let two complete bodies of one
 * size replace each other for ever once the nodes' clocks straddled a second: a storm of re-broadcasts that took
 * every node's CPU after ~400k verdicts under load.)
 */
export function nextCheckpoint(existing: Checkpoint | undefined, incoming: Checkpoint, cosign: (checkpoint: Checkpoint) => Checkpoint): Checkpoint | null {
  const candidate = cosign(existing && existing.time === incoming.time ? mergeCheckpointSignatures(existing, incoming) : incoming);
  if (!existing) return candidate;
  const better = candidate.signatures.length > existing.signatures.length || (candidate.signatures.length === existing.signatures.length && candidate.time < existing.time);
  return better ? candidate : null;
}

/** PBFT: f = floor((n-1)/3) faulty replicas tolerated among n. */
export function pbftFaults(n: number): number {
  return Math.floor((n - 1) / 3);
}

/** PBFT quorum ceil((n+f+1)/2): any two quorums share f+1 members; it is 2f+1 when n = 3f+1. */
export function pbftQuorum(n: number): number {
  return Math.ceil((n + pbftFaults(n) + 1) / 2);
}

export interface CheckpointTrust {
  keyring: Keyring;
  /** The swarm's member orgs; when given, signatures of other orgs are refused. */
  members?: readonly string[];
}

const trustCache = new WeakMap<FederationConfig, Map<string, CheckpointTrust>>();

/**
 * Keys and members from a loaded federation file for one swarm. Built once per loaded file and swarm: a node
 * verifies every checkpoint its peers gossip, and importing every member key each time cost more than verifying.
 */
export function checkpointTrustFromFederation(federation: FederationConfig, swarm: string): CheckpointTrust {
  let bySwarm = trustCache.get(federation);
  if (!bySwarm) trustCache.set(federation, (bySwarm = new Map()));
  let trust = bySwarm.get(swarm);
  if (!trust) {
    const keyring = Keyring.fromMembers(federation.members);
    const config = federation.swarms.find((s) => s.id === swarm);
    trust = config ? { keyring, members: config.members } : { keyring };
    bySwarm.set(swarm, trust);
  }
  return trust;
}

/**
 * Verifies every signature of a checkpoint against node keys of the federation. Each signature must use a listed
 * node key of the org it names, that org must be a member of the swarm (when members are known), and each org
 * counts once. The checkpoint is acceptable when `problems` is empty and `validOrgs` is not.
 */
export function verifyCheckpoint(cp: Checkpoint, trust: CheckpointTrust | Keyring | FederationConfig): CheckpointVerification {
  const resolved: CheckpointTrust =
    trust instanceof Keyring ? { keyring: trust } : 'keyring' in trust ? trust : checkpointTrustFromFederation(trust, cp.swarm);
  const problems: CheckpointProblem[] = [];
  const shape = checkpointShapeProblem(cp);
  const quorum = resolved.members ? pbftQuorum(resolved.members.length) : null;
  if (shape) return { validOrgs: [], problems: [{ code: 'CHECKPOINT_MALFORMED', message: shape }], quorum, certificate: false };
  if (cp.signatures.length === 0) problems.push({ code: 'CHECKPOINT_UNSIGNED', message: `checkpoint at size ${cp.size} carries no signature` });
  const message = checkpointSigningBytes(cp);
  const valid = new Set<string>();
  for (const s of cp.signatures) {
    const entry = resolved.keyring.get(s.kid);
    const at = `checkpoint at size ${cp.size}`;
    if (!entry || entry.role !== 'node' || entry.org !== s.org) {
      const why = !entry
        ? `kid ${s.kid} is not in the federation`
        : entry.role !== 'node'
          ? `kid ${s.kid} is a ${entry.role} key of ${entry.org}, not a node key`
          : `kid ${s.kid} is a node key of ${entry.org}, not of ${s.org}`;
      problems.push({ code: 'CHECKPOINT_UNKNOWN_KEY', org: s.org, kid: s.kid, message: `${at}: signature claiming ${s.org}: ${why}` });
      continue;
    }
    if (resolved.members && !resolved.members.includes(s.org)) {
      problems.push({ code: 'CHECKPOINT_NOT_MEMBER', org: s.org, kid: s.kid, message: `${at}: ${s.org} is not a member of swarm ${cp.swarm}` });
      continue;
    }
    let sig: Uint8Array;
    try {
      sig = fromBase64Url(s.sig);
    } catch {
      sig = new Uint8Array(0);
    }
    if (!resolved.keyring.verify(entry, message, sig)) {
      problems.push({ code: 'CHECKPOINT_BAD_SIGNATURE', org: s.org, kid: s.kid, message: `${at}: the signature of ${s.org} (kid ${s.kid}) does not verify` });
      continue;
    }
    if (valid.has(s.org)) {
      problems.push({ code: 'CHECKPOINT_DUPLICATE_SIGNER', org: s.org, kid: s.kid, message: `${at}: ${s.org} signed twice; it counts once` });
      continue;
    }
    valid.add(s.org);
  }
  const validOrgs = [...valid].sort();
  const certificate = cp.mode === 'pbft' && problems.length === 0 && quorum !== null && validOrgs.length >= quorum;
  return { validOrgs, problems, quorum, certificate };
}

export interface CheckpointPolicyOptions {
  /** Checkpoint once this many entries were appended since the last checkpoint (>= 1). */
  everyEntries: number;
  /** ... or once this many seconds passed since the last checkpoint, if at least one entry was appended (>= 1). */
  everySeconds: number;
}

/**
 * When to checkpoint: after `everyEntries` new entries, or `everySeconds` after the last checkpoint when the log
 * grew at all. Pure: the caller passes the current size and time, and calls taken() after checkpointing.
 */
export class CheckpointPolicy {
  private lastSize: number;
  private lastTime: number;

  constructor(
    private readonly options: CheckpointPolicyOptions,
    last: { size: number; time: number },
  ) {
    if (!Number.isSafeInteger(options.everyEntries) || options.everyEntries < 1) throw new RangeError('everyEntries must be an integer >= 1');
    if (!Number.isSafeInteger(options.everySeconds) || options.everySeconds < 1) throw new RangeError('everySeconds must be an integer >= 1');
    this.lastSize = last.size;
    this.lastTime = last.time;
  }

  due(size: number, now: number): boolean {
    if (size <= this.lastSize) return false;
    return size - this.lastSize >= this.options.everyEntries || now - this.lastTime >= this.options.everySeconds;
  }

  taken(size: number, time: number): void {
    this.lastSize = size;
    this.lastTime = time;
  }
}
