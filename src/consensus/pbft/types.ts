// PBFT core types: configuration, requests, wire messages, the Ready batch and the durable state.
// Everything a driver, a codec or a simulator needs to speak to PbftCore is declared here.

/** An organisation id; replicas are ordered by their position in `PbftConfig.replicas`. */
export type NodeId = string;

/** Destination of an outgoing message: one replica, or every replica INCLUDING this one (see PbftReady.messages). */
export type PbftTarget = NodeId | 'all';

export interface PbftConfig {
  id: NodeId;
  /** Ordered replica set; primary of view v is replicas[v % n]. Needs n >= 4. 'all' is not a valid id. */
  replicas: NodeId[];
  /** K: the app reports a state digest after every K-th sequence number (default 16). */
  checkpointInterval: number;
  /** L: accepted sequence numbers are (h, h+L] where h is the stable checkpoint; a multiple of K, >= 2K. */
  watermarkWindow: number;
  /** Most requests in one pre-prepare (>= 1). */
  maxBatch: number;
  /** Base view-change timeout in ticks; doubles per consecutive view change that does not lead to an execution. */
  viewChangeTimeoutTicks: number;
  /** Cap for the doubled timeout (default 64 x base). */
  maxViewChangeTimeoutTicks?: number;
  /** Period in ticks of retransmissions (own votes missing at peers, view-change, checkpoint heartbeat). Default max(1, base/4). */
  retransmitTicks?: number;
  /**
   * A request executes at most once among the last `executedWindow` executed requests (default 100 000): the ids
   * are remembered in execution order and the oldest forgotten, so memory stays bounded and — the window being a
   * function of the executed sequence alone — every replica, restarted or not, decides a re-sent request alike.
   */
  executedWindow?: number;
  /** Digest function, SHA-256 in production (injected: the core does no crypto itself). */
  hash: (bytes: Uint8Array) => Uint8Array;
  /** The app's validity check of a request payload; a replica never prepares a batch holding an invalid request. */
  validateRequest: (payload: Uint8Array) => boolean;
  /**
   * Signature check for messages EMBEDDED in other messages (the prepares of a prepared certificate,
   * checkpoint proofs, the view-changes inside a new-view). The outer message is verified by the
   * driver before step(); nested ones are verified through this. Default: accept (driver verified them).
   */
  verify?: (msg: SignedPbftMessage) => boolean;
  /**
   * TEST ONLY. Replaces the quorum size; used by the simulator's `--broken quorum-2f` to prove the
   * simulator catches an unsafe quorum. Never set it outside tests: agreement is lost.
   */
  testOnlyQuorum?: number;
}

export interface PbftRequest {
  /** Unique per request (e.g. hash of the payload); a request id executes at most once. */
  id: string;
  payload: Uint8Array;
}

/** A stable checkpoint: `proof` holds >= quorum signed checkpoint messages for (seq, digest). */
export interface PbftCheckpointProof {
  seq: number;
  digest: Uint8Array;
  proof: SignedPbftMessage[];
}

/** Evidence that (view, seq, digest) prepared: the batch and >= quorum signed prepares (the primary prepares too). */
export interface PbftPreparedCert {
  view: number;
  seq: number;
  digest: Uint8Array;
  requests: PbftRequest[];
  prepares: SignedPbftMessage[];
}

/** One entry of a new-view's O set: the batch re-proposed at `seq` (empty requests = null request). */
export interface PbftNewViewEntry {
  seq: number;
  digest: Uint8Array;
  requests: PbftRequest[];
}

/** A request forwarded to the other replicas so that each knows it and runs its request timer. */
export interface PbftRequestMsg {
  type: 'request';
  to: PbftTarget;
  request: PbftRequest;
}

export interface PbftPrePrepareMsg {
  type: 'pre-prepare';
  to: PbftTarget;
  view: number;
  seq: number;
  digest: Uint8Array;
  requests: PbftRequest[];
}

export interface PbftPrepareMsg {
  type: 'prepare';
  to: PbftTarget;
  view: number;
  seq: number;
  digest: Uint8Array;
}

export interface PbftCommitMsg {
  type: 'commit';
  to: PbftTarget;
  view: number;
  seq: number;
  digest: Uint8Array;
}

export interface PbftCheckpointMsg {
  type: 'checkpoint';
  to: PbftTarget;
  seq: number;
  digest: Uint8Array;
}

export interface PbftViewChangeMsg {
  type: 'view-change';
  to: PbftTarget;
  /** The view the sender wants to move to. */
  view: number;
  /** The sender's stable checkpoint; null = genesis (seq 0). */
  checkpoint: PbftCheckpointProof | null;
  /** P: for each seq above the checkpoint, the highest-view prepared certificate the sender holds. */
  prepared: PbftPreparedCert[];
}

export interface PbftNewViewMsg {
  type: 'new-view';
  to: PbftTarget;
  view: number;
  /** V: >= quorum signed view-changes for `view` from distinct replicas. */
  viewChanges: SignedPbftMessage[];
  /** O: one entry per seq in (min-s, max-s], recomputed from V by every replica. */
  prePrepares: PbftNewViewEntry[];
}

