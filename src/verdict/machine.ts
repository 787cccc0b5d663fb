// The decision state machine of one swarm: applies committed log commands in index order and records one vote per
// org per subject and one decision per subject, forever. Deterministic: no clock; what it remembers (subjects,
// verdicts by hash, nonces) lives in a DecisionStore — in memory (MemoryDecisionStore, with canonical snapshots), or
// on disk behind bounded caches on a node (storage/decision-store.ts), so a node's memory does not grow per verdict.
import type { SwarmConfig } from '../config/types.ts';
import { canonicalBytes } from '../crypto/canonical.ts';
import { fromUtf8 } from '../crypto/encoding.ts';
import { sha256 } from '../crypto/hash.ts';
import { parseVerdictJws, VerdictError, type ParsedVerdict, type VerdictErrorCode } from './format.ts';
import type { Keyring } from './keyring.ts';
import { evaluatePolicy, validatePolicy, type DecisionBasis } from './policy.ts';
import { verifyProposal, type LogCommand } from './proposal.ts';
import { checkVerdictAgainstSwarm, checkVerdictSignature, jwsHashOf } from './verify.ts';

export interface VoteRecord {
  org: string;
  agent: string;
  verdict: string;
  reason: string;
  iat: number;
  /** Log index of the entry that carried this verdict. */
  index: number;
  jwsHash: string;
}

export interface DecisionRecord {
  value: string;
  /** Log index of the entry whose verdict completed the decision. */
  index: number;
  /** Votes counted when it was decided. */
  votes: number;
  by: DecisionBasis;
}

/** A verdict that arrived after its subject was decided: kept for the record, never counted. */
export interface LateVerdict {
  org: string;
  agent: string;
  verdict: string;
  index: number;
  jwsHash: string;
}

export interface SubjectState {
  subject: string;
  /** The current vote of each org, sorted by org. */
  votes: VoteRecord[];
  decision: DecisionRecord | null;
  /** Verdicts applied after the decision, in log order. */
  late: LateVerdict[];
}

export type ApplyStatus = 'recorded' | 'replaced' | 'duplicate' | 'decided-already' | 'decision' | 'rejected';

export interface ApplyOutcome {
  jwsHash: string;
  status: ApplyStatus;
  /** null only when the JWS could not be parsed. */
  subject: string | null;
  /** The entry being applied; for 'duplicate', the entry that first carried this JWS. */
  index: number;
  /** Set for 'decision', 'decided-already', and 'duplicate' of a decided subject. */
  decision?: DecisionRecord;
  /** For 'replaced': the jwsHash of the vote this one replaced. */
  replaced?: string;
  /** For 'rejected': the error code and message. */
  code?: VerdictErrorCode;
  reason?: string;
}

export interface ApplyOptions {
  /** pbft: every replica verifies every agent JWS. raft: the proposal signature is trusted for content. */
  verifyAgentSignatures: boolean;
  /**
   * The caller has just verified this command's proposal signature with the same keyring (SwarmState does, before
   * applying): skip verifying it again — that re-canonicalizes and hashes the whole batch. The swarm and proposer
   * membership checks still run.
   */
  proposalSignatureVerified?: boolean;
  /**
   * Nodes: keys and signatures were judged before the entry committed (raft leader, pbft quorum), so apply looks no
   * key up — neither the proposal's node key nor the verdicts' agent keys — and every replica reaches the same state
   * whatever keys its own federation file lists. Membership, policy, nonce and subject rules still apply. The auditor
   * does not set it: it judges keys itself, against its federation file.
   */
  keysCheckedBeforeCommit?: boolean;
}

/** Where a verdict was recorded. */
export interface VerdictLocation {
  index: number;
  subject: string;
}

/**
 * Everything the machine remembers, key by key. Reads are synchronous (apply runs inside the consensus loop);
 * writes take effect for later reads at once. A store never interprets values: the machine owns their meaning.
 * The machine hands over fresh objects on every put and never mutates what a get returned.
 */
/** A verdict of a batch, hashed and parsed before the batch is applied (a parse failure is kept for its turn). */
interface PreparedVerdict {
  jwsHash: string;
  parsed: ParsedVerdict | null;
  parseError?: unknown;
}

