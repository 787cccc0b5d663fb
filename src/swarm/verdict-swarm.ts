// One swarm as the API sees it (SwarmService) in raft mode: admits verdicts (JWS verified once, here), batches
// them into node-signed proposals, proposes through the Raft driver, answers each agent with its applied outcome,
// and serves subjects, the log, checkpoints, proofs and exports from the replicated state.
import type { FederationConfig, SwarmConfig } from '../config/types.ts';
import type { SigningKey } from '../crypto/ed25519.ts';
import { fromBase64Url, fromUtf8, toHex } from '../crypto/encoding.ts';
import type { Logger } from 'pino';
import { recordHash, recordLeafHash, type AuditRecord } from '../audit/chain.ts';
import { exportLines } from '../audit/export.ts';
import { MerkleFrontier, MerkleTree } from '../audit/merkle.ts';
import type { Checkpoint } from '../audit/checkpoint.ts';
import { VerdictError } from '../verdict/format.ts';
import type { Keyring } from '../verdict/keyring.ts';
import type { ApplyOutcome, SubjectState } from '../verdict/machine.ts';
import { checkAdminApprovals, decodeCommand, encodeCommand, signProposal, verifyProposal, type AdminCommand } from '../verdict/proposal.ts';
import { jwsHashOf, verifyVerdict } from '../verdict/verify.ts';
import type { NodeStore } from '../storage/node-store.ts';
import { AppliedStateStore } from '../storage/applied-state.ts';
import { RaftSwarm } from './raft-swarm.ts';
import { PbftSwarm } from './pbft-swarm.ts';
import { SwarmError, type Applier, type ConsensusEngine, type SwarmLink } from './engine.ts';
import { onTick } from './ticker.ts';
import { SwarmState, type AdminChangeView } from './swarm-state.ts';
import type { ConsensusMode } from '../config/types.ts';
import type { NodeMetrics } from './metrics.ts';
import type { LogEntryView, SubjectView, SubmitResult, SwarmService, SwarmStatusView } from './service.ts';
import { ConfChangeDriver, membershipDrift, type MembershipState, type MembershipView } from './membership.ts';

export interface VerdictSwarmOptions {
  federation: FederationConfig;
  swarm: SwarmConfig;
  self: string;
  keyring: Keyring;
  signingKey: SigningKey;
  store: NodeStore;
  link: SwarmLink;
  logger: Logger;
  metrics: NodeMetrics;
  tickMs?: number;
  checkpointEvery?: number;
  /** The leader / primary checkpoints the log this often (seconds) when it grew. Default 5. */
  checkpointSeconds?: number;
  snapshotEvery?: number;
  /** Most verdicts in one node-signed proposal. */
  maxBatch?: number;
  /** Called when the committed membership of this swarm changed (the node updates its peer transport). */
  onMembership?: (swarm: string, membership: MembershipState) => void;
  /** TEST ONLY: a Byzantine behaviour of this node's PBFT replica (see PbftSwarmOptions.byzantine). */
  byzantine?: 'equivocate';
}

interface QueuedVerdict {
  jws: string;
  reject: (error: Error) => void;
  confirm: () => void;
}

interface Waiter {
  promise: Promise<{ outcome: ApplyOutcome; entryHash: string }>;
  resolve: (value: { outcome: ApplyOutcome; entryHash: string }) => void;
  receivedAt: number;
}

const CHECKPOINT_CHANNEL = 'checkpoint';

/** Which protocol runs the swarm now: era n starts after log index `base` (0, or a committed mode switch). */
interface Era {
  n: number;
  mode: ConsensusMode;
  base: number;
}

const ERA_KEY = 'era';
/** The membership this swarm was bootstrapped with on this node (written once, at first start). */
const GENESIS_KEY = 'genesis-members';
/** How long an engine of an ended era keeps running, so lagging replicas still learn the switch from it. */
const DRAIN_MS = 30_000;

