// The audit record of each committed log entry, its hash chain, and AuditLog: the append-only state (last record
// hash + Merkle frontier) a node keeps per swarm and carries in its snapshots so the chain never restarts.
import type { ConsensusMode } from '../config/types.ts';
import { canonicalBytes } from '../crypto/canonical.ts';
import { fromBase64Url, toBase64Url, toHex } from '../crypto/encoding.ts';
import { envelopePrefix } from '../crypto/envelope.ts';
import { sha256 } from '../crypto/hash.ts';
import { MerkleFrontier, leafHash, type FrontierState } from './merkle.ts';

/** `prev` of the record at index 1: 64 ASCII zeros. */
export const GENESIS_PREV = '0'.repeat(64);
/** Envelope domain of the record hash: SHA-256("conclave/audit-record/v1\n" || canonical JSON of the record). */
export const RECORD_HASH_DOMAIN = 'audit-record';

/**
 * One committed entry as the audit trail sees it. Raft records carry `term`, PBFT records carry `view` (exactly one,
 * matching `mode`: the mode under which the entry was committed). `index` is the log index (1-based) and equals the
 * Merkle leaf index + 1.
 */
export interface AuditRecord {
  v: 1;
  federation: string;
  swarm: string;
  index: number;
  mode: ConsensusMode;
  term?: number;
  view?: number;
  /** Lowercase hex record hash of the record at index - 1 (GENESIS_PREV at index 1). */
  prev: string;
  /** base64url (no padding) of the committed entry's command bytes, exactly as they are in the log. */
  data: string;
}

export interface RecordFields {
  federation: string;
  swarm: string;
  index: number;
  mode: ConsensusMode;
  /** The raft term or the pbft view the entry was committed in. */
  epoch: number;
  /** The committed entry's command bytes (or their base64url). */
  data: Uint8Array | string;
}

/** What a record links to: the previous record itself, or just its index and hash (after a restart or snapshot). */
export interface ChainAnchor {
  index: number;
  hash: string;
}

const HEX64 = /^[0-9a-f]{64}$/;
const B64URL = /^[A-Za-z0-9_-]*$/;
const RECORD_KEYS = new Set(['v', 'federation', 'swarm', 'index', 'mode', 'term', 'view', 'prev', 'data']);

/** The exact member set of a record, in canonical-JSON key order (for readers; canonical JSON sorts anyway). */
export function recordPayload(record: AuditRecord): AuditRecord {
  const out: AuditRecord = {
    v: 1,
    data: record.data,
    federation: record.federation,
    index: record.index,
    mode: record.mode,
    prev: record.prev,
    swarm: record.swarm,
  };
  if (record.mode === 'raft') out.term = record.term!;
  else out.view = record.view!;
  return out;
}

/** The Merkle leaf of a record: its canonical JSON bytes. */
export function recordLeaf(record: AuditRecord): Uint8Array {
  return canonicalBytes(recordPayload(record));
}

/** SHA-256(0x00 || canonical JSON of the record). */
export function recordLeafHash(record: AuditRecord): Uint8Array {
  return leafHash(recordLeaf(record));
}

const RECORD_HASH_PREFIX = envelopePrefix(RECORD_HASH_DOMAIN);

/** Lowercase hex SHA-256 of "conclave/audit-record/v1\n" || canonical JSON of the record. */
export function recordHash(record: AuditRecord): string {
  return recordHashOfLeaf(recordLeaf(record));
}

/** recordHash from the record's canonical bytes (its Merkle leaf), for a caller that holds them already. */
function recordHashOfLeaf(leaf: Uint8Array): string {
  return toHex(sha256(RECORD_HASH_PREFIX, leaf));
}

/** The command bytes a record carries. */
export function recordData(record: AuditRecord): Uint8Array {
  return fromBase64Url(record.data);
}

/**
 * Builds the record of a committed entry. `prev` is the previous record (or its anchor), null only for index 1.
 * Throws when the index does not follow the previous one.
 */
export function makeRecord(prev: AuditRecord | ChainAnchor | null, fields: RecordFields): AuditRecord {
  // data given as bytes is encoded right here (Buffer's base64url: always valid), so its shape is not re-checked
  // — a regular expression over every byte of the entry, on every node, for each one appended.
  const prevIndex = prev === null ? 0 : prev.index;
  if (fields.index !== prevIndex + 1) throw new RangeError(`audit record ${fields.index} cannot follow record ${prevIndex}`);
  const prevHash = prev === null ? GENESIS_PREV : 'hash' in prev ? prev.hash : recordHash(prev);
  const data = typeof fields.data === 'string' ? fields.data : toBase64Url(fields.data);
  const record: AuditRecord = {
    v: 1,
    federation: fields.federation,
    swarm: fields.swarm,
    index: fields.index,
    mode: fields.mode,
    prev: prevHash,
    data,
  };
  if (fields.mode === 'raft') record.term = fields.epoch;
  else record.view = fields.epoch;
  const problem = shapeProblem(record, typeof fields.data !== 'string');
  if (problem) throw new RangeError(problem);
  return record;
}

