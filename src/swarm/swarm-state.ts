// The replicated state of one swarm on one node: committed entries → decision machine → audit trail (hash chain,
// Merkle frontier, records and checkpoints in storage). Deterministic except for the checkpoint time stamp.
// Memory stays bounded however many verdicts were committed: the decisions live on disk (StoredDecisions), every
// commit writes them with the records and the small `meta` state, and a Raft snapshot is only that meta — a node
// that installs one copies the records it lacks from its peers and replays them.
import type { ConsensusMode, FederationConfig, SwarmConfig, SwarmRules } from '../config/types.ts';
import { canonicalBytes } from '../crypto/canonical.ts';
import { fromBase64Url, fromUtf8, toHex } from '../crypto/encoding.ts';
import type { SigningKey } from '../crypto/ed25519.ts';
import { AuditLog, GENESIS_PREV, type AuditRecord, type AuditState } from '../audit/chain.ts';
import { checkpointTrustFromFederation, nextCheckpoint, signCheckpoint, verifyCheckpoint, type Checkpoint } from '../audit/checkpoint.ts';
import { BlockHasher } from '../audit/stored-tree.ts';
import { DecisionMachine, type ApplyOutcome, type MachineCounters } from '../verdict/machine.ts';
import { StoredDecisions } from '../storage/decision-store.ts';
import type { Keyring } from '../verdict/keyring.ts';
import { countCommittedApprovals, decodeCommand, type AdminAction, type AdminCommand, type LogCommand } from '../verdict/proposal.ts';
import type { AppliedStateStore } from '../storage/applied-state.ts';
import { recordHash } from '../audit/chain.ts';
import type { CommittedEntry } from './engine.ts';
import type { ConfChange } from '../consensus/raft/types.ts';
import {
  applyConfToMembership,
  confChangeOfData,
  decideAdminAction,
  decodeRules,
  emptyMembership,
  peerOrgs,
  rulesOf,
  sameRules,
  type MembershipState,
} from './membership.ts';

export type { CommittedEntry };

/** Where an admin change stands: approvals are counted per org across every committed admin entry with its id. */
export interface AdminChangeView {
  id: string;
  action: AdminAction;
  status: 'pending' | 'applied' | 'refused';
  approvers: string[];
  required: number;
  /** Index of the entry that made it take effect (or refused it). */
  index: number | null;
  reason: string | null;
}

export interface SwarmStateOptions {
  federation: FederationConfig;
  swarm: SwarmConfig;
  self: string;
  keyring: Keyring;
  signingKey: SigningKey;
  applied: AppliedStateStore;
  /** Called with each verdict's outcome as its entry is applied. */
  onOutcomes: (outcomes: ApplyOutcome[], entry: { index: number; hash: string }) => void;
  /** Called when this node has a checkpoint worth telling its peers about. */
  onCheckpoint: (checkpoint: Checkpoint) => void;
  /** Called when a committed admin change took effect or was refused (also for a change still pending). */
  onAdmin?: (change: AdminChangeView) => void;
  /**
   * Called when the entry at `index` ended the consensus era (a mode switch, or a new pbft replica set); the next
   * entry belongs to a new era running `mode` with the voters committed now.
   */
  onEraEnd?: (index: number, mode: ConsensusMode) => void;
  /** Called when the committed membership changed (admin change applied, or a Raft conf entry applied). */
  onMembership?: (membership: MembershipState, index: number) => void;
  /** Checkpoint at every multiple of this tree size (all nodes agree on these sizes). */
  checkpointEvery?: number;
  now?: () => number;
  /**
   * Records (from, to] in chunks, verified against `to.hash` (a head this node trusts), for installing a Raft
   * snapshot ahead of this node's head; `hint` names the node that took the snapshot (it holds the records).
   */
  catchUp?: (from: { size: number; hash: string }, to: { size: number; hash: string }, hint: string | null) => AsyncIterable<AuditRecord[]>;
}

/** The small state written with every commit: with the decisions on disk, it continues the swarm exactly. */
interface MetaV2 {
  v: 2;
  machine: MachineCounters;
  audit: AuditState;
  mode: ConsensusMode;
  admin: AdminChangeView[];
  membership: MembershipState;
  /** The committed rules, present once a set-policy change made them differ from the genesis rules. */
  rules?: SwarmRules;
}

/** The membership, mode and rules a swarm's log starts from (rules absent in snapshots of earlier versions). */
export interface SwarmGenesis {
  members: string[];
  mode: ConsensusMode;
  rules?: SwarmRules;
}

/**
 * A Raft snapshot: the meta at its index, the node that took it (which holds every record up to it), and the
 * genesis the records replay from (a newcomer's own file may list the swarm as it is now, not as it began).
 */
