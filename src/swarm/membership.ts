// Swarm membership and governance (owned by the membership feature): the committed membership of a swarm as the
// replicated state tracks it (Raft voters + learners, and admitted-but-not-yet-joined / approved-but-not-yet-removed
// orgs) and its committed rules (decision and admin policy), what an approved admin change does to them, how a
// Raft configuration entry is recognised in the audit trail, the leader-side driver that turns a committed
// add-member / remove-member admin change into Raft conf changes (add-learner → promote, or remove), and the
// difference between what the federation file says and what the log committed (reported, never applied).
import { applyConfChange, decodeConfChange } from '../consensus/raft/confchange.ts';
import type { ConfChange, ConfState } from '../consensus/raft/types.ts';
import type { ConsensusMode, SwarmRules } from '../config/types.ts';
import { canonicalJson } from '../crypto/canonical.ts';
import type { AdminAction } from '../verdict/proposal.ts';
import { decodeAdminPolicy, decodeSwarmPolicy, validateAdminPolicy, validatePolicy } from '../verdict/policy.ts';
import type { Logger } from 'pino';

/** A committed membership change that the leader still has to carry out through Raft conf changes. */
export interface PendingMemberChange {
  /** The admin change id that approved it. */
  id: string;
  kind: 'add' | 'remove';
  org: string;
  /** Index of the entry at which the admin change took effect. */
  index: number;
}

/** The membership part of a swarm's replicated state (also in its snapshot). */
export interface MembershipState {
  /** Orgs that vote in Raft and whose agents' verdicts count (the DecisionMachine members), sorted. */
  voters: string[];
  /** Orgs that receive the log but do not vote yet (admitted, catching up), sorted. */
  learners: string[];
  /** Committed admin changes not yet carried out by conf changes, in commit order. */
  pending: PendingMemberChange[];
}

/** What /v1/status shows per swarm: the committed membership and how the federation file differs from it. */
export interface MembershipView extends MembershipState {
  /** The swarm's members as this node's federation file lists them (the operator's intent). */
  file: string[];
  /** Differences between the file and the committed membership; reported, never applied by themselves. */
  drift: string[];
}

export function emptyMembership(voters: readonly string[]): MembershipState {
  return { voters: [...new Set(voters)].sort(), learners: [], pending: [] };
}

/** Every org that may speak on this swarm's peer channels: voters, learners and admitted orgs about to join. */
export function peerOrgs(state: MembershipState): string[] {
  const orgs = new Set([...state.voters, ...state.learners]);
  for (const change of state.pending) if (change.kind === 'add') orgs.add(change.org);
  return [...orgs].sort();
}

/** The voters once every pending change is carried out: what admin checks of a further change count against. */
export function targetVoters(state: MembershipState): string[] {
  const orgs = new Set(state.voters);
  for (const change of state.pending) {
    if (change.kind === 'add') orgs.add(change.org);
    else orgs.delete(change.org);
  }
  return [...orgs].sort();
}

/**
 * A Raft configuration entry, recognised from the bytes an audit record carries: version byte 1, a type code, the
 * org id. Log commands are canonical JSON (first byte `{`) and empty entries are empty, so the two never collide;
 * the Raft driver refuses forwarded proposals that are not JSON, so no one can make a normal entry look like one.
 */
export function confChangeOfData(data: Uint8Array): ConfChange | null {
  if (data.length < 3 || data[0] !== 1) return null;
  try {
    return decodeConfChange(data);
  } catch {
    return null;
  }
}

/** Applies a committed conf change to the membership state, exactly as the Raft core applies it to its conf. */
export function applyConfToMembership(state: MembershipState, cc: ConfChange): MembershipState {
  const conf: ConfState = applyConfChange({ voters: state.voters, learners: state.learners }, cc);
  let pending = state.pending;
  if (cc.type === 'promote' && conf.voters.includes(cc.node)) pending = pending.filter((p) => !(p.kind === 'add' && p.org === cc.node));
  if (cc.type === 'remove' && !conf.voters.includes(cc.node) && !conf.learners.includes(cc.node)) pending = pending.filter((p) => !(p.kind === 'remove' && p.org === cc.node));
  return { voters: conf.voters, learners: conf.learners, pending };
}

/** What approved admin changes act on: the protocol the swarm runs, its committed membership and rules. */
export interface Governance {
  mode: ConsensusMode;
  membership: MembershipState;
  rules: SwarmRules;
}

