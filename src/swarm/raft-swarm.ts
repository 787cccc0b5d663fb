// Drives one Raft core for one swarm: ticks it, feeds it peer messages, persists each Ready (one synced batch)
// before sending what depends on it, applies committed entries in order, forwards proposals to the leader, and
// serves linearizable reads (ReadIndex, one request out at a time for all the reads that arrive meanwhile).
// An idle swarm quiesces (RaftConfig.quiesce) and is then taken off the node's ticker altogether, so a node hosting
// many idle swarms spends nothing on them; node liveness (transport/liveness.ts) wakes the swarms of a peer whose
// node went down (peerDown), which is what keeps a quiesced follower from waiting for ever on a dead leader.
import { RaftCore } from '../consensus/raft/raft.ts';
import { decodeMessages, encodeMessages } from '../consensus/raft/codec.ts';
import type { ConfChange, Entry, Message, RaftBasicStatus, RaftInitialState, RaftStatus, Ready, Snapshot } from '../consensus/raft/types.ts';
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { onTick } from './ticker.ts';
import { ReadRounds } from './read-rounds.ts';
import { afterQueuedWrites, SwarmError, type Applier, type ConsensusEngine, type EngineStatus, type SwarmLink } from './engine.ts';

export { SwarmError };

/** Durable log storage for one swarm (storage/RaftLogStore has this shape). */
export interface RaftDurableLog {
  load(): Promise<Omit<RaftInitialState, 'applied'> & { conf: RaftInitialState['conf'] }>;
  persistReady(ready: Pick<Ready, 'hardState' | 'entries' | 'snapshot' | 'compactedTo'>): Promise<void>;
}

export interface RaftSwarmOptions {
  swarm: string;
  self: string;
  voters: string[];
  log: RaftDurableLog;
  link: SwarmLink;
  applier: Applier;
  logger: Logger;
  /** Milliseconds per logical tick. Election timeout = electionTick ticks (randomized up to 2x). */
  tickMs?: number;
  electionTick?: number;
  heartbeatTick?: number;
  /** The consensus era of the swarm (0, then +1 per committed mode switch); part of every channel name. */
  era?: number;
  /** The global log index this era starts after (0, or the index of the mode switch that began it). */
  base?: number;
  /**
   * Take a snapshot after this many applied entries... The log is then compacted up to the snapshot taken at the
   * previous trigger, so it keeps between one and two such intervals of entries (see maybeCompact).
   */
  snapshotEvery?: number;
  /**
   * ...or once the entries applied since the last snapshot carry this many bytes (default 8 MiB): the core keeps
   * the log since its snapshot in memory, and a batch of verdicts is kilobytes, so a count alone does not bound it.
   */
  snapshotBytes?: number;
  /** The leader refuses proposals while this many payload bytes are uncommitted (default 32 MiB; backpressure). */
  maxUncommittedBytes?: number;
  rand?: () => number;
  /** Default true: an idle swarm stops ticking and sending until something happens (see RaftConfig.quiesce). */
  quiesce?: boolean;
  /**
   * Checks a proposal a follower forwarded before this leader appends it (default: every command is appended):
   * what is committed was judged once, here, so applying it needs no node-local judgement (keys) that could differ.
   */
  validateForwarded?: (data: Uint8Array) => boolean;
  /** Called after a Ready cycle changed the role, term, leader, commit or applied index (not on every heartbeat). */
  onStatus?: (status: RaftStatus) => void;
}

/** A ReadIndex request not answered within this time is asked again (RaftSwarm.askReadRound). */
const READ_ROUND_RETRY_MS = 1000;
/** A follower forwards again when its forwarded proposal has not been applied within this time. */
const FORWARD_RETRY_MS = 5000;
const MAX_IN_FLIGHT_KEYS = 100_000;
const DEFAULT_SNAPSHOT_BYTES = 8 * 1024 * 1024;
const DEFAULT_MAX_UNCOMMITTED_BYTES = 32 * 1024 * 1024;

