// Swarm policies: quorum arithmetic, decision rules and when a rule can no longer be met; the strict decoding of a
// policy carried in the log (set-policy changes, genesis records); plus a brute-force reference decision used by the
// property tests. Pure.
import type { AdminPolicy, DecisionRule, QuorumSpec, SwarmPolicy } from '../config/types.ts';

/** The decision value when the rule can no longer be met and the policy names no fallback. */
export const NO_CONSENSUS = 'no-consensus';

export type DecisionBasis = 'rule' | 'fallback' | 'no-consensus';

export interface PolicyDecision {
  value: string;
  by: DecisionBasis;
}

export interface CastVote {
  org: string;
  verdict: string;
}

/** Refuses a policy that could never decide or that names values it does not allow. */
export function validatePolicy(policy: SwarmPolicy, memberCount: number): void {
  const problems: string[] = [];
  if (policy.values.length === 0) problems.push('values is empty');
  if (new Set(policy.values).size !== policy.values.length) problems.push('values lists a value twice');
  if (typeof policy.quorum === 'number' && (!Number.isSafeInteger(policy.quorum) || policy.quorum < 1 || policy.quorum > memberCount)) {
    problems.push(`quorum ${policy.quorum} is not between 1 and the ${memberCount} members`);
  }
  const rule = policy.rule;
  if (rule.kind === 'threshold') {
    if (!policy.values.includes(rule.value)) problems.push(`threshold value ${JSON.stringify(rule.value)} is not among the values`);
    if (!Number.isSafeInteger(rule.count) || rule.count < 1 || rule.count > memberCount) {
      problems.push(`threshold count ${rule.count} is not between 1 and the ${memberCount} members`);
    }
  }
  if (policy.fallback !== null && !policy.values.includes(policy.fallback)) {
    problems.push(`fallback ${JSON.stringify(policy.fallback)} is not among the values`);
  }
  if (problems.length > 0) throw new Error(`invalid swarm policy: ${problems.join('; ')}`);
}

/** Verdict values: what the federation file accepts (config/load.ts), checked again on policies read from the log. */
export const POLICY_VALUE_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function hasExactly(record: Record<string, unknown>, keys: readonly string[], what: string): void {
  const actual = Object.keys(record).sort().join(', ');
  const expected = [...keys].sort().join(', ');
  if (actual !== expected) throw new Error(`${what} must have exactly the members ${expected}; got ${actual}`);
}

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 1;

/**
 * A swarm policy in its typed JSON shape (as a set-policy change or a genesis carries it), checked member by member;
 * throws naming the field. Whether its counts fit the swarm is validatePolicy's business, at the index it applies.
 */
export function decodeSwarmPolicy(value: unknown, what = 'policy'): SwarmPolicy {
  if (!isRecord(value)) throw new Error(`${what} must be an object`);
  hasExactly(value, ['values', 'quorum', 'rule', 'fallback', 'maxClockSkewSeconds'], what);
  const { values, quorum, rule, fallback, maxClockSkewSeconds } = value;
  if (!Array.isArray(values) || values.length === 0 || values.length > 64 || !values.every((v) => typeof v === 'string' && POLICY_VALUE_PATTERN.test(v))) {
    throw new Error(`${what}.values must list 1 to 64 values of lowercase letters, digits, dashes or underscores`);
  }
  if (quorum !== 'majority' && quorum !== 'all' && !isCount(quorum)) throw new Error(`${what}.quorum must be "majority", "all" or a whole number ≥ 1`);
  let decodedRule: DecisionRule;
  if (!isRecord(rule)) throw new Error(`${what}.rule must be an object`);
  if (rule.kind === 'majority' || rule.kind === 'unanimity') {
    hasExactly(rule, ['kind'], `${what}.rule`);
    decodedRule = { kind: rule.kind };
  } else if (rule.kind === 'threshold') {
    hasExactly(rule, ['kind', 'value', 'count'], `${what}.rule`);
    if (typeof rule.value !== 'string' || !isCount(rule.count)) throw new Error(`${what}.rule must be {kind: threshold, value: string, count: whole number ≥ 1}`);
    decodedRule = { kind: 'threshold', value: rule.value, count: rule.count };
  } else throw new Error(`${what}.rule.kind must be majority, unanimity or threshold`);
  if (fallback !== null && typeof fallback !== 'string') throw new Error(`${what}.fallback must be a value or null`);
  if (!isCount(maxClockSkewSeconds) || maxClockSkewSeconds > 86_400) throw new Error(`${what}.maxClockSkewSeconds must be whole seconds between 1 and 86400`);
  const policy: SwarmPolicy = { values: [...(values as string[])], quorum: quorum as QuorumSpec, rule: decodedRule, fallback, maxClockSkewSeconds };
  validatePolicy(policy, Number.MAX_SAFE_INTEGER);
  return policy;
}

/** An admin policy in its JSON shape: "majority", "two-thirds", "all" or a whole number ≥ 1. */
export function decodeAdminPolicy(value: unknown, what = 'adminPolicy'): AdminPolicy {
  if (value === 'majority' || value === 'two-thirds' || value === 'all' || isCount(value)) return value;
  throw new Error(`${what} must be "majority", "two-thirds", "all" or a whole number ≥ 1`);
}

/** Refuses an admin policy that names more approvals than the swarm has members (no change could pass). */
export function validateAdminPolicy(policy: AdminPolicy, memberCount: number): void {
  if (typeof policy === 'number' && policy > memberCount) throw new Error(`invalid admin policy: ${policy} approvals, but the swarm has ${memberCount} members`);
}