export interface DecisionStore {
  subject(subject: string): SubjectState | undefined;
  putSubject(state: SubjectState): void;
  verdict(jwsHash: string): VerdictLocation | undefined;
  putVerdict(jwsHash: string, where: VerdictLocation): void;
  /** jwsHash of the verdict in which `org` used `nonce`. */
  nonce(org: string, nonce: string): string | undefined;
  putNonce(org: string, nonce: string, jwsHash: string): void;
  /**
   * Optional: the reads a batch is about to make, announced at once so a store on disk can fetch them in one
   * multi-get; valid until endPrefetch() (apply brackets each batch with the two).
   */
  prefetch?(reads: { subjects: string[]; verdicts: string[]; nonces: Array<[org: string, nonce: string]> }): void;
  endPrefetch?(): void;
}

/** The machine's own counters, persisted by whoever persists the store (tiny, O(1)). */
export interface MachineCounters {
  appliedIndex: number;
  subjects: number;
}

/** A DecisionStore in plain maps: the auditor's, the tests', and the one a canonical snapshot restores into. */
export class MemoryDecisionStore implements DecisionStore {
  readonly subjects = new Map<string, SubjectState>();
  readonly verdicts = new Map<string, VerdictLocation>();
  /** org + "\n" + nonce → jwsHash */
  readonly nonces = new Map<string, string>();

  subject(subject: string): SubjectState | undefined {
    return this.subjects.get(subject);
  }

  putSubject(state: SubjectState): void {
    this.subjects.set(state.subject, state);
  }

  verdict(jwsHash: string): VerdictLocation | undefined {
    return this.verdicts.get(jwsHash);
  }

  putVerdict(jwsHash: string, where: VerdictLocation): void {
    this.verdicts.set(jwsHash, where);
  }

  nonce(org: string, nonce: string): string | undefined {
    return this.nonces.get(`${org}\n${nonce}`);
  }

  putNonce(org: string, nonce: string, jwsHash: string): void {
    this.nonces.set(`${org}\n${nonce}`, jwsHash);
  }
}

