// PbftCore: one PBFT replica as a pure state machine (Castro & Liskov). Inputs: tick, step, propose,
// checkpointReady, installState. Outputs through ready()/advance(). No I/O, no clock, no randomness.
import type {
  NodeId,
  PbftCheckpointProof,
  PbftCommitted,
  PbftConfig,
  PbftDropReason,
  PbftInitialState,
  PbftMessage,
  PbftNewViewMsg,
  PbftPersist,
  PbftReady,
  PbftRequest,
  PbftStateTransfer,
  PbftStatus,
  PbftViewChangeMsg,
  SignedPbftMessage,
} from './types.ts';
import { pbftFaults, pbftQuorum, primaryOf } from './quorum.ts';
import { batchDigest, bytesEqual } from './digest.ts';
import { MessageLog, type Slot, type Vote } from './log.ts';
import { CheckpointVotes, type CheckpointVote } from './checkpoint.ts';
import {
  checkNewView,
  checkViewChange,
  chooseViewChanges,
  planNewView,
  type NewViewPlan,
  type SignedViewChange,
  type ViewChangeContext,
} from './viewchange.ts';

/** Defaults a driver may start from. */
export const PBFT_DEFAULTS = { checkpointInterval: 16, watermarkWindow: 64, maxBatch: 64, viewChangeTimeoutTicks: 20 } as const;

const NO_SIG = new Uint8Array(0);
/** Furthest a timeout jumps ahead to join another replica's view-change. */
const MAX_VIEW_JUMP = 1000;
/** See PbftConfig.executedWindow. */
export const DEFAULT_EXECUTED_WINDOW = 100_000;

type Own<M extends PbftMessage> = M & { from: NodeId; sig: Uint8Array };

export class PbftCore {
  readonly id: NodeId;
  private readonly replicas: readonly NodeId[];
  private readonly n: number;
  private readonly f: number;
  private readonly quorum: number;
  private readonly K: number;
  private readonly L: number;
  private readonly retransmitTicks: number;
  private readonly maxTimeout: number;
  private readonly ctx: ViewChangeContext;

  private view: number;
  private inViewChange: boolean;
  private vcAttempts = 0;
  private timer = 0;
  private ticks = 0;

  private readonly log = new MessageLog();
  private readonly checkpoints: CheckpointVotes;
  private stable: PbftCheckpointProof | null;
  private lastExecuted: number;
  /** Ids of the last `executedWindow` executed requests, oldest first (see PbftConfig.executedWindow). */
  private readonly executed: Set<string>;
  private readonly executedWindow: number;
  /** Requests known (forwarded or in an accepted batch) and not yet executed, in arrival order. */
  private readonly pending = new Map<string, PbftRequest>();
  /** Ids in a batch of the current view that is not executed yet (the primary does not re-batch them). */
  private readonly assigned = new Set<string>();
  private nextSeq: number;
  private readonly viewChanges = new Map<number, Map<NodeId, SignedViewChange>>();
  private myViewChange: PbftViewChangeMsg | null = null;
  private newView: PbftNewViewMsg | null = null;
  private sentNewView = -1;
  private readonly ownCheckpoints = new Map<number, Uint8Array>();
  private transfer: PbftStateTransfer | null = null;
  private readonly higherViews = new Map<NodeId, number>();
  /** Seq at which each request executed above the stable checkpoint (to answer a peer that lags). */
  private readonly executedAt = new Map<string, number>();
  /** `executed` claims from peers, per seq (f+1 matching ones let a lagging replica execute). */
  private readonly claims = new Map<number, Map<NodeId, SignedPbftMessage & { type: 'executed' }>>();
  private readonly answered = new Set<string>();
  private readonly dropped: Partial<Record<PbftDropReason, number>> = {};

  private outMessages: PbftMessage[] = [];
  private outAppend: SignedPbftMessage[] = [];
  private outCommitted: PbftCommitted[] = [];
  private outDue: number[] = [];
  private outStable: PbftCheckpointProof | null = null;
  private outTransfer: PbftStateTransfer | null = null;
  private persistedView: number;
  private persistedInViewChange: boolean;