interface RaftSnapshotV2 {
  v: 2;
  by: string;
  genesis: SwarmGenesis;
  meta: MetaV2;
}

/** The whole state in one document, as earlier versions persisted it (read when found on disk, never written). */
interface SnapshotV1 {
  v: 1;
  machine: string;
  audit: AuditState;
  mode: ConsensusMode;
  admin: AdminChangeView[];
  /** Absent in snapshots taken before membership changes existed: the genesis membership then. */
  membership?: MembershipState;
}

/**
 * Where the genesis is stored (the name is historical: earlier versions stored the member list alone, then members
 * and mode). Written at first start, and again whenever an empty node adopts the genesis its peers vouch for.
 */
export const GENESIS_KEY = 'genesis-members';

/** Records replayed while installing a snapshot are made durable in groups of this many (bounded memory). */
const INSTALL_FLUSH_EVERY = 2048;
/** Tries at copying the records a snapshot install needs (backing off up to 10 s between them: ~2 minutes). */
const INSTALL_ATTEMPTS = 16;

/** Replaying verified records gave another state than the leader's: retrying cannot help. */
class ReplayMismatch extends Error {}

/** Roots kept for co-signing checkpoints of recent sizes. */
const MAX_REMEMBERED_ROOTS = 4096;
const MAX_PENDING_CHECKPOINTS = 256;
/**
 * Checkpoints kept in memory, the newest by tree size; older ones are read from disk when asked for. A busy swarm
 * signs one every few seconds for as long as the node runs (~17k a day at one per 5 s, ~1 KB each): memory must not
 * keep them all. Gossip about a size older than these is ignored (its co-signing was over long ago).
 */
export const RECENT_CHECKPOINTS = 512;

export class SwarmState {
  private machine: DecisionMachine;
  private audit: AuditLog;
  private mode: ConsensusMode;
  private pendingRecords: { index: number; record: Uint8Array }[] = [];
  /** Records applied and not yet readable from storage: in pendingRecords or in a batch being written. */
  private unstoredRecords = 0;
  /** Checkpoints to store with the next flush, by size (a newer version of one size replaces the older). */
  private pendingCheckpoints = new Map<number, Checkpoint>();
  /** Merkle blocks completed by the records waiting in pendingRecords, and the hasher that completes them. */
  private pendingBlocks = new Map<number, Uint8Array>();
  private readonly blockHasher = new BlockHasher();
  private readonly rootsAt = new Map<number, string>();
  /** Who may sign a checkpoint of each remembered size (as rootsAt): see rememberRoot. */
  private readonly signersAt = new Map<number, readonly string[]>();
  /** The newest RECENT_CHECKPOINTS checkpoints by size (stored or waiting in pendingCheckpoints). */
  private readonly recentCheckpoints = new Map<number, Checkpoint>();
  private newestCheckpoint: Checkpoint | null = null;
  private readonly waitingCheckpoints = new Map<number, Checkpoint[]>();
  private readonly lastHashes = new Map<number, string>();
  private readonly adminChanges = new Map<string, AdminChangeView>();
  private replaying = false;
  /** Set by the entry being applied when it ends the era. */
  private eraEnded = false;
  /** Installing a snapshot: records are replayed and stored, nothing is announced. */
  private installing = false;
  /** The meta must be written even when nothing else changed (after an install or a legacy rebuild). */
  private metaDue = false;
  /** The membership, mode and rules the swarm's log starts from. */
  private genesis: Required<SwarmGenesis>;
  /** The committed rules (decision and admin policy); start as the genesis rules. */
  private rules: SwarmRules;
  /** The decisions on disk, shared by every machine this state creates. */
  private readonly decisionStore: StoredDecisions;
  /** The committed membership; starts as the genesis membership (the swarm's members when it was bootstrapped). */
  private membershipState: MembershipState;

  constructor(private readonly options: SwarmStateOptions) {
    this.membershipState = emptyMembership(options.swarm.members);
    this.rules = rulesOf(options.swarm);
    this.decisionStore = new StoredDecisions(options.applied.kv);
    this.genesis = { members: [...options.swarm.members], mode: options.swarm.mode, rules: this.rules };
    this.machine = new DecisionMachine(this.currentSwarm(), options.keyring, this.decisionStore);
    this.audit = AuditLog.create(options.federation.federation, options.swarm.id);
    this.mode = options.swarm.mode;
  }

  /**
   * The membership the swarm started with (persisted at first start, so a later edit of the file never changes
   * history). Only before anything is applied or rebuilt.
   */
  setGenesis(members: readonly string[], mode: ConsensusMode = this.mode, rules: SwarmRules = this.genesis.rules): void {
    if (this.audit.size > 0) throw new Error(`swarm ${this.swarmId}: the genesis membership can only be set before any entry is applied`);
    this.membershipState = emptyMembership(members);
    this.mode = mode;
    this.rules = rulesOf(rules);
    this.genesis = { members: [...members], mode, rules: this.rules };
    this.machine = new DecisionMachine(this.currentSwarm(), this.options.keyring, this.decisionStore);
  }

