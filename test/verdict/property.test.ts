// Property: for random interleavings of verdicts from orgs, every replica applying the same log reaches the same
// decisions and the same state digest, and the decisions equal the brute-force reference function.
import { describe, expect, it } from 'vitest';
import type { DecisionRule, QuorumSpec, SwarmPolicy } from '../../src/config/types.ts';
import { toHex } from '../../src/crypto/encoding.ts';
import { DecisionMachine } from '../../src/verdict/machine.ts';
import { referenceDecision, validatePolicy, type CastVote } from '../../src/verdict/policy.ts';
import { decodeCommand, encodeCommand, signProposal, type LogCommand } from '../../src/verdict/proposal.ts';
import { makeFederation, makeSwarm, verdictOf } from './fixtures.ts';
import { seededRandom } from '../../src/sim/prng.ts';


const ALL_ORGS = ['o1', 'o2', 'o3', 'o4', 'o5', 'o6'];
const fed = makeFederation(ALL_ORGS);
const VALUES = ['approve', 'request-changes', 'reject'];
const RUNS = 300;

function randomPolicy(rand: () => number, members: number): SwarmPolicy {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;
  const quorum: QuorumSpec = pick<QuorumSpec>(['majority', 'all', 1 + Math.floor(rand() * members)]);
  const rule: DecisionRule = pick<DecisionRule>([
    { kind: 'majority' },
    { kind: 'unanimity' },
    { kind: 'threshold', value: pick(VALUES), count: 1 + Math.floor(rand() * members) },
  ]);
  return { values: VALUES, quorum, rule, fallback: rand() < 0.5 ? null : pick(VALUES), maxClockSkewSeconds: 300 };
}

interface Scenario {
  seed: number;
  members: string[];
  policy: SwarmPolicy;
  log: { index: number; bytes: Uint8Array }[];
  /** Per subject, the distinct verdicts in the order they enter the log. */
  votes: Map<string, (CastVote & { index: number })[]>;
}

function scenario(seed: number): Scenario {
  const rand = seededRandom(seed);
  const memberCount = 3 + Math.floor(rand() * 3);
  const members = [...ALL_ORGS].sort(() => rand() - 0.5).slice(0, memberCount).sort();
  const policy = randomPolicy(rand, memberCount);
  validatePolicy(policy, memberCount);
  const subjects = ['pr-1', 'pr-2', 'pr-3'].slice(0, 1 + Math.floor(rand() * 3));
  const sent: string[] = [];
  const votes = new Map<string, (CastVote & { index: number })[]>();
  const seen = new Set<string>();
  const log: Scenario['log'] = [];
  let index = 0;
  const verdictCount = 4 + Math.floor(rand() * 14);
  let pending: { jws: string; vote: CastVote & { subject: string } | null }[] = [];
  const flush = () => {
    if (pending.length === 0) return;
    index++;
    const proposer = members[Math.floor(rand() * members.length)]!;
    const cmd: LogCommand = signProposal('s1', proposer, pending.map((p) => p.jws), fed.keys[proposer]!.node);
    log.push({ index, bytes: encodeCommand(cmd) });
    for (const p of pending) {
      if (!p.vote || seen.has(p.jws)) continue;
      seen.add(p.jws);
      const list = votes.get(p.vote.subject) ?? [];
      list.push({ org: p.vote.org, verdict: p.vote.verdict, index });
      votes.set(p.vote.subject, list);
    }
    pending = [];
    if (rand() < 0.2) log.push({ index: ++index, bytes: encodeCommand({ v: 1, type: 'noop' }) });
  };
  for (let i = 0; i < verdictCount; i++) {
    const r = rand();
    if (r < 0.1 && sent.length > 0) {
      pending.push({ jws: sent[Math.floor(rand() * sent.length)]!, vote: null }); // a resubmission
    } else {
      const outsider = r < 0.15;
      const org = outsider ? ALL_ORGS.find((o) => !members.includes(o)) ?? members[0]! : members[Math.floor(rand() * members.length)]!;
      const subject = subjects[Math.floor(rand() * subjects.length)]!;
      const verdict = VALUES[Math.floor(rand() * VALUES.length)]!;
      const jws = verdictOf(fed, org, { subject, verdict });
      sent.push(jws);
      pending.push({ jws, vote: { org, verdict, subject } });
    }
    if (rand() < 0.5) flush();
  }
  flush();
  return { seed, members, policy, log, votes };
}

function replay(s: Scenario, verify: boolean, restartAt: number | null): DecisionMachine {
  const swarm = makeSwarm('s1', s.members, s.policy);
  let machine = new DecisionMachine(swarm, fed.keyring);
  for (const [i, entry] of s.log.entries()) {
    if (i === restartAt) machine = DecisionMachine.restore(swarm, fed.keyring, machine.snapshot());
    machine.apply(entry.index, decodeCommand(entry.bytes), { verifyAgentSignatures: verify });
  }
  return machine;
}

describe('decisions are deterministic and match the reference', () => {
  it(`${RUNS} seeded interleavings: three replicas agree with each other and with referenceDecision`, () => {
    let decided = 0;
    for (let seed = 1; seed <= RUNS; seed++) {
      const s = scenario(seed);
      const replicas = [replay(s, true, null), replay(s, false, null), replay(s, false, Math.floor(s.log.length / 2))];
      const digests = replicas.map((m) => toHex(m.stateDigest()));
      expect(new Set(digests).size, `seed ${seed}: replica digests differ`).toBe(1);
      for (const [subject, list] of s.votes) {
        const expected = referenceDecision(s.policy, s.members, list);
        for (const machine of replicas) {
          const got = machine.subject(subject)?.decision ?? null;
          const want = expected && { value: expected.value, by: expected.by, votes: expected.votes, index: list[expected.at]!.index };
          expect(got, `seed ${seed} subject ${subject} policy ${JSON.stringify(s.policy)} members ${s.members} votes ${JSON.stringify(list)}`).toEqual(want);
        }
        if (expected) decided++;
      }
    }
    // the generator must exercise decisions, not only undecided subjects
    expect(decided).toBeGreaterThan(RUNS / 2);
  });
});