  constructor(
    private readonly config: PbftConfig,
    initial: PbftInitialState,
  ) {
    const { id, replicas } = config;
    if (replicas.length < 4) throw new Error(`pbft: needs at least 4 replicas, got ${replicas.length}`);
    if (new Set(replicas).size !== replicas.length) throw new Error('pbft: replica ids must be unique');
    if (replicas.includes('all')) throw new Error("pbft: 'all' is reserved and cannot be a replica id");
    if (!replicas.includes(id)) throw new Error(`pbft: ${id} is not one of the replicas`);
    for (const k of ['checkpointInterval', 'watermarkWindow', 'maxBatch', 'viewChangeTimeoutTicks'] as const) {
      if (!Number.isSafeInteger(config[k]) || config[k] < 1) throw new Error(`pbft: ${k} must be a positive integer, got ${config[k]}`);
    }
    if (config.watermarkWindow % config.checkpointInterval !== 0 || config.watermarkWindow < 2 * config.checkpointInterval) {
      throw new Error('pbft: watermarkWindow must be a multiple of checkpointInterval and at least twice it');
    }
    this.id = id;
    this.replicas = [...replicas];
    this.n = replicas.length;
    this.f = pbftFaults(this.n);
    this.quorum = config.testOnlyQuorum ?? pbftQuorum(this.n);
    this.K = config.checkpointInterval;
    this.L = config.watermarkWindow;
    this.retransmitTicks = config.retransmitTicks ?? Math.max(1, Math.floor(config.viewChangeTimeoutTicks / 4));
    this.maxTimeout = config.maxViewChangeTimeoutTicks ?? config.viewChangeTimeoutTicks * 64;
    this.ctx = {
      replicas: this.replicas,
      quorum: this.quorum,
      checkpointInterval: this.K,
      watermarkWindow: this.L,
      maxBatch: config.maxBatch,
      hash: config.hash,
      verify: config.verify ?? (() => true),
      primaryOf: (v) => primaryOf(this.replicas, v),
    };
    this.checkpoints = new CheckpointVotes(this.replicas, this.quorum);

    this.view = initial.view;
    this.inViewChange = initial.inViewChange;
    this.persistedView = initial.view;
    this.persistedInViewChange = initial.inViewChange;
    this.stable = initial.stableCheckpoint;
    this.lastExecuted = initial.lastExecuted;
    this.executedWindow = config.executedWindow ?? DEFAULT_EXECUTED_WINDOW;
    this.executed = new Set(initial.executedIds.slice(-this.executedWindow));
    for (const m of initial.log) this.restore(m);
    for (const slot of this.log.slotsOfView(this.view)) {
      for (const r of slot.batch?.requests ?? []) if (!this.executed.has(r.id)) this.assigned.add(r.id);
    }
    this.nextSeq = Math.max(this.h, this.log.maxSeqWithBatch(this.view)) + 1;
    if (this.stable && this.lastExecuted >= this.h) this.ownCheckpoints.set(this.h, this.stable.digest);
    if (this.lastExecuted < this.h && this.stable) this.requestTransfer(this.stable);
    const proof = this.checkpoints.highestProof(this.h);
    if (proof) this.makeStable(proof);
    this.execute();
  }

  // ---------------------------------------------------------------- inputs

  /** One unit of logical time: timers, retransmission, batching of what is queued at the primary. */
  tick(): void {
    this.ticks++;
    // The timer runs while a known request waits for execution (in the normal case and while changing view).
    if (this.pending.size > 0) {
      this.timer++;
      if (this.timer >= this.timeout()) {
        this.vcAttempts++;
        this.startViewChange(this.viewAfterTimeout());
      }
    }
    if (this.ticks % this.retransmitTicks === 0) this.retransmit();
    this.flush(true);
  }

  /** A message from a replica, its signature already verified by the driver (own messages included). */
  step(msg: SignedPbftMessage): void {
    if (!this.replicas.includes(msg.from)) return this.drop('not-replica');
    switch (msg.type) {
      case 'request':
        return this.addRequest(msg.request, false, msg.from);
      case 'executed':
        return this.onExecuted(msg);
      case 'pre-prepare':
        return this.onPrePrepare(msg);
      case 'prepare':
      case 'commit':
        return this.onVote(msg as Vote);
      case 'checkpoint':
        return this.onCheckpoint(msg as CheckpointVote);
      case 'view-change':
        return this.onViewChange(msg);
      case 'new-view':
        return this.onNewView(msg);
    }
  }

  /** A request from a client of this node: the primary batches it, a backup forwards it to every replica. */
  propose(req: PbftRequest): void {
    this.addRequest(req, this.primary() !== this.id || this.inViewChange);
  }

  /** The app's state digest after executing `seq` (a multiple of K, listed in checkpointsDue). */
  checkpointReady(seq: number, stateDigest: Uint8Array): void {
    if (seq <= 0 || seq % this.K !== 0) throw new Error(`pbft: checkpointReady(${seq}) is not at a multiple of K=${this.K}`);
    if (seq > this.lastExecuted) throw new Error(`pbft: checkpointReady(${seq}) before executing it (last executed ${this.lastExecuted})`);
    if (this.stable && seq === this.stable.seq && !bytesEqual(stateDigest, this.stable.digest)) {
      throw new Error(`pbft: app state at ${seq} differs from the quorum's stable checkpoint: this replica diverged`);
    }
    if (seq < this.h || this.ownCheckpoints.has(seq)) return;
    this.ownCheckpoints.set(seq, stateDigest);
    this.sendOwn({ type: 'checkpoint', to: 'all', seq, digest: stateDigest });
  }