/** The rules in their canonical key order (for comparing and storing). */
export function rulesOf(source: SwarmRules): SwarmRules {
  return { policy: source.policy, adminPolicy: source.adminPolicy };
}

export function sameRules(a: SwarmRules, b: SwarmRules): boolean {
  return canonicalJson(rulesOf(a)) === canonicalJson(rulesOf(b));
}

/** Rules read from storage, a snapshot, a peer or an export header: decoded strictly (throws naming the field). */
export function decodeRules(value: unknown, what: string): SwarmRules {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what} must be an object`);
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record).sort().join(',');
  if (keys !== 'adminPolicy,policy') throw new Error(`${what} must have exactly the members adminPolicy, policy; got ${keys}`);
  return { policy: decodeSwarmPolicy(record.policy, `${what}.policy`), adminPolicy: decodeAdminPolicy(record.adminPolicy, `${what}.adminPolicy`) };
}

/** What an approved admin change does, decided from the log alone (every replica and the auditor the same way). */
export interface AdminDecision {
  status: 'applied' | 'refused';
  reason: string;
  /** The governance after the change (equal to the input when nothing changes). */
  next: Governance;
  /**
   * True when the change ends the consensus era at its index: a mode switch, or in pbft a new replica set (PBFT has
   * no learners or joint configurations; a new era with the new replicas starts after the change's entry).
   */
  endsEra: boolean;
}

/** PBFT needs n = 3f+1 replicas with f >= 1. */
export const PBFT_MIN_MEMBERS = 4;

/**
 * Decides an admin change whose approvals met the swarm's admin policy at `index`. Pure: the replicated state
 * (SwarmState) and the offline auditor (audit/verifier) both call it, so they cannot disagree on what a change did.
 * raft: add/remove become pending and the leader carries them out with conf changes (ConfChangeDriver).
 * pbft: add/remove change the voters at once and end the era; the next era's replicas are the new voters.
 */
export function decideAdminAction(
  governance: Governance,
  action: AdminAction,
  context: { index: number; swarm: string; changeId: string },
): AdminDecision {
  const { mode, membership, rules } = governance;
  const { index, swarm } = context;
  const refuse = (reason: string): AdminDecision => ({ status: 'refused', reason, next: governance, endsEra: false });
  const unchanged = (reason: string): AdminDecision => ({ status: 'applied', reason, next: governance, endsEra: false });
  const inProgress = membership.pending[0];
  if (action.kind === 'set-policy') {
    const next = rulesOf(action);
    // Both the voters now and once pending changes are carried out must be able to meet it.
    for (const count of new Set([membership.voters.length, targetVoters(membership).length])) {
      try {
        validatePolicy(next.policy, count);
        validateAdminPolicy(next.adminPolicy, count);
      } catch (error) {
        return refuse(`swarm ${swarm} has ${count} members: ${(error as Error).message}`);
      }
    }
    if (sameRules(next, rules)) return unchanged('the swarm already has this policy');
    return {
      status: 'applied',
      reason: `policy set at index ${index}: verdicts from the next entry on are judged and decided by it (subjects decided before keep their decision)`,
      next: { ...governance, rules: next },
      endsEra: false,
    };
  }
  if (action.kind === 'set-mode') {
    if (action.mode === 'pbft' && membership.voters.length < PBFT_MIN_MEMBERS) {
      return refuse(`pbft needs at least ${PBFT_MIN_MEMBERS} members (3f+1 with f >= 1); swarm ${swarm} has ${membership.voters.length}`);
    }
    if (action.mode !== mode && inProgress) {
      return refuse(`membership change ${inProgress.id} (${inProgress.kind} ${inProgress.org}) is still under way; switch modes once it completed`);
    }
    if (action.mode === mode) return unchanged(`already in ${mode} mode`);
    return { status: 'applied', reason: `switched from ${mode} to ${action.mode} at index ${index}`, next: { ...governance, mode: action.mode }, endsEra: true };
  }
  const org = action.org;
  const target = targetVoters(membership);
  const underWay = membership.pending.find((p) => p.org === org);
  if (underWay) {
    // One change per org at a time: the leader may already have proposed the conf change of the first one.
    return refuse(`${org}'s ${underWay.kind === 'add' ? 'admission' : 'removal'} (change ${underWay.id}) is still under way; propose this again once it completed`);
  }
  if (action.kind === 'add-member') {
    if (target.includes(org)) return unchanged(`${org} is already a member`);
    if (mode === 'pbft') {
      const voters = [...membership.voters, org].sort();
      return {
        status: 'applied',
        reason: `${org} admitted at index ${index}: a new pbft era begins after it with replicas ${voters.join(', ')}; ${org} catches up by state transfer`,
        next: { ...governance, membership: { voters, learners: [], pending: [] } },
        endsEra: true,
      };
    }
    return {
      status: 'applied',
      reason: `${org} admitted at index ${index}: it joins as a learner, catches up, then becomes a voter`,
      next: { ...governance, membership: { ...membership, pending: [...membership.pending, { id: context.changeId, kind: 'add', org, index }] } },
      endsEra: false,
    };
  }
  if (!target.includes(org)) return refuse(`${org} is not a member of swarm ${swarm} (members: ${target.join(', ')})`);
  const remaining = target.length - 1;
  if (remaining < 1) return refuse(`${org} is the last member of swarm ${swarm}`);
  if (mode === 'pbft' && remaining < PBFT_MIN_MEMBERS) {
    return refuse(`without ${org} swarm ${swarm} would have ${remaining} members; pbft needs at least ${PBFT_MIN_MEMBERS}: switch it to raft first`);
  }
  try {
    validatePolicy(rules.policy, remaining);
    validateAdminPolicy(rules.adminPolicy, remaining);
  } catch (error) {
    return refuse(`without ${org} the swarm's policy could not be met: ${(error as Error).message}`);
  }
  if (mode === 'pbft') {
    const voters = membership.voters.filter((v) => v !== org);
    return {
      status: 'applied',
      reason: `${org} removed at index ${index}: a new pbft era begins after it with replicas ${voters.join(', ')}; ${org}'s certificate is refused from then on`,
      next: { ...governance, membership: { voters, learners: [], pending: [] } },
      endsEra: true,
    };
  }
  return {
    status: 'applied',
    reason:
      `${org} removed at index ${index}: the leader takes it out of the Raft configuration, then its certificate is refused; ` +
      `keep ${org}'s node running (with its data) until this change says it left the configuration — until then the others may need its vote`,
    next: { ...governance, membership: { ...membership, pending: [...membership.pending, { id: context.changeId, kind: 'remove', org, index }] } },
    endsEra: false,
  };
}