/** Why a parsed value is not a well-formed audit record, or null when it is one. */
export function recordShapeProblem(value: unknown): string | null {
  return shapeProblem(value, false);
}

function shapeProblem(value: unknown, dataEncodedHere: boolean): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'a record must be a JSON object';
  const r = value as Record<string, unknown>;
  for (const key of Object.keys(r)) if (!RECORD_KEYS.has(key)) return `unknown record member ${JSON.stringify(key)}`;
  if (r.v !== 1) return 'record.v must be 1';
  if (typeof r.federation !== 'string' || r.federation === '') return 'record.federation must be a non-empty string';
  if (typeof r.swarm !== 'string' || r.swarm === '') return 'record.swarm must be a non-empty string';
  if (typeof r.index !== 'number' || !Number.isSafeInteger(r.index) || r.index < 1) return 'record.index must be an integer >= 1';
  if (r.mode !== 'raft' && r.mode !== 'pbft') return 'record.mode must be "raft" or "pbft"';
  const epochKey = r.mode === 'raft' ? 'term' : 'view';
  const otherKey = r.mode === 'raft' ? 'view' : 'term';
  const epoch = r[epochKey];
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0) return `a ${r.mode} record needs record.${epochKey}, an integer >= 0`;
  if (otherKey in r) return `a ${r.mode} record has no record.${otherKey}`;
  if (typeof r.prev !== 'string' || !HEX64.test(r.prev)) return 'record.prev must be 64 lowercase hex digits';
  if (typeof r.data !== 'string' || (!dataEncodedHere && !B64URL.test(r.data)) || r.data.length % 4 === 1) return 'record.data must be base64url without padding';
  return null;
}

export type ChainProblemCode = 'MALFORMED_RECORD' | 'INDEX_GAP' | 'INDEX_OUT_OF_ORDER' | 'CHAIN_BROKEN' | 'WRONG_SWARM' | 'TERM_REGRESSED';

export interface ChainProblem {
  index: number;
  code: ChainProblemCode;
  message: string;
}

/**
 * Streaming check of the chain: each record must be well formed, belong to the expected federation and swarm,
 * carry the next index, link to the previous record's hash, and (between consecutive raft records) never lower the
 * term. PBFT views are not monotonic along sequence numbers (a request prepared in an old view may commit after a
 * later one), so they are not compared.
 */
export class ChainChecker {
  private expectedIndex: number;
  private lastHash: string;
  private lastRecord: AuditRecord | null = null;

  constructor(
    private readonly federation: string,
    private readonly swarm: string,
    anchor: ChainAnchor | null = null,
  ) {
    this.expectedIndex = anchor === null ? 1 : anchor.index + 1;
    this.lastHash = anchor === null ? GENESIS_PREV : anchor.hash;
  }

  /** The hash of the last accepted record (the anchor's before any). */
  get head(): ChainAnchor {
    return { index: this.expectedIndex - 1, hash: this.lastHash };
  }

  /** Checks the next record; returns its hash, or the problem (the checker then stays where it was). */
  next(value: unknown): { hash: string } | { problem: ChainProblem } {
    const shape = recordShapeProblem(value);
    const index = typeof (value as { index?: unknown })?.index === 'number' ? (value as { index: number }).index : this.expectedIndex;
    if (shape) return { problem: { index, code: 'MALFORMED_RECORD', message: shape } };
    const record = value as AuditRecord;
    if (record.federation !== this.federation || record.swarm !== this.swarm) {
      return {
        problem: {
          index,
          code: 'WRONG_SWARM',
          message: `record ${index} belongs to ${record.federation}/${record.swarm}, not ${this.federation}/${this.swarm}`,
        },
      };
    }
    if (record.index > this.expectedIndex) {
      return { problem: { index: this.expectedIndex, code: 'INDEX_GAP', message: `expected record ${this.expectedIndex}, found record ${record.index}: entries are missing or out of order` } };
    }
    if (record.index < this.expectedIndex) {
      return { problem: { index: this.expectedIndex, code: 'INDEX_OUT_OF_ORDER', message: `expected record ${this.expectedIndex}, found record ${record.index} again or out of order` } };
    }
    if (record.prev !== this.lastHash) {
      return {
        problem: {
          index,
          code: 'CHAIN_BROKEN',
          message: `record ${index}: prev ${record.prev} is not the hash ${this.lastHash} of record ${index - 1}`,
        },
      };
    }
    const last = this.lastRecord;
    if (last && last.mode === 'raft' && record.mode === 'raft' && record.term! < last.term!) {
      return { problem: { index, code: 'TERM_REGRESSED', message: `record ${index} has term ${record.term}, lower than term ${last.term} of record ${last.index}` } };
    }
    const hash = recordHash(record);
    this.lastHash = hash;
    this.lastRecord = record;
    this.expectedIndex++;
    return { hash };
  }
}