  /**
   * The app installed a snapshot at a stable checkpoint (after a stateTransfer); `executedIds`: every request it
   * copied in. The checkpoint may be older than the current stable one: a newer one became stable while the records
   * were copied (the app checked them against the digest this replica asked for, certified by 2f+1 then). The copied
   * state then counts — its requests are executed here, or one a later batch carries again would run twice on this
   * replica only — and the transfer goes on to the newer checkpoint.
   */
  installState(seq: number, stateDigest: Uint8Array, executedIds: Iterable<string>): void {
    if (!this.stable || seq > this.stable.seq || (seq === this.stable.seq && !bytesEqual(stateDigest, this.stable.digest))) {
      throw new Error(`pbft: installState(${seq}) does not match the stable checkpoint ${this.stable?.seq ?? 0}`);
    }
    for (const id of executedIds) this.forget(id);
    if (seq <= this.lastExecuted) return;
    this.lastExecuted = seq;
    this.timer = 0;
    if (seq < this.stable.seq) {
      this.requestTransfer(this.stable);
      this.flush(false);
      return;
    }
    this.ownCheckpoints.set(seq, stateDigest);
    this.transfer = null;
    this.outTransfer = null;
    this.execute();
    this.flush(false);
  }

  // ---------------------------------------------------------------- outputs

  hasReady(): boolean {
    return (
      this.outMessages.length > 0 ||
      this.outAppend.length > 0 ||
      this.outCommitted.length > 0 ||
      this.outDue.length > 0 ||
      this.outStable !== null ||
      this.outTransfer !== null ||
      this.view !== this.persistedView ||
      this.inViewChange !== this.persistedInViewChange
    );
  }

  ready(): PbftReady {
    const hardChanged = this.view !== this.persistedView || this.inViewChange !== this.persistedInViewChange;
    const persist: PbftPersist | null =
      hardChanged || this.outAppend.length > 0 || this.outStable
        ? { view: this.view, inViewChange: this.inViewChange, append: this.outAppend.slice(), stableCheckpoint: this.outStable }
        : null;
    return {
      persist,
      messages: this.outMessages.slice(),
      committed: this.outCommitted.slice(),
      checkpointsDue: this.outDue.slice(),
      stableCheckpoint: this.outStable,
      stateTransfer: this.outTransfer,
    };
  }

  /** Acknowledges a Ready: everything in it is persisted, sent and executed (or scheduled). */
  advance(r: PbftReady): void {
    if (r.persist) {
      this.persistedView = r.persist.view;
      this.persistedInViewChange = r.persist.inViewChange;
      this.outAppend.splice(0, r.persist.append.length);
    }
    this.outMessages.splice(0, r.messages.length);
    this.outCommitted.splice(0, r.committed.length);
    this.outDue.splice(0, r.checkpointsDue.length);
    if (this.outStable === r.stableCheckpoint) this.outStable = null;
    if (this.outTransfer === r.stateTransfer) this.outTransfer = null;
  }

  status(): PbftStatus {
    return {
      id: this.id,
      view: this.view,
      primary: this.primary(),
      isPrimary: this.primary() === this.id,
      inViewChange: this.inViewChange,
      lowWatermark: this.h,
      highWatermark: this.h + this.L,
      lastExecuted: this.lastExecuted,
      stableCheckpoint: this.h,
      stateTransferPending: this.transfer?.seq ?? null,
      pendingRequests: this.pending.size,
      viewChangeAttempts: this.vcAttempts,
      dropped: { ...this.dropped },
    };
  }

  /**
   * This replica's answer to a read-index query (the pbft read barrier, swarm/pbft-swarm.ts): the highest sequence
   * number it executed, holds a stable checkpoint for, or sent its commit vote for. Why that bound is safe: a batch that
   * any correct replica executed had a commit quorum (2f+1) there, or f+1 matching executed claims or a stable
   * checkpoint that go back to one — so at least f+1 correct replicas sent their commit for its sequence number (kept
   * durable, and covered by their stable checkpoint once collected). Any 2f+1 answers therefore include one of them,
   * and their maximum is at least that sequence number: a node that executes up to it has seen every batch whose
   * result any client was told. A Byzantine replica can only answer too high (the read then waits, and times out).
   */
  readIndex(): number {
    return Math.max(this.lastExecuted, this.h, this.log.maxOwnCommitSeq());
  }

  // ---------------------------------------------------------------- normal case

  private get h(): number {
    return this.stable?.seq ?? 0;
  }

  private primary(view = this.view): NodeId {
    return primaryOf(this.replicas, view);
  }

  private timeout(): number {
    return Math.min(this.config.viewChangeTimeoutTicks * 2 ** Math.min(this.vcAttempts, 30), this.maxTimeout);
  }

  private drop(reason: PbftDropReason): void {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1;
  }

  private send(m: PbftMessage): void {
    this.outMessages.push(m);
  }

  /** Sends one of our own protocol messages, logging it (unsigned) first: it must be durable before it leaves. */
  private sendOwn(m: PbftMessage): void {
    this.outAppend.push({ ...m, from: this.id, sig: NO_SIG } as SignedPbftMessage);
    this.send(m);
  }

  private addRequest(req: PbftRequest, forward: boolean, from?: NodeId): void {
    if (this.executed.has(req.id)) {
      // A peer still waits for a request we executed above the checkpoint: it is behind.
      const seq = this.executedAt.get(req.id);
      if (from !== undefined && from !== this.id && seq !== undefined) this.answerExecuted(from, seq);
      return;
    }
    if (this.pending.has(req.id)) return;
    if (!this.config.validateRequest(req.payload)) return this.drop('invalid-request');
    this.remember(req);
    if (forward) this.send({ type: 'request', to: 'all', request: req });
    this.flush(false);
  }