interface SnapshotV1 {
  v: 1;
  swarm: string;
  appliedIndex: number;
  subjects: SubjectState[];
  /** [jwsHash, index, subject], sorted by jwsHash. */
  verdicts: [string, number, string][];
  /** [org, nonce, jwsHash], sorted by org then nonce. */
  nonces: [string, string, string][];
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class DecisionMachine {
  private applied = 0;
  private subjectTotal = 0;

  constructor(
    readonly swarm: SwarmConfig,
    private readonly keyring: Keyring,
    private readonly store: DecisionStore = new MemoryDecisionStore(),
    counters?: MachineCounters,
  ) {
    validatePolicy(swarm.policy, swarm.members.length);
    if (counters) {
      this.applied = counters.appliedIndex;
      this.subjectTotal = counters.subjects;
    }
  }

  /** Index of the last applied entry (0 before any). */
  get appliedIndex(): number {
    return this.applied;
  }

  /** What must be persisted beside the store to continue this machine exactly. */
  counters(): MachineCounters {
    return { appliedIndex: this.applied, subjects: this.subjectTotal };
  }

  /** The same state counted with another member list (a committed membership change); shares the store. */
  withSwarm(swarm: SwarmConfig): DecisionMachine {
    return new DecisionMachine(swarm, this.keyring, this.store, this.counters());
  }

  /**
   * Applies the committed command at `index` (strictly greater than the last applied index; a gap is allowed, as
   * entries of other kinds may be consumed elsewhere). Returns one outcome per verdict of a batch, [] otherwise.
   */
  apply(index: number, cmd: LogCommand, opts: ApplyOptions): ApplyOutcome[] {
    if (!Number.isSafeInteger(index) || index <= this.applied) {
      throw new Error(`invariant: apply(${index}) after index ${this.applied}; entries are applied once, in order`);
    }
    this.applied = index;
    if (cmd.type !== 'verdicts') return []; // noop; admin commands are applied by a later issue
    const refusal = this.checkProposal(cmd, opts.proposalSignatureVerified === true || opts.keysCheckedBeforeCommit === true);
    if (refusal) return cmd.batch.map((jws) => ({ jwsHash: jwsHashOf(jws), status: 'rejected', subject: null, index, code: refusal.code, reason: refusal.message }));
    const batch = cmd.batch.map((jws): PreparedVerdict => {
      const jwsHash = jwsHashOf(jws);
      try {
        return { jwsHash, parsed: parseVerdictJws(jws) };
      } catch (error) {
        return { jwsHash, parsed: null, parseError: error };
      }
    });
    const parsedOnes = batch.flatMap((verdict) => (verdict.parsed ? [verdict.parsed.payload] : []));
    this.store.prefetch?.({
      verdicts: batch.map((verdict) => verdict.jwsHash),
      subjects: parsedOnes.map((payload) => payload.subject),
      nonces: parsedOnes.map((payload) => [payload.org, payload.nonce]),
    });
    try {
      return batch.map((verdict) => this.applyVerdict(index, verdict, opts));
    } finally {
      this.store.endPrefetch?.();
    }
  }

  private checkProposal(cmd: Extract<LogCommand, { type: 'verdicts' }>, signatureVerified: boolean): VerdictError | null {
    if (cmd.swarm !== this.swarm.id) return new VerdictError('SWARM_MISMATCH', `the proposal is for swarm ${cmd.swarm}, applied in swarm ${this.swarm.id}`);
    if (!this.swarm.members.includes(cmd.proposer)) return new VerdictError('BAD_PROPOSAL', `proposer ${cmd.proposer} is not a member of swarm ${this.swarm.id}`);
    if (!signatureVerified && !verifyProposal(cmd, this.keyring)) return new VerdictError('BAD_PROPOSAL', `the proposal signature does not verify with a node key of ${cmd.proposer}`);
    return null;
  }

  private applyVerdict(index: number, verdict: PreparedVerdict, opts: ApplyOptions): ApplyOutcome {
    const { jwsHash } = verdict;
    const seen = this.store.verdict(jwsHash);
    if (seen) {
      const decision = this.store.subject(seen.subject)?.decision ?? undefined;
      return { jwsHash, status: 'duplicate', subject: seen.subject, index: seen.index, ...(decision ? { decision: { ...decision } } : {}) };
    }
    let subjectId: string | null = null;
    try {
      if (!verdict.parsed) throw verdict.parseError;
      const parsed = verdict.parsed;
      subjectId = parsed.payload.subject;
      if (!opts.keysCheckedBeforeCommit) checkVerdictSignature(parsed, this.keyring, !opts.verifyAgentSignatures);
      checkVerdictAgainstSwarm(parsed, this.swarm);
      this.checkNonce(parsed.payload.org, parsed.payload.nonce, jwsHash);
      const { payload } = parsed;
      const stored = this.store.subject(payload.subject);
      if (!stored) this.subjectTotal++;
      this.store.putNonce(payload.org, payload.nonce, jwsHash);
      this.store.putVerdict(jwsHash, { index, subject: payload.subject });
      const decision = stored?.decision ?? null;
      if (decision) {
        const late: LateVerdict = { org: payload.org, agent: payload.agent, verdict: payload.verdict, index, jwsHash };
        this.store.putSubject({ subject: payload.subject, votes: stored!.votes, decision, late: [...stored!.late, late] });
        return { jwsHash, status: 'decided-already', subject: payload.subject, index, decision: { ...decision } };
      }
      const previous = stored?.votes.find((vote) => vote.org === payload.org);
      const vote: VoteRecord = {
        org: payload.org,
        agent: payload.agent,
        verdict: payload.verdict,
        reason: payload.reason,
        iat: payload.iat,
        index,
        jwsHash,
      };
      const cast = [...(stored?.votes ?? []).filter((v) => v.org !== payload.org), vote].sort((a, b) => compare(a.org, b.org));
      const decided = evaluatePolicy(this.swarm.policy, this.swarm.members.length, cast);
      const next: SubjectState = { subject: payload.subject, votes: cast, decision: null, late: stored?.late ?? [] };
      if (decided) next.decision = { value: decided.value, index, votes: cast.length, by: decided.by };
      this.store.putSubject(next);
      if (next.decision) return { jwsHash, status: 'decision', subject: payload.subject, index, decision: { ...next.decision } };
      return previous
        ? { jwsHash, status: 'replaced', subject: payload.subject, index, replaced: previous.jwsHash }
        : { jwsHash, status: 'recorded', subject: payload.subject, index };
    } catch (error) {
      if (!(error instanceof VerdictError)) throw error;
      return { jwsHash, status: 'rejected', subject: subjectId, index, code: error.code, reason: error.message };
    }
  }

  /**
   * NONCE_REPLAYED when `org` already used `nonce` in another verdict. The receiving node calls it before proposing
   * (against its applied state); apply calls it again, so a replay that raced into the log is still rejected.
   */
  checkNonce(org: string, nonce: string, jwsHash: string): void {
    const used = this.store.nonce(org, nonce);
    if (used !== undefined && used !== jwsHash) {
      throw new VerdictError('NONCE_REPLAYED', `org ${org} already used nonce ${nonce} in another verdict (${used})`);
    }
  }

  subject(subject: string): SubjectState | undefined {
    const state = this.store.subject(subject);
    return state ? copySubject(state) : undefined;
  }

  /**
   * The receiving node's checks of a verdict it is about to admit, with one read of the store for both keys:
   * NONCE_REPLAYED (thrown), else where the verdict was already recorded (a resubmission), else undefined.
   */
  admissionLookup(org: string, nonce: string, jwsHash: string): { index: number; subject: string } | undefined {
    this.store.prefetch?.({ subjects: [], verdicts: [jwsHash], nonces: [[org, nonce]] });
    try {
      this.checkNonce(org, nonce, jwsHash);
      return this.lookupVerdict(jwsHash);
    } finally {
      this.store.endPrefetch?.();
    }
  }

  /** Where a verdict (by jwsHash) was recorded, if it was: resubmitting it is answered from here. */
  lookupVerdict(jwsHash: string): { index: number; subject: string } | undefined {
    const found = this.store.verdict(jwsHash);
    return found ? { ...found } : undefined;
  }

  subjectCount(): number {
    return this.subjectTotal;
  }

  /** Copies the whole state into another store (moving a machine kept in memory onto disk); its counters. */
  exportTo(target: DecisionStore): MachineCounters {
    const store = this.memoryStore('exportTo()');
    for (const state of store.subjects.values()) target.putSubject(copySubject(state));
    for (const [hash, where] of store.verdicts) target.putVerdict(hash, { ...where });
    for (const [key, hash] of store.nonces) {
      const cut = key.indexOf('\n');
      target.putNonce(key.slice(0, cut), key.slice(cut + 1), hash);
    }
    return this.counters();
  }

  private memoryStore(what: string): MemoryDecisionStore {
    if (!(this.store instanceof MemoryDecisionStore)) {
      throw new Error(`invariant: ${what} enumerates the whole state and exists only for a machine kept in memory (the auditor, tests)`);
    }
    return this.store;
  }

  /** Canonical JSON of the whole state, every collection sorted: equal states give equal bytes on every replica. */
  snapshot(): Uint8Array {
    const store = this.memoryStore('snapshot()');
    const snapshot: SnapshotV1 = {
      v: 1,
      swarm: this.swarm.id,
      appliedIndex: this.applied,
      subjects: [...store.subjects.keys()].sort(compare).map((subject) => copySubject(store.subjects.get(subject)!)),
      verdicts: [...store.verdicts.entries()]
        .sort((a, b) => compare(a[0], b[0]))
        .map(([hash, where]): [string, number, string] => [hash, where.index, where.subject]),
      nonces: [...store.nonces.entries()]
        .sort((a, b) => compare(a[0], b[0]))
        .map(([key, hash]): [string, string, string] => {
          const cut = key.indexOf('\n');
          return [key.slice(0, cut), key.slice(cut + 1), hash];
        }),
    };
    return canonicalBytes(snapshot);
  }

  /** SHA-256 of snapshot(): replicas that applied the same log have the same digest. */
  stateDigest(): Uint8Array {
    return sha256(this.snapshot());
  }

  static restore(swarm: SwarmConfig, keyring: Keyring, bytes: Uint8Array): DecisionMachine {
    let data: SnapshotV1;
    try {
      data = JSON.parse(fromUtf8(bytes)) as SnapshotV1;
    } catch {
      throw new Error(`decision snapshot of swarm ${swarm.id} is not UTF-8 JSON`);
    }
    if (data?.v !== 1 || data.swarm !== swarm.id || !Number.isSafeInteger(data.appliedIndex)) {
      throw new Error(`not a v1 decision snapshot of swarm ${swarm.id}`);
    }
    const store = new MemoryDecisionStore();
    for (const state of data.subjects) store.putSubject(copySubject(state));
    for (const [hash, index, subject] of data.verdicts) store.putVerdict(hash, { index, subject });
    for (const [org, nonce, hash] of data.nonces) store.putNonce(org, nonce, hash);
    const machine = new DecisionMachine(swarm, keyring, store, { appliedIndex: data.appliedIndex, subjects: data.subjects.length });
    // The snapshot is canonical: rebuilding must give back the very same bytes, or the bytes were not ours.
    const again = machine.snapshot();
    if (again.length !== bytes.length || again.some((byte, i) => byte !== bytes[i])) {
      throw new Error(`decision snapshot of swarm ${swarm.id} is not in canonical form (corrupt or foreign)`);
    }
    return machine;
  }
}

function copySubject(state: SubjectState): SubjectState {
  return {
    subject: state.subject,
    votes: state.votes.map((vote) => ({ ...vote })),
    decision: state.decision ? { ...state.decision } : null,
    late: state.late.map((late) => ({ ...late })),
  }
}