export class VerdictSwarm implements SwarmService {
  readonly id: string;
  readonly state: SwarmState;
  private engine!: ConsensusEngine;
  private era!: Era;
  private pendingEra: Era | null = null;
  private readonly draining = new Set<ConsensusEngine>();
  private readonly waiters = new Map<string, Waiter>();
  /** Per change id: answers that return true once they took the change (their approvals are counted). */
  private readonly adminWaiters = new Map<string, ((change: AdminChangeView) => boolean)[]>();
  private queue: QueuedVerdict[] = [];
  private flushScheduled = false;
  private stopped = false;
  private stopCheckpointClock: (() => void) | null = null;
  /** Size of the newest checkpoint seen by the timed-checkpoint clock (it skips the swarm until the log grows past it). */
  private checkpointedSize = 0;
  private readonly applied: AppliedStateStore;
  private genesis: string[];
  private readonly driver: ConfChangeDriver;
  /** The swarm as this node's federation file lists it now (replaced on reload): the operator's intent. */
  private fileSwarm: SwarmConfig;
  private knownOrgs: string[];

  constructor(private readonly options: VerdictSwarmOptions) {
    this.genesis = [...options.swarm.members];
    this.fileSwarm = options.swarm;
    this.knownOrgs = options.federation.members.map((m) => m.org);
    this.id = options.swarm.id;
    this.applied = new AppliedStateStore(options.store.kv(options.swarm.id, 'applied'));
    this.state = new SwarmState({
      federation: options.federation,
      swarm: options.swarm,
      self: options.self,
      keyring: options.keyring,
      signingKey: options.signingKey,
      applied: this.applied,
      checkpointEvery: options.checkpointEvery ?? 1000,
      onOutcomes: (outcomes, entry) => this.onOutcomes(outcomes, entry),
      onCheckpoint: (checkpoint) => this.broadcastCheckpoint(checkpoint),
      onAdmin: (change) => this.onAdmin(change),
      onModeSwitch: (index, mode) => {
        this.pendingEra = { n: this.era.n + 1, mode, base: index };
      },
      onMembership: (membership, index) => this.onMembership(membership, index),
    });
    this.driver = new ConfChangeDriver({
      self: options.self,
      swarm: this.id,
      logger: options.logger.child({ swarm: this.id, part: 'membership' }),
      membership: () => this.state.membership(),
      engine: () => (this.engine instanceof RaftSwarm ? this.engine : null),
      knownOrgs: () => this.knownOrgs,
      intervalMs: Math.max(20, (options.tickMs ?? 50) * 2),
    });
  }

  /** The swarm as committed now (members = committed voters), for every check that needs its members. */
  get config(): SwarmConfig {
    return this.state.currentSwarm();
  }

  private onMembership(membership: MembershipState, index: number): void {
    this.options.logger.info({ swarm: this.id, index, voters: membership.voters, learners: membership.learners, pending: membership.pending }, 'swarm membership changed');
    this.syncConfChangeDriver();
    this.options.onMembership?.(this.id, membership);
  }

  /**
   * The membership driver's timer runs only while a committed membership change is pending: on a node with many
   * idle swarms a timer per swarm is most of the idle cost. Checked on every membership change and, for a state
   * rebuilt or installed from a snapshot (which report no change), every second by the swarm's clock.
   */
  private syncConfChangeDriver(): void {
    if (this.stopped) return;
    if (this.state.membership().pending.length > 0) this.driver.start();
    else this.driver.stop();
  }

  /** Reload: the federation file's view of this swarm and the orgs it has cards for. Reported, never applied. */
  setFileConfig(federation: FederationConfig): void {
    this.fileSwarm = federation.swarms.find((s) => s.id === this.id) ?? { ...this.options.swarm, members: [] };
    this.knownOrgs = federation.members.map((m) => m.org);
  }

  /** The committed membership and how the federation file differs from it. */
  membershipView(): MembershipView {
    const membership = this.state.membership();
    return { ...membership, file: [...this.fileSwarm.members].sort(), drift: membershipDrift(this.fileSwarm.members, membership, this.knownOrgs) };
  }