  private remember(req: PbftRequest): void {
    if (this.executed.has(req.id) || this.pending.has(req.id)) return;
    if (this.pending.size === 0 && !this.inViewChange) this.timer = 0;
    this.pending.set(req.id, req);
  }

  private forget(id: string): void {
    this.executed.add(id);
    if (this.executed.size > this.executedWindow) this.executed.delete(this.executed.values().next().value!);
    this.pending.delete(id);
    this.assigned.delete(id);
  }

  /** Primary: turns queued requests into pre-prepares (now if the pipeline is idle or a batch is full, else on tick). */
  private flush(force: boolean): void {
    if (this.inViewChange || this.primary() !== this.id) return;
    for (;;) {
      if (this.nextSeq > this.h + this.L) return;
      const queue: PbftRequest[] = [];
      for (const r of this.pending.values()) {
        if (!this.assigned.has(r.id)) queue.push(r);
        if (queue.length === this.config.maxBatch) break;
      }
      if (queue.length === 0) return;
      const inFlight = this.nextSeq - 1 - this.lastExecuted;
      if (!force && queue.length < this.config.maxBatch && inFlight >= 2) return;
      const seq = this.nextSeq++;
      const digest = batchDigest(this.config.hash, queue);
      const slot = this.log.slot(this.view, seq);
      slot.batch = { digest, requests: queue };
      for (const r of queue) this.assigned.add(r.id);
      this.sendOwn({ type: 'pre-prepare', to: 'all', view: this.view, seq, digest, requests: queue });
      this.sendPrepare(slot);
    }
  }

  /** Accepts a message of the current view, or notes evidence that others moved to a higher one. */
  private inCurrentView(m: SignedPbftMessage & { view: number }): boolean {
    if (m.view === this.view && !this.inViewChange) return true;
    if (m.view > this.view && m.from !== this.id) this.noteHigherView(m.from, m.view);
    this.drop('wrong-view');
    return false;
  }

  private inWindow(seq: number): boolean {
    if (seq > this.h && seq <= this.h + this.L) return true;
    this.drop('outside-watermarks');
    return false;
  }

  /**
   * A pre-prepare or commit of a view this replica left (or is leaving): it never votes in that view
   * again, but a batch with a quorum of signed commits is committed whatever the view, so it may
   * execute it to catch up (a replica that changed view alone would otherwise lag until a checkpoint).
   */
  private catchUp(m: Own<Extract<PbftMessage, { type: 'pre-prepare' }>> | Vote): void {
    if (m.seq <= this.lastExecuted || m.seq > this.h + this.L) return this.drop('wrong-view');
    const slot = this.log.slot(m.view, m.seq);
    if (m.type === 'pre-prepare') {
      // Only executed once a quorum's commits back it, so the structure is all this replica must check here.
      if (slot.batch || m.from !== this.primary(m.view) || this.badBatch(m.requests, m.digest, false)) return this.drop('wrong-view');
      slot.batch = { digest: m.digest, requests: m.requests };
      if (!this.badBatch(m.requests, m.digest)) for (const r of m.requests) this.remember(r);
    } else {
      if (slot.commits.has(m.from)) return this.drop('duplicate');
      slot.commits.set(m.from, m);
    }
    this.outAppend.push(m);
    if (!slot.committed && slot.isCommittedLocal(this.replicas, this.quorum)) {
      slot.committed = true;
      this.execute();
    }
  }

  /**
   * Why a batch is unacceptable, or null. Its shape and digest always; with `vouch`, also every request by this
   * replica's own rules (validateRequest: its file's keys) — needed before it prepares a batch, never to execute one
   * a quorum committed.
   */
  private badBatch(requests: readonly PbftRequest[], digest: Uint8Array, vouch = true): PbftDropReason | null {
    if (requests.length === 0 || requests.length > this.config.maxBatch) return 'invalid-batch';
    if (!bytesEqual(batchDigest(this.config.hash, requests), digest)) return 'bad-digest';
    const ids = new Set<string>();
    for (const r of requests) {
      if (ids.has(r.id)) return 'invalid-batch';
      ids.add(r.id);
      if (!vouch) continue;
      // A request waiting in `pending` was validated when it got there (every way in checks it, or restores it from
      // this replica's own log, checked when accepted): the same bytes need no second check — validation verifies
      // every agent signature in the payload, the costliest step a backup takes per request.
      const known = this.pending.get(r.id);
      if (known && (known.payload === r.payload || bytesEqual(known.payload, r.payload))) continue;
      if (!this.config.validateRequest(r.payload)) return 'invalid-request';
    }
    return null;
  }

