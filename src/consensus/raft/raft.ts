// The Raft state machine (after etcd-io/raft): roles and elections with PreVote and CheckQuorum,
// replication and commitment, membership, leadership transfer, ReadIndex, and quiescence of idle groups
// (after CockroachDB). Pure: no I/O, no clock.
import { RaftLog } from './log.ts';
import { ProgressTracker } from './tracker.ts';
import { ReadOnlyQueue, type PendingRead } from './read-only.ts';
import { applyConfChange, confChangeError, decodeConfChange, encodeConfChange, sortedConf } from './confchange.ts';
import type {
  AppendMessage,
  AppendResponse,
  ConfChange,
  ConfState,
  Entry,
  HardState,
  HeartbeatMessage,
  HeartbeatResponse,
  Message,
  NodeId,
  ProgressStatus,
  ProposeResult,
  RaftBasicStatus,
  RaftConfig,
  RaftInitialState,
  RaftRole,
  RaftStatus,
  ReadState,
  Ready,
  Snapshot,
  SnapshotMessage,
  VoteRequest,
} from './types.ts';

type Role = Exclude<RaftRole, 'learner'>;

const DEFAULT_MAX_INFLIGHT_MSGS = 256;
const DEFAULT_MAX_SIZE_PER_MSG = 1024 * 1024;
/** A learner is promoted only when at most this many entries behind the leader's last index. */
export const PROMOTION_MAX_LAG = 16;
/** Outgoing messages of one batch go through this cap, after which a bug is suspected. */
const MAX_OUTBOX = 1_000_000;
const EMPTY = new Uint8Array(0);

interface Outstanding {
  ready: Ready;
}

export class RaftCore {
  private readonly id: NodeId;
  private readonly electionTimeout: number;
  private readonly heartbeatTimeout: number;
  private readonly rand: () => number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  private readonly maxSizePerMsg: number;
  private readonly maxUncommittedBytes: number;
  private readonly unsafeCommitPreviousTerm: boolean;
  private readonly quiesceWhenIdle: boolean;

  private term: number;
  private vote: NodeId | null;
  private lead: NodeId | null = null;
  private role: Role = 'follower';
  private readonly log: RaftLog;
  private readonly tracker: ProgressTracker;
  /** Configurations by the index of the entry (or snapshot) that introduced them; the last one is current. */
  private confHistory: { index: number; conf: ConfState }[];

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private leadTransferee: NodeId | null = null;
  /** Index of the latest conf entry the leader appended; a new change waits until it is applied. */
  private pendingConfIndex = 0;
  private uncommittedBytes = 0;
  private readonly readOnly = new ReadOnlyQueue();
  /** ReadIndex requests received before the leader committed an entry of its term. */
  private pendingReadIndex: { ctx: Uint8Array; from: NodeId }[] = [];

  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private compactedTo: number | null = null;
  private persistedHardState: HardState;
  /** Proposals since the last Ready are batched into one append per follower, sent when the Ready is built. */
  private broadcastPending = false;
  private outstanding: Outstanding | null = null;
  /** No timers run (tick() is ignored) until an input wakes the node; only a leader or a follower is ever quiesced. */
  private quiesced = false;

  constructor(config: RaftConfig, initial: RaftInitialState) {
    const electionTick = config.electionTick ?? 10;
    const heartbeatTick = config.heartbeatTick ?? 1;
    if (!config.id) throw new Error('raft config: id is empty');
    if (!(heartbeatTick > 0) || !(electionTick > heartbeatTick)) {
      throw new Error(`raft config: need 0 < heartbeatTick (${heartbeatTick}) < electionTick (${electionTick})`);
    }
    if (typeof config.rand !== 'function') throw new Error('raft config: rand must be a function returning [0, 1)');
    this.id = config.id;
    this.electionTimeout = electionTick;
    this.heartbeatTimeout = heartbeatTick;
    this.rand = config.rand;
    this.preVote = config.preVote ?? true;
    this.checkQuorum = config.checkQuorum ?? true;
    this.maxSizePerMsg = config.maxSizePerMsg ?? DEFAULT_MAX_SIZE_PER_MSG;
    this.maxUncommittedBytes = config.maxUncommittedBytes ?? 0;
    this.unsafeCommitPreviousTerm = config.unsafeCommitPreviousTermByCounting ?? false;
    this.quiesceWhenIdle = config.quiesce ?? false;
    const maxInflightMsgs = config.maxInflightMsgs ?? DEFAULT_MAX_INFLIGHT_MSGS;
    const maxInflightBytes = config.maxInflightBytes ?? maxInflightMsgs * this.maxSizePerMsg;
    if (!(maxInflightMsgs >= 1)) throw new Error('raft config: maxInflightMsgs must be >= 1');

    const { hardState, snapshot } = initial;
    this.log = new RaftLog(snapshot, initial.entries, hardState.commit, initial.applied);
    // Membership = base (snapshot or bootstrap) + conf entries the application already applied.
    let conf = sortedConf(snapshot ? snapshot.conf : initial.conf);
    this.confHistory = [{ index: this.log.snapshotIndex(), conf }];
    for (const e of initial.entries) {
      if (e.index > initial.applied) break;
      if (e.type === 'conf') {
        conf = applyConfChange(conf, decodeConfChange(e.data));
        this.confHistory.push({ index: e.index, conf });
      }
    }
    this.tracker = new ProgressTracker(conf, this.log.lastIndex(), maxInflightMsgs, maxInflightBytes);
    this.term = hardState.term;
    this.vote = hardState.vote;
    this.persistedHardState = { term: hardState.term, vote: hardState.vote, commit: this.log.committed };
    this.becomeFollower(this.term, null);
  }

