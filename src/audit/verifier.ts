// The offline auditor: checks an export line by line against the federation file alone — hash chain, agent JWS and
// proposal signatures, admin approvals, Merkle roots against signed checkpoints, checkpoint consistency, and every
// decision recomputed with the DecisionMachine. Pure: no clock, no I/O; progress goes through a callback.
import type { ConsensusMode, SwarmRules } from '../config/types.ts';
import { decodeConfChange } from '../consensus/raft/confchange.ts';
import type { ConfChange } from '../consensus/raft/types.ts';
import { applyConfToMembership, decideAdminAction, decodeRules, emptyMembership, type MembershipState } from '../swarm/membership.ts';
import type { FederationConfig, SwarmConfig } from '../config/types.ts';
import { fromHex, toHex } from '../crypto/encoding.ts';
import { Keyring } from '../verdict/keyring.ts';
import { parseVerdictJws, VerdictError } from '../verdict/format.ts';
import { checkVerdictSignature, jwsHashOf } from '../verdict/verify.ts';
import { checkAdminApprovals, decodeCommand, verifyProposal, type LogCommand, type VerdictsCommand } from '../verdict/proposal.ts';
import { DecisionMachine, type ApplyOutcome } from '../verdict/machine.ts';
import { ChainChecker, recordData, recordLeafHash, recordHash, recordShapeProblem, type AuditRecord } from './chain.ts';
import { checkpointShapeProblem, verifyCheckpoint, type Checkpoint, type CheckpointTrust, type CheckpointVerification } from './checkpoint.ts';
import { readExport, type ExportHeader, type ExportLine, type ReadLine } from './export.ts';
import { checkConsistency, inclusionProof, MerkleFrontier, rootFromInclusionProof, type SubtreeHasher } from './merkle.ts';

/** Stable codes of everything the auditor can find wrong (docs/audit-format.md, "Verifier error codes"). */
export const AUDIT_ERROR_CODES = [
  'MALFORMED_LINE',
  'MISSING_HEADER',
  'WRONG_FEDERATION',
  'UNKNOWN_SWARM',
  'WRONG_SWARM',
  'MALFORMED_RECORD',
  'INDEX_GAP',
  'INDEX_OUT_OF_ORDER',
  'TRUNCATED',
  'CHAIN_BROKEN',
  'TERM_REGRESSED',
  'MALFORMED_ENTRY',
  'UNKNOWN_KEY',
  'BAD_PROPOSAL_SIGNATURE',
  'BAD_AGENT_SIGNATURE',
  'WRONG_ORG_KEY',
  'MALFORMED_VERDICT',
  'BAD_ADMIN_APPROVAL',
  'MODE_MISMATCH',
  'ROOT_MISMATCH',
  'CHECKPOINT_MALFORMED',
  'CHECKPOINT_MISPLACED',
  'CHECKPOINT_UNSIGNED',
  'CHECKPOINT_BAD_SIGNATURE',
  'CHECKPOINT_UNKNOWN_KEY',
  'CHECKPOINT_NOT_MEMBER',
  'CHECKPOINT_DUPLICATE_SIGNER',
  'CHECKPOINT_NO_QUORUM',
  'INCONSISTENT_CHECKPOINTS',
  'MALFORMED_PROOF',
  'DECISION_MISMATCH',
  'MALFORMED_BUNDLE',
  'VERDICT_NOT_IN_ENTRY',
] as const;

export type AuditErrorCode = (typeof AUDIT_ERROR_CODES)[number];

export interface AuditFailure {
  code: AuditErrorCode;
  /** The log index of the first bad entry (for a checkpoint: its size), or null when no entry is concerned. */
  index: number | null;
  /** 1-based line of the export where it was found. */
  line: number | null;
  message: string;
}

export interface AuditProgress {
  entries: number;
  lastIndex: number;
  to: number | null;
}

export interface AuditOptions {
  federation: FederationConfig;
  /** Called after every `progressEvery` records (default 10,000); the CLI throttles by time on its side. */
  onProgress?: (progress: AuditProgress) => void;
  progressEvery?: number;
  /** pbft checkpoints must be commit certificates (signed by a PBFT quorum of the swarm's members). */
  requireCertificates?: boolean;
}

export interface AuditSummary {
  ok: boolean;
  federation: string | null;
  swarm: string | null;
  from: number | null;
  to: number | null;
  entries: number;
  verdicts: number;
  /** Verdicts the decision machine refused when applying (e.g. a value outside the policy); not an audit failure. */
  rejectedVerdicts: number;
  subjects: number;
  decisions: number;
  decisionsCompared: number;
  checkpoints: number;
  certificates: number;
  consistencyProofs: number;
  /** Merkle root of the last record (lowercase hex). */
  root: string | null;
  /** False when the export starts after index 1: decisions cannot be recomputed without the earlier verdicts. */
  decisionsRecomputed: boolean;
  failure: AuditFailure | null;
}