/**
 * "I executed this batch at seq": sent to a replica that shows it is behind (it forwards a request we
 * executed above the stable checkpoint). f+1 matching ones prove at least one correct replica executed
 * it, so the batch was committed at seq: the laggard executes it without waiting for a checkpoint.
 */
export interface PbftExecutedMsg {
  type: 'executed';
  to: PbftTarget;
  seq: number;
  digest: Uint8Array;
  requests: PbftRequest[];
}

export type PbftMessage =
  | PbftRequestMsg
  | PbftExecutedMsg
  | PbftPrePrepareMsg
  | PbftPrepareMsg
  | PbftCommitMsg
  | PbftCheckpointMsg
  | PbftViewChangeMsg
  | PbftNewViewMsg;

export type PbftMessageType = PbftMessage['type'];

/** A message with its authenticated sender and signature (opaque to the core, kept for certificates). */
export type SignedPbftMessage = PbftMessage & { from: NodeId; sig: Uint8Array };

/** What the driver must make durable before sending the messages of the same Ready. */
export interface PbftPersist {
  view: number;
  inViewChange: boolean;
  /**
   * Append to the durable log. Messages from other replicas carry their signature; this replica's own
   * messages appear twice: first unsigned (sig of length 0: the intent, written before sending), then
   * signed once the driver has looped its signed copy back through step().
   */
  append: SignedPbftMessage[];
  /** Newly stable checkpoint: store it and drop logged messages it makes obsolete (see applyPersist). */
  stableCheckpoint: PbftCheckpointProof | null;
}

/** The protocol state a driver keeps durable (fold PbftPersist into it with applyPersist). */
export interface PbftDurableState {
  view: number;
  inViewChange: boolean;
  stableCheckpoint: PbftCheckpointProof | null;
  log: SignedPbftMessage[];
}

/**
 * What a core starts from: the durable protocol state plus what the APP made durable when it
 * executed committed batches (last executed seq and executed request ids, written atomically with
 * the app's state; the core never reports them as persisted because only the app knows when it applied).
 */
export interface PbftInitialState extends PbftDurableState {
  lastExecuted: number;
  executedIds: string[];
}

export interface PbftCommitted {
  seq: number;
  view: number;
  digest: Uint8Array;
  /** Requests to execute, in order: the agreed batch minus ids already executed (at-most-once). */
  requests: PbftRequest[];
  /** The agreed batch exactly as certified (its digest is `digest`), for audit. */
  batch: PbftRequest[];
  /**
   * >= quorum signed commits for (view, seq, digest); or, for a batch a lagging replica learnt from its
   * peers, f+1 signed `executed` messages for (seq, digest) (then `view` is -1).
   */
  certificate: SignedPbftMessage[];
}

export interface PbftStateTransfer {
  seq: number;
  digest: Uint8Array;
  /** Replicas that signed the stable checkpoint: ask them for the snapshot. */
  from: NodeId[];
}

export interface PbftReady {
  /** Must be durable before any of `messages` is sent; null when nothing changed. */
  persist: PbftPersist | null;
  /**
   * Unsigned outgoing messages. The driver signs each; a message to 'all' goes to every other replica
   * AND is stepped back into this core (signed) after advance(): the core counts its own votes only
   * from those signed copies, so that every certificate carries real signatures.
   */
  messages: PbftMessage[];
  /** Execute strictly in order, each exactly once; record (seq, request ids) durably with the app state. */
  committed: PbftCommitted[];
  /** After executing each of these seqs the app must call checkpointReady(seq, stateDigest). */
  checkpointsDue: number[];
  /** Newly stable checkpoint: the app may garbage-collect what precedes it (keep the snapshot at seq). */
  stableCheckpoint: PbftCheckpointProof | null;
  /** Fell behind a stable checkpoint: fetch a snapshot with this digest, then installState(). */
  stateTransfer: PbftStateTransfer | null;
}

export type PbftDropReason =
  | 'not-replica'
  | 'wrong-view'
  | 'not-primary'
  | 'outside-watermarks'
  | 'bad-digest'
  | 'invalid-request'
  | 'invalid-batch'
  | 'conflicting-pre-prepare'
  | 'conflicting-vote'
  | 'duplicate'
  | 'stale'
  | 'bad-checkpoint'
  | 'bad-view-change'
  | 'bad-new-view';

export interface PbftStatus {
  id: NodeId;
  view: number;
  primary: NodeId;
  isPrimary: boolean;
  inViewChange: boolean;
  /** h: seq of the stable checkpoint (0 = genesis). */
  lowWatermark: number;
  /** H = h + L. */
  highWatermark: number;
  lastExecuted: number;
  stableCheckpoint: number;
  stateTransferPending: number | null;
  pendingRequests: number;
  /** Consecutive view changes without an execution (timer is base * 2^this, capped). */
  viewChangeAttempts: number;
  dropped: Partial<Record<PbftDropReason, number>>;
}