function dataKey(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('base64url');
}

interface IndexWaiter {
  term: number;
  resolve: () => void;
  reject: (error: Error) => void;
}


/** One barrier of a ReadIndex round: settled once, by the round's answer or by its own timeout. */
interface ReadRoundWaiter {
  done: boolean;
  settle: (readIndex: number, error: Error | null) => void;
}

/** One ReadIndex request serving every barrier that joined before it was asked. */
interface ReadRound {
  waiters: ReadRoundWaiter[];
  /** The first barrier's timeout (a round is asked again after READ_ROUND_RETRY_MS at most). */
  timeoutMs: number;
}

export class RaftSwarm implements ConsensusEngine {
  readonly mode = 'raft' as const;
  /** Channels carry the era, so a draining engine of an earlier era never hears the current one. */
  readonly channels: { messages: string[]; calls: string[] };
  private readonly messageChannel: string;
  private readonly forwardChannel: string;
  /** Followers waiting for forwarded bytes to be applied, by dataKey. */
  private readonly forwarded = new Map<string, ((ok: boolean) => void)[]>();
  /** On the leader: forwarded proposals placed and not yet applied, by dataKey. */
  private readonly inFlight = new Map<string, number>();
  /** Wake-ups to run once the applied state of the current cycle is durable. */
  private afterFlush: (() => void)[] = [];
  private pendingFlush: Promise<void> = Promise.resolve();
  /** The hard state last made durable (term and vote decide whether a leader may send before its own write). */
  private persistedHardState: { term: number; vote: string | null } | null = null;
  /** Set once a committed entry ended this engine's era: nothing after it is applied or proposed. */
  private haltedAt: number | null = null;
  readonly swarm: string;
  private core!: RaftCore;
  /** Set while this engine is on the node's ticker: never while quiesced, stopped or failed. */
  private stopTicking: (() => void) | null = null;
  private tickMs = 100;
  /** What onStatus last reported, so an idle cycle (a heartbeat round) reports nothing. */
  private reported: RaftBasicStatus | null = null;
  private scheduled = false;
  private running = false;
  private stopped = false;
  private appliedIndex = 0;
  private appliedSinceSnapshot = 0;
  private appliedBytesSinceSnapshot = 0;
  /** Proposals waiting for their index to be applied here, keyed by index. */
  private readonly waiters = new Map<number, IndexWaiter[]>();
  private readonly appliedTerms = new Map<number, number>();
  private readonly readWaiters = new Map<string, (index: number) => void>();
  private readSeq = 0;
  /** ReadIndex requests, one out at a time (askReadRound). */
  private readonly readRounds = new ReadRounds<ReadRound>((round) => this.askReadRound(round));
  /** Read barriers since start (served by readRounds.asked requests). */
  private readBarriers = 0;
  private loopError: Error | null = null;
  /** Set by requestSnapshot (membership: a newcomer must be sent a snapshot); honoured at the next ready cycle. */
  private snapshotRequested = false;
  /** The snapshot taken at the last trigger: the next trigger compacts up to it (the entries after it stay). */
  private catchUpPoint: { index: number; data: Uint8Array } | null = null;
  /** Snapshots installed from a leader since start (each means this node was too far behind for the log). */
  private snapshotsInstalled = 0;

  constructor(private readonly options: RaftSwarmOptions) {
    this.swarm = options.swarm;
    const era = options.era ?? 0;
    this.messageChannel = `raft.e${era}`;
    this.forwardChannel = `raft.e${era}.forward`;
    this.channels = { messages: [this.messageChannel, this.forwardChannel], calls: [] };
  }