  /** setGenesis, made durable first: what a restart starts from (before anything is applied). */
  async adoptGenesis(genesis: Required<SwarmGenesis>): Promise<void> {
    this.setGenesis(genesis.members, genesis.mode, genesis.rules);
    await this.options.applied.kv.putSynced([{ key: GENESIS_KEY, value: Buffer.from(JSON.stringify(this.genesis)) }]);
  }

  genesisOf(): Required<SwarmGenesis> {
    return { members: [...this.genesis.members], mode: this.genesis.mode, rules: this.genesis.rules };
  }

  /** The swarm's configuration as committed now: its id, the committed voters, mode and rules (never the file's). */
  currentSwarm(): SwarmConfig {
    return { ...this.options.swarm, ...this.rules, members: [...this.membershipState.voters], mode: this.mode ?? this.options.swarm.mode };
  }

  /** The committed rules (decision and admin policy). */
  committedRules(): SwarmRules {
    return this.rules;
  }

  membership(): MembershipState {
    return { voters: [...this.membershipState.voters], learners: [...this.membershipState.learners], pending: this.membershipState.pending.map((p) => ({ ...p })) };
  }

  /** Orgs allowed on this swarm's peer channels: voters, learners, and admitted orgs about to join. */
  peers(): string[] {
    return peerOrgs(this.membershipState);
  }

  /** A new membership: the decision machine follows the voters (same votes and decisions, new member list). */
  private setMembership(next: MembershipState, index: number): void {
    const votersChanged = next.voters.join('\n') !== this.membershipState.voters.join('\n');
    this.membershipState = next;
    if (votersChanged) {
      try {
        this.machine = this.machine.withSwarm(this.currentSwarm());
      } catch {
        // the policy cannot be met with these voters (admin checks refuse such changes): keep counting with the old list
      }
    }
    if (!this.replaying) this.options.onMembership?.(this.membership(), index);
  }

  /** A Raft snapshot is being installed: the state replays copied records and lags the swarm meanwhile. */
  get installingSnapshot(): boolean {
    return this.installing;
  }

  get swarmId(): string {
    return this.options.swarm.id;
  }

  get size(): number {
    return this.audit.size;
  }

  /**
   * The size up to which the audit records can be read from storage: `size` less the records applied but not yet
   * written (those of the current ready cycle, before or during its flush). Proofs and exports read records, so they
   * go up to here — not beyond, or a request between applying and writing would find records missing.
   */
  get storedSize(): number {
    return this.audit.size - this.unstoredRecords;
  }

  head(): { size: number; hash: string } {
    return { size: this.audit.size, hash: this.audit.head.hash };
  }

  get currentMode(): ConsensusMode {
    return this.mode;
  }

  decisions(): DecisionMachine {
    return this.machine;
  }

  /** Loads the newest checkpoints this node stored before a restart. */
  async loadCheckpoints(): Promise<void> {
    for (const checkpoint of parseCheckpoints(await this.options.applied.checkpoints({ limit: RECENT_CHECKPOINTS }))) this.rememberCheckpoint(checkpoint);
  }

  /** The checkpoint of the largest tree size, or null. */
  latestCheckpoint(): Checkpoint | null {
    return this.newestCheckpoint;
  }

  /** The newest checkpoint of a tree size up to `size` that this node holds in memory (the recent ones), or null. */
  latestCheckpointUpTo(size: number): Checkpoint | null {
    if (this.newestCheckpoint && this.newestCheckpoint.size <= size) return this.newestCheckpoint;
    let best: Checkpoint | null = null;
    for (const checkpoint of this.recentCheckpoints.values()) if (checkpoint.size <= size && (!best || checkpoint.size > best.size)) best = checkpoint;
    return best;
  }

  /** The checkpoint of one tree size, or null. */
  async checkpointAt(size: number): Promise<Checkpoint | null> {
    const recent = this.recentCheckpoints.get(size);
    if (recent) return recent;
    const bytes = await this.options.applied.checkpointAt(size);
    return bytes ? (parseCheckpoints([{ size, checkpoint: bytes }])[0] ?? null) : null;
  }

