// Drives one PBFT core for one swarm era: signs every outgoing message with the node's Ed25519 key and verifies
// every incoming one before the core sees it, persists accepted protocol state (synced) before sending, executes
// committed batches in order into the replicated state, answers state transfer from its audit records, collects the
// f+1 matching replies that make an agent's answer final, and serves linearizable reads (read-index rounds).
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import {
  PbftCore,
  applyPersist,
  persistMustSync,
  batchDigest,
  decodePbftDurableState,
  decodePbftMessage,
  emptyPbftState,
  encodePbftDurableState,
  encodePbftMessage,
  pbftFaults,
  pbftReadQuorum,
  pbftReadTarget,
  signingBytes,
  type PbftDurableState,
  type PbftMessage,
  type PbftReady,
  type SignedPbftMessage,
} from '../consensus/pbft/index.ts';
import { fromBase64Url, fromUtf8, toHex, utf8 } from '../crypto/encoding.ts';
import { signBytes, type SigningKey } from '../crypto/ed25519.ts';
import { indexKey, type KvStore } from '../storage/kv-store.ts';
import type { Keyring } from '../verdict/keyring.ts';
import { onTick } from './ticker.ts';
import { afterQueuedWrites, SwarmError, type Applier, type ConsensusEngine, type EngineStatus, type SwarmLink } from './engine.ts';
import type { AuditRecord } from '../audit/chain.ts';
import { verifiedRecords } from './record-transfer.ts';
import { ExecutedIds } from './executed-ids.ts';
import { ReadRounds } from './read-rounds.ts';

export interface PbftSwarmOptions {
  swarm: string;
  self: string;
  /** The replica order (primary of view v = replicas[v mod n]); the same on every node. */
  replicas: string[];
  era: number;
  /** Global log index this era starts after. */
  base: number;
  /** This era's durable protocol state. */
  store: KvStore;
  link: SwarmLink;
  applier: Applier;
  logger: Logger;
  signingKey: SigningKey;
  keyring: Keyring;
  /** The app's check of a request (every agent JWS and the proposal signature verify). */
  validate: (payload: Uint8Array) => boolean;
  /** Where the applier's batches put this engine's execution state (written only through applier.flush). */
  execStore: Pick<KvStore, 'get' | 'scan'>;
  /** Stored audit records, for state transfer to a lagging replica. */
  records: (from: number, limit: number) => Promise<AuditRecord[]>;
  /** Scratch space for records copied by state transfer while they are verified. */
  staging: KvStore;
  tickMs?: number;
  checkpointInterval?: number;
  viewChangeTimeoutTicks?: number;
  onDrop?: (reason: string) => void;
  /**
   * TEST ONLY: 'equivocate' makes this replica, while primary, send a different (validly signed) pre-prepare for the
   * same view and sequence number to half of the other replicas. Used to show a Byzantine primary cannot break
   * agreement. Enabled only by CONCLAVE_TEST_BYZANTINE=equivocate:<org>; the node logs a warning when it is on.
   */
  byzantine?: 'equivocate';
}

interface ExecState {
  lastExecuted: number;
  /** Written by earlier versions only (the whole id list); the ids now live in ExecutedIds chunks. */
  executedIds?: string[];
}

/** One read-index query of every peer (PbftSwarm.askReadRound): this replica's answer first, then the peers'. */
interface ReadRound {
  answers: number[];
  /** Peers that did not answer with a read index (unreachable, another era, an earlier version). */
  failed: number;
  /** How long its queries may take: the first barrier's timeout. */
  timeoutMs: number;
}

interface ReplyTally {
  byOrg: Map<string, string>;
  resolve: (() => void) | null;
  reject: ((error: Error) => void) | null;
  needed: number;
}

const STATE_KEY = 'state';
/** At-most-once window (see PbftConfig.executedWindow): ~30 s of requests at 3,000/s, a proposal's lifetime. */
const EXECUTED_WINDOW = 100_000;
/** A state transfer that no signer served is tried again after this long. */
const TRANSFER_RETRY_MS = 1000;
const LOG_PREFIX = 'log/';

function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(bytes).digest());
}

