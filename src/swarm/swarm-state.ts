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
import { decodeCommand, verifyProposal, type LogCommand } from '../verdict/proposal.ts';
import type { AppliedStateStore } from '../storage/applied-state.ts';

export interface CommittedEntry {
  index: number;
  /** Raft term or PBFT view. */
  epoch: number;
  /** Raft configuration entries are recorded in the audit trail but carry no command. */
  kind: 'command' | 'conf';
  data: Uint8Array;
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
  /** Checkpoint at every multiple of this tree size (all nodes agree on these sizes). */
  checkpointEvery?: number;
  now?: () => number;
}

interface SnapshotV1 {
  v: 1;
  machine: string;
  audit: AuditState;
  mode: ConsensusMode;
}

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

  constructor(private readonly options: SwarmStateOptions) {
    this.machine = new DecisionMachine(options.swarm, options.keyring);
    this.audit = AuditLog.create(options.federation.federation, options.swarm.id);
    this.mode = options.swarm.mode;
  }

  get swarmId(): string {
    return this.options.swarm.id;
  }

  get size(): number {
    return this.audit.size;
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

  apply(entry: CommittedEntry): void {
    let outcomes: ApplyOutcome[] = [];
    if (entry.kind === 'command' && entry.data.length > 0) {
      let command: LogCommand | null = null;
      try {
        command = decodeCommand(entry.data);
      } catch {
        command = null; // recorded in the audit trail as it is; it changes no state
      }
      if (command) outcomes = this.applyCommand(entry.index, command);
    }
    const appended = this.audit.append({ index: entry.index, mode: this.mode, epoch: entry.epoch, data: entry.data });
    const hash = appended.hash;
    this.pendingRecords.push({ index: entry.index, record: canonicalBytes(appended.record) });
    const root = toHex(appended.root);
    this.rememberRoot(entry.index, root, hash);
    if (outcomes.length) this.options.onOutcomes(outcomes, { index: entry.index, hash });
    this.afterAppend(entry.index, root);
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
  async flush(): Promise<void> {
    if (this.pendingRecords.length === 0 && this.pendingCheckpoints.length === 0) return;
    const audit = this.pendingRecords;
    const checkpoints = this.pendingCheckpoints;
    this.pendingRecords = [];
    this.pendingCheckpoints = [];
    await this.options.applied.commit({ appliedIndex: this.audit.size, audit, checkpoints });
  }

  snapshot(): Uint8Array {
    const snapshot: SnapshotV1 = { v: 1, machine: toBase64Url(this.machine.snapshot()), audit: this.audit.state(), mode: this.mode };
    return canonicalBytes(snapshot);
  }

  restore(data: Uint8Array): void {
    const snapshot = JSON.parse(fromUtf8(data)) as SnapshotV1;
    if (snapshot.v !== 1) throw new Error(`unknown swarm snapshot version ${String(snapshot.v)}`);
    this.machine = DecisionMachine.restore(this.options.swarm, this.options.keyring, fromBase64Url(snapshot.machine));
    this.audit = AuditLog.restore(snapshot.audit);
    this.mode = snapshot.mode;
    this.rootsAt.set(this.audit.size, toHex(this.audit.root()));
  }

  /** The audit records [from, from+limit) this node stores (after a snapshot install, older ones may be absent). */
  async records(from: number, limit: number): Promise<AuditRecord[]> {
    const rows = await this.options.applied.audit(from, limit);
    return rows.map((row) => JSON.parse(fromUtf8(row.record)) as AuditRecord);
  }
}