  /**
   * Checkpoints ascending by tree size: from size `from` on (at most `limit`), or without `from` the newest `limit`
   * ones. Those in memory are the latest versions (more signatures, not yet written): they win over the disk's.
   */
  async checkpoints(query: { from?: number; limit: number }): Promise<Checkpoint[]> {
    const bySize = new Map<number, Checkpoint>();
    for (const checkpoint of parseCheckpoints(await this.options.applied.checkpoints(query))) bySize.set(checkpoint.size, checkpoint);
    for (const [size, checkpoint] of this.recentCheckpoints) if (query.from === undefined || size >= query.from) bySize.set(size, checkpoint);
    const sorted = [...bySize.values()].sort((a, b) => a.size - b.size);
    return query.from === undefined ? sorted.slice(-query.limit) : sorted.slice(0, query.limit);
  }

  /** Every checkpoint of sizes from..to (an export's range), ascending, read a page at a time as it is consumed. */
  async *checkpointsBetween(from: number, to: number, pageSize = 4096): AsyncGenerator<Checkpoint> {
    for (let next = from; next <= to; ) {
      const page = await this.checkpoints({ from: next, limit: pageSize });
      for (const checkpoint of page) if (checkpoint.size <= to) yield checkpoint;
      if (page.length < pageSize || page.at(-1)!.size >= to) break;
      next = page.at(-1)!.size + 1;
    }
  }

  apply(entry: CommittedEntry): 'continue' | 'halt' {
    let outcomes: ApplyOutcome[] = [];
    let admin: AdminChangeView | null = null;
    // The record carries the mode the entry was committed under, even when the entry itself switches modes.
    const modeBefore = this.mode;
    const votersBefore = this.membershipState.voters;
    if (entry.kind === 'conf') {
      const cc = confChangeOfData(entry.data);
      if (cc) this.applyConf(entry.index, cc);
    } else if (entry.kind === 'command' && entry.data.length > 0) {
      let command: LogCommand | null = null;
      try {
        command = decodeCommand(entry.data);
      } catch {
        command = null; // recorded in the audit trail as it is; it changes no state
      }
      if (command?.type === 'admin') admin = this.applyAdmin(entry.index, command);
      else if (command) outcomes = this.applyCommand(entry.index, command);
    }
    const appended = this.audit.append({ index: entry.index, mode: modeBefore, epoch: entry.epoch, data: entry.data });
    const hash = appended.hash;
    const root = toHex(appended.root);
    const votersAfter = this.membershipState.voters;
    this.rememberRoot(entry.index, root, hash, votersBefore === votersAfter ? votersAfter : [...new Set([...votersBefore, ...votersAfter])]);
    const endsEra = this.eraEnded;
    this.eraEnded = false;
    if (this.replaying) return endsEra ? 'halt' : 'continue';
    this.pendingRecords.push({ index: entry.index, record: appended.bytes });
    this.unstoredRecords++;
    const block = this.blockHasher.append(entry.index - 1, appended.leafHash);
    if (block) this.pendingBlocks.set(block[0], block[1]);
    // Also while installing a snapshot: a submission waiting here for a verdict this replay applies is answered with
    // the entry that carried it (committed, durable on a majority), not left to a second proposal of it — which a
    // node still catching up (a learner, an org just admitted again) may see refused as a whole.
    if (outcomes.length) this.options.onOutcomes(outcomes, { index: entry.index, hash });
    if (this.installing) return 'continue';
    if (admin) this.options.onAdmin?.(admin);
    this.afterAppend(entry.index, root);
    if (endsEra) {
      this.options.onEraEnd?.(entry.index, this.mode);
      return 'halt';
    }
    return 'continue';
  }

  /** A committed Raft conf entry: the membership follows it exactly as the core's configuration does. */
  private applyConf(index: number, cc: ConfChange): void {
    const before = this.membershipState;
    const next = applyConfToMembership(before, cc);
    for (const done of before.pending.filter((p) => !next.pending.includes(p))) {
      const change = this.adminChanges.get(done.id);
      if (change) {
        const updated = { ...change, reason: `${change.reason ?? ''}; ${done.org} ${done.kind === 'add' ? 'became a voter' : 'left the Raft configuration'} at index ${index}` };
        this.adminChanges.set(done.id, updated);
        if (!this.replaying) this.options.onAdmin?.(updated);
      }
    }
    this.setMembership(next, index);
  }