/** How the federation file's policy of a swarm differs from the committed one, human-readable ([] when equal). */
export function rulesDrift(file: SwarmRules, committed: SwarmRules): string[] {
  const drift: string[] = [];
  if (canonicalJson(file.policy) !== canonicalJson(committed.policy)) {
    drift.push(`the file's policy ${canonicalJson(file.policy)} is not the committed one ${canonicalJson(committed.policy)}: propose set-policy and have it approved (the file alone changes nothing)`);
  }
  if (canonicalJson(file.adminPolicy) !== canonicalJson(committed.adminPolicy)) {
    drift.push(`the file's adminPolicy ${canonicalJson(file.adminPolicy)} is not the committed one ${canonicalJson(committed.adminPolicy)}: propose set-policy and have it approved`);
  }
  return drift;
}

/** Human-readable differences between the federation file's member list of a swarm and its committed membership. */
export function membershipDrift(file: readonly string[], state: MembershipState, knownOrgs: readonly string[]): string[] {
  const drift: string[] = [];
  const fileSet = new Set(file);
  const committed = new Set([...state.voters, ...state.learners]);
  for (const org of file) {
    if (committed.has(org)) continue;
    const pending = state.pending.find((p) => p.kind === 'add' && p.org === org);
    drift.push(
      pending
        ? `${org} is in the file and was admitted by change ${pending.id} at index ${pending.index}; it is not a voter yet`
        : `${org} is in the file but not a committed member: propose add-member and have it approved (the file alone changes nothing)`,
    );
  }
  for (const org of committed) {
    if (fileSet.has(org)) continue;
    const pending = state.pending.find((p) => p.kind === 'remove' && p.org === org);
    drift.push(
      pending
        ? `${org} is not in the file; its removal (change ${pending.id}) is committed and under way`
        : `${org} is a committed ${state.voters.includes(org) ? 'voter' : 'learner'} but not in the file: propose remove-member, or add it back to the file`,
    );
  }
  for (const org of [...committed, ...state.pending.filter((p) => p.kind === 'add').map((p) => p.org)]) {
    if (!knownOrgs.includes(org)) drift.push(`${org} is a member of the swarm but has no member card under members: this node cannot reach it or verify its signatures`);
  }
  return [...new Set(drift)];
}