  private makeEngine(era: Era): ConsensusEngine {
    const { options } = this;
    const logger = options.logger.child({ swarm: this.id, era: era.n, mode: era.mode });
    const state = this.state;
    // Both engines feed the same applier; a committed mode switch is made durable with its records, then takes effect.
    const applier: Applier = {
      apply: (entry) => state.apply(entry),
      head: () => state.head(),
      flush: async (extra = []) => {
        const next = this.pendingEra;
        await state.flush(next ? [...extra, { key: ERA_KEY, value: Buffer.from(JSON.stringify(next)) }] : extra);
        if (next) {
          this.pendingEra = null;
          await this.enterEra(next);
        }
      },
      snapshot: () => state.snapshot(),
      restore: async (data) => state.installSnapshot(data),
      get size() {
        return state.size;
      },
    };
    if (era.mode === 'pbft') {
      return new PbftSwarm({
        swarm: this.id,
        self: options.self,
        replicas: [...this.config.members].sort(),
        era: era.n,
        base: era.base,
        store: options.store.kv(this.id, `pbft.e${era.n}`),
        link: options.link,
        applier,
        logger,
        signingKey: options.signingKey,
        keyring: options.keyring,
        validate: (payload: Uint8Array) => this.validateForPbft(payload),
        tickMs: options.tickMs ?? 50,
        onDrop: (reason: string) => options.metrics.droppedMessages.inc({ swarm: this.id, reason }),
        loadExec: (key: string) => this.applied.kv.get(key),
        records: (from: number, limit: number) => state.records(from, limit),
        ...(options.byzantine ? { byzantine: options.byzantine } : {}),
      });
    }
    return new RaftSwarm({
      swarm: this.id,
      self: options.self,
      // Era 0 bootstraps with the genesis membership (conf entries in its log replay on top); a later era starts
      // from the membership committed when it began (stored with its first snapshot).
      voters: era.n === 0 ? this.genesis : this.config.members,
      era: era.n,
      base: era.base,
      log: options.store.raftLog(`${this.id}.e${era.n}`),
      link: options.link,
      logger,
      tickMs: options.tickMs ?? 100,
      electionTick: 10,
      heartbeatTick: 2,
      snapshotEvery: options.snapshotEvery ?? 10_000,
      applier,
      onStatus: () => this.updateMetrics(),
    });
  }

  /** PBFT: a replica votes only for batches whose every agent JWS and node signature it verified itself. */
  private validateForPbft(payload: Uint8Array): boolean {
    try {
      const command = decodeCommand(payload);
      if (command.type === 'verdicts') {
        if (command.swarm !== this.id || !verifyProposal(command, this.options.keyring)) return false;
        for (const jws of command.batch) verifyVerdict(jws, { keyring: this.options.keyring, swarms: [this.config], expectedSwarm: this.id });
        return true;
      }
      if (command.type === 'admin') return command.swarm === this.id && checkAdminApprovals(command, { ...this.config, mode: 'pbft' }, this.options.keyring).approvers.length > 0;
      return command.type === 'noop';
    } catch {
      return false;
    }
  }

  private updateMetrics(): void {
    const { metrics } = this.options;
    const status = this.engine.status();
    metrics.setRole(this.id, status.role);
    metrics.term.set({ swarm: this.id }, status.term);
    metrics.commitIndex.set({ swarm: this.id }, status.commitIndex);
    metrics.appliedIndex.set({ swarm: this.id }, this.state.size);
    metrics.applyLag.set({ swarm: this.id }, Math.max(0, status.commitIndex - this.state.size));
  }