  /**
   * An admin change: approvals accumulate per id (one per org) across committed entries; once the swarm's admin
   * policy is met it takes effect at that index, once. Deterministic: every replica counts the same signatures.
   */
  private applyAdmin(index: number, command: AdminCommand): AdminChangeView {
    const existing = this.adminChanges.get(command.id);
    if (existing && canonicalJsonEquals(existing.action, command.action) === false) {
      return { ...existing, reason: `id ${command.id} already names another change` };
    }
    const swarm = this.currentSwarm();
    const check = countCommittedApprovals(command, swarm, this.options.keyring);
    const approvers = new Set([...(existing?.approvers ?? []), ...check.approvers]);
    const change: AdminChangeView = existing
      ? { ...existing, approvers: [...approvers].sort(), required: check.required }
      : { id: command.id, action: command.action, status: 'pending', approvers: [...approvers].sort(), required: check.required, index: null, reason: null };
    if (change.status !== 'pending' || command.swarm !== this.options.swarm.id) {
      this.adminChanges.set(change.id, change);
      return change;
    }
    if (approvers.size < check.required) {
      change.reason = `approved by ${approvers.size} of the ${check.required} orgs required (${[...approvers].sort().join(', ') || 'none'})`;
      this.adminChanges.set(change.id, change);
      return change;
    }
    change.index = index;
    const decision = decideAdminAction({ mode: this.mode, membership: this.membershipState, rules: this.rules }, command.action, {
      index,
      swarm: this.options.swarm.id,
      changeId: change.id,
    });
    change.status = decision.status;
    change.reason = decision.reason;
    this.adminChanges.set(change.id, change);
    if (decision.next.membership !== this.membershipState) this.setMembership(decision.next.membership, index);
    if (decision.next.rules !== this.rules) {
      this.rules = decision.next.rules;
      this.machine = this.machine.withSwarm(this.currentSwarm());
    }
    this.mode = decision.next.mode;
    if (decision.endsEra) this.eraEnded = true;
    return change;
  }

  adminChange(id: string): AdminChangeView | undefined {
    return this.adminChanges.get(id);
  }