/** What the driver needs from the Raft engine of the current era (RaftSwarm has these). */
export interface ConfDriverEngine {
  isLeader(): boolean;
  conf(): { voters: string[]; learners: string[] };
  /** Proposes one conf change; the answer's code says why it was refused (CONF_CHANGE_PENDING, LEARNER_BEHIND, ...). */
  proposeConfChange(change: ConfChange): { ok: true } | { ok: false; code: string };
  /** Snapshot and compact now, so a joining learner with an empty log is sent a snapshot (which carries the conf). */
  requestSnapshot(): void;
  /** Log index up to which the log is compacted (0 when never). */
  snapshotIndex(): number;
  transferLeadership(to: string): void;
}

export interface ConfDriverOptions {
  self: string;
  swarm: string;
  logger: Logger;
  /** The committed membership as the state applied it. */
  membership: () => MembershipState;
  /** The engine when the swarm runs raft now, else null (membership changes are raft-only). */
  engine: () => ConfDriverEngine | null;
  /** Orgs whose member card this node's federation file holds. */
  knownOrgs: () => readonly string[];
  /** Milliseconds between steps (default 100). */
  intervalMs?: number;
}

/**
 * Runs on every node, acts only on the leader: carries out the first pending membership change, one conf change at
 * a time (the core allows one at a time). add: add-learner (after a fresh snapshot, so the newcomer is sent one),
 * then promote once the learner caught up (LEARNER_BEHIND and CONF_CHANGE_PENDING are retried on the next step).
 * remove: the leader hands leadership away first when it is the one removed, then proposes remove.
 */
export class ConfChangeDriver {
  private timer: NodeJS.Timeout | null = null;
  private readonly warned = new Set<string>();
  private lastRefusal = '';
  private snapshotAskedFor = '';

  constructor(private readonly options: ConfDriverOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.step(), this.options.intervalMs ?? 100);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One attempt to move the first pending change forward; public for tests. */
  step(): void {
    const engine = this.options.engine();
    if (!engine || !engine.isLeader()) return;
    const next = this.options.membership().pending[0];
    if (!next) return;
    const conf = engine.conf();
    const { logger } = this.options;
    let change: ConfChange | null = null;
    if (next.kind === 'add') {
      if (!this.options.knownOrgs().includes(next.org)) {
        this.warnOnce(`unknown:${next.id}`, `org ${next.org} was admitted to swarm ${this.options.swarm} (change ${next.id}) but this leader's federation file has no member card for it: add the card and reload`);
        return;
      }
      if (conf.voters.includes(next.org)) return; // the promote entry is committed; the state catches up when it applies it
      if (conf.learners.includes(next.org)) change = { type: 'promote', node: next.org };
      else {
        // A newcomer has an empty log: make sure the leader's log starts after a real snapshot, so the newcomer
        // receives the state (with the membership) instead of entries from index 1 replayed on its own bootstrap conf.
        if (this.snapshotAskedFor !== next.id) {
          this.snapshotAskedFor = next.id;
          engine.requestSnapshot();
          return;
        }
        if (engine.snapshotIndex() === 0) {
          engine.requestSnapshot();
          return;
        }
        change = { type: 'add-learner', node: next.org };
      }
    } else {
      if (!conf.voters.includes(next.org) && !conf.learners.includes(next.org)) return;
      if (next.org === this.options.self && conf.voters.length > 1) {
        const to = conf.voters.find((org) => org !== this.options.self)!;
        this.warnOnce(`transfer:${next.id}`, `this node's org ${next.org} is being removed from swarm ${this.options.swarm}: handing leadership to ${to} first`, 'info');
        engine.transferLeadership(to);
        return;
      }
      change = { type: 'remove', node: next.org };
    }
    const result = engine.proposeConfChange(change);
    if (result.ok) {
      this.lastRefusal = '';
      logger.info({ swarm: this.options.swarm, change: next.id, conf: change }, `membership: proposed ${change.type} ${change.node}`);
    } else if (result.code !== this.lastRefusal) {
      this.lastRefusal = result.code;
      logger.debug({ swarm: this.options.swarm, change: next.id, conf: change, code: result.code }, `membership: ${change.type} ${change.node} not proposed yet (${result.code}); retrying`);
    }
  }

  private warnOnce(key: string, message: string, level: 'warn' | 'info' = 'warn'): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.options.logger[level]({ swarm: this.options.swarm }, message);
  }
}