  async start(): Promise<void> {
    await this.state.loadCheckpoints();
    const genesis = await this.applied.kv.get(GENESIS_KEY);
    if (genesis) this.genesis = JSON.parse(fromUtf8(genesis)) as string[];
    else await this.applied.kv.putSynced([{ key: GENESIS_KEY, value: Buffer.from(JSON.stringify(this.genesis)) }]);
    this.state.setGenesis(this.genesis);
    await this.state.rebuild();
    const stored = await this.applied.kv.get(ERA_KEY);
    const era: Era = stored ? (JSON.parse(fromUtf8(stored)) as Era) : { n: 0, mode: this.options.swarm.mode, base: 0 };
    if (era.mode !== this.state.currentMode && stored) throw new Error(`swarm ${this.id}: stored era says ${era.mode} but the state says ${this.state.currentMode}`);
    this.era = era;
    this.engine = this.makeEngine(era);
    await this.engine.start();
    this.stopCheckpointClock = onTick(1000, () => {
      this.syncConfChangeDriver();
      this.maybeTimedCheckpoint();
    });
    this.syncConfChangeDriver();
  }

  /** A committed mode switch took effect here: the old engine drains, the new one starts after `base`. */
  private async enterEra(era: Era): Promise<void> {
    const old = this.engine;
    const next = this.makeEngine(era);
    this.draining.add(old);
    // The new engine serves only once started; until then proposals meet the old one and are retried.
    await next.start();
    this.era = era;
    this.engine = next;
    this.options.logger.info({ swarm: this.id, era: era.n, mode: era.mode, base: era.base }, 'consensus mode switched');
    setTimeout(() => {
      this.draining.delete(old);
      void old.stop();
    }, DRAIN_MS).unref();
  }

  /**
   * Checkpoints come at every `checkpointEvery` entries (all nodes, same sizes) and, when the log grew, every
   * `checkpointSeconds` from the leader / primary; the others co-sign once their own tree has the same root, so a
   * checkpoint gathers the signatures of every node that computed it (in pbft mode, 2f+1 make it a certificate).
   */
  private maybeTimedCheckpoint(): void {
    // Every swarm of the node runs this every second: an idle one must cost next to nothing, so the test that needs
    // no work comes first (nothing applied beyond the newest checkpoint seen), before any status is built.
    const size = this.state.size;
    if (this.stopped || size === 0 || size <= this.checkpointedSize) return;
    const last = this.state.checkpoints().at(-1);
    if (last && last.size >= size) {
      this.checkpointedSize = last.size;
      return;
    }
    if (!this.engine?.serving() || this.engine.status().leader !== this.options.self) return;
    const seconds = this.options.checkpointSeconds ?? 5;
    if (last && Date.now() / 1000 - last.time < seconds) return;
    this.state.createCheckpoint();
    this.state.flush().catch((error: unknown) => this.options.logger.error({ err: error, swarm: this.id }, 'could not store a checkpoint'));
  }

  async stop(): Promise<void> {
    this.stopCheckpointClock?.();
    this.stopped = true;
    this.driver.stop();
    for (const engine of this.draining) await engine.stop();
    await this.engine?.stop();
  }

  get mode(): ConsensusMode {
    return this.era.mode;
  }

  serving(): boolean {
    return this.engine?.serving() ?? false;
  }

  /** Node liveness: `org`'s node went silent; a Raft engine quiesced under it wakes (RaftSwarm.peerDown). */
  peerDown(org: string): void {
    if (this.engine instanceof RaftSwarm) this.engine.peerDown(org);
  }

  /** Peer messages of any engine channel (the current era's, or a draining one's). */
  receive(fromOrg: string, channel: string, messages: Uint8Array[]): void {
    if (!this.engine) {
      // Peers reach a node that is still starting its swarms one by one: drop (consensus retransmits), never throw.
      this.options.metrics.droppedMessages.inc({ swarm: this.id, reason: 'not-started' }, messages.length);
      return;
    }
    for (const engine of [this.engine, ...this.draining]) {
      if (engine.channels.messages.includes(channel)) {
        const { dropped } = engine.receive(fromOrg, channel, messages);
        if (dropped) this.options.metrics.droppedMessages.inc({ swarm: this.id, reason: `bad-${engine.mode}-message` }, dropped);
        return;
      }
    }
    this.options.metrics.droppedMessages.inc({ swarm: this.id, reason: 'other-era' }, messages.length);
  }

