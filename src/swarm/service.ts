// What a running swarm offers the public API: the one boundary between api/ and the consensus drivers.
import type { ConsensusMode } from '../config/types.ts';
import type { VoteRecord } from '../verdict/machine.ts';
import type { AdminCommand } from '../verdict/proposal.ts';
import type { AdminChangeView } from './swarm-state.ts';

/** One counted verdict as the API shows it: the state machine's record of it. */
export type VoteView = VoteRecord;

export interface DecisionView {
  value: string;
  index: number;
  votes: number;
}

export interface SubjectView {
  swarm: string;
  subject: string;
  votes: VoteView[];
  decision: DecisionView | null;
}

/** The answer to a submitted verdict. */
export interface SubmitResult {
  /** accepted: proposed but not yet committed (wait=false); committed: in the log and applied here. */
  status: 'accepted' | 'committed' | 'duplicate' | 'decided-already' | 'rejected';
  swarm: string;
  jwsHash: string;
  index: number | null;
  entryHash: string | null;
  subject: SubjectView | null;
  reason?: string;
  /** pbft: how many replicas reported this same result (final once >= f+1). */
  replies?: number;
}

export interface LogEntryView {
  index: number;
  term: number;
  mode: ConsensusMode;
  hash: string;
  prev: string;
  kind: string;
  proposer: string | null;
  verdicts: number;
  data: string;
}

export interface PeerProgressView {
  org: string;
  match: number;
  next: number;
  state: string;
  active: boolean;
}

export interface SwarmStatusView {
  swarm: string;
  mode: ConsensusMode;
  /** 0, then +1 for every committed mode switch. */
  era: number;
  members: string[];
  role: string;
  term: number;
  leader: string | null;
  commitIndex: number;
  appliedIndex: number;
  lastIndex: number;
  peers: PeerProgressView[];
  detail?: Record<string, unknown>;
  /** The committed membership (voters, learners, changes under way) and its drift from the federation file. */
  membership?: import('./membership.ts').MembershipView;
  /** The committed decision policy and admin policy (genesis, then approved set-policy changes; never the file's). */
  rules?: import('../config/types.ts').SwarmRules;
}

export type { Checkpoint as CheckpointView } from '../audit/checkpoint.ts';
import type { Checkpoint as CheckpointView } from '../audit/checkpoint.ts';

export interface SwarmService {
  readonly id: string;
  submitVerdict(jws: string, options: { wait: boolean; timeoutMs: number }): Promise<SubmitResult>;
  /** Where a verdict applied on this node is (by jwsHash): its entry, and its subject now. */
  verdict(jwsHash: string): Promise<SubmitResult>;
  subject(subject: string): SubjectView | null;
  /**
   * A linearizable read barrier: resolves once everything committed before the call is applied here (raft: the
   * leader confirms its quorum, ReadIndex; pbft: the read indexes of 2f+1 replicas); what this node answers next is
   * at least that recent. 503 NO_QUORUM when too few answer in time, 503 NOT_APPLIED when this node does not apply
   * that far in time.
   */
  readBarrier(timeoutMs: number): Promise<void>;
  log(from: number, limit: number): Promise<LogEntryView[]>;
  status(): SwarmStatusView;
  /** Ascending by tree size: from size `from` on, or without it the newest `limit`. */
  checkpoints(query: { from?: number; limit: number }): Promise<CheckpointView[]>;
  inclusionProof(index: number, size: number | null): Promise<unknown>;
  consistencyProof(size1: number, size2: number): Promise<unknown>;
  submitAdmin(command: AdminCommand, timeoutMs: number): Promise<AdminChangeView>;
  adminChange(id: string): AdminChangeView | null;
  /** JSON Lines of the audit export format (docs/audit-format.md), one string per line. */
  exportLines(from: number, to: number | null): AsyncIterable<string>;
}

export interface NodeService {
  readonly org: string;
  readonly federation: string;
  swarm(id: string): SwarmService | undefined;
  swarmIds(): string[];
  ready(): boolean;
  peerHealth(): unknown[];
  metricsText(): Promise<string>;
  metricsContentType: string;
}