/** The state digest a checkpoint certifies: the audit chain head (size and last record hash) commits to it all. */
export function stateDigest(size: number, lastHash: string): Uint8Array {
  return sha256(utf8(`conclave/pbft-state/v1\n${size}\n${lastHash}`));
}

export class PbftSwarm implements ConsensusEngine {
  readonly mode = 'pbft' as const;
  readonly channels: { messages: string[]; calls: string[] };
  private core!: PbftCore;
  private durable: PbftDurableState = emptyPbftState();
  /** Number of log keys written since the last rewrite (keys log/0 .. log/logKeys-1). */
  private logKeys = 0;
  private exec: ExecState = { lastExecuted: 0 };
  private executedIds!: ExecutedIds;
  private readonly messageChannel: string;
  private readonly replyChannel: string;
  private readonly callChannel: string;
  private readonly execKey: string;
  private stopTicking: (() => void) | null = null;
  private scheduled = false;
  private running = false;
  private stopped = false;
  /**
   * Ids of the requests state transfers applied since the last installState: kept across failed attempts and
   * transfers (the next one continues from the new head), and all handed to the core when one completes — a copied
   * request the core does not count as executed would run again here if a later batch carries it.
   */
  private copiedIds: string[] = [];
  private haltedAt: number | null = null;
  private loopError: Error | null = null;
  private readonly tallies = new Map<string, ReplyTally>();
  /** The state right after each recent checkpoint sequence number: its digest and the chain head it digests. */
  private readonly digestsAt = new Map<number, { digest: Uint8Array; size: number; hash: string }>();
  private readonly checkpointInterval: number;
  private transferring = false;
  /** A state transfer every signer failed to serve, retried after TRANSFER_RETRY_MS while the core still wants it. */
  private failedTransfer: { seq: number; digest: Uint8Array; from: string[]; at: number } | null = null;
  private retryTransferDue = false;
  /** State transfers since start, for status: completed, and attempts that no signer could serve. */
  private readonly transfers = { completed: 0, failedAttempts: 0 };
  private readonly f: number;
  /** Read barriers waiting for this replica's execution (or a peer's read-index answer) to move. */
  private readonly executionWatchers = new Set<() => void>();
  /** Read-index rounds (one query of every peer each): the one out holds until it has its quorum of answers. */
  private readonly readRounds = new ReadRounds<ReadRound>((round) => this.askReadRound(round));
  /** Read barriers since start (served by readRounds.asked rounds). */
  private readBarriers = 0;

  constructor(private readonly options: PbftSwarmOptions) {
    this.messageChannel = `pbft.e${options.era}`;
    this.replyChannel = `pbft.e${options.era}.reply`;
    this.callChannel = `pbft-call.e${options.era}`;
    this.execKey = `pbft-exec.e${options.era}`;
    this.channels = { messages: [this.messageChannel, this.replyChannel], calls: [this.callChannel] };
    this.f = pbftFaults(options.replicas.length);
    this.checkpointInterval = options.checkpointInterval ?? 16;
  }