/** Checks a whole in-memory chain starting at index 1 (or after `anchor`); the first problem, or null. */
export function verifyChain(records: readonly AuditRecord[], anchor: ChainAnchor | null = null): ChainProblem | null {
  if (records.length === 0) return null;
  const checker = new ChainChecker(records[0]!.federation, records[0]!.swarm, anchor);
  for (const record of records) {
    const result = checker.next(record);
    if ('problem' in result) return result.problem;
  }
  return null;
}

/** What a node persists per swarm (and puts in every snapshot) to continue the audit trail exactly. */
export interface AuditState {
  federation: string;
  swarm: string;
  /** Index of the last record (= Merkle tree size). */
  size: number;
  /** Record hash of the record at `size` (GENESIS_PREV when size is 0). */
  lastHash: string;
  frontier: FrontierState;
}

export interface AppendedRecord {
  record: AuditRecord;
  /** Record hash (lowercase hex). */
  hash: string;
  /** Merkle leaf hash of the record. */
  leafHash: Uint8Array;
  /** Merkle root of the tree of size record.index. */
  root: Uint8Array;
  /** The record's canonical JSON bytes (its Merkle leaf; what storage keeps), so no caller encodes it again. */
  bytes: Uint8Array;
}

/**
 * The append side of the audit trail for one swarm: the driver calls append() for every committed entry in index
 * order (noop, configuration and admin entries included), persists state() with the applied index, and restores
 * with AuditLog.restore(). Records are a pure function of the committed log, so every replica builds the same
 * records, hashes and roots.
 */
export class AuditLog {
  private readonly frontier: MerkleFrontier;
  private lastHash: string;

  private constructor(
    readonly federation: string,
    readonly swarm: string,
    frontier: MerkleFrontier,
    lastHash: string,
  ) {
    this.frontier = frontier;
    this.lastHash = lastHash;
  }

  static create(federation: string, swarm: string): AuditLog {
    return new AuditLog(federation, swarm, new MerkleFrontier(), GENESIS_PREV);
  }

  static restore(state: AuditState): AuditLog {
    const frontier = new MerkleFrontier(state.frontier);
    if (frontier.size !== state.size) throw new RangeError(`audit state: frontier size ${frontier.size} differs from size ${state.size}`);
    if (!HEX64.test(state.lastHash)) throw new RangeError('audit state: lastHash must be 64 lowercase hex digits');
    if (state.size === 0 && state.lastHash !== GENESIS_PREV) throw new RangeError('audit state: an empty log has the genesis hash');
    return new AuditLog(state.federation, state.swarm, frontier, state.lastHash);
  }

  get size(): number {
    return this.frontier.size;
  }

  get head(): ChainAnchor {
    return { index: this.frontier.size, hash: this.lastHash };
  }

  root(): Uint8Array {
    return this.frontier.root();
  }

  /** Appends the committed entry at `index` (must be size + 1). */
  append(entry: { index: number; mode: ConsensusMode; epoch: number; data: Uint8Array }): AppendedRecord {
    const record = makeRecord(this.head, { federation: this.federation, swarm: this.swarm, ...entry });
    // The canonical bytes once, for both hashes and the caller (each is a pass over the whole entry).
    const bytes = recordLeaf(record);
    const hash = recordHashOfLeaf(bytes);
    const leaf = leafHash(bytes);
    this.frontier.appendLeafHash(leaf);
    this.lastHash = hash;
    return { record, hash, leafHash: leaf, root: this.frontier.root(), bytes };
  }

  state(): AuditState {
    return { federation: this.federation, swarm: this.swarm, size: this.frontier.size, lastHash: this.lastHash, frontier: this.frontier.toJSON() };
  }
}