interface SeenCheckpoint {
  size: number;
  root: string;
  line: number;
  /** The root computed from the records at this size. */
  matches: boolean;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * What is wrong with a committed verdicts command, judged with the federation file's keys: the swarm it names, every
 * agent JWS (its key, the key's org, the signature) and the proposing node's signature. `message` starts with ", "
 * or ":" so that the caller can put where it is in front.
 */
export function verdictsCommandProblem(cmd: VerdictsCommand, swarmId: string, keyring: Keyring): { code: AuditErrorCode; message: string } | null {
  if (cmd.swarm !== swarmId) return { code: 'WRONG_SWARM', message: `: the proposal names swarm ${cmd.swarm}` };
  for (const [position, jws] of cmd.batch.entries()) {
    try {
      checkVerdictSignature(parseVerdictJws(jws), keyring);
    } catch (error) {
      if (!(error instanceof VerdictError)) throw error;
      const code: AuditErrorCode =
        error.code === 'UNKNOWN_KID' ? 'UNKNOWN_KEY' : error.code === 'KEY_ORG_MISMATCH' ? 'WRONG_ORG_KEY' : error.code === 'BAD_SIGNATURE' ? 'BAD_AGENT_SIGNATURE' : 'MALFORMED_VERDICT';
      return { code, message: `, verdict ${position}: ${error.message}` };
    }
  }
  if (keyring.keysOf(cmd.proposer, 'node').length === 0) {
    return { code: 'UNKNOWN_KEY', message: `: proposer ${JSON.stringify(cmd.proposer)} has no node key in the federation file` };
  }
  if (!verifyProposal(cmd, keyring)) return { code: 'BAD_PROPOSAL_SIGNATURE', message: `: the proposal signature does not verify with a node key of ${cmd.proposer}` };
  return null;
}

/**
 * Feeds parsed export lines one at a time (push) and yields the summary at the end (finish). Stops at the first
 * definitive failure; a checkpoint whose root disagrees with the records is held as ROOT_MISMATCH and becomes
 * INCONSISTENT_CHECKPOINTS when a later signed checkpoint agrees with the records (the log was rewritten after
 * the first was signed).
 */
export class AuditVerifier {
  private readonly keyring: Keyring;
  private readonly trust: CheckpointTrust;
  private header: ExportHeader | null = null;
  private swarmConfig: SwarmConfig | null = null;
  private chain: ChainChecker | null = null;
  private frontier = new MerkleFrontier();
  private machine: DecisionMachine | null = null;
  /**
   * The committed membership as the log's admin changes and Raft configuration entries left it, from the export's
   * genesis (or the federation file's member list); decided by the same pure rules the nodes apply.
   */
  private membership: MembershipState = emptyMembership([]);
  /** The voters before the newest change of voters and the entry that changed them (a checkpoint there may be the old era's). */
  private previousVoters: { index: number; voters: readonly string[] } | null = null;
  private lastIndex = 0;
  private pendingDecisions = new Map<string, string>();
  private pendingDecisionsIndex = 0;
  private readonly checkpointsBySize = new Map<number, SeenCheckpoint>();
  private tentative: AuditFailure | null = null;
  private failure: AuditFailure | null = null;
  /** The mode the committed log is in (from the first record, then committed mode switches). */
  private currentMode: ConsensusMode | null = null;
  private nextMode: ConsensusMode | null = null;
  private readonly adminChanges = new Map<string, { approvers: Set<string>; done: boolean }>();
  private readonly counts = { entries: 0, verdicts: 0, rejectedVerdicts: 0, decisions: 0, decisionsCompared: 0, checkpoints: 0, certificates: 0, consistencyProofs: 0 };
  private readonly progressEvery: number;

  constructor(private readonly options: AuditOptions) {
    this.keyring = Keyring.fromMembers(options.federation.members);
    this.trust = { keyring: this.keyring };
    this.progressEvery = options.progressEvery ?? 10_000;
  }

  get done(): boolean {
    return this.failure !== null;
  }

  private fail(code: AuditErrorCode, index: number | null, line: number | null, message: string): void {
    if (!this.failure) this.failure = { code, index, line, message };
  }

  /** Feeds one read line (or read error). Returns false once a definitive failure was found. */
  push(item: ReadLine): boolean {
    if (this.failure) return false;
    if ('error' in item) {
      this.fail('MALFORMED_LINE', this.lastIndex + 1, item.lineNumber, `line ${item.lineNumber}: ${item.error}`);
      return false;
    }
    const { line, lineNumber } = item;
    if (!this.header) {
      if (line.type !== 'header') {
        this.fail('MISSING_HEADER', null, lineNumber, `line ${lineNumber}: the export must begin with a header line`);
        return false;
      }
      this.startHeader(line, lineNumber);
      return !this.failure;
    }
    switch (line.type) {
      case 'header':
        this.fail('MALFORMED_LINE', null, lineNumber, `line ${lineNumber}: a second header`);
        break;
      case 'record':
        this.closeDecisions(lineNumber);
        if (!this.failure) this.onRecord(line, lineNumber);
        break;
      case 'decision':
        this.onDecision(line, lineNumber);
        break;
      case 'checkpoint':
        this.onCheckpoint(line, lineNumber);
        break;
      case 'proof':
        this.onProof(line, lineNumber);
        break;
    }
    return !this.failure;
  }

  private startHeader(h: ExportHeader, lineNumber: number): void {
    const fed = this.options.federation;
    const bad = (why: string): void => this.fail('MALFORMED_LINE', null, lineNumber, `line ${lineNumber}: header ${why}`);
    if (h.v !== 1) return bad('v must be 1');
    if (typeof h.swarm !== 'string' || typeof h.federation !== 'string') return bad('needs federation and swarm');
    if (!Number.isSafeInteger(h.from) || h.from < 1 || !Number.isSafeInteger(h.to) || h.to < h.from - 1) return bad(`has a bad range ${h.from}..${h.to}`);
    if (typeof h.prev !== 'string' || !/^[0-9a-f]{64}$/.test(h.prev)) return bad('prev must be 64 lowercase hex digits');
    if (h.federation !== fed.federation) {
      this.fail('WRONG_FEDERATION', null, lineNumber, `the export is of federation ${JSON.stringify(h.federation)}, the federation file describes ${JSON.stringify(fed.federation)}`);
      return;
    }
    const swarm = fed.swarms.find((s) => s.id === h.swarm);
    if (!swarm) {
      this.fail('UNKNOWN_SWARM', null, lineNumber, `swarm ${JSON.stringify(h.swarm)} is not in the federation file`);
      return;
    }
    try {
      this.frontier = new MerkleFrontier(h.frontier);
    } catch (error) {
      return bad(`frontier: ${(error as Error).message}`);
    }
    if (this.frontier.size !== h.from - 1) return bad(`frontier has size ${this.frontier.size}, want ${h.from - 1}`);
    if (h.from === 1 && h.prev !== '0'.repeat(64)) return bad('prev must be 64 zeros when the export starts at index 1');
    this.header = h;
    this.swarmConfig = swarm;
    this.trust.members = swarm.members;
    const genesis = h.genesis;
    if (genesis !== undefined) {
      const valid = typeof genesis === 'object' && genesis !== null && (genesis.mode === 'raft' || genesis.mode === 'pbft') && Array.isArray(genesis.members) && genesis.members.length > 0;
      if (!valid) return bad('genesis must be {members: [org, ...], mode: raft|pbft, rules?}');
      const unknown = genesis.members.filter((org) => !fed.members.some((m) => m.org === org));
      if (unknown.length) return bad(`genesis names orgs the federation file has no member card for: ${unknown.join(', ')}`);
      // The log's own rules, not the file's: decisions are recomputed by the policy the swarm committed.
      if (genesis.rules !== undefined) {
        try {
          this.swarmConfig = { ...swarm, ...decodeRules(genesis.rules, 'genesis.rules') };
        } catch (error) {
          return bad((error as Error).message);
        }
      }
    }
    this.membership = emptyMembership(genesis?.members ?? swarm.members);
    if (genesis) this.currentMode = genesis.mode;
    this.chain = new ChainChecker(h.federation, h.swarm, h.from === 1 ? null : { index: h.from - 1, hash: h.prev });
    this.lastIndex = h.from - 1;
    // Decisions follow from every verdict since index 1: they can be recomputed only from a complete log.
    this.machine = h.from === 1 ? new DecisionMachine({ ...this.swarmConfig, members: [...this.membership.voters] }, this.keyring) : null;
  }

  private onRecord(line: ExportLine & { type: 'record' }, lineNumber: number): void {
    const { type: _type, ...rest } = line;
    const result = this.chain!.next(rest);
    if ('problem' in result) {
      const p = result.problem;
      this.fail(p.code, p.index, lineNumber, `line ${lineNumber}: ${p.message}`);
      return;
    }
    const record = rest as AuditRecord;
    if (record.index > this.header!.to) {
      this.fail('MALFORMED_LINE', record.index, lineNumber, `line ${lineNumber}: record ${record.index} is beyond the header's range ..${this.header!.to}`);
      return;
    }
    // Each record must carry the mode the log was in when it was committed: a switch is only what the log approved.
    if (this.nextMode !== null) {
      this.currentMode = this.nextMode;
      this.nextMode = null;
    }
    this.currentMode ??= record.mode;
    if (record.mode !== this.currentMode) {
      this.fail('MODE_MISMATCH', record.index, lineNumber, `line ${lineNumber}, entry ${record.index}: the record says ${record.mode} but the log is in ${this.currentMode} mode (no approved switch)`);
      return;
    }
    this.checkEntry(record, lineNumber);
    if (this.failure) return;
    this.frontier.appendLeafHash(recordLeafHash(record));
    this.lastIndex = record.index;
    this.counts.entries++;
    if (this.options.onProgress && this.counts.entries % this.progressEvery === 0) {
      this.options.onProgress({ entries: this.counts.entries, lastIndex: this.lastIndex, to: this.header!.to });
    }
  }

  private applyConf(change: ConfChange): void {
    try {
      this.setMembership(applyConfToMembership(this.membership, change));
    } catch {
      // an invalid change is a no-op on the nodes too
    }
  }

  /** The decisions are recomputed with the new voters, exactly as the nodes do. */
  private setMembership(next: MembershipState): void {
    const before = this.membership.voters.join('\n');
    if (next.voters.join('\n') !== before) this.previousVoters = { index: this.lastIndex + 1, voters: this.membership.voters };
    this.membership = next;
    if (this.machine && next.voters.join('\n') !== before) {
      try {
        this.machine = DecisionMachine.restore({ ...this.swarmConfig!, members: [...next.voters] }, this.keyring, this.machine.snapshot());
      } catch {
        // a policy the new voters cannot meet: the nodes keep counting with the old list too
      }
    }
  }

  /** A committed set-policy change: from the next entry on, verdicts are judged and decided by these rules. */
  private setRules(rules: SwarmRules): void {
    this.swarmConfig = { ...this.swarmConfig!, ...rules };
    if (this.machine) this.machine = this.machine.withSwarm({ ...this.swarmConfig, members: [...this.membership.voters] });
  }

  /** Signatures of the entry's command, then the decision machine. */
  private checkEntry(record: AuditRecord, lineNumber: number): void {
    const index = record.index;
    const at = `line ${lineNumber}, entry ${index}`;
    let cmd: LogCommand;
    const data = recordData(record);
    // An empty entry is the protocol's own no-op (a new Raft leader's first entry): chained and hashed, no command.
    if (data.length === 0) return;
    // A Raft configuration entry (binary, version byte 1; commands are JSON): membership changes the voters that
    // the decisions are recomputed with, exactly as the nodes do.
    if (record.mode === 'raft' && data[0] === 1) {
      let change: ConfChange | null = null;
      try {
        change = decodeConfChange(data);
      } catch {
        change = null;
      }
      if (change) {
        this.applyConf(change);
        return;
      }
    }
    try {
      cmd = decodeCommand(data);
    } catch (error) {
      this.fail('MALFORMED_ENTRY', index, lineNumber, `${at}: ${(error as Error).message}`);
      return;
    }
    const swarm = this.swarmConfig!;
    if (cmd.type === 'verdicts') {
      this.counts.verdicts += cmd.batch.length;
      const problem = verdictsCommandProblem(cmd, swarm.id, this.keyring);
      if (problem) return this.fail(problem.code, index, lineNumber, `${at}${problem.message}`);
    } else if (cmd.type === 'admin') {
      if (cmd.swarm !== swarm.id) return this.fail('WRONG_SWARM', index, lineNumber, `${at}: the admin command names swarm ${cmd.swarm}`);
      // Approvals of one change id accumulate across entries (one per org); every approval carried must verify,
      // and a mode switch takes effect after the entry whose approvals reach the swarm's admin policy.
      const mode = this.currentMode ?? swarm.mode;
      const check = checkAdminApprovals(cmd, { ...swarm, members: [...this.membership.voters], mode }, this.keyring);
      if (check.refused.length > 0 || check.approvers.length === 0) {
        const why = check.refused.map((r) => `approval ${r.position}: ${r.reason}`).join('; ');
        return this.fail('BAD_ADMIN_APPROVAL', index, lineNumber, `${at}: an admin approval does not verify${why ? ` (${why})` : ''}`);
      }
      // The nodes counted the approvers the command names: each must be the org its approval verifies for.
      const misnamed = cmd.approvers?.findIndex((org, i) => org !== check.orgs[i]) ?? -1;
      if (misnamed >= 0) {
        return this.fail('BAD_ADMIN_APPROVAL', index, lineNumber, `${at}: approval ${misnamed} is named as ${cmd.approvers![misnamed]}'s but verifies for ${check.orgs[misnamed]}`);
      }
      const change = this.adminChanges.get(cmd.id) ?? { approvers: new Set<string>(), done: false };
      for (const org of check.approvers) change.approvers.add(org);
      this.adminChanges.set(cmd.id, change);
      if (!change.done && change.approvers.size >= check.required) {
        change.done = true;
        const decision = decideAdminAction({ mode, membership: this.membership, rules: swarm }, cmd.action, { index, swarm: swarm.id, changeId: cmd.id });
        if (decision.status === 'applied') {
          if (decision.next.membership !== this.membership) this.setMembership(decision.next.membership);
          if (decision.next.rules !== swarm) this.setRules(decision.next.rules);
          if (decision.next.mode !== mode) this.nextMode = decision.next.mode;
        }
      }
    }
    if (this.machine) {
      // A verdicts command got here only with a proposal signature verified above: the machine skips that check.
      const outcomes: ApplyOutcome[] = this.machine.apply(index, cmd, { verifyAgentSignatures: record.mode === 'pbft', proposalSignatureVerified: cmd.type === 'verdicts' });
      this.pendingDecisions = new Map();
      this.pendingDecisionsIndex = index;
      for (const outcome of outcomes) {
        if (outcome.status === 'rejected') this.counts.rejectedVerdicts++;
        if (outcome.status === 'decision' && outcome.subject !== null && outcome.decision) {
          this.counts.decisions++;
          this.pendingDecisions.set(outcome.subject, outcome.decision.value);
        }
      }
    }
  }

  private onDecision(line: ExportLine & { type: 'decision' }, lineNumber: number): void {
    if (typeof line.index !== 'number' || typeof line.subject !== 'string' || typeof line.value !== 'string') {
      this.fail('MALFORMED_LINE', this.lastIndex, lineNumber, `line ${lineNumber}: a decision line has index, subject and value`);
      return;
    }
    if (line.index !== this.lastIndex) {
      this.fail('MALFORMED_LINE', line.index, lineNumber, `line ${lineNumber}: the decision of entry ${line.index} must follow record ${line.index}, not record ${this.lastIndex}`);
      return;
    }
    if (!this.machine) return; // partial export: nothing to recompute it from
    this.counts.decisionsCompared++;
    const recomputed = this.pendingDecisionsIndex === line.index ? this.pendingDecisions.get(line.subject) : undefined;
    if (recomputed === undefined) {
      const state = this.machine.subject(line.subject);
      const actual = state?.decision ? `it was decided ${JSON.stringify(state.decision.value)} at entry ${state.decision.index}` : 'it is undecided there';
      this.fail('DECISION_MISMATCH', line.index, lineNumber, `line ${lineNumber}: the export claims ${JSON.stringify(line.subject)} was decided ${JSON.stringify(line.value)} at entry ${line.index}, but recomputing the verdicts: ${actual}`);
      return;
    }
    if (recomputed !== line.value) {
      this.fail('DECISION_MISMATCH', line.index, lineNumber, `line ${lineNumber}: the export claims ${JSON.stringify(line.subject)} was decided ${JSON.stringify(line.value)} at entry ${line.index}; recomputed from the verdicts: ${JSON.stringify(recomputed)}`);
      return;
    }
    this.pendingDecisions.delete(line.subject);
  }

  /** When the export carries decisions, each decision recomputed at the last record must have been claimed. */
  private closeDecisions(lineNumber: number | null): void {
    if (this.header?.decisions === true && this.machine && this.pendingDecisions.size > 0) {
      const [subject, value] = [...this.pendingDecisions.entries()].sort((a, b) => compare(a[0], b[0]))[0]!;
      this.fail('DECISION_MISMATCH', this.pendingDecisionsIndex, lineNumber, `entry ${this.pendingDecisionsIndex} decides ${JSON.stringify(subject)} as ${JSON.stringify(value)} when recomputed, but the export does not claim that decision`);
    }
    this.pendingDecisions = new Map();
  }

  /**
   * Signers must be voters of the swarm when the log had `cp.size` entries — known exactly when the export replays
   * the log from index 1 (genesis, then every committed change), else the federation file's member list. A
   * checkpoint at the very entry that changed the voters may be the finishing era's: the old voters count there too.
   */
  private verifyCheckpointSigners(cp: Checkpoint): CheckpointVerification {
    if (this.header!.from !== 1) return verifyCheckpoint(cp, this.trust);
    const atSize = verifyCheckpoint(cp, { keyring: this.keyring, members: this.membership.voters });
    const clean = (v: CheckpointVerification) => v.problems.length === 0 && (v.certificate || cp.mode !== 'pbft' || !this.options.requireCertificates);
    if (clean(atSize) || this.previousVoters?.index !== cp.size) return atSize;
    const finishingEra = verifyCheckpoint(cp, { keyring: this.keyring, members: this.previousVoters.voters });
    return clean(finishingEra) ? finishingEra : atSize;
  }

  private onCheckpoint(line: ExportLine & { type: 'checkpoint' }, lineNumber: number): void {
    const { type: _type, ...rest } = line;
    const cp = rest as Checkpoint;
    const shape = checkpointShapeProblem(cp);
    const at = `line ${lineNumber}`;
    if (shape) return this.fail('CHECKPOINT_MALFORMED', this.lastIndex, lineNumber, `${at}: ${shape}`);
    if (cp.federation !== this.header!.federation || cp.swarm !== this.header!.swarm) {
      return this.fail('WRONG_SWARM', cp.size, lineNumber, `${at}: a checkpoint of ${cp.federation}/${cp.swarm} in an export of ${this.header!.federation}/${this.header!.swarm}`);
    }
    if (cp.size !== this.lastIndex) {
      return this.fail('CHECKPOINT_MISPLACED', cp.size, lineNumber, `${at}: a checkpoint of size ${cp.size} must follow record ${cp.size}, not record ${this.lastIndex}`);
    }
    const verification = this.verifyCheckpointSigners(cp);
    const first = verification.problems[0];
    if (first) return this.fail(first.code, cp.size, lineNumber, `${at}: ${first.message}`);
    if (verification.validOrgs.length === 0) return this.fail('CHECKPOINT_UNSIGNED', cp.size, lineNumber, `${at}: no valid signature`);
    if (cp.mode === 'pbft' && !verification.certificate && this.options.requireCertificates) {
      return this.fail(
        'CHECKPOINT_NO_QUORUM',
        cp.size,
        lineNumber,
        `${at}: pbft checkpoint at size ${cp.size} signed by ${verification.validOrgs.length} members (${verification.validOrgs.join(', ')}); a commit certificate needs ${verification.quorum}`,
      );
    }
    this.counts.checkpoints++;
    if (verification.certificate) this.counts.certificates++;
    const computed = toHex(this.frontier.root());
    const seen: SeenCheckpoint = { size: cp.size, root: cp.root, line: lineNumber, matches: computed === cp.root };
    const same = this.checkpointsBySize.get(cp.size);
    if (same && same.root !== cp.root) {
      return this.fail('INCONSISTENT_CHECKPOINTS', cp.size, lineNumber, `${at}: two signed checkpoints of size ${cp.size} with different roots ${same.root} (line ${same.line}) and ${cp.root}: the log forked`);
    }
    this.checkpointsBySize.set(cp.size, seen);
    if (!seen.matches) {
      if (!this.tentative) {
        this.tentative = {
          code: 'ROOT_MISMATCH',
          index: cp.size,
          line: lineNumber,
          message: `${at}: the signed checkpoint of size ${cp.size} has root ${cp.root}, but the records 1..${cp.size} hash to ${computed}`,
        };
      }
      return;
    }
    if (this.tentative && this.tentative.code === 'ROOT_MISMATCH') {
      // A validly signed later head agrees with the records, an earlier signed head does not: the two heads cannot
      // both describe one append-only log.
      const old = this.tentative;
      this.tentative = null;
      this.failure = {
        code: 'INCONSISTENT_CHECKPOINTS',
        index: old.index,
        line: old.line,
        message: `${old.message}; the later checkpoint of size ${cp.size} (line ${lineNumber}) matches the records, so the log was rewritten after the checkpoint of size ${old.index} was signed`,
      };
      return;
    }
  }

  private onProof(line: ExportLine & { type: 'proof' }, lineNumber: number): void {
    const at = `line ${lineNumber}`;
    if (line.kind !== 'consistency' || !Array.isArray(line.hashes) || !line.hashes.every((h) => typeof h === 'string' && /^[0-9a-f]{64}$/.test(h))) {
      return this.fail('MALFORMED_PROOF', this.lastIndex, lineNumber, `${at}: a proof line is {kind: "consistency", size1, size2, hashes: [64 hex digits...]}`);
    }
    const a = this.checkpointsBySize.get(line.size1);
    const b = this.checkpointsBySize.get(line.size2);
    if (!a || !b) return this.fail('MALFORMED_PROOF', this.lastIndex, lineNumber, `${at}: a consistency proof between sizes ${line.size1} and ${line.size2} must follow checkpoints of both sizes`);
    try {
      checkConsistency(a.size, b.size, fromHex(a.root), fromHex(b.root), line.hashes.map(fromHex));
      this.counts.consistencyProofs++;
    } catch (error) {
      this.fail(
        'INCONSISTENT_CHECKPOINTS',
        a.size,
        lineNumber,
        `${at}: the signed checkpoints of sizes ${a.size} and ${b.size} are not consistent (${(error as Error).message}): the log was rewritten after size ${a.size}`,
      );
    }
  }

  finish(): AuditSummary {
    if (!this.failure && !this.header) this.fail('MISSING_HEADER', null, null, 'the export is empty');
    if (!this.failure && this.header) {
      this.closeDecisions(null);
      if (!this.failure && this.lastIndex !== this.header.to) {
        this.fail('TRUNCATED', this.lastIndex + 1, null, `the header announces records up to ${this.header.to}, the export ends after record ${this.lastIndex}`);
      }
    }
    if (!this.failure && this.tentative) this.failure = this.tentative;
    if (this.failure && this.tentative && this.failure !== this.tentative && (this.tentative.index ?? 0) <= (this.failure.index ?? Infinity)) {
      // An earlier checkpoint already disagreed with the records: that is the first bad entry.
      this.failure = this.tentative;
    }
    return {
      ok: this.failure === null,
      federation: this.header?.federation ?? null,
      swarm: this.header?.swarm ?? null,
      from: this.header?.from ?? null,
      to: this.header?.to ?? null,
      ...this.counts,
      subjects: this.machine?.subjectCount() ?? 0,
      root: this.header ? toHex(this.frontier.root()) : null,
      decisionsRecomputed: this.machine !== null,
      failure: this.failure,
    };
  }
}

/** Verifies a whole export from a byte or text stream. */
export async function verifyExport(stream: AsyncIterable<Uint8Array | string>, options: AuditOptions): Promise<AuditSummary> {
  const verifier = new AuditVerifier(options);
  for await (const item of readExport(stream)) {
    if (!verifier.push(item)) break;
  }
  return verifier.finish();
}

/** One entry, its inclusion proof and a signed checkpoint: everything needed to check that the entry is in the log. */
export interface InclusionBundle {
  record: AuditRecord;
  /** Lowercase hex hashes, RFC 9162 order. */
  proof: string[];
  checkpoint: Checkpoint;
}

/** Builds an InclusionBundle from a hasher over the log's leaf hashes (e.g. MerkleTree). */
export function makeInclusionBundle(record: AuditRecord, checkpoint: Checkpoint, hasher: SubtreeHasher): InclusionBundle {
  return { record, checkpoint, proof: inclusionProof(record.index - 1, checkpoint.size, hasher).map(toHex) };
}

/** One verdict of an entry, as an inclusion check reports it. */
export interface IncludedVerdict {
  /** SHA-256 of the compact JWS (lowercase hex): what the node answered when the verdict was submitted. */
  jwsHash: string;
  subject: string;
  org: string;
  agent: string;
  verdict: string;
}

/** The outcome of checking an inclusion bundle, with what the entry holds. */
export interface InclusionCheck {
  ok: boolean;
  failure: AuditFailure | null;
  swarm: string | null;
  index: number | null;
  /** Tree size and root of the checkpoint the entry was proven under. */
  size: number | null;
  root: string | null;
  /** Swarm members whose node signature on the checkpoint verifies. */
  signers: string[];
  /** pbft: the checkpoint carries a commit certificate (a PBFT quorum of the file's swarm members). */
  certificate: boolean;
  /** What the entry is: a batch of verdicts, an admin command, the protocol's no-op, or a Raft configuration change. */
  entry: { kind: 'verdicts' | 'admin' | 'noop' | 'raft-configuration' | 'unknown'; proposer?: string; verdicts?: IncludedVerdict[]; action?: string } | null;
}

const HEX_HASH = /^[0-9a-f]{64}$/;

/**
 * Checks an inclusion bundle offline, against the federation file alone (e.g. the answer of a node's
 * `GET /v1/swarms/{swarm}/proofs/inclusion?index=N`, which carries record, proof and checkpoint): its shape, that the
 * checkpoint is of a swarm of this federation and signed by member nodes, that the record is under its root (RFC 9162
 * §2.1.3.2), and that what the record carries verifies — every agent JWS and the proposer's node signature of a
 * verdicts entry. Admin approvals are judged by a full audit, which knows the members and rules at that index.
 */
export function checkInclusionBundle(value: unknown, federation: FederationConfig): InclusionCheck {
  const result: InclusionCheck = { ok: false, failure: null, swarm: null, index: null, size: null, root: null, signers: [], certificate: false, entry: null };
  const fail = (code: AuditErrorCode, index: number | null, message: string): InclusionCheck => ({ ...result, failure: { code, index, line: null, message } });
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('MALFORMED_BUNDLE', null, 'an inclusion bundle is a JSON object {record, proof, checkpoint}');
  const bundle = value as Record<string, unknown>;
  const recordProblem = recordShapeProblem(bundle.record);
  if (recordProblem) return fail('MALFORMED_RECORD', null, `bundle.record: ${recordProblem}`);
  const record = bundle.record as AuditRecord;
  result.swarm = record.swarm;
  result.index = record.index;
  if (bundle.checkpoint === null || bundle.checkpoint === undefined) {
    return fail('MALFORMED_BUNDLE', record.index, 'the bundle has no checkpoint: ask the node for a proof under a signed checkpoint (omit size: the latest one)');
  }
  const checkpointProblem = checkpointShapeProblem(bundle.checkpoint);
  if (checkpointProblem) return fail('CHECKPOINT_MALFORMED', null, `bundle.checkpoint: ${checkpointProblem}`);
  const checkpoint = bundle.checkpoint as Checkpoint;
  if (!Array.isArray(bundle.proof) || !bundle.proof.every((h) => typeof h === 'string' && HEX_HASH.test(h))) {
    return fail('MALFORMED_BUNDLE', record.index, 'bundle.proof must be an array of 64 lowercase hex digits each');
  }
  const proof = bundle.proof as string[];
  if (checkpoint.federation !== federation.federation || record.federation !== federation.federation) {
    return fail('WRONG_FEDERATION', record.index, `the bundle is of federation ${JSON.stringify(checkpoint.federation)} (record: ${JSON.stringify(record.federation)}), the federation file describes ${JSON.stringify(federation.federation)}`);
  }
  if (record.swarm !== checkpoint.swarm) return fail('WRONG_SWARM', record.index, `a record of swarm ${record.swarm} under a checkpoint of swarm ${checkpoint.swarm}`);
  const swarm = federation.swarms.find((s) => s.id === record.swarm);
  if (!swarm) return fail('UNKNOWN_SWARM', record.index, `swarm ${JSON.stringify(record.swarm)} is not in the federation file`);
  if (record.index > checkpoint.size) return fail('MALFORMED_BUNDLE', record.index, `record ${record.index} cannot be in a tree of size ${checkpoint.size}`);
  result.size = checkpoint.size;
  result.root = checkpoint.root;

  const keyring = Keyring.fromMembers(federation.members);
  const verification = verifyCheckpoint(checkpoint, { keyring, members: swarm.members });
  const first = verification.problems[0];
  if (first) return fail(first.code, checkpoint.size, first.message);
  if (verification.validOrgs.length === 0) return fail('CHECKPOINT_UNSIGNED', checkpoint.size, 'no valid signature');
  result.signers = verification.validOrgs;
  result.certificate = verification.certificate;
  try {
    const root = rootFromInclusionProof(record.index - 1, checkpoint.size, recordLeafHash(record), proof.map(fromHex));
    if (toHex(root) !== checkpoint.root) throw new Error(`the proof leads to root ${toHex(root)}, not ${checkpoint.root}`);
  } catch (error) {
    return fail('ROOT_MISMATCH', record.index, `record ${record.index} (hash ${recordHash(record)}): ${(error as Error).message}`);
  }

  const data = recordData(record);
  if (data.length === 0) return { ...result, ok: true, entry: { kind: 'noop' } };
  if (record.mode === 'raft' && data[0] === 1) {
    try {
      decodeConfChange(data);
      return { ...result, ok: true, entry: { kind: 'raft-configuration' } };
    } catch {
      // not a configuration entry: a command, decoded below
    }
  }
  let cmd: LogCommand;
  try {
    cmd = decodeCommand(data);
  } catch (error) {
    return fail('MALFORMED_ENTRY', record.index, `entry ${record.index}: ${(error as Error).message}`);
  }
  if (cmd.type === 'noop') return { ...result, ok: true, entry: { kind: 'noop' } };
  if (cmd.type === 'admin') return { ...result, ok: true, entry: { kind: 'admin', action: cmd.action.kind } };
  const problem = verdictsCommandProblem(cmd, swarm.id, keyring);
  if (problem) return fail(problem.code, record.index, `entry ${record.index}${problem.message}`);
  const verdicts = cmd.batch.map((jws): IncludedVerdict => {
    const { payload } = parseVerdictJws(jws);
    return { jwsHash: jwsHashOf(jws), subject: payload.subject, org: payload.org, agent: payload.agent, verdict: payload.verdict };
  });
  return { ...result, ok: true, entry: { kind: 'verdicts', proposer: cmd.proposer, verdicts } };
}

/** The outcome of checking that a later checkpoint extends an earlier one (a log monitor's check). */
export interface ConsistencyCheck {
  ok: boolean;
  failure: AuditFailure | null;
  older: { size: number; root: string; signers: string[] } | null;
  newer: { size: number; root: string; signers: string[]; certificate: boolean } | null;
}

/**
 * Checks offline that checkpoint `newer` extends checkpoint `older` (both of one swarm of this federation): each is
 * signed by member nodes (with `requireCertificates`, a pbft one carries a commit certificate), and `proof` (hex,
 * RFC 9162 order: what a node answers to GET /v1/swarms/{swarm}/proofs/consistency?from=&to=) proves the tree of the
 * older size is a prefix of the newer one under their *signed* roots. A failure means the log was rewritten or
 * shown differently to different readers (INCONSISTENT_CHECKPOINTS) — or that what was given is not what it claims.
 */
export function checkCheckpointConsistency(older: unknown, newer: unknown, proof: unknown, federation: FederationConfig, options: { requireCertificates?: boolean } = {}): ConsistencyCheck {
  const result: ConsistencyCheck = { ok: false, failure: null, older: null, newer: null };
  const fail = (code: AuditErrorCode, index: number | null, message: string): ConsistencyCheck => ({ ...result, failure: { code, index, line: null, message } });
  const checked: { size: number; root: string; signers: string[]; certificate: boolean }[] = [];
  for (const [name, value] of [['older', older], ['newer', newer]] as const) {
    const shape = checkpointShapeProblem(value);
    if (shape) return fail('CHECKPOINT_MALFORMED', null, `the ${name} checkpoint: ${shape}`);
    const cp = value as Checkpoint;
    if (cp.federation !== federation.federation) return fail('WRONG_FEDERATION', cp.size, `the ${name} checkpoint is of federation ${JSON.stringify(cp.federation)}, the federation file describes ${JSON.stringify(federation.federation)}`);
    const swarm = federation.swarms.find((s) => s.id === cp.swarm);
    if (!swarm) return fail('UNKNOWN_SWARM', cp.size, `swarm ${JSON.stringify(cp.swarm)} of the ${name} checkpoint is not in the federation file`);
    const verification = verifyCheckpoint(cp, { keyring: Keyring.fromMembers(federation.members), members: swarm.members });
    const first = verification.problems[0];
    if (first) return fail(first.code, cp.size, `the ${name} checkpoint: ${first.message}`);
    if (verification.validOrgs.length === 0) return fail('CHECKPOINT_UNSIGNED', cp.size, `the ${name} checkpoint has no valid signature`);
    if (options.requireCertificates && cp.mode === 'pbft' && !verification.certificate) {
      return fail('CHECKPOINT_NO_QUORUM', cp.size, `the ${name} checkpoint is signed by ${verification.validOrgs.length} members, a pbft commit certificate needs ${verification.quorum}`);
    }
    checked.push({ size: cp.size, root: cp.root, signers: verification.validOrgs, certificate: verification.certificate });
  }
  const [a, b] = checked as [(typeof checked)[0], (typeof checked)[0]];
  result.older = { size: a.size, root: a.root, signers: a.signers };
  result.newer = b;
  if ((older as Checkpoint).swarm !== (newer as Checkpoint).swarm) return fail('WRONG_SWARM', b.size, `checkpoints of swarms ${(older as Checkpoint).swarm} and ${(newer as Checkpoint).swarm}`);
  if (a.size > b.size) return fail('MALFORMED_PROOF', b.size, `the newer checkpoint (size ${b.size}) is smaller than the older one (size ${a.size})`);
  if (!Array.isArray(proof) || !proof.every((h) => typeof h === 'string' && HEX_HASH.test(h))) return fail('MALFORMED_PROOF', b.size, 'the consistency proof must be an array of 64 lowercase hex digits each');
  try {
    checkConsistency(a.size, b.size, fromHex(a.root), fromHex(b.root), (proof as string[]).map(fromHex));
  } catch (error) {
    return fail('INCONSISTENT_CHECKPOINTS', b.size, `the signed tree of size ${a.size} (root ${a.root}) is not a prefix of the signed tree of size ${b.size} (root ${b.root}): ${(error as Error).message}`);
  }
  return { ...result, ok: true };
}

/** Checks a bundle offline (see checkInclusionBundle): null when it verifies, else the first failure. */
export function verifyInclusionBundle(bundle: InclusionBundle, federation: FederationConfig): AuditFailure | null {
  return checkInclusionBundle(bundle, federation).failure;
}
