// Log commands, the payload of every log entry: node-signed batches of verdicts, no-ops and admin changes; their
// canonical byte encoding, strict decoding, proposal signatures and admin approval checks.
import type { AdminPolicy, ConsensusMode, SwarmConfig, SwarmPolicy } from '../config/types.ts';
import { canonicalBytes, canonicalJson } from '../crypto/canonical.ts';
import { envelopePrefix, envelopeSigningBytes } from '../crypto/envelope.ts';
import { signBytes, type SigningKey } from '../crypto/ed25519.ts';
import { bytesEqual, concatBytes, fromBase64Url, fromUtf8, toBase64Url, utf8 } from '../crypto/encoding.ts';
import { decodeBase64Url, VERDICT_LIMITS, VerdictError } from './format.ts';
import type { Keyring } from './keyring.ts';
import { decodeAdminPolicy, decodeSwarmPolicy } from './policy.ts';

export const PROPOSAL_DOMAIN = 'proposal';
export const ADMIN_JWS_TYPE = 'conclave-admin+jws';
export const COMMAND_LIMITS = {
  /** Verdicts in one proposal. */
  maxBatch: 1024,
  /** Approvals in one admin command. */
  maxApprovals: 64,
  /** Encoded command bytes: a full batch of maximal verdicts fits. */
  maxCommandBytes: 1024 * (VERDICT_LIMITS.maxJwsBytes + 3) + 4096,
} as const;

/** A batch of agents' verdicts, proposed and signed by one node. */
export interface VerdictsCommand {
  v: 1;
  type: 'verdicts';
  swarm: string;
  /** The org of the node that proposed it. */
  proposer: string;
  /** Compact JWS verdicts, in the order they are applied. */
  batch: string[];
  /** base64url Ed25519 signature by a node key of `proposer` over envelope 'proposal' of {v, type, swarm, proposer, batch}. */
  sig: string;
}

export interface NoopCommand {
  v: 1;
  type: 'noop';
}

/** A federation change to one swarm (decided by swarm/membership.ts decideAdminAction). */
export type AdminAction =
  | { kind: 'set-mode'; mode: ConsensusMode }
  /** The org must already be a member of the federation file (its keys and CA are read from there). */
  | { kind: 'add-member'; org: string }
  | { kind: 'remove-member'; org: string }
  /** The swarm's decision policy and admin policy from the committed index on (the file's, as the proposer read it). */
  | { kind: 'set-policy'; policy: SwarmPolicy; adminPolicy: AdminPolicy };

export interface AdminCommand {
  v: 1;
  type: 'admin';
  swarm: string;
  /** 16-64 base64url characters naming this change uniquely, so an approval can never be replayed for another. */
  id: string;
  action: AdminAction;
  /** Compact JWS approvals by admin keys: header {alg EdDSA, kid, typ conclave-admin+jws}, payload AdminApprovalPayload. */
  approvals: string[];
  /**
   * The org of each approval, in order, as the node that admitted the command verified it — and the Raft leader that
   * appended it, or every PBFT replica that voted for it, verified again. Applying counts these and looks no key up,
   * so nodes whose federation files differ on an admin key (one being added) still apply the same change. Absent
   * in entries of versions before it: those are counted with the applying node's keys.
   */
  approvers?: string[];
}

export interface AdminApprovalPayload {
  v: 1;
  swarm: string;
  id: string;
  action: AdminAction;
}

export type LogCommand = VerdictsCommand | NoopCommand | AdminCommand;

// ---- encoding -----------------------------------------------------------------------------------------------

/** The canonical JSON bytes of a command: what the log stores and every replica hashes. */
export function encodeCommand(cmd: LogCommand): Uint8Array {
  return canonicalBytes(cmd);
}

function bad(message: string): VerdictError {
  return new VerdictError('MALFORMED_COMMAND', message);
}