  private onPrePrepare(m: Own<Extract<PbftMessage, { type: 'pre-prepare' }>>): void {
    if (m.view < this.view || (m.view === this.view && this.inViewChange)) return this.catchUp(m);
    if (!this.inCurrentView(m)) return;
    if (m.from !== this.primary()) return this.drop('not-primary');
    if (!this.inWindow(m.seq)) return;
    const slot = this.log.slot(this.view, m.seq);
    if (slot.batch) {
      if (!bytesEqual(slot.batch.digest, m.digest)) return this.drop('conflicting-pre-prepare');
      if (m.from !== this.id) this.answer(slot, m.from);
      return;
    }
    const bad = this.badBatch(m.requests, m.digest);
    if (bad === 'invalid-request') return this.holdUnvouched(slot, m);
    if (bad) return this.drop(bad);
    slot.batch = { digest: m.digest, requests: m.requests };
    this.outAppend.push(m);
    for (const r of m.requests) {
      this.remember(r);
      if (!this.executed.has(r.id)) this.assigned.add(r.id);
    }
    this.sendPrepare(slot);
    this.progress(slot);
  }

  /**
   * A well-formed pre-prepare this replica cannot vouch for — a request its own rules refuse, such as an agent key its
   * federation file does not list yet while the others' do. It never prepares it, but keeps the batch (in memory
   * only) so that, should 2f+1 replicas commit it anyway — at least f+1 correct ones judged it valid — it executes
   * it in order instead of stalling until the next stable checkpoint (apply does not depend on keys, so the state
   * is the same). Not logged: after a restart such a batch comes back through f+1 `executed` claims or state
   * transfer. Not remembered as pending either: this replica never proposes what it cannot judge.
   */
  private holdUnvouched(slot: Slot, m: Own<Extract<PbftMessage, { type: 'pre-prepare' }>>): void {
    this.drop('invalid-request');
    slot.batch = { digest: m.digest, requests: m.requests };
    this.progress(slot);
  }

  private onVote(m: Vote): void {
    if (m.type === 'commit' && (m.view < this.view || (m.view === this.view && this.inViewChange))) return this.catchUp(m);
    if (!this.inCurrentView(m)) return;
    if (!this.inWindow(m.seq)) return;
    const slot = this.log.slot(this.view, m.seq);
    const votes = m.type === 'prepare' ? slot.prepares : slot.commits;
    const prev = votes.get(m.from);
    if (prev) {
      if (!bytesEqual(prev.digest, m.digest)) return this.drop('conflicting-vote');
      if (m.from !== this.id) {
        this.drop('duplicate');
        this.answer(slot, m.from);
      }
      return;
    }
    if (m.from === this.id) {
      const mine = m.type === 'prepare' ? slot.myPrepare : slot.myCommit;
      if (mine && !bytesEqual(mine, m.digest)) return this.drop('conflicting-vote');
      if (m.type === 'prepare') slot.myPrepare = m.digest;
      else slot.myCommit = m.digest;
    }
    votes.set(m.from, m);
    this.outAppend.push(m);
    this.progress(slot);
  }

  private sendPrepare(slot: Slot): void {
    if (slot.myPrepare || !slot.batch) return;
    slot.myPrepare = slot.batch.digest;
    this.sendOwn({ type: 'prepare', to: 'all', view: slot.view, seq: slot.seq, digest: slot.batch.digest });
  }

  private progress(slot: Slot): void {
    if (!slot.batch) return;
    if (!slot.myCommit && slot.myPrepare && slot.isPrepared(this.replicas, this.quorum)) {
      slot.myCommit = slot.batch.digest;
      this.sendOwn({ type: 'commit', to: 'all', view: slot.view, seq: slot.seq, digest: slot.batch.digest });
    }
    if (!slot.committed && slot.isCommittedLocal(this.replicas, this.quorum)) {
      slot.committed = true;
      this.execute();
    }
  }

  /** Emits committed batches strictly in seq order (nothing while a state transfer is due). */
  private execute(): void {
    let progressed = false;
    while (this.lastExecuted >= this.h) {
      const seq = this.lastExecuted + 1;
      const slot = this.log.committedAt(seq);
      const found = slot?.batch
        ? { view: slot.view, ...slot.batch, certificate: slot.commitVotes(this.replicas).slice(0, this.quorum) }
        : this.provenByClaims(seq);
      if (!found) break;
      const batch = found.requests;
      const requests: PbftRequest[] = [];
      for (const r of batch) {
        if (this.executed.has(r.id)) continue;
        requests.push(r);
        this.forget(r.id);
        this.executedAt.set(r.id, seq);
      }
      this.outCommitted.push({ seq, view: found.view, digest: found.digest, requests, batch, certificate: found.certificate });
      this.claims.delete(seq);
      this.lastExecuted = seq;
      if (seq % this.K === 0) this.outDue.push(seq);
      progressed = true;
    }
    if (progressed) {
      this.timer = 0;
      this.vcAttempts = 0;
      this.flush(false);
    }
  }

  /** f+1 matching `executed` claims for seq: at least one correct replica executed that batch there. */
  private provenByClaims(
    seq: number,
  ): { view: number; digest: Uint8Array; requests: PbftRequest[]; certificate: SignedPbftMessage[] } | null {
    const claims = this.claims.get(seq);
    if (!claims || claims.size < this.f + 1) return null;
    for (const c of claims.values()) {
      const same = this.replicas.map((r) => claims.get(r)).filter((x) => x !== undefined && bytesEqual(x.digest, c.digest));
      if (same.length >= this.f + 1) return { view: -1, digest: c.digest, requests: c.requests, certificate: same.slice(0, this.f + 1) as SignedPbftMessage[] };
    }
    return null;
  }