/** How many orgs must have voted before the rule is evaluated. `majority` is more than half of the members. */
export function quorumSize(quorum: QuorumSpec, memberCount: number): number {
  if (quorum === 'all') return memberCount;
  if (quorum === 'majority') return Math.floor(memberCount / 2) + 1;
  return quorum;
}

/** Counts per value, in a Map keyed by value. */
function tally(votes: readonly CastVote[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const vote of votes) counts.set(vote.verdict, (counts.get(vote.verdict) ?? 0) + 1);
  return counts;
}

/** The value the rule selects from the votes cast, or null if the rule is not met. */
export function ruleMet(rule: DecisionRule, votes: readonly CastVote[]): string | null {
  if (votes.length === 0) return null;
  const counts = tally(votes);
  switch (rule.kind) {
    case 'majority':
      for (const [value, count] of counts) if (2 * count > votes.length) return value;
      return null;
    case 'unanimity':
      return counts.size === 1 ? votes[0]!.verdict : null;
    case 'threshold':
      return (counts.get(rule.value) ?? 0) >= rule.count ? rule.value : null;
  }
}

/**
 * Whether the rule could still be met if some of the `remaining` orgs that have not voted yet vote, assuming the
 * votes already cast stand. majority: some value v with 2·(c_v + r) > cast + r; unanimity: no two different
 * values cast; threshold: c_value + r >= count.
 */
export function ruleReachable(rule: DecisionRule, votes: readonly CastVote[], remaining: number): boolean {
  const counts = tally(votes);
  switch (rule.kind) {
    case 'majority': {
      if (remaining > 0 && votes.length < remaining) return true; // a fresh value voted by all the rest wins
      for (const count of counts.values()) if (2 * (count + remaining) > votes.length + remaining) return true;
      return false;
    }
    case 'unanimity':
      return counts.size <= 1;
    case 'threshold':
      return (counts.get(rule.value) ?? 0) + remaining >= rule.count;
  }
}

/**
 * The decision of a policy given the current votes (one per org) among `memberCount` orgs, or null while undecided.
 * Nothing is decided before the quorum has voted. Then: the rule's value if it is met; else, if the rule can no
 * longer be met (ruleReachable), the fallback or NO_CONSENSUS; else wait for more votes.
 */
export function evaluatePolicy(policy: SwarmPolicy, memberCount: number, votes: readonly CastVote[]): PolicyDecision | null {
  if (votes.length < quorumSize(policy.quorum, memberCount)) return null;
  const value = ruleMet(policy.rule, votes);
  if (value !== null) return { value, by: 'rule' };
  if (ruleReachable(policy.rule, votes, memberCount - votes.length)) return null;
  return policy.fallback !== null ? { value: policy.fallback, by: 'fallback' } : { value: NO_CONSENSUS, by: 'no-consensus' };
}

export interface ReferenceDecision extends PolicyDecision {
  /** 0-based position in votesInOrder of the vote that decided. */
  at: number;
  /** Votes counted when it was decided. */
  votes: number;
}

/**
 * The straightforward reference for property tests: replay votes in order, keep the last vote of each member org
 * (ignore non-members and values outside the policy), and after each vote decide by brute force: the rule met on
 * the votes now, or, with no way left — trying every way the orgs that have not voted could still vote, including
 * not at all — to meet it, the fallback. Exponential in the silent orgs: for small test swarms only.
 */
export function referenceDecision(policy: SwarmPolicy, orgs: readonly string[], votesInOrder: readonly CastVote[]): ReferenceDecision | null {
  const current = new Map<string, string>();
  for (let at = 0; at < votesInOrder.length; at++) {
    const vote = votesInOrder[at]!;
    if (!orgs.includes(vote.org) || !policy.values.includes(vote.verdict)) continue;
    current.set(vote.org, vote.verdict);
    const cast = [...current].map(([org, verdict]) => ({ org, verdict }));
    const quorum = policy.quorum === 'all' ? orgs.length : policy.quorum === 'majority' ? Math.floor(orgs.length / 2) + 1 : policy.quorum;
    if (cast.length < quorum) continue;
    const met = naiveRule(policy.rule, cast);
    if (met !== null) return { value: met, by: 'rule', at, votes: cast.length };
    const silent = orgs.filter((org) => !current.has(org));
    if (!someFutureMeets(policy, cast, silent)) {
      return policy.fallback !== null
        ? { value: policy.fallback, by: 'fallback', at, votes: cast.length }
        : { value: NO_CONSENSUS, by: 'no-consensus', at, votes: cast.length };
    }
  }
  return null;
}

function naiveRule(rule: DecisionRule, cast: readonly CastVote[]): string | null {
  const values = cast.map((vote) => vote.verdict);
  if (rule.kind === 'majority') return values.find((v) => values.filter((w) => w === v).length * 2 > values.length) ?? null;
  if (rule.kind === 'unanimity') return values.every((v) => v === values[0]) ? values[0]! : null;
  return values.filter((v) => v === rule.value).length >= rule.count ? rule.value : null;
}

function someFutureMeets(policy: SwarmPolicy, cast: readonly CastVote[], silent: readonly string[]): boolean {
  if (silent.length === 0) return false;
  const [first, ...rest] = silent as [string, ...string[]];
  if (someFutureMeets(policy, cast, rest)) return true; // `first` stays silent
  for (const value of policy.values) {
    const next = [...cast, { org: first, verdict: value }];
    if (naiveRule(policy.rule, next) !== null || someFutureMeets(policy, next, rest)) return true;
  }
  return false;
}
