// The replicated state of one swarm on one node: committed entries → decision machine → audit trail (hash chain,
// Merkle frontier, records and checkpoints in storage). Deterministic except for the checkpoint time stamp.
import type { ConsensusMode, FederationConfig, SwarmConfig } from '../config/types.ts';
import { canonicalBytes } from '../crypto/canonical.ts';
import { fromBase64Url, fromUtf8, toBase64Url, toHex } from '../crypto/encoding.ts';
import type { SigningKey } from '../crypto/ed25519.ts';
import { AuditLog, type AuditRecord, type AuditState } from '../audit/chain.ts';
import { mergeCheckpointSignatures, signCheckpoint, verifyCheckpoint, type Checkpoint } from '../audit/checkpoint.ts';
import { DecisionMachine, type ApplyOutcome } from '../verdict/machine.ts';
import type { Keyring } from '../verdict/keyring.ts';
import { jwsHashOf } from '../verdict/verify.ts';
import { checkAdminApprovals, decodeCommand, verifyProposal, type AdminAction, type AdminCommand, type LogCommand } from '../verdict/proposal.ts';
import type { AppliedStateStore } from '../storage/applied-state.ts';
import { recordHash } from '../audit/chain.ts';
import type { CommittedEntry } from './engine.ts';
import type { ConfChange } from '../consensus/raft/types.ts';
import { validatePolicy } from '../verdict/policy.ts';
import {
  applyConfToMembership,
  confChangeOfData,
  emptyMembership,
  peerOrgs,
  targetVoters,
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
  /** Called when a committed mode switch takes effect at `index`; the next entry belongs to the new protocol. */
  onModeSwitch?: (index: number, mode: ConsensusMode) => void;
  /** Called when the committed membership changed (admin change applied, or a Raft conf entry applied). */
  onMembership?: (membership: MembershipState, index: number) => void;
  /** Checkpoint at every multiple of this tree size (all nodes agree on these sizes). */
  checkpointEvery?: number;
  now?: () => number;
}

interface SnapshotV1 {
  v: 1;
  machine: string;
  audit: AuditState;
  mode: ConsensusMode;
  admin: AdminChangeView[];
  /** Absent in snapshots taken before membership changes existed: the genesis membership then. */
  membership?: MembershipState;
}

/** Persist the state machine snapshot with the records at least this often, so a restart replays little. */
const SNAPSHOT_EVERY = 5000;

/** Roots kept for co-signing checkpoints of recent sizes. */
const MAX_REMEMBERED_ROOTS = 4096;
const MAX_PENDING_CHECKPOINTS = 256;

export class SwarmState {
  private machine: DecisionMachine;
  private audit: AuditLog;
  private mode: ConsensusMode;
  private pendingRecords: { index: number; record: Uint8Array }[] = [];
  private pendingCheckpoints: { size: number; checkpoint: Uint8Array }[] = [];
  private readonly rootsAt = new Map<number, string>();
  private readonly checkpointsBySize = new Map<number, Checkpoint>();
  private readonly waitingCheckpoints = new Map<number, Checkpoint[]>();
  private readonly lastHashes = new Map<number, string>();
  private readonly adminChanges = new Map<string, AdminChangeView>();
  private replaying = false;
  private lastSnapshotIndex = 0;
  private snapshotDue = false;
  /** The committed membership; starts as the genesis membership (the swarm's members when it was bootstrapped). */
  private membershipState: MembershipState;

  constructor(private readonly options: SwarmStateOptions) {
    this.membershipState = emptyMembership(options.swarm.members);
    this.machine = new DecisionMachine(this.currentSwarm(), options.keyring);
    this.audit = AuditLog.create(options.federation.federation, options.swarm.id);
    this.mode = options.swarm.mode;
  }

  /**
   * The membership the swarm started with (persisted at first start, so a later edit of the file never changes
   * history). Only before anything is applied or rebuilt.
   */
  setGenesis(members: readonly string[]): void {
    if (this.audit.size > 0) throw new Error(`swarm ${this.swarmId}: the genesis membership can only be set before any entry is applied`);
    this.membershipState = emptyMembership(members);
    this.machine = new DecisionMachine(this.currentSwarm(), this.options.keyring);
  }

