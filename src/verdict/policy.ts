// Swarm policies: quorum arithmetic, decision rules and when a rule can no longer be met; plus a brute-force
// reference decision used by the property tests. Pure.
import type { DecisionRule, QuorumSpec, SwarmPolicy } from '../config/types.ts';

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