  async start(): Promise<void> {
    const stored = await this.options.log.load();
    const { applier } = this.options;
    const base = this.options.base ?? 0;
    // The replicated state was rebuilt from its own durable records before the engine starts; a Raft snapshot
    // newer than that (installed from the leader just before a crash) wins.
    if (stored.snapshot && stored.snapshot.index > applier.size && stored.snapshot.data.length > 0) {
      await applier.restore(stored.snapshot.data, stored.snapshot.index);
    }
    const bootstrapConf = stored.conf.voters.length ? stored.conf : { voters: [...this.options.voters], learners: [] };
    // An era that starts after a mode switch at index `base` begins with a log whose prefix is that switch.
    let snapshot = stored.snapshot;
    if (!snapshot && base > 0) {
      // The era's log begins after the switch: record that prefix as a (data-less) snapshot so storage and the core
      // agree where the log starts.
      snapshot = { index: base, term: 0, conf: bootstrapConf, data: new Uint8Array(0) };
      await this.options.log.persistReady({ hardState: null, entries: [], snapshot, compactedTo: null });
    }
    const floor = snapshot?.index ?? 0;
    const lastIndex = stored.entries.at(-1)?.index ?? floor;
    const hardState = { ...stored.hardState, commit: Math.max(stored.hardState.commit, floor) };
    this.persistedHardState = { term: hardState.term, vote: hardState.vote };
    const applied = Math.max(floor, Math.min(applier.size, hardState.commit, lastIndex));
    this.appliedIndex = applied;
    const conf = snapshot?.conf ?? bootstrapConf;
    this.core = new RaftCore(
      {
        id: this.options.self,
        electionTick: this.options.electionTick ?? 10,
        heartbeatTick: this.options.heartbeatTick ?? 1,
        rand: this.options.rand ?? Math.random,
        maxInflightMsgs: 256,
        maxSizePerMsg: 1024 * 1024,
        // Without a bound, a leader that cannot commit (no quorum for a while) keeps appending every proposal and
        // every retry it receives; refused proposals wait and retry in propose(), forwarded ones are forwarded again.
        maxUncommittedBytes: this.options.maxUncommittedBytes ?? DEFAULT_MAX_UNCOMMITTED_BYTES,
        quiesce: this.options.quiesce ?? true,
      },
      { hardState, snapshot, entries: stored.entries, conf, applied },
    );
    this.tickMs = this.options.tickMs ?? 100;
    this.schedule();
  }

  private readonly onTickListener = (): void => {
    this.core.tick();
    if (this.core.isQuiesced()) this.syncTicking();
    // Most ticks of an awake follower produce nothing: skip the Ready cycle then.
    if (this.core.hasReady()) this.schedule();
  };

  /** On the node's ticker exactly while the core's timers run. */
  private syncTicking(): void {
    const wanted = !this.stopped && this.loopError === null && !this.core.isQuiesced();
    if (wanted === (this.stopTicking !== null)) return;
    if (wanted) {
      this.stopTicking = onTick(this.tickMs, this.onTickListener);
    } else {
      this.stopTicking!();
      this.stopTicking = null;
    }
  }

  /**
   * Node liveness: `org`'s node has not been heard for longer than an election timeout. If it led this swarm, this
   * node forgets it and may elect another; if this node leads and is quiesced, it wakes so CheckQuorum runs again.
   */
  peerDown(org: string): void {
    if (!this.core || this.stopped || this.haltedAt !== null) return;
    this.core.peerDown(org);
    this.schedule();
  }

  /** Whether the core is quiesced (off the ticker). */
  quiesced(): boolean {
    return this.core.isQuiesced();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.syncTicking();
    for (const [, list] of this.waiters) for (const waiter of list) waiter.reject(new SwarmError(503, 'NODE_STOPPING', 'the node is shutting down'));
    this.waiters.clear();
    while (this.running) await new Promise((resolve) => setTimeout(resolve, 5));
    await this.pendingFlush;
  }

  raftStatus(): RaftStatus {
    return this.core.status();
  }