  private onExecuted(m: SignedPbftMessage & { type: 'executed' }): void {
    if (m.seq <= this.lastExecuted) return this.drop('stale');
    if (m.seq > Math.max(this.h, this.lastExecuted) + this.L) return this.drop('outside-watermarks');
    if (m.requests.length > 0) {
      // Used only once f+1 replicas claim the same batch (at least one correct one executed it, so a quorum committed
      // it): the shape is checked here, never this replica's own judgement of the requests.
      const bad = this.badBatch(m.requests, m.digest, false);
      if (bad) return this.drop(bad);
    } else if (!bytesEqual(batchDigest(this.config.hash, []), m.digest)) return this.drop('bad-digest');
    let claims = this.claims.get(m.seq);
    if (!claims) this.claims.set(m.seq, (claims = new Map()));
    if (claims.has(m.from)) return this.drop('duplicate');
    claims.set(m.from, m);
    this.execute();
  }

  /** Tells a lagging peer what we executed in (h, upTo] (once per retransmit period). */
  private answerExecuted(to: NodeId, upTo: number): void {
    if (this.answered.has(`${to}/ex`)) return;
    this.answered.add(`${to}/ex`);
    for (let seq = this.h + 1; seq <= upTo; seq++) {
      const slot = this.log.committedAt(seq);
      if (slot?.batch) this.send({ type: 'executed', to, seq, digest: slot.batch.digest, requests: slot.batch.requests });
    }
  }

  /** A peer sent us something we already have: it may be missing ours (rate-limited per retransmit period). */
  private answer(slot: Slot, to: NodeId): void {
    const key = `${to}/${slot.view}/${slot.seq}`;
    if (this.answered.has(key)) return;
    this.answered.add(key);
    if (slot.myPrepare) this.send({ type: 'prepare', to, view: slot.view, seq: slot.seq, digest: slot.myPrepare });
    if (slot.myCommit) this.send({ type: 'commit', to, view: slot.view, seq: slot.seq, digest: slot.myCommit });
  }

  // ---------------------------------------------------------------- checkpoints and state transfer

  private onCheckpoint(m: CheckpointVote): void {
    if (m.seq <= 0 || m.seq % this.K !== 0) return this.drop('bad-checkpoint');
    if (m.seq < this.h || (m.seq === this.h && m.from !== this.id && this.stable?.proof.some((p) => p.from === m.from))) {
      if (m.seq < this.h) this.answerCheckpoint(m.from);
      return this.drop('stale');
    }
    const res = this.checkpoints.record(m, this.h + this.L);
    if (res === 'conflicting') return this.drop('conflicting-vote');
    if (res === 'duplicate') {
      if (m.from !== this.id) this.drop('duplicate');
    } else if (m.seq > this.h) this.outAppend.push(m);
    if (m.seq === this.h) return;
    const proof = this.checkpoints.proofFor(m.seq, m.digest);
    if (proof) this.makeStable(proof);
  }

  /** Tells a replica that is behind about our stable checkpoint (it gathers a quorum of these). */
  private answerCheckpoint(to: NodeId): void {
    const digest = this.ownCheckpoints.get(this.h);
    if (!digest || this.answered.has(`${to}/cp`)) return;
    this.answered.add(`${to}/cp`);
    this.send({ type: 'checkpoint', to, seq: this.h, digest });
  }

  private makeStable(proof: PbftCheckpointProof): void {
    if (proof.seq <= this.h) return;
    const own = this.ownCheckpoints.get(proof.seq);
    if (own && !bytesEqual(own, proof.digest)) {
      throw new Error(`pbft: own checkpoint at ${proof.seq} differs from the quorum's: this replica diverged`);
    }
    this.stable = proof;
    this.outStable = proof;
    this.log.gc(proof.seq);
    this.checkpoints.gc(proof.seq - 1);
    for (const [id, seq] of this.executedAt) if (seq <= proof.seq) this.executedAt.delete(id);
    for (const seq of [...this.claims.keys()]) if (seq <= proof.seq) this.claims.delete(seq);
    for (const s of [...this.ownCheckpoints.keys()]) if (s < proof.seq) this.ownCheckpoints.delete(s);
    if (this.nextSeq <= proof.seq) this.nextSeq = proof.seq + 1;
    if (this.lastExecuted < proof.seq) this.requestTransfer(proof);
    this.flush(false);
  }

  private requestTransfer(proof: PbftCheckpointProof): void {
    this.transfer = { seq: proof.seq, digest: proof.digest, from: proof.proof.map((m) => m.from) };
    this.outTransfer = this.transfer;
  }

  // ---------------------------------------------------------------- view change

  private noteHigherView(from: NodeId, view: number): void {
    if ((this.higherViews.get(from) ?? -1) >= view) return;
    this.higherViews.set(from, view);
    const views: number[] = [];
    for (const v of this.higherViews.values()) if (v > this.view) views.push(v);
    if (views.length < this.f + 1) return;
    views.sort((a, b) => b - a);
    // At least one of the f+1 highest senders is correct: join the smallest of their views.
    this.startViewChange(views[this.f]!);
  }

