// Plain-data types of the Raft core: log entries, durable state, configuration, wire messages and the Ready batch.
// Everything here is JSON-free plain data so that the codec, the driver and the simulator can share it.

export type NodeId = string; // an org id, e.g. "acme"

export type EntryType = 'normal' | 'conf';

export interface Entry {
  index: number;
  term: number;
  type: EntryType;
  data: Uint8Array;
}

/** What must be durable before any message of the same Ready is sent. */
export interface HardState {
  term: number;
  vote: NodeId | null;
  commit: number;
}

export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

export interface Snapshot {
  index: number;
  term: number;
  conf: ConfState;
  data: Uint8Array;
}

/** One membership change; the core applies at most one at a time (see confchange.ts for why). */
export type ConfChange =
  | { type: 'add-learner'; node: NodeId }
  | { type: 'promote'; node: NodeId }
  | { type: 'remove'; node: NodeId };

export interface RaftConfig {
  id: NodeId;
  /** Ticks without hearing from a leader before campaigning; the real timeout is random in [electionTick, 2*electionTick). Default 10. */
  electionTick: number;
  /** Ticks between leader heartbeats. Default 1. Must be < electionTick. */
  heartbeatTick: number;
  /** Uniform in [0, 1); the only source of randomness of the core (inject a seeded PRNG in tests). */
  rand: () => number;
  /** Default true: a node first asks whether it could win before disturbing the cluster with a new term. */
  preVote?: boolean;
  /** Default true: a leader steps down without a heartbeat quorum within an election timeout, and followers in a leader lease ignore votes. */
  checkQuorum?: boolean;
  /** Bound on append messages in flight to one follower in replicate state. Default 256. */
  maxInflightMsgs?: number;
  /** Bound on the entry bytes in flight to one follower. Default maxInflightMsgs * maxSizePerMsg. */
  maxInflightBytes?: number;
  /** Soft bound on entry bytes per append message (at least one entry is always sent). Default 1 MiB. */
  maxSizePerMsg?: number;
  /** Leader refuses proposals once this many payload bytes are uncommitted. Default unbounded (0 = unbounded). */
  maxUncommittedBytes?: number;
  /**
   * Default false. An idle group may quiesce (after CockroachDB): a leader whose every responsive follower holds its
   * whole log, with nothing pending, sends one heartbeat flagged `quiesce` and stops ticking; a follower that gets it
   * and holds exactly that log stops ticking too. A quiesced node ignores tick(); it wakes on a proposal, a conf
   * change, a transfer, a read, campaign(), unquiesce(), forgetLeader(), or any message other than the quiescing
   * heartbeat (and, on the leader, the answers of caught-up followers to it).
   *
   * Consequence: a quiesced follower no longer notices that its leader died. The driver MUST then learn it from
   * outside (node liveness) and call forgetLeader() (or unquiesce()) on the followers of a leader whose node is
   * down, and unquiesce() on a quiesced leader when one of its followers' nodes goes down (so CheckQuorum runs).
   */
  quiesce?: boolean;
  /**
   * TEST ONLY. Commits entries of previous terms by counting replicas (the bug of the Raft paper's Figure 8).
   * Exists so the simulator can prove it detects the resulting safety violation. Never set it in production.
   */
  unsafeCommitPreviousTermByCounting?: boolean;
}

export interface RaftInitialState {
  hardState: HardState;
  snapshot: Snapshot | null;
  /** Durable entries after the snapshot, contiguous. */
  entries: Entry[];
  /** The bootstrap membership, used when snapshot is null. */
  conf: ConfState;
  /** Highest index the application has applied (>= snapshot index). */
  applied: number;
}

export type ProposeRejectCode =
  | 'NOT_LEADER'
  | 'TRANSFERRING'
  | 'TOO_MANY_UNCOMMITTED'
  | 'CONF_CHANGE_PENDING' // another conf change is not yet applied, or the leader has not committed an entry of its term yet
  | 'CONF_CHANGE_INVALID' // e.g. promote a non-learner, add an existing member, remove the last voter
  | 'LEARNER_BEHIND'; // promote refused: the learner's log is not yet close to the leader's

export type ProposeResult =
  | { ok: true; index: number; term: number }
  | { ok: false; code: ProposeRejectCode; leader: NodeId | null };

interface MessageBase {
  from: NodeId;
  to: NodeId;
  term: number;
}