  // ---- inputs -------------------------------------------------------------------------------

  tick(): void {
    if (this.quiesced) return; // a quiesced group has no timers: it waits for an input that wakes it
    if (this.role === 'leader') this.tickHeartbeat();
    else this.tickElection();
  }

  step(m: Message): void {
    if (m.to !== this.id) return; // misrouted: not for us
    // Any message but the quiescing heartbeat round wakes a quiesced node, before the lease check below: a peer that
    // campaigns (e.g. it restarted and never heard the quiescing heartbeat) must get the leader heartbeating again.
    // Messages of an older term change nothing (they are answered or dropped below) and wake nothing.
    if (this.quiesced && m.term >= this.term && !this.keepsQuiesced(m)) this.unquiesce();
    if (m.term > this.term) {
      if (m.type === 'vote' || m.type === 'prevote') {
        // Leader lease: a node that heard from a leader within the minimum election timeout
        // ignores campaigns, so a rejoining partitioned node cannot depose a healthy leader.
        const inLease = this.checkQuorum && this.lead !== null && this.electionElapsed < this.electionTimeout;
        if (!m.transfer && inLease) return;
      }
      if (m.type === 'prevote') {
        // A pre-vote never changes our term.
      } else if (m.type === 'prevote-resp' && !m.reject) {
        // The pre-candidate moves to that term only when it wins the pre-vote.
      } else if (m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, null);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === 'heartbeat' || m.type === 'app')) {
        // A stale leader (e.g. back from a partition) learns the new term from this answer and steps down;
        // without it, with CheckQuorum or PreVote, it might never hear a higher term.
        this.send({ type: 'app-resp', to: m.from, term: this.term, index: 0, reject: false, rejectHint: 0, logTerm: 0 });
      } else if (m.type === 'prevote') {
        this.send({ type: 'prevote-resp', to: m.from, term: this.term, reject: true });
      }
      return;
    }

    if (m.type === 'vote' || m.type === 'prevote') {
      this.handleVoteRequest(m);
      return;
    }
    switch (this.role) {
      case 'leader':
        this.stepLeader(m);
        break;
      case 'candidate':
      case 'pre-candidate':
        this.stepCandidate(m);
        break;
      case 'follower':
        this.stepFollower(m);
        break;
    }
  }

  propose(data: Uint8Array): ProposeResult {
    // Even a refused proposal wakes a follower: if its quiesced leader died unnoticed, the follower's election timer
    // must run again for the proposal ever to commit.
    this.unquiesce();
    const refused = this.refuseProposal();
    if (refused) return refused;
    const size = data.length;
    if (this.maxUncommittedBytes > 0 && this.uncommittedBytes > 0 && this.uncommittedBytes + size > this.maxUncommittedBytes) {
      return { ok: false, code: 'TOO_MANY_UNCOMMITTED', leader: this.id };
    }
    this.uncommittedBytes += size;
    const e = this.appendEntry('normal', data);
    return { ok: true, index: e.index, term: e.term };
  }

  proposeConfChange(change: ConfChange): ProposeResult {
    this.unquiesce();
    const refused = this.refuseProposal();
    if (refused) return refused;
    if (this.pendingConfIndex > this.log.applied || !this.committedEntryInCurrentTerm()) {
      return { ok: false, code: 'CONF_CHANGE_PENDING', leader: this.id };
    }
    if (confChangeError(this.tracker.conf(), change) !== null) {
      return { ok: false, code: 'CONF_CHANGE_INVALID', leader: this.id };
    }
    if (change.type === 'promote') {
      const pr = this.tracker.progress.get(change.node)!;
      if (pr.match + PROMOTION_MAX_LAG < this.log.lastIndex()) return { ok: false, code: 'LEARNER_BEHIND', leader: this.id };
    }
    const e = this.appendEntry('conf', encodeConfChange(change));
    this.pendingConfIndex = e.index;
    return { ok: true, index: e.index, term: e.term };
  }

  /** Leader only (a no-op elsewhere): hand leadership to a voter once its log has caught up. */
  transferLeadership(to: NodeId): void {
    if (this.role !== 'leader' || to === this.id || !this.tracker.isVoter(to)) return;
    this.unquiesce();
    if (this.leadTransferee === to) return;
    this.leadTransferee = to;
    // The transfer is aborted if not done within one election timeout (see tickHeartbeat).
    this.electionElapsed = 0;
    const pr = this.tracker.progress.get(to)!;
    if (pr.match === this.log.lastIndex()) this.send({ type: 'timeout-now', to, term: this.term });
    else this.sendAppend(to, true);
  }

  /**
   * Linearizable read: once the leader has confirmed it is still leader, ready().readStates carries
   * { index, ctx }; the app answers the read after applying up to index. On a follower the request is
   * forwarded to the leader; without a known leader it is dropped (the caller retries after a timeout).
   */
  readIndex(ctx: Uint8Array): void {
    this.unquiesce();
    if (this.role === 'leader') {
      this.handleReadIndex(ctx, this.id);
    } else if (this.lead !== null) {
      this.send({ type: 'read-index', to: this.lead, term: this.term, ctx });
    }
  }

  /** Starts an election now (tests, bootstrap of a single node). */
  campaign(): void {
    this.unquiesce();
    this.hup(false);
  }

  /**
   * Wakes a quiesced node: its timers run again from zero. A leader also starts a fresh CheckQuorum round (it must
   * hear from a quorum again before it may quiesce, or within an election timeout it steps down) and heartbeats at
   * once, which wakes its followers. The driver calls it when node liveness says a peer of the group went down.
   */
  unquiesce(): void {
    if (!this.quiesced) return;
    this.quiesced = false;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    if (this.role !== 'leader') return;
    for (const [id, pr] of this.tracker.progress) if (id !== this.id) pr.recentActive = false;
    this.bcastHeartbeat(null);
  }

  /**
   * A follower forgets its leader (etcd-io/raft ForgetLeader) and wakes: it stays a follower of the current term
   * without campaigning, but no longer in the leader's lease, so it grants pre-votes at once and campaigns when its
   * election timer fires. The driver calls it when node liveness says the leader's node is down: with PreVote and
   * CheckQuorum a group would otherwise wait for every follower's lease to run out first. Safe on a false alarm: the
   * lease is a liveness device, and a live leader's next heartbeat or append makes it the leader again.
   */
  forgetLeader(): void {
    if (this.role !== 'follower') return;
    this.unquiesce();
    this.lead = null;
  }

  /**
   * Node liveness (outside the core) says `peer`'s node stopped answering for longer than an election timeout. A
   * follower of it forgets it (forgetLeader: wakes and may elect a new leader at once); a quiesced leader with it as a
   * member wakes, so CheckQuorum runs again (it quiesces again if a quorum still answers, else steps down). Anything
   * else is left alone: a live leader keeps its group, and an awake node's own timers already cover the rest.
   */
  peerDown(peer: NodeId): void {
    if (peer === this.id) return;
    if (this.role === 'follower' && this.lead === peer) this.forgetLeader();
    else if (this.role === 'leader' && this.quiesced && this.tracker.isMember(peer)) this.unquiesce();
  }

  /** Whether the node is quiesced (see RaftConfig.quiesce); a driver stops ticking it meanwhile. */
  isQuiesced(): boolean {
    return this.quiesced;
  }

  /** The leader this node knows of (itself when leading), or null. */
  leader(): NodeId | null {
    return this.lead;
  }

  /** Role, term, leader, commit and quiescence without building the progress table of status(). */
  basicStatus(): RaftBasicStatus {
    return { role: this.visibleRole(), term: this.term, leader: this.lead, commit: this.log.committed, applied: this.log.applied, quiesced: this.quiesced };
  }

  // ---- outputs ------------------------------------------------------------------------------

  hasReady(): boolean {
    if (this.outstanding) return false;
    return (
      this.msgs.length > 0 ||
      this.broadcastPending ||
      this.hardStateChanged() ||
      this.log.pendingSnapshot !== null ||
      this.log.stabled < this.log.lastIndex() ||
      this.log.hasNextCommitted() ||
      this.readStates.length > 0 ||
      this.compactedTo !== null
    );
  }

  /**
   * The next batch of work for the driver. Call advance(ready) after handling it; until then ready()
   * throws and hasReady() is false, but step/tick/propose may be called (their output joins the next Ready).
   */
  ready(): Ready {
    if (this.outstanding) throw new Error('raft: ready() called again before advance() of the previous Ready');
    this.flushBroadcast();
    const ready: Ready = {
      hardState: this.hardStateChanged() ? this.hardState() : null,
      entries: this.log.unstableEntries(),
      snapshot: this.log.pendingSnapshot,
      messages: this.msgs,
      committed: this.log.nextCommitted(),
      readStates: this.readStates,
      compactedTo: this.compactedTo,
    };
    this.msgs = [];
    this.readStates = [];
    this.compactedTo = null;
    this.outstanding = { ready };
    return ready;
  }

  advance(ready: Ready): void {
    if (this.outstanding?.ready !== ready) throw new Error('raft: advance() with a Ready that is not the outstanding one');
    this.outstanding = null;
    if (ready.hardState) this.persistedHardState = ready.hardState;
    if (ready.snapshot) {
      if (this.log.pendingSnapshot?.index === ready.snapshot.index) this.log.pendingSnapshot = null;
      if (ready.snapshot.index > this.log.applied) this.log.applied = ready.snapshot.index;
    }
    const last = ready.entries[ready.entries.length - 1];
    if (last) this.log.stableTo(last.index, last.term);
    const committed = ready.committed;
    if (committed.length > 0) {
      const first = committed[0]!.index;
      if (first > this.log.applied + 1) {
        throw new Error(`raft invariant: applying from ${first} but applied is ${this.log.applied}`);
      }
      this.log.appliedTo(committed[committed.length - 1]!.index);
      for (const e of committed) {
        if (e.type === 'conf') this.applyConfEntry(e);
      }
    }
  }

  /**
   * The app snapshotted its state machine at `index` (<= applied). The core keeps the snapshot to send
   * to followers behind the compacted log and drops the log prefix; it returns the Snapshot (with the
   * membership at `index`), which the app must make durable before storage deletes entries <= the next
   * Ready's compactedTo. Returns null when index is not beyond the current snapshot.
   */
  compact(index: number, data: Uint8Array): Snapshot | null {
    if (index <= this.log.snapshotIndex()) return null;
    if (index > this.log.applied) throw new Error(`raft: compact(${index}) beyond applied index ${this.log.applied}`);
    const snapshot: Snapshot = { index, term: this.log.term(index)!, conf: this.confAt(index), data };
    this.log.compact(snapshot);
    const keepFrom = this.confHistory.findLastIndex((c) => c.index <= index);
    this.confHistory = this.confHistory.slice(keepFrom).map((c, i) => (i === 0 ? { index, conf: c.conf } : c));
    this.compactedTo = index;
    return snapshot;
  }

  status(): RaftStatus {
    const progress: Record<NodeId, ProgressStatus> = {};
    if (this.role === 'leader') {
      for (const [id, pr] of this.tracker.progress) {
        progress[id] = { match: pr.match, next: pr.next, state: pr.state, recentActive: pr.recentActive, learner: pr.isLearner };
      }
    }
    return {
      id: this.id,
      role: this.visibleRole(),
      term: this.term,
      vote: this.vote,
      leader: this.lead,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      lastTerm: this.log.lastTerm(),
      snapshotIndex: this.log.snapshotIndex(),
      conf: this.tracker.conf(),
      progress,
      transferee: this.leadTransferee,
      quiesced: this.quiesced,
    };
  }

  private visibleRole(): RaftRole {
    return this.role === 'follower' && !this.tracker.isVoter(this.id) && this.tracker.learners.includes(this.id) ? 'learner' : this.role;
  }

  // ---- role transitions ------------------------------------------------------------------------

  private reset(term: number): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = null;
    }
    this.lead = null;
    this.quiesced = false;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    // §5.2: randomized in [electionTimeout, 2*electionTimeout) so split votes are rare.
    this.randomizedElectionTimeout = this.electionTimeout + Math.floor(this.rand() * this.electionTimeout);
    this.leadTransferee = null;
    this.tracker.resetVotes();
    this.tracker.resetProgress(this.id, this.log.lastIndex());
    this.pendingConfIndex = 0;
    this.uncommittedBytes = 0;
    this.readOnly.reset();
    this.pendingReadIndex = [];
    this.broadcastPending = false;
  }

  private becomeFollower(term: number, lead: NodeId | null): void {
    this.reset(term);
    this.role = 'follower';
    this.lead = lead;
  }

  private becomePreCandidate(): void {
    if (this.role === 'leader') throw new Error('raft invariant: leader cannot become pre-candidate');
    // Term and vote stay: a pre-election must leave no trace if it fails.
    this.quiesced = false;
    this.tracker.resetVotes();
    this.lead = null;
    this.role = 'pre-candidate';
  }

  private becomeCandidate(): void {
    if (this.role === 'leader') throw new Error('raft invariant: leader cannot become candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
  }

  private becomeLeader(): void {
    if (this.role !== 'candidate') throw new Error(`raft invariant: ${this.role} cannot become leader`);
    this.reset(this.term);
    this.lead = this.id;
    this.role = 'leader';
    const self = this.tracker.progress.get(this.id)!;
    self.becomeReplicate();
    self.recentActive = true;
    // Entries of earlier terms may still carry conf changes: no new change until they are all applied.
    this.pendingConfIndex = this.log.lastIndex();
    // §5.4.2 / §8: an entry of the new term lets the leader commit (and learn) everything before it.
    this.appendEntry('normal', EMPTY);
  }

  private hup(transfer: boolean): void {
    if (this.role === 'leader' || !this.promotable()) return;
    // A conf entry committed but not applied may change who votes: settle it before campaigning.
    if (this.hasUnappliedConf()) return;
    if (this.preVote && !transfer) this.campaign0('pre', false);
    else this.campaign0('election', transfer);
  }

  private campaign0(kind: 'pre' | 'election', transfer: boolean): void {
    let voteTerm: number;
    if (kind === 'pre') {
      this.becomePreCandidate();
      voteTerm = this.term + 1;
    } else {
      this.becomeCandidate();
      voteTerm = this.term;
    }
    if (this.poll(this.id, true) === 'won') {
      // Single voter: we are the quorum.
      if (kind === 'pre') this.campaign0('election', transfer);
      else this.becomeLeader();
      return;
    }
    const type = kind === 'pre' ? 'prevote' : 'vote';
    for (const voter of this.tracker.voters) {
      if (voter === this.id) continue;
      this.send({ type, to: voter, term: voteTerm, index: this.log.lastIndex(), logTerm: this.log.lastTerm(), transfer });
    }
  }

  private poll(id: NodeId, granted: boolean) {
    this.tracker.recordVote(id, granted);
    return this.tracker.tallyVotes();
  }

  private promotable(): boolean {
    return this.tracker.isVoter(this.id);
  }

  // ---- ticks ------------------------------------------------------------------------------------

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    for (const [id, pr] of this.tracker.progress) {
      // A snapshot message may be lost: retry by probing after two election timeouts.
      if (id !== this.id && pr.state === 'snapshot' && ++pr.snapshotTicks >= 2 * this.electionTimeout) pr.becomeProbe();
    }
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) {
        if (!this.tracker.quorumActive(this.id)) {
          this.becomeFollower(this.term, null);
          return;
        }
        for (const [id, pr] of this.tracker.progress) if (id !== this.id) pr.recentActive = false;
      }
      if (this.leadTransferee !== null) this.leadTransferee = null; // transfer took too long: abort
    }
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      if (this.quiesceWhenIdle && this.mayQuiesce()) this.quiesce();
      else this.bcastHeartbeat(this.readOnly.lastPendingCtx());
    }
  }

  // ---- message handling -------------------------------------------------------------------------

  private handleVoteRequest(m: VoteRequest): void {
    const respType = m.type === 'vote' ? 'vote-resp' : 'prevote-resp';
    const canVote =
      this.vote === m.from ||
      (this.vote === null && this.lead === null) ||
      // A pre-vote is for a term we have not entered: our vote in this term does not bind it
      // (the leader lease was already checked in step()).
      (m.type === 'prevote' && m.term > this.term);
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      // A granted pre-vote answers with the term asked about, so the pre-candidate counts it.
      this.send({ type: respType, to: m.from, term: m.term, reject: false });
      if (m.type === 'vote') {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: respType, to: m.from, term: this.term, reject: true });
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case 'app-resp':
        this.handleAppendResponse(m);
        break;
      case 'heartbeat-resp':
        this.handleHeartbeatResponse(m);
        break;
      case 'read-index':
        if (this.tracker.isMember(m.from)) this.handleReadIndex(m.ctx, m.from);
        break;
      default:
        break;
    }
  }

  private stepCandidate(m: Message): void {
    const myResp = this.role === 'pre-candidate' ? 'prevote-resp' : 'vote-resp';
    switch (m.type) {
      case 'app':
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        break;
      case 'heartbeat':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        break;
      case 'snap':
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        break;
      case 'prevote-resp':
      case 'vote-resp': {
        if (m.type !== myResp) break;
        const result = this.poll(m.from, !m.reject);
        if (result === 'won') {
          if (this.role === 'pre-candidate') this.campaign0('election', false);
          else this.becomeLeader();
        } else if (result === 'lost') {
          this.becomeFollower(this.term, null);
        }
        break;
      }
      default:
        break;
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'app':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        break;
      case 'heartbeat':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        break;
      case 'snap':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        break;
      case 'timeout-now':
        this.hup(true);
        break;
      case 'read-index-resp':
        this.readStates.push({ index: m.index, ctx: m.ctx });
        break;
      default:
        break;
    }
  }

  private handleAppend(m: AppendMessage): void {
    if (m.index < this.log.committed) {
      this.sendAppendResponse(m.from, this.log.committed);
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== null) {
      this.sendAppendResponse(m.from, lastNew);
      return;
    }
    // Fast backtracking: tell the leader where our log may start to match, skipping whole terms.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send({ type: 'app-resp', to: m.from, term: this.term, index: m.index, reject: true, rejectHint: hint.index, logTerm: hint.term });
  }

  private sendAppendResponse(to: NodeId, index: number): void {
    this.send({ type: 'app-resp', to, term: this.term, index, reject: false, rejectHint: 0, logTerm: 0 });
  }

  private handleHeartbeat(m: HeartbeatMessage): void {
    this.log.commitTo(m.commit);
    // Quiesce only holding exactly the leader's log: a follower left behind, or with a stale tail the leader has not
    // overwritten yet, keeps its election timer, so it campaigns (and wakes the group) rather than stay behind silently.
    if (m.quiesce && m.from === this.lead && this.log.committed === m.commit && this.log.lastIndex() === m.commit) this.quiesced = true;
    this.send({ type: 'heartbeat-resp', to: m.from, term: this.term, ctx: m.ctx });
  }

  private handleSnapshot(m: SnapshotMessage): void {
    const s = m.snapshot;
    if (s.index <= this.log.committed) {
      this.sendAppendResponse(m.from, this.log.committed);
    } else if (this.log.matchTerm(s.index, s.term)) {
      // We already have the snapshot's last entry: just fast-forward the commit index.
      this.log.commitTo(s.index);
      this.sendAppendResponse(m.from, this.log.committed);
    } else {
      this.log.restore(s);
      const conf = sortedConf(s.conf);
      this.tracker.setConf(conf, this.log.lastIndex());
      this.confHistory = [{ index: s.index, conf }];
      this.sendAppendResponse(m.from, this.log.lastIndex());
    }
  }

  private handleAppendResponse(m: AppendResponse): void {
    const pr = this.tracker.progress.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    if (m.reject) {
      let nextProbe = m.rejectHint;
      if (m.logTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.sendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) return;
    if (pr.state === 'probe') {
      pr.becomeReplicate();
    } else if (pr.state === 'snapshot' && pr.match + 1 >= this.log.firstIndex()) {
      // The follower can now be served from the log.
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === 'replicate') {
      pr.inflights.freeLE(m.index);
    }
    if (this.maybeCommit()) {
      this.broadcastPending = true;
    } else if (wasPaused) {
      this.sendAppend(m.from, true);
    }
    while (this.maybeSendAppend(m.from, false)) {
      // keep the pipeline full up to the inflight bound
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
      this.send({ type: 'timeout-now', to: m.from, term: this.term });
    }
  }

  private handleHeartbeatResponse(m: HeartbeatResponse): void {
    const pr = this.tracker.progress.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    pr.probeSent = false;
    // Lost appends would otherwise leave a full window forever: free one slot per heartbeat answer.
    if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from, true);
    if (m.ctx === null || m.ctx.length === 0) return;
    const req = this.readOnly.ack(m.ctx, m.from);
    if (!req) return;
    req.acks.add(this.id);
    if (this.tracker.voters.filter((v) => req.acks.has(v)).length >= Math.floor(this.tracker.voters.length / 2) + 1) {
      for (const r of this.readOnly.releaseThrough(m.ctx)) this.answerRead(r);
    }
  }

  private handleReadIndex(ctx: Uint8Array, from: NodeId): void {
    if (!this.committedEntryInCurrentTerm()) {
      // Our commit index may lag the true one until an entry of our term commits (§6.4).
      this.pendingReadIndex.push({ ctx, from });
      return;
    }
    if (this.tracker.voters.length === 1 && this.tracker.isVoter(this.id)) {
      this.answerRead({ index: this.log.committed, ctx, from, acks: new Set([this.id]) });
      return;
    }
    if (this.readOnly.add(this.log.committed, ctx, from)) {
      this.readOnly.ack(ctx, this.id);
      this.bcastHeartbeat(ctx);
    }
  }

  private answerRead(r: PendingRead): void {
    if (r.from === this.id) this.readStates.push({ index: r.index, ctx: r.ctx });
    else this.send({ type: 'read-index-resp', to: r.from, term: this.term, index: r.index, ctx: r.ctx });
  }

  // ---- replication ---------------------------------------------------------------------------------

  private refuseProposal(): ProposeResult | null {
    if (this.role !== 'leader') return { ok: false, code: 'NOT_LEADER', leader: this.lead };
    if (this.leadTransferee !== null) return { ok: false, code: 'TRANSFERRING', leader: this.id };
    return null;
  }

  private appendEntry(type: Entry['type'], data: Uint8Array): Entry {
    const e: Entry = { index: this.log.lastIndex() + 1, term: this.term, type, data };
    this.log.append([e]);
    // The leader's own match counts before its disk write: commitment is only visible through a later
    // Ready, which the driver handles after this entry's Ready is durable.
    this.tracker.progress.get(this.id)?.maybeUpdate(e.index);
    this.maybeCommit();
    this.broadcastPending = true;
    return e;
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  /** Advances commit to what a majority holds, but (Figure 8) only by counting replicas of a current-term entry. */
  private maybeCommit(): boolean {
    const mci = this.tracker.committedIndex();
    if (mci <= this.log.committed) return false;
    if (this.log.term(mci) !== this.term && !this.unsafeCommitPreviousTerm) return false;
    const hadCurrentTermCommit = this.committedEntryInCurrentTerm();
    const old = this.log.committed;
    this.log.commitTo(mci);
    for (const e of this.log.slice(old + 1, mci + 1)) {
      if (e.term === this.term) this.uncommittedBytes = Math.max(0, this.uncommittedBytes - e.data.length);
    }
    if (!hadCurrentTermCommit && this.committedEntryInCurrentTerm()) {
      const waiting = this.pendingReadIndex;
      this.pendingReadIndex = [];
      for (const r of waiting) this.handleReadIndex(r.ctx, r.from);
    }
    return true;
  }

  private flushBroadcast(): void {
    if (!this.broadcastPending) return;
    this.broadcastPending = false;
    if (this.role !== 'leader') return;
    for (const id of this.tracker.progress.keys()) {
      if (id === this.id) continue;
      this.sendAppend(id, true);
      while (this.maybeSendAppend(id, false)) {
        // fill the pipeline
      }
    }
  }

  private sendAppend(to: NodeId, sendIfEmpty: boolean): void {
    this.maybeSendAppend(to, sendIfEmpty);
  }

  /** Sends the next append (or the snapshot) to `to` unless its flow is paused; returns whether it sent. */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.tracker.progress.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const entries = this.log.entriesFrom(pr.next, this.maxSizePerMsg);
    if (prevTerm === undefined || entries === null) {
      // The follower needs entries we compacted: send the snapshot, but only to a node that is alive.
      if (!pr.recentActive) return false;
      const snapshot = this.log.snapshot;
      if (!snapshot) throw new Error(`raft invariant: entries before ${this.log.firstIndex()} compacted without a snapshot`);
      this.send({ type: 'snap', to, term: this.term, snapshot });
      pr.becomeSnapshot(snapshot.index);
      return true;
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    const bytes = entries.reduce((n, e) => n + e.data.length, 0);
    this.send({ type: 'app', to, term: this.term, index: prevIndex, logTerm: prevTerm, entries, commit: this.log.committed });
    pr.sentEntries(entries.length, prevIndex + entries.length, bytes);
    return true;
  }

  private bcastHeartbeat(ctx: Uint8Array | null): void {
    for (const [id, pr] of this.tracker.progress) {
      if (id === this.id) continue;
      // Never tell a follower to commit beyond what it is known to hold.
      const commit = Math.min(pr.match, this.log.committed);
      this.send({ type: 'heartbeat', to: id, term: this.term, commit, ctx, quiesce: false });
    }
  }

  // ---- quiescence ------------------------------------------------------------------------------

  /**
   * A leader may quiesce when nothing is in motion: an entry of its term is committed, everything is committed,
   * applied and durable here, no transfer, conf change or read is pending, a quorum answered since the last
   * CheckQuorum round (or since it woke), and every follower that answered holds the whole log. Followers that did
   * not answer are presumed down: the leader does not wait for them (a down follower would keep every group it is in
   * awake); when one comes back its first message wakes the leader, and a follower behind is told only to commit
   * what it holds, so it never quiesces behind.
   */
  private mayQuiesce(): boolean {
    const last = this.log.lastIndex();
    if (this.log.committed !== last || this.log.applied !== last || this.log.stabled !== last) return false;
    if (!this.committedEntryInCurrentTerm() || this.broadcastPending) return false;
    if (this.leadTransferee !== null || this.pendingReadIndex.length > 0 || this.readOnly.lastPendingCtx() !== null) return false;
    if (!this.tracker.quorumActive(this.id)) return false;
    for (const [id, pr] of this.tracker.progress) {
      if (id === this.id || !pr.recentActive) continue;
      if (pr.match !== last || pr.state !== 'replicate' || pr.inflights.count() > 0) return false;
    }
    return true;
  }

  /** The last heartbeat round before silence: flagged for the caught-up followers, plain for the others. */
  private quiesce(): void {
    this.quiesced = true;
    const last = this.log.lastIndex();
    for (const [id, pr] of this.tracker.progress) {
      if (id === this.id) continue;
      this.send({ type: 'heartbeat', to: id, term: this.term, commit: Math.min(pr.match, this.log.committed), ctx: null, quiesce: pr.match === last });
    }
  }

  /** The messages of the quiescing round itself, which must not wake a quiesced node (or it would never stay quiet). */
  private keepsQuiesced(m: Message): boolean {
    if (m.term !== this.term) return false;
    if (this.role === 'leader') {
      // A caught-up follower's answer to the quiescing heartbeat; a follower behind wakes the leader to catch it up.
      return m.type === 'heartbeat-resp' && (m.ctx === null || m.ctx.length === 0) && this.tracker.progress.get(m.from)?.match === this.log.lastIndex();
    }
    return m.type === 'heartbeat' && m.quiesce && m.from === this.lead;
  }

  // ---- membership ----------------------------------------------------------------------------

  private applyConfEntry(e: Entry): void {
    const current = this.confHistory[this.confHistory.length - 1]!;
    if (e.index <= current.index) return; // superseded by a snapshot installed since
    const conf = applyConfChange(current.conf, decodeConfChange(e.data));
    this.confHistory.push({ index: e.index, conf });
    this.tracker.setConf(conf, this.log.lastIndex());
    if (this.role !== 'leader') {
      if (!this.promotable() && (this.role === 'candidate' || this.role === 'pre-candidate')) this.becomeFollower(this.term, null);
      return;
    }
    if (!this.tracker.isVoter(this.id)) {
      // Removed (or demoted) leader: step down so the remaining voters elect one of themselves.
      this.becomeFollower(this.term, null);
      return;
    }
    if (this.leadTransferee !== null && !this.tracker.isVoter(this.leadTransferee)) this.leadTransferee = null;
    // A smaller quorum may commit more now; new members need their first append.
    this.maybeCommit();
    this.broadcastPending = true;
  }

  private confAt(index: number): ConfState {
    const c = this.confHistory.findLast((h) => h.index <= index) ?? this.confHistory[0]!;
    return { voters: [...c.conf.voters], learners: [...c.conf.learners] };
  }

  private hasUnappliedConf(): boolean {
    for (let i = Math.max(this.log.applied, this.log.snapshotIndex()) + 1; i <= this.log.committed; i++) {
      if (this.log.entryAt(i)?.type === 'conf') return true;
    }
    return false;
  }

  // ---- plumbing ------------------------------------------------------------------------------

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  private hardStateChanged(): boolean {
    const p = this.persistedHardState;
    return p.term !== this.term || p.vote !== this.vote || p.commit !== this.log.committed;
  }

  private send(m: DistributiveOmit<Message, 'from'>): void {
    if (this.msgs.length >= MAX_OUTBOX) throw new Error('raft invariant: outbox exceeds bound; is the driver calling ready()?');
    const msg = m as Message;
    msg.from = this.id; // callers pass a fresh literal: stamping it avoids a copy per message
    this.msgs.push(msg);
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