  adminChangesList(): AdminChangeView[] {
    return [...this.adminChanges.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /**
   * Keys and signatures of a verdicts command were judged before it committed — raft: the leader admitted every
   * verdict it proposes and verified the node signature of every proposal it took from a follower; pbft: a replica
   * prepares a batch only when it verified every agent JWS and node signature in it. Applying consults no keys: a
   * node whose federation file lacks a key others have (a key being added or removed, file by file) still applies
   * exactly what the others apply. The auditor checks every signature offline against its federation file.
   */
  private applyCommand(index: number, command: LogCommand): ApplyOutcome[] {
    return this.machine.apply(index, command, { verifyAgentSignatures: false, keysCheckedBeforeCommit: true });
  }

  /**
   * `signers`: the voters of the swarm at `size` (and, at the entry that changed them, the voters just before it: the
   * finishing era may sign its last entry) — the only orgs whose signature a checkpoint of that size may carry. An
   * auditor replaying the membership refuses any other (CHECKPOINT_NOT_MEMBER): a newcomer catching up computes the
   * roots the members signed long before it is one, and a removed org still computes the roots after its removal.
   */
  private rememberRoot(size: number, root: string, hash: string, signers: readonly string[]): void {
    this.rootsAt.set(size, root);
    this.lastHashes.set(size, hash);
    this.signersAt.set(size, signers);
    this.rootsAt.delete(size - MAX_REMEMBERED_ROOTS);
    this.lastHashes.delete(size - MAX_REMEMBERED_ROOTS);
    this.signersAt.delete(size - MAX_REMEMBERED_ROOTS);
  }

  private maySign(size: number): boolean {
    return this.signersAt.get(size)?.includes(this.options.self) ?? false;
  }

  /** Merkle root (hex) of the first `size` records, when `size` is recent enough to be remembered. */
  rootAt(size: number): string | null {
    return this.rootsAt.get(size) ?? null;
  }

  /** Record hash of the entry at `index`, when it is recent enough to be remembered. */
  entryHash(index: number): string | null {
    return this.lastHashes.get(index) ?? null;
  }

  private afterAppend(size: number, root: string): void {
    const every = this.options.checkpointEvery ?? 1000;
    if (size % every === 0) this.createCheckpoint(size, root);
    const waiting = this.waitingCheckpoints.get(size);
    if (waiting) {
      this.waitingCheckpoints.delete(size);
      for (const checkpoint of waiting) this.receiveCheckpoint(checkpoint);
    }
  }

  /** Signs a checkpoint of the current tree (time-based checkpoints come through here too). */
  createCheckpoint(size = this.audit.size, root = toHex(this.audit.root())): Checkpoint | null {
    if (size === 0 || this.recentCheckpoints.has(size)) return this.recentCheckpoints.get(size) ?? null;
    if (!this.maySign(size)) return null;
    const now = Math.floor((this.options.now ?? Date.now)() / 1000);
    const checkpoint = signCheckpoint(
      { v: 1, federation: this.options.federation.federation, swarm: this.options.swarm.id, size, root, time: now, mode: this.mode },
      this.options.self,
      this.options.signingKey,
    );
    this.storeCheckpoint(checkpoint);
    this.options.onCheckpoint(checkpoint);
    return checkpoint;
  }

  /**
   * A peer's checkpoint: when its root matches ours at that size, merge its signatures (and add ours) — the
   * checkpoint then carries the signatures of every node that computed the same tree.
   */
  receiveCheckpoint(checkpoint: Checkpoint): void {
    if (checkpoint.swarm !== this.options.swarm.id || checkpoint.federation !== this.options.federation.federation) return;
    // Nothing new (an echo of what we hold): skip the signature checks.
    if (this.recentCheckpoints.size >= RECENT_CHECKPOINTS && checkpoint.size < this.oldestRecentSize()) return;
    const held = this.recentCheckpoints.get(checkpoint.size);
    if (held && held.time === checkpoint.time && held.root === checkpoint.root && checkpoint.signatures.every((s) => held.signatures.some((h) => h.sig === s.sig))) return;
    if (checkpoint.size > this.audit.size) {
      // Who may sign that size is known once we applied it: judged by the file until then, again when it is applied.
      const verification = verifyCheckpoint(checkpoint, this.options.federation);
      if (verification.problems.length > 0 || verification.validOrgs.length === 0) return;
      const list = this.waitingCheckpoints.get(checkpoint.size) ?? [];
      if (this.waitingCheckpoints.size < MAX_PENDING_CHECKPOINTS && list.length < 8) list.push(checkpoint);
      this.waitingCheckpoints.set(checkpoint.size, list);
      return;
    }
    const ourRoot = this.rootsAt.get(checkpoint.size);
    if (ourRoot !== checkpoint.root) return; // too old to check, or a different tree: never co-sign that
    // Signatures of orgs that were not voters at that size are dropped, not passed on: they would make every export
    // carrying this checkpoint fail its audit (CHECKPOINT_NOT_MEMBER) — a Byzantine newcomer or a removed org could
    // otherwise spoil the members' checkpoints. The others are each verified against the file's node keys.
    const signers = this.signersAt.get(checkpoint.size) ?? [];
    const cleaned = checkpoint.signatures.every((s) => signers.includes(s.org)) ? checkpoint : { ...checkpoint, signatures: checkpoint.signatures.filter((s) => signers.includes(s.org)) };
    const verification = verifyCheckpoint(cleaned, { keyring: checkpointTrustFromFederation(this.options.federation, checkpoint.swarm).keyring, members: signers });
    if (verification.problems.length > 0 || verification.validOrgs.length === 0) return;
    let next: Checkpoint | null;
    try {
      next = nextCheckpoint(held, cleaned, (c) =>
        c.signatures.some((s) => s.org === this.options.self) || !this.maySign(c.size) ? c : signCheckpoint(c, this.options.self, this.options.signingKey),
      );
    } catch {
      return;
    }
    if (!next) return;
    this.storeCheckpoint(next);
    this.options.onCheckpoint(next);
  }

  private storeCheckpoint(checkpoint: Checkpoint): void {
    this.rememberCheckpoint(checkpoint);
    this.pendingCheckpoints.set(checkpoint.size, checkpoint);
  }

  private rememberCheckpoint(checkpoint: Checkpoint): void {
    this.recentCheckpoints.set(checkpoint.size, checkpoint);
    if (!this.newestCheckpoint || checkpoint.size >= this.newestCheckpoint.size) this.newestCheckpoint = checkpoint;
    if (this.recentCheckpoints.size > RECENT_CHECKPOINTS) this.recentCheckpoints.delete(this.oldestRecentSize());
  }

  private oldestRecentSize(): number {
    let oldest = Infinity;
    for (const size of this.recentCheckpoints.keys()) if (size < oldest) oldest = size;
    return oldest;
  }

  /**
   * Writes what this ready cycle applied — records, checkpoints, the decisions it changed, the meta and the applied
   * index — in one synced batch: what is on disk is always the state at the applied index it names.
   */
  async flush(extra: { key: string; value: Uint8Array | null }[] = [], options: { lazy?: boolean } = {}): Promise<void> {
    const decisions = this.decisionStore.drain();
    if (this.pendingRecords.length === 0 && this.pendingCheckpoints.size === 0 && extra.length === 0 && decisions.ops.length === 0 && !this.metaDue) return;
    const audit = this.pendingRecords;
    const checkpoints = [...this.pendingCheckpoints.values()].map((checkpoint) => ({ size: checkpoint.size, checkpoint: Buffer.from(JSON.stringify(checkpoint)) }));
    const merkleBlocks = this.pendingBlocks;
    this.pendingRecords = [];
    this.pendingCheckpoints = new Map();
    this.pendingBlocks = new Map();
    this.metaDue = false;
    await this.options.applied.commit({ appliedIndex: this.audit.size, audit, checkpoints, merkleBlocks, extra: [...extra, ...decisions.ops], meta: canonicalBytes(this.meta()) }, options);
    this.unstoredRecords -= audit.length;
    // Only once durable may reads fall through to the disk for these keys (a failed batch stops the swarm).
    decisions.settle();
  }

  /**
   * Rebuilds the state after a restart from what this node made durable: the meta written with its last commit
   * (the decisions are on disk beside it). Data of an earlier version — a whole-state snapshot, then stored audit
   * records after it — is replayed (each recomputed record hash must equal the stored one) and rewritten.
   */
  async rebuild(): Promise<void> {
    const loaded = await this.options.applied.load();
    if (loaded.meta) {
      if (loaded.meta.index !== loaded.appliedIndex) {
        throw new Error(`swarm ${this.swarmId}: the stored state is at ${loaded.meta.index}, the applied index at ${loaded.appliedIndex} (storage corrupted?)`);
      }
      this.restoreMeta(JSON.parse(fromUtf8(loaded.meta.data)) as MetaV2);
      return;
    }
    if (loaded.appliedIndex === 0) return;
    if (loaded.legacySnapshot) this.restoreLegacy(loaded.legacySnapshot.data);
    this.replaying = true;
    try {
      let next = this.audit.size + 1;
      while (next <= loaded.appliedIndex) {
        const records = await this.records(next, Math.min(4096, loaded.appliedIndex - next + 1));
        if (records.length === 0 || records[0]!.index !== next) throw new Error(`swarm ${this.swarmId}: audit record ${next} is missing from storage; cannot rebuild`);
        for (const record of records) {
          this.apply(entryOfRecord(record));
          if (this.lastHashes.get(record.index) !== recordHash(record)) {
            throw new Error(`swarm ${this.swarmId}: stored audit record ${record.index} does not match the entry it records (storage corrupted?)`);
          }
        }
        next += records.length;
      }
    } finally {
      this.replaying = false;
    }
    this.metaDue = true;
    await this.flush();
  }

  private meta(): MetaV2 {
    // Rules only once they differ from the genesis rules: a swarm that never changed them has the same meta (and
    // snapshots) as on versions before set-policy existed.
    const rules = sameRules(this.rules, this.genesis.rules) ? {} : { rules: this.rules };
    return { v: 2, machine: this.machine.counters(), audit: this.audit.state(), mode: this.mode, admin: this.adminChangesList(), membership: this.membership(), ...rules };
  }

  private restoreMeta(meta: MetaV2): void {
    if (meta.v !== 2) throw new Error(`swarm ${this.swarmId}: unknown state version ${String(meta.v)}`);
    this.mode = meta.mode;
    this.membershipState = meta.membership;
    this.rules = meta.rules ? decodeRules(meta.rules, 'stored state rules') : this.genesis.rules;
    this.machine = new DecisionMachine(this.currentSwarm(), this.options.keyring, this.decisionStore, meta.machine);
    this.restoreAudit(meta.audit, meta.admin);
  }

  private restoreAudit(audit: AuditState, admin: AdminChangeView[]): void {
    this.audit = AuditLog.restore(audit);
    this.adminChanges.clear();
    for (const change of admin) this.adminChanges.set(change.id, change);
    this.rememberRoot(this.audit.size, toHex(this.audit.root()), this.audit.head.hash, this.membershipState.voters);
  }

  /** A whole-state snapshot of an earlier version: its decisions are copied into the store (written by the next flush). */
  private restoreLegacy(data: Uint8Array): void {
    const snapshot = JSON.parse(fromUtf8(data)) as SnapshotV1;
    if (snapshot.v !== 1) throw new Error(`unknown swarm snapshot version ${String(snapshot.v)}`);
    this.mode = snapshot.mode;
    if (snapshot.membership) this.membershipState = snapshot.membership;
    this.rules = this.genesis.rules;
    const legacy = DecisionMachine.restore(this.currentSwarm(), this.options.keyring, fromBase64Url(snapshot.machine));
    const copied = legacy.exportTo(this.decisionStore);
    this.machine = new DecisionMachine(this.currentSwarm(), this.options.keyring, this.decisionStore, copied);
    this.restoreAudit(snapshot.audit, snapshot.admin ?? []);
  }

  /** The Raft snapshot: O(1) in the verdicts — the meta and who took it; the decisions stay on disk. */
  snapshot(): Uint8Array {
    const snapshot: RaftSnapshotV2 = { v: 2, by: this.options.self, genesis: this.genesis, meta: this.meta() };
    return canonicalBytes(snapshot);
  }

  /**
   * Installs a snapshot from the leader (Raft InstallSnapshot): copies the records between this node's head and the
   * snapshot's from the peers (verified against the snapshot's head hash), replays and stores them in groups, then
   * checks that the state it reached is the snapshot's. A crash half-way leaves a consistent prefix on disk; the
   * install then resumes from there. Every node thus holds every record (audits and proofs work on any of them).
   */
  async installSnapshot(data: Uint8Array): Promise<void> {
    const parsed = JSON.parse(fromUtf8(data)) as RaftSnapshotV2 | SnapshotV1;
    if (parsed.v === 1) {
      // from a node of an earlier version: the whole state travelled in the snapshot
      this.restoreLegacy(data);
      this.metaDue = true;
      return;
    }
    if (parsed.v !== 2) throw new Error(`unknown swarm snapshot version ${String((parsed as { v: unknown }).v)}`);
    const target = parsed.meta;
    const head = this.head();
    if (target.audit.size < head.size) throw new Error(`swarm ${this.swarmId}: snapshot at ${target.audit.size} is behind the applied state at ${head.size}`);
    if (target.audit.size > head.size) {
      if (!this.options.catchUp) throw new Error(`swarm ${this.swarmId}: a snapshot at ${target.audit.size} needs records this node lacks and it has no peer to copy them from`);
      if (head.size === 0) {
        // The leader's genesis, made durable before any record: restarted half-way or later, this node replays and
        // restores against it (its own file may state the swarm as it is now, not as it began).
        const rules = parsed.genesis.rules ? decodeRules(parsed.genesis.rules, 'snapshot genesis rules') : this.genesis.rules;
        await this.adoptGenesis({ members: parsed.genesis.members, mode: parsed.genesis.mode, rules });
      }
      this.installing = true;
      try {
        // A peer may not hold the newest records yet (its last batch still syncing) or be unreachable: retry from
        // wherever the replay got to, for a bounded time, before giving up (the engine then stops this swarm).
        for (let attempt = 1; this.audit.size < target.audit.size; attempt++) {
          try {
            const from = { size: this.audit.size, hash: this.audit.size === 0 ? GENESIS_PREV : this.audit.head.hash };
            for await (const chunk of this.options.catchUp(from, { size: target.audit.size, hash: target.audit.lastHash }, parsed.by)) {
              for (const record of chunk) this.replayCopied(record);
              if (this.pendingRecords.length >= INSTALL_FLUSH_EVERY) await this.flush();
            }
          } catch (error) {
            if (error instanceof ReplayMismatch || attempt >= INSTALL_ATTEMPTS) throw error;
            await new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** attempt, 10_000)));
          }
        }
      } finally {
        this.installing = false;
      }
    }
    const reached = this.meta();
    if (!canonicalJsonEquals(reached, target)) {
      throw new Error(`swarm ${this.swarmId}: after replaying to ${head.size}..${target.audit.size} the state differs from the snapshot's (head ${reached.audit.lastHash}, snapshot ${target.audit.lastHash})`);
    }
    this.metaDue = true;
  }

  /** Applies one record copied from a peer; its recomputed hash must be the copied one. */
  private replayCopied(record: AuditRecord): void {
    if (record.index !== this.audit.size + 1) throw new ReplayMismatch(`swarm ${this.swarmId}: copied record ${record.index} does not follow ${this.audit.size}`);
    this.apply(entryOfRecord(record));
    if (this.lastHashes.get(record.index) !== recordHash(record)) {
      throw new ReplayMismatch(`swarm ${this.swarmId}: replaying copied record ${record.index} gave another record (this node's state differs from the leader's)`);
    }
  }

  /** The audit records [from, from+limit) this node stores (a node of an earlier version may lack old ones). */
  async records(from: number, limit: number): Promise<AuditRecord[]> {
    const rows = await this.options.applied.audit(from, limit);
    return rows.map((row) => JSON.parse(fromUtf8(row.record)) as AuditRecord);
  }
}

/** The committed entry an audit record records (replayed on restart, and by state transfer from a peer's records). */
export function entryOfRecord(record: AuditRecord): CommittedEntry {
  const data = fromBase64Url(record.data);
  const kind = record.mode === 'raft' && confChangeOfData(data) ? 'conf' : 'command';
  return { index: record.index, epoch: record.term ?? record.view ?? 0, kind, data };
}

function canonicalJsonEquals(a: unknown, b: unknown): boolean {
  return Buffer.from(canonicalBytes(a)).equals(Buffer.from(canonicalBytes(b)));
}

/** Stored checkpoint bodies; one we cannot read is only a lost signature set (the log itself is intact): skipped. */
function parseCheckpoints(rows: Array<{ size: number; checkpoint: Uint8Array }>): Checkpoint[] {
  const out: Checkpoint[] = [];
  for (const row of rows) {
    try {
      const checkpoint = JSON.parse(fromUtf8(row.checkpoint)) as Checkpoint;
      if (checkpoint.size === row.size) out.push(checkpoint);
    } catch {
      // skipped, see above
    }
  }
  return out;
}