  async start(): Promise<void> {
    const stored = await this.options.store.get(STATE_KEY);
    this.durable = stored ? decodePbftDurableState(stored) : emptyPbftState();
    // The log is stored one message per key (append-only between stable checkpoints).
    for (let from = 0; ; ) {
      const rows = await this.options.store.scan(LOG_PREFIX, { from: indexKey(LOG_PREFIX, from), limit: 4096 });
      for (const row of rows) this.durable.log.push(decodePbftMessage(row.value));
      if (rows.length < 4096) {
        this.logKeys = this.durable.log.length;
        break;
      }
      from += rows.length;
    }
    const exec = await this.options.execStore.get(this.execKey);
    const storedExec = exec ? (JSON.parse(fromUtf8(exec)) as ExecState) : { lastExecuted: 0 };
    this.exec = { lastExecuted: storedExec.lastExecuted };
    this.executedIds = new ExecutedIds(this.options.execStore, `${this.execKey}/ids/`, EXECUTED_WINDOW);
    const executedIds = await this.executedIds.load(storedExec.executedIds ?? []);
    this.core = new PbftCore(
      {
        id: this.options.self,
        replicas: this.options.replicas,
        checkpointInterval: this.checkpointInterval,
        watermarkWindow: 4 * this.checkpointInterval,
        maxBatch: 64,
        executedWindow: EXECUTED_WINDOW,
        viewChangeTimeoutTicks: this.options.viewChangeTimeoutTicks ?? 40,
        hash: sha256,
        validateRequest: (payload) => this.options.validate(payload),
        verify: (msg) => this.verifySigned(msg),
      },
      { ...this.durable, lastExecuted: this.exec.lastExecuted, executedIds },
    );
    this.stopTicking = onTick(this.options.tickMs ?? 50, () => {
      this.core.tick();
      this.schedule();
      // A run loop that finds nothing else to do still retries a failed state transfer once it is due.
      if (this.failedTransfer && performance.now() - this.failedTransfer.at >= TRANSFER_RETRY_MS) this.schedule(true);
    });
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.notifyExecution();
    this.stopTicking?.();
    this.stopTicking = null;
    for (const tally of this.tallies.values()) tally.reject?.(new SwarmError(503, 'NODE_STOPPING', 'the node is shutting down'));
    this.tallies.clear();
    while (this.running) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  status(): EngineStatus {
    const status = this.core.status();
    return {
      mode: 'pbft',
      role: this.haltedAt !== null ? `ended at ${this.haltedAt}` : status.isPrimary ? 'primary' : 'backup',
      term: status.view,
      leader: status.inViewChange ? null : status.primary,
      commitIndex: this.options.applier.size,
      lastIndex: this.options.applier.size,
      peers: [],
      detail: {
        view: status.view,
        inViewChange: status.inViewChange,
        lowWatermark: status.lowWatermark,
        highWatermark: status.highWatermark,
        lastExecuted: status.lastExecuted,
        stableCheckpoint: status.stableCheckpoint,
        pendingRequests: status.pendingRequests,
        dropped: status.dropped,
        stateTransfer: { pending: status.stateTransferPending, ...this.transfers },
        consistentReads: { barriers: this.readBarriers, rounds: this.readRounds.asked },
        f: this.f,
      },
    };
  }

  serving(): boolean {
    return this.haltedAt === null && this.loopError === null && !this.core.status().inViewChange;
  }

  leader(): string | null {
    if (!this.core || this.haltedAt !== null) return null;
    const status = this.core.status();
    return status.inViewChange ? null : status.primary;
  }

  /** Signs a message as this node: the signature covers swarm, sender and body (codec.signingBytes). */
  private sign(message: PbftMessage): SignedPbftMessage {
    const withFrom = { ...message, from: this.options.self } as PbftMessage & { from: string };
    return { ...withFrom, sig: signBytes(this.options.signingKey, signingBytes(withFrom, this.options.swarm)) } as SignedPbftMessage;
  }

  /** True when the message is signed by a node key of the org it names (cached: never verified twice). */
  private verifySigned(message: SignedPbftMessage): boolean {
    if (!this.options.replicas.includes(message.from)) return false;
    const bytes = signingBytes(message, this.options.swarm);
    for (const key of this.options.keyring.keysOf(message.from, 'node')) {
      if (this.options.keyring.verify(key, bytes, message.sig)) return true;
    }
    return false;
  }

  receive(fromOrg: string, channel: string, batch: Uint8Array[]): { dropped: number } {
    if (channel === this.replyChannel) return this.receiveReplies(fromOrg, batch);
    let dropped = 0;
    let accepted = 0;
    for (const bytes of batch) {
      let message: SignedPbftMessage;
      try {
        message = decodePbftMessage(bytes);
      } catch {
        dropped++;
        this.options.onDrop?.('pbft-malformed');
        continue;
      }
      // The transport authenticated the org; the signature proves the node key of that org wrote this message.
      if (message.from !== fromOrg) {
        dropped++;
        this.options.onDrop?.('pbft-forged-sender');
        continue;
      }
      if (!this.verifySigned(message)) {
        dropped++;
        this.options.onDrop?.('pbft-bad-signature');
        continue;
      }
      this.core.step(message);
      accepted++;
    }
    if (accepted) this.schedule();
    return { dropped };
  }

  /**
   * Proposes one request (a node-signed proposal or an admin change) and resolves once f+1 replicas, this one
   * included, reported executing it at the same log index with the same entry hash: then at least one correct
   * replica vouches for the result.
   */
  async propose(data: Uint8Array, timeoutMs: number): Promise<void> {
    if (this.haltedAt !== null) throw new SwarmError(503, 'MODE_SWITCHED', `swarm ${this.options.swarm} left pbft mode at index ${this.haltedAt}`);
    if (this.stopped) throw new SwarmError(503, 'NODE_STOPPING', 'the node is shutting down');
    const id = toHex(sha256(data));
    let tally = this.tallies.get(id);
    if (!tally) {
      tally = { byOrg: new Map(), resolve: null, reject: null, needed: this.f + 1 };
      this.tallies.set(id, tally);
    }
    const done = new Promise<void>((resolve, reject) => {
      tally.resolve = resolve;
      tally.reject = reject;
    });
    this.checkTally(id);
    this.core.propose({ id, payload: data });
    this.schedule();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new SwarmError(504, 'COMMIT_TIMEOUT', `swarm ${this.options.swarm}: fewer than ${this.f + 1} replicas confirmed the request within ${timeoutMs} ms (view change in progress, or too many replicas down); it may still commit — resubmitting is safe`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([done, timeout]);
    } finally {
      clearTimeout(timer);
      this.tallies.delete(id);
    }
  }

  private receiveReplies(fromOrg: string, batch: Uint8Array[]): { dropped: number } {
    let dropped = 0;
    for (const bytes of batch) {
      try {
        const reply = JSON.parse(fromUtf8(bytes)) as { id: unknown; result: unknown };
        if (typeof reply.id !== 'string' || typeof reply.result !== 'string') throw new Error('bad reply');
        this.recordReply(fromOrg, reply.id, reply.result);
      } catch {
        dropped++;
      }
    }
    return { dropped };
  }

  private recordReply(org: string, id: string, result: string): void {
    const tally = this.tallies.get(id);
    if (!tally) return;
    tally.byOrg.set(org, result);
    this.checkTally(id);
  }

  private checkTally(id: string): void {
    const tally = this.tallies.get(id);
    if (!tally?.resolve) return;
    const counts = new Map<string, number>();
    for (const result of tally.byOrg.values()) counts.set(result, (counts.get(result) ?? 0) + 1);
    for (const count of counts.values()) {
      if (count >= tally.needed) {
        tally.resolve();
        tally.resolve = null;
        return;
      }
    }
  }

  /**
   * Linearizable read barrier: resolves once this replica has executed every batch whose result any client could have
   * been told before the call (a verdict's submission answers once f+1 replicas executed it). Each replica answers
   * the highest sequence number it executed, holds a stable checkpoint for, or sent its commit vote for
   * (PbftCore.readIndex); the maximum over any 2f+1 answers (n = 3f+1) — this replica's own included — reaches every
   * such batch. With more answers, the barrier waits only for the lowest such maximum (pbftReadTarget), which up to f
   * Byzantine replicas answering too high cannot raise: they can only make a read wait while too few replicas answer.
   * Rejects with 503 NO_QUORUM when too few other replicas answer in time, 503 NOT_APPLIED when this replica does not
   * execute up to the read index in time. Resolves to the applied index.
   */
  async readBarrier(timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    const n = this.options.replicas.length;
    this.checkServingReads();
    this.readBarriers++;
    const round = this.readRounds.join(() => ({ answers: [], failed: 0, timeoutMs }));
    const needed = pbftReadQuorum(n);
    for (;;) {
      this.checkServingReads();
      const left = deadline - performance.now();
      const target = pbftReadTarget(round.answers, n);
      if (target === null) {
        if (left <= 0 || n - round.failed < needed) {
          throw new SwarmError(503, 'NO_QUORUM', `swarm ${this.options.swarm}: ${Math.max(round.answers.length - 1, 0)} of the ${needed - 1} other replicas a read needs answered within ${timeoutMs} ms`);
        }
      } else {
        if (this.exec.lastExecuted >= target) return this.options.applier.size;
        if (left <= 0) {
          throw new SwarmError(503, 'NOT_APPLIED', `swarm ${this.options.swarm}: this replica had not executed up to the read index ${target} within ${timeoutMs} ms (executed: ${this.exec.lastExecuted})`);
        }
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.executionWatchers.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, Math.max(left, 0) + 1);
        this.executionWatchers.add(wake);
      });
    }
  }

  /** Queries every peer for its read index for the barriers of `round` (ReadRounds asks it once the round before is done). */
  private askReadRound(round: ReadRound): void {
    const n = this.options.replicas.length;
    const needed = pbftReadQuorum(n);
    const settle = () => {
      if (round.answers.length >= needed || n - round.failed < needed) this.readRounds.release(round);
      this.notifyExecution();
    };
    round.answers.push(this.core.readIndex());
    const query = utf8(JSON.stringify({ readIndex: true }));
    for (const peer of this.options.replicas) {
      if (peer === this.options.self) continue;
      this.options.link
        .call(peer, this.options.swarm, this.callChannel, query, round.timeoutMs)
        .then((bytes) => {
          const answer = (JSON.parse(fromUtf8(bytes)) as { readIndex?: unknown }).readIndex;
          if (typeof answer !== 'number' || !Number.isSafeInteger(answer) || answer < 0) throw new Error('not a read index');
          round.answers.push(answer);
        })
        .catch(() => {
          round.failed++; // unreachable, another era, or a node of a version without read indexes
        })
        .finally(settle);
    }
    settle();
  }

  private checkServingReads(): void {
    if (this.stopped) throw new SwarmError(503, 'NODE_STOPPING', 'the node is shutting down');
    if (this.haltedAt !== null) throw new SwarmError(503, 'MODE_SWITCHED', `swarm ${this.options.swarm} left pbft mode at index ${this.haltedAt}`);
  }

  private notifyExecution(): void {
    for (const wake of [...this.executionWatchers]) wake();
  }

  /** Request/response: state transfer (audit records from an index on), and read-index answers (readBarrier). */
  async handleCall(_fromOrg: string, channel: string, body: Uint8Array): Promise<Uint8Array> {
    if (channel !== this.callChannel) throw new SwarmError(404, 'UNKNOWN_CHANNEL', `no pbft call ${channel}`);
    const request = JSON.parse(fromUtf8(body)) as { from?: unknown; limit?: unknown; headAt?: unknown; readIndex?: unknown };
    if (request.readIndex === true) return utf8(JSON.stringify({ readIndex: this.core.readIndex() }));
    if (typeof request.headAt === 'number') {
      // The chain head a checkpoint's digest stands for, so a lagging replica knows which record hash to reach.
      const head = this.digestsAt.get(request.headAt);
      if (!head) throw new SwarmError(404, 'NO_SUCH_CHECKPOINT', `this replica keeps no state digest for sequence number ${request.headAt}`);
      return utf8(JSON.stringify({ size: head.size, hash: head.hash }));
    }
    const from = typeof request.from === 'number' && request.from >= 1 ? request.from : 1;
    const limit = typeof request.limit === 'number' ? Math.min(Math.max(request.limit, 1), 2048) : 512;
    const records = await this.options.records(from, limit);
    return utf8(JSON.stringify({ records, size: this.options.applier.size }));
  }

  private schedule(retryTransfer = false): void {
    if (retryTransfer) this.retryTransferDue = true;
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.runReady();
    });
  }

  private async runReady(): Promise<void> {
    if (this.running || this.loopError) return;
    this.running = true;
    try {
      const retry = this.retryTransferDue ? this.failedTransfer : null;
      this.retryTransferDue = false;
      if (retry && !this.transferring) {
        this.failedTransfer = null;
        // Only while the core still waits for that checkpoint (a newer one it asks for comes in its Ready).
        if (this.core.status().stateTransferPending === retry.seq) await this.transferState(retry.seq, retry.digest, retry.from);
      }
      while (!this.stopped && this.core.hasReady()) {
        const ready = this.core.ready();
        if (ready.persist) await this.persist(ready);
        const loopback = this.send(ready.messages);
        // Executing is a long synchronous stretch: the votes just sent leave first (see afterQueuedWrites).
        if (ready.messages.length && (ready.committed.length || ready.checkpointsDue.length)) await afterQueuedWrites();
        await this.execute(ready);
        this.core.advance(ready);
        // Our own broadcast votes count only through their signed copies (the core's rule).
        for (const message of loopback) this.core.step(message);
        // State transfer runs inside the loop: nothing else may append to the log while records are copied in.
        if (ready.stateTransfer && !this.transferring) await this.transferState(ready.stateTransfer.seq, ready.stateTransfer.digest, ready.stateTransfer.from);
      }
    } catch (error) {
      this.loopError = error as Error;
      this.options.logger.fatal({ err: error, swarm: this.options.swarm }, 'pbft driver failed; this swarm stops here');
      this.stopTicking?.();
    } finally {
      this.running = false;
    }
    if (!this.stopped && !this.loopError && this.core.hasReady()) this.schedule();
  }

  /**
   * Accepted protocol state is durable before any message that depends on it leaves this node: a Ready that sends
   * messages is written synced. One that sends nothing — votes of others that complete no quorum of ours, the commits
   * that let us execute, our own votes' signed copies coming back — or that sends only what it stated before
   * (retransmissions) is written lazily: in WAL order before every
   * later write, so durable with the next synced one (at the latest the one before our next message), and never
   * lost to a process crash. What a power loss could take from it is what a replica that crashed just before a
   * synced persist loses anyway: others' votes — a replica that lost them catches up like any replica that missed
   * messages (retransmission, f+1 `executed` claims, state transfer at the next stable checkpoint); the protocol's
   * safety rests on each replica's own statements, and those — pre-prepare,
   * prepare, commit, checkpoint, view change — and the prepared certificate behind a commit are always synced before
   * they are sent. At one verdict in flight this halves the fsyncs of a backup on the request's path (traced: a
   * replica that had its commit quorum waited 5-10 ms for the fsync of an earlier received commit).
   */
  private async persist(ready: PbftReady): Promise<void> {
    const before = this.durable.log.length;
    const stableBefore = this.durable.stableCheckpoint?.seq ?? 0;
    const synced = persistMustSync(ready, this.durable, this.options.self);
    applyPersist(this.durable, ready.persist!);
    const header = encodePbftDurableState({ ...this.durable, log: [] });
    const ops: { key: Uint8Array | string; value: Uint8Array | null }[] = [{ key: STATE_KEY, value: header }];
    if ((this.durable.stableCheckpoint?.seq ?? 0) !== stableBefore) {
      // A new stable checkpoint dropped obsolete messages: rewrite the (now short) log.
      for (let i = 0; i < this.logKeys; i++) ops.push({ key: indexKey(LOG_PREFIX, i), value: null });
      this.durable.log.forEach((message, i) => ops.push({ key: indexKey(LOG_PREFIX, i), value: encodePbftMessage(message) }));
      this.logKeys = this.durable.log.length;
    } else {
      // Append only what is new: one key per message, so a Ready costs its own bytes, not the whole log.
      for (const message of this.durable.log.slice(before)) ops.push({ key: indexKey(LOG_PREFIX, this.logKeys++), value: encodePbftMessage(message) });
    }
    await (synced ? this.options.store.putSynced(ops) : this.options.store.putLazy(ops));
  }

  private send(messages: PbftMessage[]): SignedPbftMessage[] {
    const loopback: SignedPbftMessage[] = [];
    const byPeer = new Map<string, Uint8Array[]>();
    for (const message of messages) {
      const signed = this.sign(message);
      const bytes = encodePbftMessage(signed);
      if (this.options.byzantine === 'equivocate' && message.type === 'pre-prepare' && message.to === 'all') {
        this.equivocate(message, bytes, byPeer);
        loopback.push(signed);
        continue;
      }
      const targets = message.to === 'all' ? this.options.replicas.filter((r) => r !== this.options.self) : [message.to];
      if (message.to === 'all') loopback.push(signed);
      for (const target of targets) {
        if (target === this.options.self) {
          loopback.push(signed);
          continue;
        }
        const list = byPeer.get(target) ?? [];
        list.push(bytes);
        byPeer.set(target, list);
      }
    }
    for (const [peer, list] of byPeer) this.options.link.send(peer, this.options.swarm, this.messageChannel, list);
    return loopback;
  }

  /** TEST ONLY (see options.byzantine): half of the backups get another batch for the same (view, seq). */
  private equivocate(message: Extract<PbftMessage, { type: 'pre-prepare' }>, honest: Uint8Array, byPeer: Map<string, Uint8Array[]>): void {
    const others = this.options.replicas.filter((r) => r !== this.options.self);
    const requests = message.requests.length > 1 ? [...message.requests].reverse() : [];
    const forged = this.sign({ ...message, requests, digest: batchDigest(sha256, requests) });
    others.forEach((peer, i) => {
      const list = byPeer.get(peer) ?? [];
      list.push(i % 2 === 0 ? honest : encodePbftMessage(forged));
      byPeer.set(peer, list);
    });
  }

  /** Executes committed batches in sequence order; each request becomes the next global log entry. */
  private async execute(ready: PbftReady): Promise<void> {
    if (ready.committed.length === 0 && ready.checkpointsDue.length === 0) return;
    const replies: Uint8Array[] = [];
    const executedIds: string[] = [];
    for (const committed of ready.committed) {
      if (committed.seq <= this.exec.lastExecuted) {
        // Never applied twice: this replica's state already holds that sequence number (a state transfer copied it).
        this.options.logger.error({ seq: committed.seq, lastExecuted: this.exec.lastExecuted }, 'pbft: the core released a sequence number this replica already executed; skipped');
        continue;
      }
      for (const request of committed.requests) {
        if (this.haltedAt !== null) break;
        const index = this.options.applier.size + 1;
        // The audit record's `view` field carries the agreed sequence number: the view in which a batch commits can
        // differ between correct replicas (a prepared batch is re-committed after a view change), and a replica that
        // learnt the batch from f+1 `executed` messages knows no view at all; the sequence number is the same everywhere.
        const verdict = this.options.applier.apply({ index, epoch: committed.seq, kind: 'command', data: request.payload });
        executedIds.push(request.id);
        // Every replica tells every other what it executed; whoever proposed the request waits for f+1 that agree.
        const result = `${index}:${this.options.applier.head().hash}`;
        this.recordReply(this.options.self, request.id, result);
        replies.push(utf8(JSON.stringify({ id: request.id, result })));
        if (verdict === 'halt') this.haltedAt = index;
      }
      this.exec.lastExecuted = committed.seq;
      if (this.haltedAt !== null) this.rejectUnexecuted();
      // The digest at a checkpoint is the state right after that sequence number, not after the whole Ready.
      if (committed.seq % this.checkpointInterval === 0) {
        const head = this.options.applier.head();
        this.digestsAt.set(committed.seq, { digest: stateDigest(head.size, head.hash), size: head.size, hash: head.hash });
      }
    }
    // Not synced by itself (it joins the next synced write, in WAL order): the committed certificates it executes
    // are durable in the protocol log, which keeps them until a stable checkpoint — and that is persisted by a
    // synced write after this one. A crash before then re-executes them from the log, to the same records.
    await this.options.applier.flush(this.execOps(executedIds), { lazy: true });
    if (replies.length) {
      for (const peer of this.options.replicas) if (peer !== this.options.self) this.options.link.send(peer, this.options.swarm, this.replyChannel, replies);
    }
    for (const seq of ready.checkpointsDue) {
      const digest = this.digestsAt.get(seq)?.digest;
      if (digest) this.core.checkpointReady(seq, digest);
      else this.options.logger.warn({ seq }, 'pbft: checkpoint due at a sequence number this replica has no digest for');
    }
    for (const seq of this.digestsAt.keys()) if (seq < this.exec.lastExecuted - 8 * this.checkpointInterval) this.digestsAt.delete(seq);
    this.notifyExecution();
  }

  /**
   * The era ended: a request this replica has not executed by now never executes in this era (every correct replica
   * halts at the same index), so its proposer re-proposes it under the next era instead of waiting for a timeout.
   */
  private rejectUnexecuted(): void {
    for (const tally of this.tallies.values()) {
      if (tally.byOrg.has(this.options.self) || !tally.reject) continue;
      tally.reject(new SwarmError(503, 'MODE_SWITCHED', `swarm ${this.options.swarm}: pbft era ended at index ${this.haltedAt} before this request executed; re-proposed in the next era`));
      tally.resolve = null;
      tally.reject = null;
    }
  }

  /** The execution state's ops for the applier's next batch: the last executed seq and the newly executed ids. */
  private execOps(executedIds: readonly string[]): { key: string; value: Uint8Array | null }[] {
    return [{ key: this.execKey, value: utf8(JSON.stringify(this.exec)) }, ...this.executedIds.append(executedIds)];
  }

  /**
   * State transfer to the stable checkpoint at `seq` that 2f+1 replicas certified with `digest`: a signer names the
   * chain head (size, record hash) the digest stands for — checked against the digest — and the records up to it are
   * copied with each one verified against that hash before anything is applied (record-transfer.ts), so a Byzantine
   * signer can waste time but never corrupt this replica's state.
   */
  private async transferState(seq: number, digest: Uint8Array, from: string[]): Promise<void> {
    this.transferring = true;
    const signers = from.filter((p) => p !== this.options.self);
    const call = async (peer: string, request: unknown): Promise<unknown> =>
      JSON.parse(fromUtf8(await this.options.link.call(peer, this.options.swarm, this.callChannel, utf8(JSON.stringify(request)), 10_000)));
    const chunkIds: string[] = [];
    try {
      for (const peer of signers) {
        try {
          const target = (await call(peer, { headAt: seq })) as { size?: unknown; hash?: unknown };
          if (typeof target.size !== 'number' || typeof target.hash !== 'string' || !Buffer.from(stateDigest(target.size, target.hash)).equals(Buffer.from(digest))) {
            throw new Error(`the head it names for sequence number ${seq} does not match the certified digest`);
          }
          const records = verifiedRecords({
            from: this.options.applier.head(),
            to: { size: target.size, hash: target.hash },
            peers: [peer, ...signers.filter((p) => p !== peer)],
            fetch: async (source, start, limit) => ((await call(source, { from: start, limit })) as { records: AuditRecord[] }).records,
            staging: this.options.staging,
            onProblem: (source, problem) => this.options.logger.warn({ peer: source, seq, problem }, 'state transfer: records from this peer not used'),
          });
          for await (const chunk of records) {
            for (const record of chunk) {
              const data = fromBase64Url(record.data);
              this.options.applier.apply({ index: record.index, epoch: record.view ?? record.term ?? 0, kind: 'command', data });
              const id = toHex(sha256(data));
              this.copiedIds.push(id);
              chunkIds.push(id);
            }
            // Each chunk is stored with the execution point unchanged: a crash mid-transfer restarts with a
            // consistent prefix below the stable checkpoint, and the core asks for a transfer again from there.
            await this.options.applier.flush(this.execOps(chunkIds.splice(0)));
          }
          this.exec.lastExecuted = seq;
          await this.options.applier.flush(this.execOps([]));
          // The copied requests count as executed here too, or a retransmitted one would run again on this replica
          // only (at-most-once is decided per replica from its executed set).
          this.core.installState(seq, digest, this.copiedIds);
          this.copiedIds = [];
          this.transfers.completed++;
          this.notifyExecution();
          this.schedule();
          return;
        } catch (error) {
          // Verified records applied before a later chunk failed stay: the next attempt continues from the new head.
          this.options.logger.warn({ err: error, peer, seq, applied: this.copiedIds.length }, 'state transfer via this peer failed; trying the next');
        }
      }
      // No signer could serve it now (unreachable, or cut off): try again shortly rather than wait for the next
      // stable checkpoint, which an idle swarm may not reach for a long time.
      this.failedTransfer = { seq, digest, from, at: performance.now() };
      this.transfers.failedAttempts++;
    } finally {
      this.transferring = false;
    }
  }
}