function exactKeys(record: Record<string, unknown>, keys: readonly string[], what: string): void {
  const actual = Object.keys(record).sort();
  const expected = [...keys].sort();
  if (actual.length !== expected.length || actual.some((key, i) => key !== expected[i])) {
    throw bad(`${what} must have exactly the members ${expected.join(', ')}; got ${actual.join(', ')}`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function nameField(record: Record<string, unknown>, field: string, what: string): string {
  const value = record[field];
  if (typeof value !== 'string' || value.length === 0 || value.length > VERDICT_LIMITS.maxNameChars) {
    throw bad(`${what}.${field} must be a non-empty string of at most ${VERDICT_LIMITS.maxNameChars} characters`);
  }
  return value;
}

function jwsList(value: unknown, max: number, what: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > max) throw bad(`${what} must be an array of 1 to ${max} compact JWS strings`);
  for (const item of value) {
    if (typeof item !== 'string' || item.length === 0 || item.length > VERDICT_LIMITS.maxJwsBytes) {
      throw bad(`${what} holds an item that is not a compact JWS string of at most ${VERDICT_LIMITS.maxJwsBytes} bytes`);
    }
  }
  return value as string[];
}

function decodeAction(value: unknown): AdminAction {
  if (!isObject(value)) throw bad('admin.action must be an object');
  switch (value.kind) {
    case 'set-mode':
      exactKeys(value, ['kind', 'mode'], 'admin.action');
      if (value.mode !== 'raft' && value.mode !== 'pbft') throw bad('admin.action.mode must be "raft" or "pbft"');
      return { kind: 'set-mode', mode: value.mode };
    case 'add-member':
    case 'remove-member':
      exactKeys(value, ['kind', 'org'], 'admin.action');
      return { kind: value.kind, org: nameField(value, 'org', 'admin.action') };
    case 'set-policy':
      exactKeys(value, ['kind', 'policy', 'adminPolicy'], 'admin.action');
      try {
        return { kind: 'set-policy', policy: decodeSwarmPolicy(value.policy, 'admin.action.policy'), adminPolicy: decodeAdminPolicy(value.adminPolicy, 'admin.action.adminPolicy') };
      } catch (error) {
        throw bad((error as Error).message);
      }
    default:
      throw bad(`admin.action.kind ${JSON.stringify(value.kind)} is not one of set-mode, add-member, remove-member, set-policy`);
  }
}

/** Validates the shape of a decoded command (any JSON value). Throws MALFORMED_COMMAND. */
export function validateCommand(value: unknown): LogCommand {
  if (!isObject(value)) throw bad('a log command must be a JSON object');
  if (value.v !== 1) throw bad('command.v must be 1');
  switch (value.type) {
    case 'noop':
      exactKeys(value, ['v', 'type'], 'noop');
      return { v: 1, type: 'noop' };
    case 'verdicts': {
      exactKeys(value, ['v', 'type', 'swarm', 'proposer', 'batch', 'sig'], 'verdicts');
      const swarm = nameField(value, 'swarm', 'verdicts');
      const proposer = nameField(value, 'proposer', 'verdicts');
      const batch = jwsList(value.batch, COMMAND_LIMITS.maxBatch, 'verdicts.batch');
      if (typeof value.sig !== 'string' || !/^[A-Za-z0-9_-]{86}$/.test(value.sig)) throw bad('verdicts.sig must be a base64url Ed25519 signature');
      return { v: 1, type: 'verdicts', swarm, proposer, batch, sig: value.sig };
    }
    case 'admin': {
      exactKeys(value, value.approvers === undefined ? ['v', 'type', 'swarm', 'id', 'action', 'approvals'] : ['v', 'type', 'swarm', 'id', 'action', 'approvals', 'approvers'], 'admin');
      const swarm = nameField(value, 'swarm', 'admin');
      if (typeof value.id !== 'string' || !/^[A-Za-z0-9_-]{16,64}$/.test(value.id)) throw bad('admin.id must be 16-64 base64url characters');
      const action = decodeAction(value.action);
      const approvals = jwsList(value.approvals, COMMAND_LIMITS.maxApprovals, 'admin.approvals');
      if (value.approvers === undefined) return { v: 1, type: 'admin', swarm, id: value.id, action, approvals };
      if (!Array.isArray(value.approvers) || value.approvers.length !== approvals.length) throw bad('admin.approvers must list one org per approval');
      const approvers = value.approvers.map((org: unknown, i) => nameField({ org }, 'org', `admin.approvers[${i}]`));
      return { v: 1, type: 'admin', swarm, id: value.id, action, approvals, approvers };
    }
    default:
      throw bad(`command.type ${JSON.stringify(value.type)} is not one of verdicts, noop, admin`);
  }
}

/** Strict decoding: UTF-8 JSON of a valid command, in exactly its canonical form. Throws MALFORMED_COMMAND. */
export function decodeCommand(bytes: Uint8Array): LogCommand {
  if (bytes.length > COMMAND_LIMITS.maxCommandBytes) throw bad(`the command is ${bytes.length} bytes; the limit is ${COMMAND_LIMITS.maxCommandBytes}`);
  let text: string;
  let value: unknown;
  try {
    text = fromUtf8(bytes);
    value = JSON.parse(text);
  } catch {
    throw bad('a log command must be UTF-8 JSON');
  }
  const cmd = validateCommand(value);
  // "bytes === encodeCommand(cmd)", compared as text: the strict decoder maps distinct valid UTF-8 to distinct
  // strings except that it drops a leading byte order mark, and canonical JSON is well-formed UTF-16 (lone
  // surrogates are escaped), so equal text and no BOM is equal bytes — without encoding the command again.
  if (startsWithBom(bytes) || canonicalJson(cmd) !== text) throw bad('the command is not in canonical JSON form');
  return cmd;
}

function startsWithBom(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf;
}

// ---- proposals ----------------------------------------------------------------------------------------------

function proposalBody(cmd: Pick<VerdictsCommand, 'swarm' | 'proposer' | 'batch'>): unknown {
  return { v: 1, type: 'verdicts', swarm: cmd.swarm, proposer: cmd.proposer, batch: cmd.batch };
}

/**
 * Signs a proposal with this node's key. Given the keyring, the signature is remembered there as verified: this node
 * applies its own proposals too, and need not verify what it just signed (one Ed25519 verification per entry less).
 */
export function signProposal(swarm: string, proposerOrg: string, batch: readonly string[], nodeKey: SigningKey, keyring?: Keyring): VerdictsCommand {
  return signProposalEncoded(swarm, proposerOrg, batch, nodeKey, keyring).command;
}

/**
 * signProposal, with the command's log bytes (exactly encodeCommand(command)) made from the same serialization as
 * the signed body: canonical JSON orders keys batch < proposer < sig < swarm, so the command's JSON is the body's
 * with `,"sig":"…"` inserted before `,"swarm":` — the only unescaped occurrence of that text (inside a JSON string
 * every `"` is escaped). The batch (~1.2 KB a verdict) is serialized once instead of twice.
 */
export function signProposalEncoded(
  swarm: string,
  proposerOrg: string,
  batch: readonly string[],
  nodeKey: SigningKey,
  keyring?: Keyring,
): { command: VerdictsCommand; bytes: Uint8Array } {
  const body = { swarm, proposer: proposerOrg, batch: [...batch] };
  const bodyJson = canonicalJson(proposalBody(body));
  const message = concatBytes(envelopePrefix(PROPOSAL_DOMAIN), utf8(bodyJson));
  const signature = signBytes(nodeKey, message);
  keyring?.rememberOwnSignature(nodeKey, message, signature);
  const sig = toBase64Url(signature);
  const at = bodyJson.lastIndexOf(',"swarm":');
  return { command: { v: 1, type: 'verdicts', ...body, sig }, bytes: utf8(`${bodyJson.slice(0, at)},"sig":"${sig}"${bodyJson.slice(at)}`) };
}

/** True when `sig` verifies with one of the node keys the federation lists for `cmd.proposer` (cached). */
export function verifyProposal(cmd: VerdictsCommand, keyring: Keyring): boolean {
  let sig: Uint8Array;
  try {
    sig = fromBase64Url(cmd.sig);
  } catch {
    return false;
  }
  const keys = keyring.keysOf(cmd.proposer, 'node');
  if (keys.length === 0) return false;
  const message = envelopeSigningBytes(PROPOSAL_DOMAIN, proposalBody(cmd));
  return keys.some((key) => keyring.verify(key, message, sig));
}

// ---- admin approvals ----------------------------------------------------------------------------------------

/**
 * Approvals needed for an admin change of a swarm with `memberCount` orgs: majority = more than half,
 * two-thirds = at least ⌈2n/3⌉, all = n, a number = that many. In pbft mode never fewer than 2f+1, f = ⌊(n−1)/3⌋.
 */
export function requiredApprovals(policy: AdminPolicy, memberCount: number, mode: ConsensusMode): number {
  const base =
    policy === 'majority' ? Math.floor(memberCount / 2) + 1 : policy === 'all' ? memberCount : policy === 'two-thirds' ? Math.ceil((2 * memberCount) / 3) : policy;
  if (mode !== 'pbft') return base;
  const f = Math.floor((memberCount - 1) / 3);
  return Math.max(base, 2 * f + 1);
}

export interface ApprovalCheck {
  ok: boolean;
  /** Orgs with a valid approval, sorted; one counts per org. */
  approvers: string[];
  required: number;
  /** Why each refused approval was refused, by position. */
  refused: { position: number; reason: string }[];
  /** The org of each approval by position, null where it was refused. */
  orgs: (string | null)[];
}

function verifyApproval(jws: string, cmd: AdminCommand, swarm: SwarmConfig, keyring: Keyring): string {
  const parts = jws.split('.');
  if (parts.length !== 3) throw new Error('not a compact JWS');
  const [h, p, s] = parts as [string, string, string];
  const header = JSON.parse(fromUtf8(decodeBase64Url(h))) as Record<string, unknown>;
  if (!isObject(header) || header.alg !== 'EdDSA' || header.typ !== ADMIN_JWS_TYPE || typeof header.kid !== 'string' || Object.keys(header).length !== 3) {
    throw new Error(`the header must be exactly {alg: EdDSA, kid, typ: ${ADMIN_JWS_TYPE}}`);
  }
  const entry = keyring.get(header.kid);
  if (!entry || entry.role !== 'admin') throw new Error(`kid ${JSON.stringify(header.kid)} is not an admin key`);
  if (!swarm.members.includes(entry.org)) throw new Error(`${entry.org} is not a member of swarm ${swarm.id}`);
  const payload: unknown = JSON.parse(fromUtf8(decodeBase64Url(p)));
  const expected: AdminApprovalPayload = { v: 1, swarm: cmd.swarm, id: cmd.id, action: cmd.action };
  if (!bytesEqual(canonicalBytes(payload), canonicalBytes(expected))) throw new Error('the approval is for another change');
  if (!keyring.verify(entry, utf8(`${h}.${p}`), decodeBase64Url(s))) throw new Error('bad signature');
  return entry.org;
}

/** Recomputes which member orgs approved an admin command and whether that meets the swarm's adminPolicy. */
export function checkAdminApprovals(cmd: AdminCommand, swarm: SwarmConfig, keyring: Keyring): ApprovalCheck {
  return countApprovals(cmd, swarm, (jws) => verifyApproval(jws, cmd, swarm, keyring));
}

function countApprovals(cmd: AdminCommand, swarm: SwarmConfig, orgOf: (jws: string, position: number) => string): ApprovalCheck {
  const approvers = new Set<string>();
  const refused: ApprovalCheck['refused'] = [];
  const orgs = cmd.approvals.map((jws, position) => {
    try {
      const org = orgOf(jws, position);
      approvers.add(org);
      return org;
    } catch (error) {
      refused.push({ position, reason: error instanceof Error ? error.message : String(error) });
      return null;
    }
  });
  const required = requiredApprovals(swarm.adminPolicy, swarm.members.length, swarm.mode);
  const ok = cmd.swarm === swarm.id && approvers.size >= required;
  return { ok, approvers: [...approvers].sort(), required, refused, orgs };
}

/**
 * The command as a node admits it: only the approvals that verify with its keys, each with its org (`approvers`).
 * Null when none does. What enters the log is thus fully valid, and counting it later needs no key.
 */
export function admitAdminCommand(cmd: AdminCommand, swarm: SwarmConfig, keyring: Keyring): { command: AdminCommand | null; check: ApprovalCheck } {
  const check = checkAdminApprovals(cmd, swarm, keyring);
  const kept = cmd.approvals.flatMap((jws, i) => (check.orgs[i] ? [{ jws, org: check.orgs[i]! }] : []));
  const { approvers: _claimed, ...rest } = cmd;
  const command = kept.length === 0 ? null : { ...rest, approvals: kept.map((k) => k.jws), approvers: kept.map((k) => k.org) };
  return { command, check };
}

/**
 * Before an admin command is appended (Raft leader) or voted for (PBFT replica): every approval verifies with this
 * node's keys and, where the command names its approvers, names exactly the org each one verified for.
 */
export function adminCommandVerifies(cmd: AdminCommand, swarm: SwarmConfig, keyring: Keyring): boolean {
  const check = checkAdminApprovals(cmd, swarm, keyring);
  if (cmd.swarm !== swarm.id || check.refused.length > 0 || check.approvers.length === 0) return false;
  return cmd.approvers === undefined || cmd.approvers.every((org, i) => org === check.orgs[i]);
}

/**
 * Applying a committed admin command: one approval per org, counted from the approvers the command names (judged
 * before it committed) — only orgs that are voters at this index, each approval for exactly this change — with no key
 * looked up. A command of an earlier version, without approvers, is counted with `keyring` (checkAdminApprovals).
 */
export function countCommittedApprovals(cmd: AdminCommand, swarm: SwarmConfig, keyring: Keyring): ApprovalCheck {
  const approvers = cmd.approvers;
  if (approvers === undefined) return checkAdminApprovals(cmd, swarm, keyring);
  const expected = canonicalBytes({ v: 1, swarm: cmd.swarm, id: cmd.id, action: cmd.action } satisfies AdminApprovalPayload);
  return countApprovals(cmd, swarm, (jws, position) => {
    const org = approvers[position]!;
    if (!swarm.members.includes(org)) throw new Error(`${org} is not a member of swarm ${swarm.id}`);
    const payload: unknown = JSON.parse(fromUtf8(decodeBase64Url(jws.split('.')[1] ?? '')));
    if (!bytesEqual(canonicalBytes(payload), expected)) throw new Error('the approval is for another change');
    return org;
  });
}