  async handleCall(fromOrg: string, channel: string, body: Uint8Array): Promise<Uint8Array> {
    for (const engine of [this.engine, ...this.draining]) {
      if (engine.channels.calls.includes(channel)) return engine.handleCall(fromOrg, channel, body);
    }
    throw new SwarmError(409, 'OTHER_ERA', `swarm ${this.id} has no engine for channel ${channel} (now era ${this.era.n}, ${this.era.mode})`);
  }

  /** Admission: every check that needs no consensus happens here, once; a refused verdict never enters the log. */
  async submitVerdict(jws: string, options: { wait: boolean; timeoutMs: number }): Promise<SubmitResult> {
    const receivedAt = performance.now();
    const verified = verifyVerdict(jws, {
      keyring: this.options.keyring,
      swarms: [this.config],
      expectedSwarm: this.id,
      now: Math.floor(Date.now() / 1000),
    });
    const machine = this.state.decisions();
    machine.checkNonce(verified.payload.org, verified.payload.nonce, verified.jwsHash);
    const known = machine.lookupVerdict(verified.jwsHash);
    if (known) {
      this.options.metrics.verdicts.inc({ swarm: this.id, status: 'duplicate' });
      return this.result('duplicate', verified.jwsHash, known.index, await this.entryHashAt(known.index), known.subject);
    }
    let waiter = this.waiters.get(verified.jwsHash);
    if (!waiter) {
      let resolve!: Waiter['resolve'];
      const promise = new Promise<{ outcome: ApplyOutcome; entryHash: string }>((r) => (resolve = r));
      waiter = { promise, resolve, receivedAt };
      this.waiters.set(verified.jwsHash, waiter);
      // The proposal's own confirmation: Raft — applied here; PBFT — f+1 replicas reported the same result.
      let confirm!: () => void;
      let fail!: (error: Error) => void;
      const confirmed = new Promise<void>((resolve, reject) => {
        confirm = resolve;
        fail = reject;
      });
      confirmed.catch(() => undefined);
      this.enqueue(verified.jws, fail, confirm);
      waiter.promise = Promise.all([promise, confirmed]).then(([outcome]) => outcome);
      waiter.promise.catch(() => undefined);
    }
    if (!options.wait) return this.result('accepted', verified.jwsHash, null, null, verified.payload.subject);
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(
        () => reject(new SwarmError(504, 'COMMIT_TIMEOUT', `swarm ${this.id}: the verdict was not committed within ${options.timeoutMs} ms; it may still commit — resubmitting the same JWS is safe`)),
        options.timeoutMs,
      ).unref(),
    );
    const { outcome, entryHash } = await Promise.race([waiter.promise, timeout]);
    return this.outcomeResult(outcome, entryHash);
  }

  private enqueue(jws: string, reject: (error: Error) => void, confirm: () => void): void {
    this.queue.push({ jws, reject, confirm });
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flushQueue();
    });
  }

  /** One node-signed proposal per batch of admitted verdicts; proposals pipeline through Raft. */
  private flushQueue(): void {
    const maxBatch = this.options.maxBatch ?? 256;
    while (this.queue.length) {
      const batch = this.queue.splice(0, maxBatch);
      const command = signProposal(this.id, this.options.self, batch.map((item) => item.jws), this.options.signingKey);
      this.options.metrics.proposals.inc({ swarm: this.id, outcome: 'proposed' });
      void this.proposeBatch(batch, encodeCommand(command));
    }
  }

  /** Proposes through the current engine; a proposal cut off by a mode switch is re-proposed under the new one. */
  private async proposeBatch(batch: QueuedVerdict[], bytes: Uint8Array): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.engine.propose(bytes, 30_000);
        for (const item of batch) item.confirm();
        return;
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (code === 'MODE_SWITCHED' && attempt < 200 && !this.stopped) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          continue;
        }
        this.failBatch(batch, error as Error);
        return;
      }
    }
  }

  private failBatch(batch: QueuedVerdict[], error: Error): void {
    {
        this.options.metrics.proposals.inc({ swarm: this.id, outcome: 'failed' });
        for (const item of batch) {
          item.reject(error);
          // Let a later resubmission try again from scratch.
          this.waiters.delete(jwsHashOf(item.jws));
        }
    }
  }

  private onOutcomes(outcomes: ApplyOutcome[], entry: { index: number; hash: string }): void {
    for (const outcome of outcomes) {
      this.options.metrics.verdicts.inc({ swarm: this.id, status: outcome.status });
      const waiter = this.waiters.get(outcome.jwsHash);
      if (!waiter) continue;
      this.waiters.delete(outcome.jwsHash);
      this.options.metrics.commitLatency.observe({ swarm: this.id }, (performance.now() - waiter.receivedAt) / 1000);
      waiter.resolve({ outcome, entryHash: outcome.status === 'duplicate' ? '' : entry.hash });
    }
  }

  private async outcomeResult(outcome: ApplyOutcome, entryHash: string): Promise<SubmitResult> {
    if (outcome.status === 'rejected') {
      throw new VerdictError(outcome.code ?? 'BAD_PROPOSAL', outcome.reason ?? 'the verdict was refused when applied');
    }
    const status = outcome.status === 'duplicate' ? 'duplicate' : outcome.status === 'decided-already' ? 'decided-already' : 'committed';
    const hash = entryHash || (await this.entryHashAt(outcome.index));
    return this.result(status, outcome.jwsHash, outcome.index, hash, outcome.subject);
  }

  private result(status: SubmitResult['status'], jwsHash: string, index: number | null, entryHash: string | null, subject: string | null): SubmitResult {
    return { status, swarm: this.id, jwsHash, index, entryHash, subject: subject === null ? null : this.subject(subject) };
  }

  private async entryHashAt(index: number): Promise<string | null> {
    const remembered = this.state.entryHash(index);
    if (remembered) return remembered;
    const [record] = await this.state.records(index, 1);
    return record && record.index === index ? recordHash(record) : null;
  }

  subject(subject: string): SubjectView | null {
    const state: SubjectState | undefined = this.state.decisions().subject(subject);
    if (!state) return null;
    return {
      swarm: this.id,
      subject: state.subject,
      votes: state.votes.map((v) => ({ org: v.org, agent: v.agent, verdict: v.verdict, reason: v.reason, iat: v.iat, index: v.index, jwsHash: v.jwsHash })),
      decision: state.decision ? { value: state.decision.value, index: state.decision.index, votes: state.decision.votes } : null,
    };
  }

  async log(from: number, limit: number): Promise<LogEntryView[]> {
    const records = await this.state.records(from, limit);
    return records.map((record) => {
      let kind = 'raw';
      let proposer: string | null = null;
      let verdicts = 0;
      const data = fromBase64Url(record.data);
      if (data.length === 0) kind = 'empty';
      else {
        try {
          const command = decodeCommand(data);
          kind = command.type;
          if (command.type === 'verdicts') {
            proposer = command.proposer;
            verdicts = command.batch.length;
          }
        } catch {
          kind = 'raw';
        }
      }
      return { index: record.index, term: record.term ?? record.view ?? 0, mode: record.mode, hash: recordHash(record), prev: record.prev, kind, proposer, verdicts, data: record.data };
    });
  }

  status(): SwarmStatusView {
    const status = this.engine.status();
    return {
      swarm: this.id,
      mode: this.state.currentMode,
      era: this.era.n,
      members: this.config.members,
      role: this.state.peers().includes(this.options.self) ? status.role : 'removed',
      term: status.term,
      leader: status.leader,
      commitIndex: status.commitIndex,
      appliedIndex: this.state.size,
      lastIndex: status.lastIndex,
      peers: status.peers,
      ...(status.detail ? { detail: status.detail } : {}),
      membership: this.membershipView(),
    };
  }

  /**
   * An admin change (mode switch, membership) with one or more admin approvals: checked, then committed; approvals
   * accumulate across submissions with the same id until the swarm's admin policy is met.
   */
  async submitAdmin(command: AdminCommand, timeoutMs: number): Promise<AdminChangeView> {
    const config = this.config;
    const check = checkAdminApprovals(command, config, this.options.keyring);
    if (command.swarm !== this.id) throw new VerdictError('SWARM_MISMATCH', `the change names swarm ${command.swarm}, but was sent to swarm ${this.id}`);
    if (check.approvers.length === 0) {
      throw new VerdictError('ADMIN_APPROVAL_INVALID', `no valid admin approval: ${check.refused.map((r) => `#${r.position}: ${r.reason}`).join('; ') || 'none given'}`);
    }
    if (command.action.kind === 'set-mode' && command.action.mode === 'pbft' && config.members.length < 4) {
      throw new SwarmError(422, 'PBFT_TOO_FEW_MEMBERS', `pbft needs at least 4 members (n = 3f+1, f >= 1); swarm ${this.id} has ${config.members.length}: ${config.members.join(', ')}`);
    }
    if (command.action.kind === 'add-member' || command.action.kind === 'remove-member') this.checkMemberAction(command.action);
    // Answer with the state once this submission's own approvals are counted (another approval of the same change
    // may be applied first).
    const mine = check.approvers;
    const answer = new Promise<AdminChangeView>((resolve) => {
      const list = this.adminWaiters.get(command.id) ?? [];
      list.push((change) => {
        if (change.status !== 'pending' || mine.every((org) => change.approvers.includes(org))) {
          resolve(change);
          return true;
        }
        return false;
      });
      this.adminWaiters.set(command.id, list);
    });
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new SwarmError(504, 'COMMIT_TIMEOUT', `admin change ${command.id} was not committed within ${timeoutMs} ms`)), timeoutMs).unref(),
    );
    await this.engine.propose(encodeCommand(command), timeoutMs);
    return Promise.race([answer, timeout]);
  }

  /** Refusals that need no consensus: a membership change this node could never carry out. */
  private checkMemberAction(action: { kind: 'add-member' | 'remove-member'; org: string }): void {
    if (this.state.currentMode !== 'raft') {
      throw new SwarmError(422, 'MEMBERSHIP_NEEDS_RAFT', `membership changes are carried out by Raft conf changes; swarm ${this.id} runs ${this.state.currentMode}: switch it to raft, change the membership, then switch back`);
    }
    if (action.kind === 'add-member' && !this.knownOrgs.includes(action.org)) {
      throw new SwarmError(422, 'UNKNOWN_ORG', `org ${action.org} has no member card in this node's federation file: add its card under members (conclave init prints it) and reload before proposing`);
    }
    if (action.kind === 'add-member' && this.era.n > 0) {
      throw new SwarmError(422, 'MEMBERSHIP_AFTER_MODE_SWITCH', `swarm ${this.id} has switched modes before (era ${this.era.n}); a new node cannot join it yet (it would start in era 0)`);
    }
  }

  adminChange(id: string): AdminChangeView | null {
    return this.state.adminChange(id) ?? null;
  }

  private onAdmin(change: AdminChangeView): void {
    const list = this.adminWaiters.get(change.id);
    if (!list) return;
    const waiting = list.filter((answer) => !answer(change));
    if (waiting.length) this.adminWaiters.set(change.id, waiting);
    else this.adminWaiters.delete(change.id);
  }

  checkpoints(): Checkpoint[] {
    return this.state.checkpoints();
  }

  receiveCheckpoint(fromOrg: string, messages: Uint8Array[]): void {
    if (!this.state.peers().includes(fromOrg)) return;
    for (const bytes of messages) {
      try {
        this.state.receiveCheckpoint(JSON.parse(fromUtf8(bytes)) as Checkpoint);
      } catch {
        this.options.metrics.droppedMessages.inc({ swarm: this.id, reason: 'bad-checkpoint' });
      }
    }
  }

  private broadcastCheckpoint(checkpoint: Checkpoint): void {
    const bytes = Buffer.from(JSON.stringify(checkpoint));
    for (const org of this.config.members) {
      if (org !== this.options.self) this.options.link.send(org, this.id, CHECKPOINT_CHANNEL, [bytes]);
    }
  }

  /** Leaf hashes of records 1..size, read from storage (proofs over the stored log). */
  private async treeOf(size: number): Promise<MerkleTree> {
    const tree = new MerkleTree();
    let next = 1;
    while (next <= size) {
      const records = await this.state.records(next, Math.min(4096, size - next + 1));
      if (records.length === 0 || records[0]!.index !== next) {
        throw new SwarmError(404, 'RECORDS_UNAVAILABLE', `this node does not hold audit record ${next} (it was installed from a snapshot); ask another member`);
      }
      for (const record of records) tree.appendLeafHash(recordLeafHash(record));
      next += records.length;
    }
    return tree;
  }

  async inclusionProof(index: number, size: number | null): Promise<unknown> {
    const latest = this.state.checkpoints().at(-1);
    const treeSize = size ?? latest?.size ?? this.state.size;
    if (index > treeSize || treeSize > this.state.size) {
      throw new SwarmError(400, 'OUT_OF_RANGE', `index ${index} and size ${treeSize} must satisfy 1 <= index <= size <= ${this.state.size}`);
    }
    const tree = await this.treeOf(treeSize);
    const [record] = await this.state.records(index, 1);
    return {
      swarm: this.id,
      index,
      size: treeSize,
      leafHash: toHex(tree.leafHash(index - 1)),
      root: toHex(tree.root(treeSize)),
      proof: tree.inclusionProof(index - 1, treeSize).map(toHex),
      record,
      checkpoint: this.state.checkpoints().find((cp) => cp.size === treeSize) ?? null,
    };
  }

  async consistencyProof(size1: number, size2: number): Promise<unknown> {
    if (size1 > size2 || size2 > this.state.size) {
      throw new SwarmError(400, 'OUT_OF_RANGE', `sizes must satisfy 0 <= from <= to <= ${this.state.size}`);
    }
    const tree = await this.treeOf(size2);
    return {
      swarm: this.id,
      size1,
      size2,
      root1: toHex(tree.root(size1)),
      root2: toHex(tree.root(size2)),
      proof: tree.consistencyProof(size1, size2).map(toHex),
    };
  }

  async *exportLines(from: number, to: number | null): AsyncIterable<string> {
    const last = Math.min(to ?? this.state.size, this.state.size);
    const first = Math.max(1, from);
    let anchor: { prev: string; frontier: ReturnType<MerkleFrontier['toJSON']> } | undefined;
    if (first > 1) {
      const frontier = new MerkleFrontier();
      let prev = '';
      let next = 1;
      while (next < first) {
        const records = await this.state.records(next, Math.min(4096, first - next));
        if (records.length === 0 || records[0]!.index !== next) throw new SwarmError(404, 'RECORDS_UNAVAILABLE', `this node does not hold audit record ${next}`);
        for (const record of records) {
          frontier.appendLeafHash(recordLeafHash(record));
          prev = recordHash(record);
        }
        next += records.length;
      }
      anchor = { prev, frontier: frontier.toJSON() };
    }
    const state = this.state;
    async function* records(): AsyncGenerator<AuditRecord> {
      let next = first;
      while (next <= last) {
        const batch = await state.records(next, Math.min(4096, last - next + 1));
        if (batch.length === 0) return;
        for (const record of batch) if (record.index <= last) yield record;
        next = batch.at(-1)!.index + 1;
      }
    }
    yield* exportLines({
      federation: this.options.federation.federation,
      swarm: this.id,
      from: first,
      to: last,
      exportedAt: Math.floor(Date.now() / 1000),
      ...(anchor ? { anchor } : {}),
      records: records(),
      checkpoints: this.state.checkpoints().filter((cp) => cp.size >= first - 1 && cp.size <= last),
    });
  }
}