/** AppendEntries: entries follow (index, logTerm); commit is the leader's commit index. */
export interface AppendMessage extends MessageBase {
  type: 'app';
  index: number;
  logTerm: number;
  entries: Entry[];
  commit: number;
}

/**
 * Answer to 'app' and 'snap'. Accept: index is the follower's last matching index.
 * Reject: index is the rejected prev index; (rejectHint, logTerm) is the follower's guess of the
 * last index that may match (fast backtracking: largest index <= hint whose term <= the leader's logTerm).
 */
export interface AppendResponse extends MessageBase {
  type: 'app-resp';
  index: number;
  reject: boolean;
  rejectHint: number;
  logTerm: number;
}

export interface VoteRequest extends MessageBase {
  type: 'vote' | 'prevote';
  /** Candidate's last log index and term. */
  index: number;
  logTerm: number;
  /** Set by a leadership transfer: bypasses the leader lease of the voters. */
  transfer: boolean;
}

export interface VoteResponse extends MessageBase {
  type: 'vote-resp' | 'prevote-resp';
  reject: boolean;
}

export interface HeartbeatMessage extends MessageBase {
  type: 'heartbeat';
  commit: number;
  /** ReadIndex context being confirmed by this heartbeat round, if any. */
  ctx: Uint8Array | null;
  /** The leader quiesced: a follower whose log ends exactly at `commit` stops its election timer (see RaftConfig.quiesce). */
  quiesce: boolean;
}

export interface HeartbeatResponse extends MessageBase {
  type: 'heartbeat-resp';
  ctx: Uint8Array | null;
}

export interface SnapshotMessage extends MessageBase {
  type: 'snap';
  snapshot: Snapshot;
}

/** Leadership transfer: the caught-up target campaigns at once. */
export interface TimeoutNowMessage extends MessageBase {
  type: 'timeout-now';
}

/** A follower asks the leader for a read index. */
export interface ReadIndexRequest extends MessageBase {
  type: 'read-index';
  ctx: Uint8Array;
}

export interface ReadIndexResponse extends MessageBase {
  type: 'read-index-resp';
  index: number;
  ctx: Uint8Array;
}

export type Message =
  | AppendMessage
  | AppendResponse
  | VoteRequest
  | VoteResponse
  | HeartbeatMessage
  | HeartbeatResponse
  | SnapshotMessage
  | TimeoutNowMessage
  | ReadIndexRequest
  | ReadIndexResponse;

export type MessageType = Message['type'];

export interface ReadState {
  index: number;
  ctx: Uint8Array;
}

export interface Ready {
  /** Persist if not null. */
  hardState: HardState | null;
  /** Append durably; entries[0].index may be <= the last stored index: truncate the stored suffix from there first. */
  entries: Entry[];
  /** Install durably (replaces state machine and log up to snapshot.index). */
  snapshot: Snapshot | null;
  /** Send ONLY after hardState, entries and snapshot are durable. */
  messages: Message[];
  /** Apply in order, after the snapshot if any. Conf entries are applied by the core itself on advance(). */
  committed: Entry[];
  readStates: ReadState[];
  /** Storage may delete log entries <= this index (the app's snapshot covers them). */
  compactedTo: number | null;
}

export type RaftRole = 'follower' | 'pre-candidate' | 'candidate' | 'leader' | 'learner';
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export interface ProgressStatus {
  match: number;
  next: number;
  state: ProgressState;
  recentActive: boolean;
  learner: boolean;
}

export interface RaftStatus {
  id: NodeId;
  role: RaftRole;
  term: number;
  vote: NodeId | null;
  leader: NodeId | null;
  commit: number;
  applied: number;
  lastIndex: number;
  lastTerm: number;
  snapshotIndex: number;
  conf: ConfState;
  /** Only on the leader: one row per voter and learner, including itself. */
  progress: Record<NodeId, ProgressStatus>;
  transferee: NodeId | null;
  /** Quiesced: not ticking until woken (see RaftConfig.quiesce). */
  quiesced: boolean;
}

/** The cheap subset of RaftStatus (no allocation beyond this object), for drivers that poll often. */
export interface RaftBasicStatus {
  role: RaftRole;
  term: number;
  leader: NodeId | null;
  commit: number;
  applied: number;
  quiesced: boolean;
}