  /**
   * On timeout: the next view, or the highest view another replica already asked for (bounded jump), so
   * that a replica left alone in a high view and the others meet again instead of climbing one by one.
   */
  private viewAfterTimeout(): number {
    let target = this.view + 1;
    for (const [v, store] of this.viewChanges) {
      if (v > target && v <= this.view + MAX_VIEW_JUMP && [...store.keys()].some((r) => r !== this.id)) target = v;
    }
    return target;
  }

  private startViewChange(target: number): void {
    if (target < this.view || (target === this.view && this.inViewChange)) return;
    this.view = target;
    this.inViewChange = true;
    this.timer = 0;
    this.newView = null;
    for (const [r, v] of this.higherViews) if (v <= target) this.higherViews.delete(r);
    for (const v of [...this.viewChanges.keys()]) if (v < target) this.viewChanges.delete(v);
    const vc: PbftViewChangeMsg = {
      type: 'view-change',
      to: 'all',
      view: target,
      checkpoint: this.stable,
      prepared: this.log.preparedCerts(this.h, target, this.replicas, this.quorum),
    };
    this.myViewChange = vc;
    this.sendOwn(vc);
    this.maybeNewView();
  }

  private onViewChange(m: SignedViewChange): void {
    if (m.view < this.view || (m.view === this.view && !this.inViewChange)) {
      // The sender is behind: the primary of our view tells it how this view started.
      if (!this.inViewChange && this.newView && this.primary() === this.id && !this.answered.has(`${m.from}/nv`)) {
        this.answered.add(`${m.from}/nv`);
        this.send({ ...this.newView, to: m.from });
      }
      if (m.from !== this.id) this.drop('stale');
      return;
    }
    const bad = checkViewChange(m, this.ctx);
    if (bad) return this.drop('bad-view-change');
    let store = this.viewChanges.get(m.view);
    if (store?.has(m.from)) {
      if (m.from !== this.id) this.drop('duplicate');
      return;
    }
    if (m.view > this.view) {
      // A sender's view-changes for future views: keep only its highest.
      for (const [v, s] of this.viewChanges) {
        if (v > this.view && v !== m.view) s.delete(m.from);
        if (s.size === 0) this.viewChanges.delete(v);
      }
    }
    if (!store) {
      store = new Map();
      this.viewChanges.set(m.view, store);
    }
    store.set(m.from, m);
    this.outAppend.push(m);
    if (m.view > this.view && m.from !== this.id) this.noteHigherView(m.from, m.view);
    this.maybeNewView();
  }

  /** The primary of the view being changed to issues NEW-VIEW once it holds a quorum of signed view-changes. */
  private maybeNewView(): void {
    if (!this.inViewChange || this.primary() !== this.id || this.sentNewView >= this.view) return;
    const store = this.viewChanges.get(this.view);
    const chosen = store ? chooseViewChanges(store, this.ctx) : null;
    if (!chosen) return;
    const plan = planNewView(chosen, this.ctx);
    this.sentNewView = this.view;
    this.sendOwn({ type: 'new-view', to: 'all', view: this.view, viewChanges: chosen, prePrepares: plan.entries });
  }

  private onNewView(m: PbftNewViewMsg & { from: NodeId; sig: Uint8Array }): void {
    if (m.view < this.view || (m.view === this.view && !this.inViewChange)) {
      if (m.from !== this.id) this.drop('stale');
      return;
    }
    const res = checkNewView(m, this.ctx);
    if ('reason' in res) return this.drop('bad-new-view');
    this.outAppend.push(m);
    this.enterView(m, res.plan);
  }

  private enterView(nv: PbftNewViewMsg, plan: NewViewPlan): void {
    this.view = nv.view;
    this.inViewChange = false;
    this.timer = 0;
    this.newView = { ...nv, to: 'all' };
    this.myViewChange = null;
    for (const [r, v] of this.higherViews) if (v <= nv.view) this.higherViews.delete(r);
    for (const v of [...this.viewChanges.keys()]) if (v <= nv.view) this.viewChanges.delete(v);
    if (plan.checkpoint && plan.checkpoint.seq > this.h) this.makeStable(plan.checkpoint);
    this.assigned.clear();
    let maxSeq = this.h;
    for (const e of plan.entries) {
      if (e.seq <= this.h) continue;
      const slot = this.log.slot(nv.view, e.seq);
      slot.batch = { digest: e.digest, requests: e.requests };
      for (const r of e.requests) {
        this.remember(r);
        if (!this.executed.has(r.id)) this.assigned.add(r.id);
      }
      this.sendPrepare(slot);
      maxSeq = Math.max(maxSeq, e.seq);
    }
    this.nextSeq = maxSeq + 1;
    this.flush(false);
  }

  // ---------------------------------------------------------------- retransmission