  status(): EngineStatus {
    const status = this.core.status();
    return {
      mode: 'raft',
      role: this.haltedAt === null ? status.role : `${status.role} (era ended at ${this.haltedAt})`,
      term: status.term,
      leader: status.leader,
      commitIndex: status.commit,
      lastIndex: status.lastIndex,
      peers: Object.entries(status.progress).map(([org, p]) => ({ org, match: p.match, next: p.next, state: p.state, active: p.recentActive })),
      detail: { quiesced: status.quiesced, snapshotIndex: status.snapshotIndex, snapshotsInstalled: this.snapshotsInstalled, consistentReads: { barriers: this.readBarriers, rounds: this.readRounds.asked } },
    };
  }

  serving(): boolean {
    return this.haltedAt === null && this.loopError === null && this.core.leader() !== null;
  }

  /** The leader this node knows of, without building a status (timers of every swarm ask this often). */
  leader(): string | null {
    return this.core.leader();
  }

  async handleCall(_fromOrg: string, channel: string): Promise<Uint8Array> {
    throw new SwarmError(404, 'UNKNOWN_CHANNEL', `no raft call ${channel}`);
  }

  get applied(): number {
    return this.appliedIndex;
  }

  /** Raft messages from an authenticated peer org; a message claiming another sender is dropped. */
  receive(fromOrg: string, channel: string, batch: Uint8Array[]): { accepted: number; dropped: number } {
    // Peers may speak before start() has loaded the log and built the core: drop, Raft retransmits.
    if (!this.core) return { accepted: 0, dropped: batch.length };
    if (channel === this.forwardChannel) {
      const dropped = this.receiveForwarded(batch);
      return { accepted: batch.length - dropped, dropped };
    }
    let accepted = 0;
    let dropped = 0;
    for (const bytes of batch) {
      let messages: Message[];
      try {
        messages = decodeMessages(bytes);
      } catch {
        dropped++;
        continue;
      }
      for (const message of messages) {
        if (message.from !== fromOrg || message.to !== this.options.self) {
          dropped++;
          continue;
        }
        this.core.step(message);
        accepted++;
      }
    }
    if (accepted) this.schedule();
    return { accepted, dropped };
  }

