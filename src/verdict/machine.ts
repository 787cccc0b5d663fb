// The decision state machine of one swarm: applies committed log commands in index order and records one vote per
// org per subject and one decision per subject, forever. Pure and deterministic: no clock, no I/O, sorted snapshots.
import type { SwarmConfig } from '../config/types.ts';
import { canonicalBytes } from '../crypto/canonical.ts';
import { fromUtf8 } from '../crypto/encoding.ts';
import { sha256 } from '../crypto/hash.ts';
import { parseVerdictJws, VerdictError, type VerdictErrorCode } from './format.ts';
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
}

interface MutableSubject {
  votes: Map<string, VoteRecord>;
  decision: DecisionRecord | null;
  late: LateVerdict[];
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
  private readonly subjects = new Map<string, MutableSubject>();
  /** Every verdict recorded (counted, replaced or late) by jwsHash: idempotent resubmission. */
  private readonly verdicts = new Map<string, { index: number; subject: string }>();
  /** org + "\n" + nonce → jwsHash of the verdict that used it. */
  private readonly nonces = new Map<string, string>();
  private applied = 0;

  constructor(
    readonly swarm: SwarmConfig,
    private readonly keyring: Keyring,
  ) {
    validatePolicy(swarm.policy, swarm.members.length);
  }

  /** Index of the last applied entry (0 before any). */
  get appliedIndex(): number {
    return this.applied;
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
    const refusal = this.checkProposal(cmd);
    if (refusal) return cmd.batch.map((jws) => ({ jwsHash: jwsHashOf(jws), status: 'rejected', subject: null, index, code: refusal.code, reason: refusal.message }));
    return cmd.batch.map((jws) => this.applyVerdict(index, jws, opts));
  }

  private checkProposal(cmd: Extract<LogCommand, { type: 'verdicts' }>): VerdictError | null {
    if (cmd.swarm !== this.swarm.id) return new VerdictError('SWARM_MISMATCH', `the proposal is for swarm ${cmd.swarm}, applied in swarm ${this.swarm.id}`);
    if (!this.swarm.members.includes(cmd.proposer)) return new VerdictError('BAD_PROPOSAL', `proposer ${cmd.proposer} is not a member of swarm ${this.swarm.id}`);
    if (!verifyProposal(cmd, this.keyring)) return new VerdictError('BAD_PROPOSAL', `the proposal signature does not verify with a node key of ${cmd.proposer}`);
    return null;
  }

  private applyVerdict(index: number, jws: string, opts: ApplyOptions): ApplyOutcome {
    const jwsHash = jwsHashOf(jws);
    const seen = this.verdicts.get(jwsHash);
    if (seen) {
      const decision = this.subjects.get(seen.subject)?.decision ?? undefined;
      return { jwsHash, status: 'duplicate', subject: seen.subject, index: seen.index, ...(decision ? { decision: { ...decision } } : {}) };
    }
    let subjectId: string | null = null;
    try {
      const parsed = parseVerdictJws(jws);
      subjectId = parsed.payload.subject;
      checkVerdictSignature(parsed, this.keyring, !opts.verifyAgentSignatures);
      checkVerdictAgainstSwarm(parsed, this.swarm);
      this.checkNonce(parsed.payload.org, parsed.payload.nonce, jwsHash);
      const { payload } = parsed;
      let subject = this.subjects.get(payload.subject);
      if (!subject) {
        subject = { votes: new Map(), decision: null, late: [] };
        this.subjects.set(payload.subject, subject);
      }
      this.nonces.set(`${payload.org}\n${payload.nonce}`, jwsHash);
      this.verdicts.set(jwsHash, { index, subject: payload.subject });
      if (subject.decision) {
        subject.late.push({ org: payload.org, agent: payload.agent, verdict: payload.verdict, index, jwsHash });
        return { jwsHash, status: 'decided-already', subject: payload.subject, index, decision: { ...subject.decision } };
      }
      const previous = subject.votes.get(payload.org);
      subject.votes.set(payload.org, {
        org: payload.org,
        agent: payload.agent,
        verdict: payload.verdict,
        reason: payload.reason,
        iat: payload.iat,
        index,
        jwsHash,
      });
      const cast = [...subject.votes.values()].sort((a, b) => compare(a.org, b.org));
      const decided = evaluatePolicy(this.swarm.policy, this.swarm.members.length, cast);
      if (decided) {
        subject.decision = { value: decided.value, index, votes: cast.length, by: decided.by };
        return { jwsHash, status: 'decision', subject: payload.subject, index, decision: { ...subject.decision } };
      }
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
    const used = this.nonces.get(`${org}\n${nonce}`);
    if (used !== undefined && used !== jwsHash) {
      throw new VerdictError('NONCE_REPLAYED', `org ${org} already used nonce ${nonce} in another verdict (${used})`);
    }
  }

  subject(subject: string): SubjectState | undefined {
    const state = this.subjects.get(subject);
    return state ? this.view(subject, state) : undefined;
  }

  /** Where a verdict (by jwsHash) was recorded, if it was: resubmitting it is answered from here. */
  lookupVerdict(jwsHash: string): { index: number; subject: string } | undefined {
    const found = this.verdicts.get(jwsHash);
    return found ? { ...found } : undefined;
  }

  subjectCount(): number {
    return this.subjects.size;
  }

  private view(subject: string, state: MutableSubject): SubjectState {
    return {
      subject,
      votes: [...state.votes.values()].sort((a, b) => compare(a.org, b.org)).map((vote) => ({ ...vote })),
      decision: state.decision ? { ...state.decision } : null,
      late: state.late.map((late) => ({ ...late })),
    };
  }

  /** Canonical JSON of the whole state, every collection sorted: equal states give equal bytes on every replica. */
  snapshot(): Uint8Array {
    const snapshot: SnapshotV1 = {
      v: 1,
      swarm: this.swarm.id,
      appliedIndex: this.applied,
      subjects: [...this.subjects.keys()].sort(compare).map((subject) => this.view(subject, this.subjects.get(subject)!)),
      verdicts: [...this.verdicts.entries()]
        .sort((a, b) => compare(a[0], b[0]))
        .map(([hash, where]): [string, number, string] => [hash, where.index, where.subject]),
      nonces: [...this.nonces.entries()]
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
    const machine = new DecisionMachine(swarm, keyring);
    machine.applied = data.appliedIndex;
    for (const state of data.subjects) {
      machine.subjects.set(state.subject, {
        votes: new Map(state.votes.map((vote) => [vote.org, { ...vote }])),
        decision: state.decision ? { ...state.decision } : null,
        late: state.late.map((late) => ({ ...late })),
      });
    }
    for (const [hash, index, subject] of data.verdicts) machine.verdicts.set(hash, { index, subject });
    for (const [org, nonce, hash] of data.nonces) machine.nonces.set(`${org}\n${nonce}`, hash);
    // The snapshot is canonical: rebuilding must give back the very same bytes, or the bytes were not ours.
    const again = machine.snapshot();
    if (again.length !== bytes.length || again.some((byte, i) => byte !== bytes[i])) {
      throw new Error(`decision snapshot of swarm ${swarm.id} is not in canonical form (corrupt or foreign)`);
    }
    return machine;
  }
}