  /**
   * Every retransmitTicks: our votes to the replicas we have not heard the same vote from, our
   * view-change while changing view, queued requests to the primary, and our latest checkpoint.
   */
  private retransmit(): void {
    this.answered.clear();
    if (this.inViewChange) {
      if (this.myViewChange) this.send(this.myViewChange);
      // Whoever the next primary is, it must learn the requests we wait for.
      let sent = this.ticks % (3 * this.retransmitTicks) === 0 ? 0 : this.config.maxBatch;
      for (const r of this.pending.values()) {
        if (sent++ >= this.config.maxBatch) break;
        this.send({ type: 'request', to: 'all', request: r });
      }
    } else {
      const isPrimary = this.primary() === this.id;
      for (const slot of this.log.slotsOfView(this.view)) {
        if (slot.seq <= this.h || !slot.batch) continue;
        const { view, seq } = slot;
        const executed = seq <= this.lastExecuted;
        for (const r of this.replicas) {
          const to = r;
          if (r === this.id) {
            // Our own signed copy never came back (e.g. restarted before the loopback): send it again.
            if (slot.myPrepare && !slot.prepares.has(r)) this.send({ type: 'prepare', to, view, seq, digest: slot.myPrepare });
            if (slot.myCommit && !slot.commits.has(r)) this.send({ type: 'commit', to, view, seq, digest: slot.myCommit });
            continue;
          }
          if (isPrimary && !slot.prepares.has(r) && slot.batch.requests.length > 0) {
            this.send({ type: 'pre-prepare', to, view, seq, digest: slot.batch.digest, requests: slot.batch.requests });
          }
          // Once executed here, a peer missing the batch only needs the commits (and the pre-prepare).
          if (slot.myPrepare && !slot.prepares.has(r) && !executed) this.send({ type: 'prepare', to, view, seq, digest: slot.myPrepare });
          if (slot.myCommit && !slot.commits.has(r)) this.send({ type: 'commit', to, view, seq, digest: slot.myCommit });
        }
      }
      if (!isPrimary) {
        // To the primary; every third round to every replica: those that executed it already tell us so.
        const to = this.ticks % (3 * this.retransmitTicks) === 0 ? 'all' : this.primary();
        let sent = 0;
        for (const r of this.pending.values()) {
          if (this.assigned.has(r.id)) continue;
          this.send({ type: 'request', to, request: r });
          if (++sent === this.config.maxBatch) break;
        }
      }
    }
    let latest = -1;
    for (const s of this.ownCheckpoints.keys()) if (s > latest) latest = s;
    if (latest >= this.h && latest > 0) {
      const digest = this.ownCheckpoints.get(latest)!;
      if (this.ticks % (3 * this.retransmitTicks) === 0) this.send({ type: 'checkpoint', to: 'all', seq: latest, digest });
      else {
        for (const r of this.replicas) {
          if (r === this.id || this.checkpoints.has(latest, r)) continue;
          this.send({ type: 'checkpoint', to: r, seq: latest, digest });
        }
      }
    }
  }

  // ---------------------------------------------------------------- restart

  /** Rebuilds in-memory structures from one durable log message (no checks: it was checked when accepted). */
  private restore(m: SignedPbftMessage): void {
    const own = m.from === this.id;
    const signed = m.sig.length > 0;
    switch (m.type) {
      case 'request':
      case 'executed':
        return;
      case 'pre-prepare': {
        if (m.seq <= this.h) return;
        const slot = this.log.slot(m.view, m.seq);
        slot.batch ??= { digest: m.digest, requests: m.requests };
        for (const r of m.requests) if (m.seq > this.lastExecuted) this.remember(r);
        return;
      }
      case 'prepare':
      case 'commit': {
        if (m.seq <= this.h) return;
        const slot = this.log.slot(m.view, m.seq);
        if (own) {
          if (m.type === 'prepare') slot.myPrepare ??= m.digest;
          else slot.myCommit ??= m.digest;
        }
        const votes = m.type === 'prepare' ? slot.prepares : slot.commits;
        if (signed && !votes.has(m.from)) votes.set(m.from, m as Vote);
        slot.committed = slot.isCommittedLocal(this.replicas, this.quorum);
        return;
      }
      case 'checkpoint':
        if (m.seq < this.h) return;
        if (own) this.ownCheckpoints.set(m.seq, m.digest);
        if (signed) this.checkpoints.record(m as CheckpointVote, Number.MAX_SAFE_INTEGER);
        return;
      case 'view-change': {
        if (m.view < this.view || (m.view === this.view && !this.inViewChange)) return;
        if (own && m.view === this.view && this.inViewChange) this.myViewChange = { ...m, to: 'all' };
        if (signed) {
          let store = this.viewChanges.get(m.view);
          if (!store) this.viewChanges.set(m.view, (store = new Map()));
          if (!store.has(m.from)) store.set(m.from, m);
        }
        return;
      }
      case 'new-view': {
        if (own) this.sentNewView = Math.max(this.sentNewView, m.view);
        if (m.view === this.view && !this.inViewChange) this.newView = { ...m, to: 'all' };
        for (const e of m.prePrepares) {
          if (e.seq <= this.h) continue;
          const slot = this.log.slot(m.view, e.seq);
          slot.batch ??= { digest: e.digest, requests: e.requests };
          for (const r of e.requests) if (e.seq > this.lastExecuted) this.remember(r);
        }
        return;
      }
    }
  }
}