  /** The swarm's configuration as committed now: the file's policy and id, the committed voters and mode. */
  currentSwarm(): SwarmConfig {
    return { ...this.options.swarm, members: [...this.membershipState.voters], mode: this.mode ?? this.options.swarm.mode };
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
        this.machine = DecisionMachine.restore(this.currentSwarm(), this.options.keyring, this.machine.snapshot());
      } catch {
        // the policy cannot be met with these voters (admin checks refuse such changes): keep counting with the old list
      }
    }
    if (!this.replaying) this.options.onMembership?.(this.membership(), index);
  }

  get swarmId(): string {
    return this.options.swarm.id;
  }

  get size(): number {
    return this.audit.size;
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

  /** Loads the checkpoints this node stored before a restart. */
  async loadCheckpoints(): Promise<void> {
    const rows = await this.options.applied.kv.scan('ckpt/', { limit: 100_000 });
    for (const row of rows) {
      try {
        const checkpoint = JSON.parse(fromUtf8(row.value)) as Checkpoint;
        this.checkpointsBySize.set(checkpoint.size, checkpoint);
      } catch {
        // a checkpoint we cannot read is only a lost signature set; the log itself is intact
      }
    }
  }

  apply(entry: CommittedEntry): 'continue' | 'halt' {
    let outcomes: ApplyOutcome[] = [];
    let admin: AdminChangeView | null = null;
    // The record carries the mode the entry was committed under, even when the entry itself switches modes.
    const modeBefore = this.mode;
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
    this.rememberRoot(entry.index, root, hash);
    if (this.replaying) return this.mode === modeBefore ? 'continue' : 'halt';
    this.pendingRecords.push({ index: entry.index, record: canonicalBytes(appended.record) });
    if (entry.index - this.lastSnapshotIndex >= SNAPSHOT_EVERY) this.snapshotDue = true;
    if (outcomes.length) this.options.onOutcomes(outcomes, { index: entry.index, hash });
    if (admin) this.options.onAdmin?.(admin);
    this.afterAppend(entry.index, root);
    if (this.mode !== modeBefore) {
      this.snapshotDue = true;
      this.options.onModeSwitch?.(entry.index, this.mode);
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
    const check = checkAdminApprovals(command, swarm, this.options.keyring);
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
    const action = command.action;
    change.index = index;
    const inProgress = this.membershipState.pending[0];
    if (action.kind === 'set-mode') {
      if (action.mode === 'pbft' && this.membershipState.voters.length < 4) {
        change.status = 'refused';
        change.reason = `pbft needs at least 4 members (3f+1 with f >= 1); swarm ${this.options.swarm.id} has ${this.membershipState.voters.length}`;
      } else if (action.mode !== this.mode && inProgress) {
        change.status = 'refused';
        change.reason = `membership change ${inProgress.id} (${inProgress.kind} ${inProgress.org}) is still under way; switch modes once it completed`;
      } else if (action.mode === this.mode) {
        change.status = 'applied';
        change.reason = `already in ${this.mode} mode`;
      } else {
        change.status = 'applied';
        change.reason = `switched from ${this.mode} to ${action.mode} at index ${index}`;
        this.mode = action.mode;
      }
    } else {
      this.applyMemberAction(index, change, action);
    }
    this.adminChanges.set(change.id, change);
    return change;
  }

  /**
   * add-member / remove-member, approved: decided from the log alone (every replica the same way), never from this
   * node's federation file. The change becomes pending; the leader carries it out with Raft conf changes and the
   * voters (hence the decision machine's members) follow those conf entries as they commit.
   */
  private applyMemberAction(index: number, change: AdminChangeView, action: Extract<AdminAction, { org: string }>): void {
    const org = action.org;
    const state = this.membershipState;
    if (this.mode !== 'raft') {
      change.status = 'refused';
      change.reason = `membership changes are carried out by Raft conf changes; swarm ${this.options.swarm.id} runs ${this.mode}: switch it to raft, change the membership, switch back`;
      return;
    }
    const target = targetVoters(state);
    const pendingAdd = state.pending.find((p) => p.kind === 'add' && p.org === org);
    const pendingRemove = state.pending.find((p) => p.kind === 'remove' && p.org === org);
    if (pendingAdd || pendingRemove) {
      // One change per org at a time: the leader may already have proposed the conf change of the first one.
      const other = (pendingAdd ?? pendingRemove)!;
      change.status = 'refused';
      change.reason = `${org}'s ${other.kind === 'add' ? 'admission' : 'removal'} (change ${other.id}) is still under way; propose this again once it completed`;
      return;
    }
    if (action.kind === 'add-member') {
      change.status = 'applied';
      if (target.includes(org)) {
        change.reason = `${org} is already a member`;
        return;
      }
      change.reason = `${org} admitted at index ${index}: it joins as a learner, catches up, then becomes a voter`;
      this.setMembership({ ...state, pending: [...state.pending, { id: change.id, kind: 'add', org, index }] }, index);
      return;
    }
    if (!target.includes(org)) {
      change.status = 'refused';
      change.reason = `${org} is not a member of swarm ${this.options.swarm.id} (members: ${target.join(', ')})`;
      return;
    }
    const remaining = target.length - 1;
    if (remaining < 1) {
      change.status = 'refused';
      change.reason = `${org} is the last member of swarm ${this.options.swarm.id}`;
      return;
    }
    try {
      validatePolicy(this.options.swarm.policy, remaining);
    } catch (error) {
      change.status = 'refused';
      change.reason = `without ${org} the swarm's policy could not be met: ${(error as Error).message}`;
      return;
    }
    change.status = 'applied';
    change.reason = `${org} removed at index ${index}: the leader takes it out of the Raft configuration, then its certificate is refused`;
    this.setMembership({ ...state, pending: [...state.pending, { id: change.id, kind: 'remove', org, index }] }, index);
  }

  adminChange(id: string): AdminChangeView | undefined {
    return this.adminChanges.get(id);
  }

  adminChangesList(): AdminChangeView[] {
    return [...this.adminChanges.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  private applyCommand(index: number, command: LogCommand): ApplyOutcome[] {
    if (command.type === 'verdicts') {
      // Raft: the proposal signature makes the proposing node answerable for its content. PBFT: the machine
      // verifies every agent JWS too (a replica never trusts one node's word).
      if (command.swarm !== this.options.swarm.id || !verifyProposal(command, this.options.keyring)) {
        return command.batch.map((jws) => ({ jwsHash: jwsHashOf(jws), status: 'rejected' as const, subject: null, index, code: 'BAD_SIGNATURE' as const, reason: `the proposal of node ${command.proposer} does not verify` }));
      }
    }
    return this.machine.apply(index, command, { verifyAgentSignatures: this.mode === 'pbft' });
  }

  private rememberRoot(size: number, root: string, hash: string): void {
    this.rootsAt.set(size, root);
    this.lastHashes.set(size, hash);
    this.rootsAt.delete(size - MAX_REMEMBERED_ROOTS);
    this.lastHashes.delete(size - MAX_REMEMBERED_ROOTS);
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
    if (size === 0 || this.checkpointsBySize.has(size)) return this.checkpointsBySize.get(size) ?? null;
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
    const verification = verifyCheckpoint(checkpoint, this.options.federation);
    if (verification.problems.length > 0 || verification.validOrgs.length === 0) return;
    if (checkpoint.size > this.audit.size) {
      const list = this.waitingCheckpoints.get(checkpoint.size) ?? [];
      if (this.waitingCheckpoints.size < MAX_PENDING_CHECKPOINTS && list.length < 8) list.push(checkpoint);
      this.waitingCheckpoints.set(checkpoint.size, list);
      return;
    }
    const ourRoot = this.rootsAt.get(checkpoint.size);
    if (ourRoot !== checkpoint.root) return; // too old to check, or a different tree: never co-sign that
    const existing = this.checkpointsBySize.get(checkpoint.size);
    let merged: Checkpoint;
    try {
      merged = existing && existing.time === checkpoint.time ? mergeCheckpointSignatures(existing, checkpoint) : checkpoint;
    } catch {
      return;
    }
    if (existing && existing.time !== checkpoint.time) {
      // Two bodies for one size (two nodes each started one): keep the one with more signatures.
      if (existing.signatures.length >= checkpoint.signatures.length + 1) return;
    }
    if (!merged.signatures.some((s) => s.org === this.options.self)) merged = signCheckpoint(merged, this.options.self, this.options.signingKey);
    if (existing && existing.signatures.length === merged.signatures.length && existing.time === merged.time) return;
    this.storeCheckpoint(merged);
    this.options.onCheckpoint(merged);
  }

  private storeCheckpoint(checkpoint: Checkpoint): void {
    this.checkpointsBySize.set(checkpoint.size, checkpoint);
    this.pendingCheckpoints.push({ size: checkpoint.size, checkpoint: Buffer.from(JSON.stringify(checkpoint)) });
  }

  checkpoints(): Checkpoint[] {
    return [...this.checkpointsBySize.values()].sort((a, b) => a.size - b.size);
  }

  /** Writes what this ready cycle applied: records, checkpoints and the applied index, in one synced batch. */
  async flush(extra: { key: string; value: Uint8Array | null }[] = []): Promise<void> {
    if (this.pendingRecords.length === 0 && this.pendingCheckpoints.length === 0 && extra.length === 0 && !this.snapshotDue) return;
    const audit = this.pendingRecords;
    const checkpoints = this.pendingCheckpoints;
    this.pendingRecords = [];
    this.pendingCheckpoints = [];
    const snapshot = this.snapshotDue ? this.snapshot() : undefined;
    if (snapshot) {
      this.snapshotDue = false;
      this.lastSnapshotIndex = this.audit.size;
    }
    await this.options.applied.commit({ appliedIndex: this.audit.size, audit, checkpoints, extra, ...(snapshot ? { snapshot } : {}) });
  }

  /**
   * Rebuilds the state after a restart from what this node made durable: its last state snapshot, then every
   * stored audit record after it, re-applied — and each recomputed record hash must equal the stored one.
   */
  async rebuild(): Promise<void> {
    const loaded = await this.options.applied.load();
    if (loaded.snapshot) {
      this.restore(loaded.snapshot.data);
      this.lastSnapshotIndex = loaded.snapshot.index;
    }
    this.replaying = true;
    try {
      let next = this.audit.size + 1;
      while (next <= loaded.appliedIndex) {
        const records = await this.records(next, Math.min(4096, loaded.appliedIndex - next + 1));
        if (records.length === 0 || records[0]!.index !== next) throw new Error(`swarm ${this.swarmId}: audit record ${next} is missing from storage; cannot rebuild`);
        for (const record of records) {
          const data = fromBase64Url(record.data);
          const kind = record.mode === 'raft' && confChangeOfData(data) ? 'conf' : 'command';
          this.apply({ index: record.index, epoch: record.term ?? record.view ?? 0, kind, data });
          if (this.lastHashes.get(record.index) !== recordHash(record)) {
            throw new Error(`swarm ${this.swarmId}: stored audit record ${record.index} does not match the entry it records (storage corrupted?)`);
          }
        }
        next += records.length;
      }
    } finally {
      this.replaying = false;
    }
  }

  snapshot(): Uint8Array {
    const snapshot: SnapshotV1 = {
      v: 1,
      machine: toBase64Url(this.machine.snapshot()),
      audit: this.audit.state(),
      mode: this.mode,
      admin: this.adminChangesList(),
      membership: this.membership(),
    };
    return canonicalBytes(snapshot);
  }

  restore(data: Uint8Array): void {
    const snapshot = JSON.parse(fromUtf8(data)) as SnapshotV1;
    if (snapshot.v !== 1) throw new Error(`unknown swarm snapshot version ${String(snapshot.v)}`);
    this.mode = snapshot.mode;
    if (snapshot.membership) this.membershipState = snapshot.membership;
    this.machine = DecisionMachine.restore(this.currentSwarm(), this.options.keyring, fromBase64Url(snapshot.machine));
    this.audit = AuditLog.restore(snapshot.audit);
    this.adminChanges.clear();
    for (const change of snapshot.admin ?? []) this.adminChanges.set(change.id, change);
    this.rootsAt.set(this.audit.size, toHex(this.audit.root()));
    this.lastHashes.set(this.audit.size, this.audit.head.hash);
  }

  /** Replaces the state with a snapshot installed from the leader, and makes it durable with the next flush. */
  installSnapshot(data: Uint8Array): void {
    this.restore(data);
    this.snapshotDue = true;
  }

  /** The audit records [from, from+limit) this node stores (after a snapshot install, older ones may be absent). */
  async records(from: number, limit: number): Promise<AuditRecord[]> {
    const rows = await this.options.applied.audit(from, limit);
    return rows.map((row) => JSON.parse(fromUtf8(row.record)) as AuditRecord);
  }
}

function canonicalJsonEquals(a: unknown, b: unknown): boolean {
  return Buffer.from(canonicalBytes(a)).equals(Buffer.from(canonicalBytes(b)));
}