  /** Proposes bytes; resolves with (index, term) once that entry is applied on this node. */
  /**
   * Proposes bytes; resolves once an entry with exactly these bytes is applied on this node. A follower forwards
   * the bytes to the leader as a one-way message (multiplexed with the Raft traffic, no request per proposal) and
   * forwards again if they have not been applied after a while: the state machine makes a repeated proposal
   * harmless, and the leader skips bytes it already has in flight.
   */
  async propose(data: Uint8Array, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const key = dataKey(data);
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) throw new SwarmError(503, 'NODE_STOPPING', 'the node is shutting down');
      if (this.haltedAt !== null) throw new SwarmError(503, 'MODE_SWITCHED', `swarm ${this.swarm} left raft mode at index ${this.haltedAt}; resubmit to use the new protocol`);
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      const result = this.core.propose(data);
      if (result.ok) {
        this.schedule();
        if (await this.waitApplied(result.index, result.term, remaining)) return;
        continue; // our entry lost its place to a new leader: propose again
      }
      if (result.code === 'NOT_LEADER' && result.leader && result.leader !== this.options.self) {
        this.options.link.send(result.leader, this.swarm, this.forwardChannel, [data]);
        if (await this.waitForBytes(key, Math.min(remaining, FORWARD_RETRY_MS))) return;
        continue;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(20 * 2 ** attempt, 500)));
    }
    throw new SwarmError(504, 'COMMIT_TIMEOUT', `swarm ${this.swarm}: not committed within ${timeoutMs} ms (no leader, or no quorum); it may still commit — resubmitting is safe`);
  }

  /** Resolves true when an entry with these bytes is applied here, false after `timeoutMs`. */
  private waitForBytes(key: string, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const list = this.forwarded.get(key) ?? [];
      const waiter = (ok: boolean) => {
        clearTimeout(timer);
        resolve(ok);
      };
      const timer = setTimeout(() => {
        const current = this.forwarded.get(key);
        if (current) {
          const rest = current.filter((w) => w !== waiter);
          if (rest.length) this.forwarded.set(key, rest);
          else this.forwarded.delete(key);
        }
        resolve(false);
      }, timeoutMs);
      list.push(waiter);
      this.forwarded.set(key, list);
    });
  }

  /** Proposals forwarded by followers: the leader proposes each valid one once while it is in flight; returns how many it refused. */
  private receiveForwarded(batch: Uint8Array[]): number {
    let refused = 0;
    for (const data of batch) {
      // Only commands (canonical JSON objects) may be forwarded: conf entries are recognised by not being JSON.
      if (data[0] !== 0x7b) {
        refused++;
        continue;
      }
      const key = dataKey(data);
      if (this.inFlight.has(key)) continue;
      // Only a leader appends; a follower that receives a forward (a stale view of who leads) lets it fail below.
      if (this.core.leader() === this.options.self && this.options.validateForwarded && !this.options.validateForwarded(data)) {
        refused++;
        continue;
      }
      const result = this.core.propose(data);
      if (result.ok) {
        this.inFlight.set(key, result.index);
        if (this.inFlight.size > MAX_IN_FLIGHT_KEYS) this.inFlight.delete(this.inFlight.keys().next().value!);
      }
    }
    this.schedule();
    return refused;
  }

  /** Waits until `index` is applied here; false when the entry applied there has another term (ours was lost). */
  private waitApplied(index: number, term: number, timeoutMs: number): Promise<boolean> {
    if (index <= this.appliedIndex) {
      const appliedTerm = this.appliedTerms.get(index);
      return Promise.resolve(appliedTerm === undefined || appliedTerm === term);
    }
    return new Promise<boolean>((resolve, reject) => {
      const timer = setTimeout(() => {
        const list = this.waiters.get(index);
        if (list) this.waiters.set(index, list.filter((w) => w !== waiter));
        resolve(false);
      }, timeoutMs);
      const waiter: IndexWaiter = {
        term,
        resolve: () => {
          clearTimeout(timer);
          resolve(this.appliedTerms.get(index) === term);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const list = this.waiters.get(index) ?? [];
      list.push(waiter);
      this.waiters.set(index, list);
    });
  }

  /**
   * Linearizable read barrier (ReadIndex): resolves once this node has applied everything committed before the call.
   * One ReadIndex request is out at a time; barriers that arrive meanwhile share the next one (ReadRounds), as
   * etcd's server batches its linearizable reads.
   */
  async readBarrier(timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    this.readBarriers++;
    const index = await new Promise<number>((resolve, reject) => {
      const waiter: ReadRoundWaiter = {
        done: false,
        settle: (readIndex, error) => {
          if (waiter.done) return;
          waiter.done = true;
          clearTimeout(timer);
          if (error) reject(error);
          else resolve(readIndex);
        },
      };
      const timer = setTimeout(() => waiter.settle(0, this.noReadQuorum(timeoutMs)), timeoutMs);
      this.readRounds.join(() => ({ waiters: [], timeoutMs })).waiters.push(waiter);
    });
    // Whatever the entry's term: the barrier needs it applied here, not proposed by us.
    while (index > this.appliedIndex) {
      const left = deadline - performance.now();
      if (left <= 0 || this.stopped) throw new SwarmError(503, 'NOT_APPLIED', `swarm ${this.swarm}: this node had not applied up to the read index ${index} within ${timeoutMs} ms (applied: ${this.appliedIndex})`);
      await this.waitApplied(index, -1, left);
    }
    return index;
  }

  private noReadQuorum(timeoutMs: number): SwarmError {
    return new SwarmError(503, 'NO_QUORUM', `swarm ${this.swarm}: the leader could not confirm a quorum within ${timeoutMs} ms`);
  }

  /**
   * Asks the core for a read index on behalf of every barrier of `round` (they all began before this). A round the
   * leader has not answered within READ_ROUND_RETRY_MS (no leader yet, a request lost on the way, a slow link) stops
   * holding back the next round, which asks again for its barriers still waiting: whichever answer comes first
   * serves them (both were asked after each of them began), so one lost request never holds the reads behind it for
   * their whole timeout. Each barrier's own timer bounds its wait; a round stops listening after the longest of them.
   */
  private askReadRound(round: ReadRound): void {
    const ctx = `${this.options.self}:${++this.readSeq}`;
    const retry = setTimeout(() => {
      const pending = round.waiters.filter((waiter) => !waiter.done);
      if (pending.length && !this.stopped) this.readRounds.join(() => ({ waiters: [], timeoutMs: round.timeoutMs })).waiters.push(...pending);
      this.readRounds.release(round);
    }, Math.min(round.timeoutMs, READ_ROUND_RETRY_MS));
    const stopListening = setTimeout(() => this.readWaiters.delete(ctx), round.timeoutMs);
    this.readWaiters.set(ctx, (readIndex) => {
      clearTimeout(retry);
      clearTimeout(stopListening);
      this.readWaiters.delete(ctx);
      this.readRounds.release(round);
      for (const waiter of round.waiters) waiter.settle(readIndex, null);
    });
    this.core.readIndex(Buffer.from(ctx));
    this.schedule();
  }

  proposeConfChange(change: ConfChange): ReturnType<RaftCore['proposeConfChange']> {
    if (this.haltedAt !== null) return { ok: false, code: 'NOT_LEADER', leader: null };
    const result = this.core.proposeConfChange(change);
    this.schedule();
    return result;
  }

  // ---- membership (driven by swarm/membership.ts ConfChangeDriver) ----

  isLeader(): boolean {
    return this.haltedAt === null && this.loopError === null && this.core.leader() === this.options.self;
  }

  /** The configuration the core uses now (conf entries take effect when applied). */
  conf(): { voters: string[]; learners: string[] } {
    const { conf } = this.core.status();
    return { voters: [...conf.voters], learners: [...conf.learners] };
  }

  snapshotIndex(): number {
    return this.core.status().snapshotIndex;
  }

  /** Take a snapshot at the applied index and compact the log at the next ready cycle. */
  requestSnapshot(): void {
    this.snapshotRequested = true;
    this.schedule();
  }

  transferLeadership(to: string): void {
    this.core.transferLeadership(to);
    this.schedule();
  }

  private schedule(): void {
    // Every input passes here: it may have quiesced the core (off the ticker) or woken it (back on).
    this.syncTicking();
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.runReady();
    });
  }

  /** The persist → send → apply loop; one at a time, so entries are applied strictly in order. */
  private async runReady(): Promise<void> {
    if (this.running || this.loopError) return;
    this.running = true;
    try {
      if (this.snapshotRequested) await this.maybeCompact();
      while (!this.stopped && this.core.hasReady()) {
        const ready = this.core.ready();
        // Durable first: vote, term and entries must be on disk before any message that depends on them. One
        // exception, as in the Raft thesis (§10.2.1): a leader may replicate entries while it writes them itself,
        // because commitment counts its own copy only through later Readies, handled after this one is durable.
        // Only when term and vote are unchanged (a new term or vote must be durable before anything is sent).
        // A Ready that only moves the commit index (no entries, snapshot, term or vote) sends everything first: its
        // messages depend only on what earlier Readies made durable (as etcd's leader sends before saving).
        const sendAllFirst = this.onlyCommitMoves(ready);
        const early = sendAllFirst ? ready.messages : this.leaderMaySendEarly(ready) ? ready.messages.filter((m) => m.type === 'app') : [];
        if (early.length) this.send(early);
        if (ready.hardState || ready.entries.length || ready.snapshot || ready.compactedTo !== null) {
          await this.options.log.persistReady(ready);
          if (ready.hardState) this.persistedHardState = ready.hardState;
        }
        if (!sendAllFirst) this.send(early.length ? ready.messages.filter((m) => m.type !== 'app') : ready.messages);
        if (ready.snapshot) await this.installSnapshot(ready.snapshot);
        // Applying is a long synchronous stretch (signature checks, the decision machine, the audit chain): the commit
        // notices just handed to the transport leave first, or every follower waits for the leader's apply.
        if (ready.committed.length && ready.messages.length) await afterQueuedWrites();
        for (const entry of ready.committed) this.applyEntry(entry);
        if (ready.committed.length || ready.snapshot) {
          // Callers are answered as soon as their entry is applied: it is committed, so durable in the logs of a
          // majority, and the applied state is rebuilt from the log after a crash. The applied records need not
          // delay the next Ready either: their write joins the next synced batch of the log (group commit).
          const wake = this.afterFlush.splice(0);
          this.wakeWaitersUpTo(this.appliedIndex);
          for (const fn of wake) fn();
          // Not synced by itself (it rides on the next synced write): after a crash the log replays what it lost.
          this.pendingFlush = this.options.applier.flush([], { lazy: true }).catch((error: unknown) => this.fail(error));
        }
        for (const readState of ready.readStates) {
          const waiter = this.readWaiters.get(Buffer.from(readState.ctx).toString('utf8'));
          if (waiter) {
            this.readWaiters.delete(Buffer.from(readState.ctx).toString('utf8'));
            waiter(readState.index);
          }
        }
        this.core.advance(ready);
        await this.maybeCompact();
        this.reportStatus();
      }
    } catch (error) {
      this.fail(error);
    } finally {
      this.running = false;
    }
    if (!this.stopped && !this.loopError && this.core.hasReady()) this.schedule();
  }

  private reportStatus(): void {
    if (!this.options.onStatus) return;
    const now = this.core.basicStatus();
    const last = this.reported;
    if (last && last.role === now.role && last.term === now.term && last.leader === now.leader && last.commit === now.commit && last.applied === now.applied) return;
    this.reported = now;
    this.options.onStatus(this.core.status());
  }

  private onlyCommitMoves(ready: Ready): boolean {
    if (ready.snapshot || ready.entries.length || !ready.messages.length) return false;
    const hs = ready.hardState;
    return !hs || (this.persistedHardState !== null && hs.term === this.persistedHardState.term && hs.vote === this.persistedHardState.vote);
  }

  private leaderMaySendEarly(ready: Ready): boolean {
    if (ready.snapshot || !ready.entries.length || this.core.leader() !== this.options.self) return false;
    const hs = ready.hardState;
    return !hs || (this.persistedHardState !== null && hs.term === this.persistedHardState.term && hs.vote === this.persistedHardState.vote);
  }

  /** A failed fsync leaves us unsure of what is durable: stop acting rather than risk acknowledging a lie. */
  private fail(error: unknown): void {
    if (this.loopError) return;
    this.loopError = error as Error;
    this.options.logger.fatal({ err: error, swarm: this.swarm }, 'storage or apply failed; this swarm stops here');
    this.syncTicking();
  }

  private send(messages: Message[]): void {
    const byPeer = new Map<string, Message[]>();
    for (const message of messages) {
      const list = byPeer.get(message.to) ?? [];
      list.push(message);
      byPeer.set(message.to, list);
    }
    for (const [peer, list] of byPeer) this.options.link.send(peer, this.swarm, this.messageChannel, [encodeMessages(list)]);
  }

  private async installSnapshot(snapshot: Snapshot): Promise<void> {
    this.snapshotsInstalled++;
    this.catchUpPoint = null;
    this.options.logger.info({ swarm: this.swarm, index: snapshot.index, applied: this.appliedIndex }, 'installing a snapshot from the leader (this node was behind its log)');
    if (snapshot.data.length > 0) await this.options.applier.restore(snapshot.data, snapshot.index);
    this.appliedIndex = snapshot.index;
    this.appliedSinceSnapshot = 0;
    this.appliedBytesSinceSnapshot = 0;
    this.appliedTerms.set(snapshot.index, snapshot.term);
    this.wakeWaitersUpTo(snapshot.index);
  }

  private applyEntry(entry: Entry): void {
    if (entry.index <= this.appliedIndex) return;
    if (entry.index !== this.appliedIndex + 1) throw new Error(`apply gap: ${this.appliedIndex} then ${entry.index}`);
    // After a committed mode switch, later Raft entries belong to no one: every replica stops applying at the same
    // index (they are consumed, never applied, so the core's bookkeeping still advances).
    if (this.haltedAt !== null) {
      this.appliedIndex = entry.index;
      return;
    }
    const verdict = this.options.applier.apply({ index: entry.index, epoch: entry.term, kind: entry.type === 'conf' ? 'conf' : 'command', data: entry.data });
    if ((this.forwarded.size > 0 || this.inFlight.size > 0) && entry.data.length > 0) {
      const key = dataKey(entry.data);
      this.inFlight.delete(key);
      const waiters = this.forwarded.get(key);
      if (waiters) {
        this.forwarded.delete(key);
        this.afterFlush.push(() => {
          for (const waiter of waiters) waiter(true);
        });
      }
    }
    if (verdict === 'halt') {
      this.haltedAt = entry.index;
      // Proposals placed after the switch will never apply here: tell their callers now, so they go to the new protocol.
      for (const [index, list] of this.waiters) {
        if (index <= entry.index) continue;
        this.waiters.delete(index);
        for (const waiter of list) waiter.reject(new SwarmError(503, 'MODE_SWITCHED', `swarm ${this.swarm} left raft mode at index ${entry.index}`));
      }
    }
    this.appliedIndex = entry.index;
    this.appliedSinceSnapshot++;
    this.appliedBytesSinceSnapshot += entry.data.byteLength;
    this.appliedTerms.set(entry.index, entry.term);
    // Remember terms only as long as a waiter could ask about them.
    this.appliedTerms.delete(entry.index - 100_000);
  }

  private wakeWaitersUpTo(index: number): void {
    for (const [waitIndex, list] of this.waiters) {
      if (waitIndex > index) continue;
      this.waiters.delete(waitIndex);
      for (const waiter of list) waiter.resolve();
    }
  }

  /**
   * Snapshot the state and compact the log; the snapshot is durable before any Ready may drop the prefix. A trigger
   * (count or bytes) takes a snapshot at the applied index and compacts up to the one the previous trigger took, so
   * the log keeps the last interval of entries: a follower a little behind (a stall, a restart, a slow disk) is sent
   * entries, not a snapshot whose install copies records — as etcd keeps SnapshotCatchUpEntries. A requested
   * snapshot (a newcomer must be sent one) compacts up to the applied index at once.
   */
  private async maybeCompact(): Promise<void> {
    if (this.haltedAt !== null) return;
    const every = this.options.snapshotEvery ?? 10_000;
    const bytesDue = this.appliedBytesSinceSnapshot >= (this.options.snapshotBytes ?? DEFAULT_SNAPSHOT_BYTES);
    if (this.appliedSinceSnapshot < every && !bytesDue && !this.snapshotRequested) return;
    if (this.snapshotRequested && this.appliedIndex <= this.core.status().snapshotIndex) {
      this.snapshotRequested = false; // nothing applied since the last snapshot (the driver asks again if it must)
      return;
    }
    this.appliedSinceSnapshot = 0;
    this.appliedBytesSinceSnapshot = 0;
    let target: { index: number; data: Uint8Array } | null;
    if (this.snapshotRequested) {
      this.snapshotRequested = false;
      target = { index: this.appliedIndex, data: this.options.applier.snapshot() };
      this.catchUpPoint = null;
    } else {
      target = this.catchUpPoint;
      this.catchUpPoint = { index: this.appliedIndex, data: this.options.applier.snapshot() };
    }
    if (!target || target.index <= this.core.status().snapshotIndex) return;
    const snapshot = this.core.compact(target.index, target.data);
    if (snapshot) await this.options.log.persistReady({ hardState: null, entries: [], snapshot, compactedTo: null });
  }
}
