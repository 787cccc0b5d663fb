// The decision state machine: quorum, rules, fallback, one vote per org, replacement, decided-already, duplicates,
// snapshots and digests.
import { describe, expect, it } from 'vitest';
import type { SwarmPolicy } from '../../src/config/types.ts';
import { toHex } from '../../src/crypto/encoding.ts';
import { DecisionMachine, type ApplyOutcome } from '../../src/verdict/machine.ts';
import { NO_CONSENSUS, quorumSize, validatePolicy } from '../../src/verdict/policy.ts';
import { signProposal } from '../../src/verdict/proposal.ts';
import { makeFederation, makeSwarm, verdictOf, type Federation } from './fixtures.ts';

const ORGS = ['a', 'b', 'c', 'd', 'e'];
const fed = makeFederation(ORGS);

class Harness {
  readonly machine: DecisionMachine;
  private index = 0;
  constructor(
    readonly fed: Federation,
    policy: Partial<SwarmPolicy>,
    members = ORGS,
  ) {
    this.machine = new DecisionMachine(makeSwarm('s1', members, policy), fed.keyring);
  }
  /** One proposal by `a` carrying the given verdicts. */
  batch(...jws: string[]): ApplyOutcome[] {
    return this.machine.apply(++this.index, signProposal('s1', 'a', jws, this.fed.keys.a!.node), { verifyAgentSignatures: true });
  }
  vote(org: string, verdict: string, subject = 'pr-1'): ApplyOutcome {
    return this.batch(verdictOf(this.fed, org, { subject, verdict }))[0]!;
  }
  decision(subject = 'pr-1') {
    return this.machine.subject(subject)?.decision ?? null;
  }
}

describe('quorum', () => {
  it('majority of five is three; all is five; a count is itself', () => {
    expect(quorumSize('majority', 5)).toBe(3);
    expect(quorumSize('majority', 4)).toBe(3);
    expect(quorumSize('all', 5)).toBe(5);
    expect(quorumSize(2, 5)).toBe(2);
  });

  it('nothing is decided before the quorum has voted, even a unanimous start', () => {
    const h = new Harness(fed, { quorum: 3 });
    expect(h.vote('a', 'approve').status).toBe('recorded');
    expect(h.vote('b', 'approve').status).toBe('recorded');
    expect(h.decision()).toBeNull();
    expect(h.vote('c', 'approve')).toMatchObject({ status: 'decision', decision: { value: 'approve', votes: 3, index: 3, by: 'rule' } });
  });

  it('quorum all waits for every org', () => {
    const h = new Harness(fed, { quorum: 'all' });
    for (const org of ['a', 'b', 'c', 'd']) expect(h.vote(org, 'approve').status).toBe('recorded');
    expect(h.vote('e', 'reject')).toMatchObject({ status: 'decision', decision: { value: 'approve', votes: 5 } });
  });

  it('quorum majority decides at the third of five', () => {
    const h = new Harness(fed, { quorum: 'majority' });
    h.vote('a', 'reject');
    h.vote('b', 'reject');
    expect(h.vote('c', 'reject')).toMatchObject({ status: 'decision', decision: { value: 'reject', votes: 3 } });
  });
});

describe('rules', () => {
  it('majority: strictly more than half of the votes cast; a tie waits for more votes', () => {
    const h = new Harness(fed, { quorum: 2 });
    h.vote('a', 'approve');
    expect(h.vote('b', 'reject').status).toBe('recorded'); // 1-1 is no majority
    expect(h.vote('c', 'approve')).toMatchObject({ status: 'decision', decision: { value: 'approve', votes: 3 } });
  });

  it('majority: when no value can reach a majority any more, the fallback is decided', () => {
    const h = new Harness(fed, { quorum: 'all', fallback: 'request-changes' }, ['a', 'b', 'c']);
    h.vote('a', 'approve');
    h.vote('b', 'reject');
    expect(h.vote('c', 'request-changes')).toMatchObject({ status: 'decision', decision: { value: 'request-changes', by: 'fallback' } });
  });

  it('majority: with no fallback, a hopeless split decides no-consensus', () => {
    const h = new Harness(fed, { quorum: 4 }, ['a', 'b', 'c', 'd', 'e']);
    h.vote('a', 'approve');
    h.vote('b', 'approve');
    h.vote('c', 'reject');
    // 2-1-1 with one org left: approve could still reach 3 of 5
    expect(h.vote('d', 'request-changes').status).toBe('recorded');
    expect(h.vote('e', 'reject')).toMatchObject({ status: 'decision', decision: { value: NO_CONSENSUS, by: 'no-consensus', votes: 5 } });
  });

  it('unanimity: every vote the same decides it; one dissent decides the fallback at quorum', () => {
    const ok = new Harness(fed, { quorum: 3, rule: { kind: 'unanimity' }, fallback: 'reject' });
    ok.vote('a', 'approve');
    ok.vote('b', 'approve');
    expect(ok.vote('c', 'approve')).toMatchObject({ status: 'decision', decision: { value: 'approve', by: 'rule' } });

    const broken = new Harness(fed, { quorum: 3, rule: { kind: 'unanimity' }, fallback: 'reject' });
    broken.vote('a', 'approve');
    expect(broken.vote('b', 'request-changes').status).toBe('recorded'); // below quorum: wait (a vote may still change)
    expect(broken.vote('c', 'approve')).toMatchObject({ status: 'decision', decision: { value: 'reject', by: 'fallback' } });
  });

  it('threshold: k orgs on the value decide it; when k can no longer be reached, the fallback', () => {
    const h = new Harness(fed, { quorum: 2, rule: { kind: 'threshold', value: 'approve', count: 3 }, fallback: 'reject' });
    h.vote('a', 'approve');
    h.vote('b', 'approve');
    expect(h.vote('c', 'reject').status).toBe('recorded');
    expect(h.vote('d', 'approve')).toMatchObject({ status: 'decision', decision: { value: 'approve', votes: 4 } });

    const lost = new Harness(fed, { quorum: 2, rule: { kind: 'threshold', value: 'approve', count: 3 }, fallback: 'reject' });
    lost.vote('a', 'reject');
    lost.vote('b', 'reject');
    expect(lost.vote('c', 'reject')).toMatchObject({ status: 'decision', decision: { value: 'reject', by: 'fallback', votes: 3 } });
  });

  it('a policy that could never decide is refused', () => {
    expect(() => validatePolicy(makeSwarm('s', ORGS, { quorum: 6 }).policy, 5)).toThrow(/quorum 6/);
    expect(() => validatePolicy(makeSwarm('s', ORGS, { rule: { kind: 'threshold', value: 'ship', count: 2 } }).policy, 5)).toThrow(/threshold value/);
    expect(() => validatePolicy(makeSwarm('s', ORGS, { fallback: 'maybe' }).policy, 5)).toThrow(/fallback/);
    expect(() => new DecisionMachine(makeSwarm('s', ORGS, { values: [] }), fed.keyring)).toThrow(/values is empty/);
  });
});

describe('one vote per org per subject', () => {
  it('a later verdict from the same org before the decision replaces the earlier one', () => {
    const h = new Harness(fed, { quorum: 3 });
    const first = h.vote('a', 'reject');
    const second = h.vote('a', 'approve');
    expect(second).toMatchObject({ status: 'replaced', replaced: first.jwsHash });
    expect(h.machine.subject('pr-1')!.votes).toEqual([expect.objectContaining({ org: 'a', verdict: 'approve', jwsHash: second.jwsHash })]);
    h.vote('b', 'approve');
    expect(h.vote('c', 'reject')).toMatchObject({ status: 'decision', decision: { value: 'approve', votes: 3 } });
  });

  it('once decided, the decision never changes; later verdicts are decided-already and answered with it', () => {
    const h = new Harness(fed, { quorum: 2 });
    h.vote('a', 'approve');
    const decided = h.vote('b', 'approve');
    expect(decided.status).toBe('decision');
    const late = h.vote('a', 'reject');
    expect(late).toMatchObject({ status: 'decided-already', decision: decided.decision });
    const lateNew = h.vote('c', 'reject');
    expect(lateNew).toMatchObject({ status: 'decided-already', decision: { value: 'approve', index: decided.index } });
    const state = h.machine.subject('pr-1')!;
    expect(state.decision).toEqual(decided.decision);
    expect(state.votes.map((v) => `${v.org}:${v.verdict}`)).toEqual(['a:approve', 'b:approve']);
    expect(state.late.map((v) => `${v.org}:${v.verdict}`)).toEqual(['a:reject', 'c:reject']);
    expect(h.machine.lookupVerdict(lateNew.jwsHash)).toEqual({ index: lateNew.index, subject: 'pr-1' });
  });

  it('the identical JWS applied again is a duplicate pointing at its first entry, in another batch or the same one', () => {
    const h = new Harness(fed, { quorum: 3 });
    const jws = verdictOf(fed, 'a', { subject: 'pr-1', verdict: 'approve' });
    const [first, again] = h.batch(jws, jws);
    expect(first).toMatchObject({ status: 'recorded', index: 1 });
    expect(again).toMatchObject({ status: 'duplicate', index: 1, jwsHash: first!.jwsHash, subject: 'pr-1' });
    const before = toHex(h.machine.stateDigest());
    expect(h.batch(jws)[0]).toMatchObject({ status: 'duplicate', index: 1 });
    expect(h.machine.subject('pr-1')!.votes).toHaveLength(1);
    expect(h.machine.lookupVerdict(first!.jwsHash)).toEqual({ index: 1, subject: 'pr-1' });
    // only the applied index moved
    expect(toHex(h.machine.stateDigest())).not.toBe(before);
  });

  it('a duplicate of a verdict on a decided subject carries the decision', () => {
    const h = new Harness(fed, { quorum: 1 });
    const jws = verdictOf(fed, 'a', { subject: 'pr-9', verdict: 'approve' });
    expect(h.batch(jws)[0]!.status).toBe('decision');
    expect(h.batch(jws)[0]).toMatchObject({ status: 'duplicate', decision: { value: 'approve' } });
  });

  it('subjects are independent', () => {
    const h = new Harness(fed, { quorum: 2 });
    h.vote('a', 'approve', 'x');
    h.vote('a', 'reject', 'y');
    expect(h.vote('b', 'approve', 'x').status).toBe('decision');
    expect(h.vote('b', 'reject', 'y')).toMatchObject({ status: 'decision', decision: { value: 'reject' } });
    expect(h.machine.subjectCount()).toBe(2);
  });

  it('rejected verdicts change nothing but the applied index', () => {
    const h = new Harness(fed, { quorum: 2 }, ['a', 'b', 'c']);
    const outsider = verdictOf(fed, 'e', { subject: 'pr-1', verdict: 'approve' });
    const badValue = verdictOf(fed, 'a', { subject: 'pr-1', verdict: 'ship-it' });
    const outcomes = h.batch(outsider, badValue, 'garbage');
    expect(outcomes.map((o) => o.code)).toEqual(['ORG_NOT_IN_SWARM', 'VALUE_NOT_ALLOWED', 'MALFORMED_JWS']);
    expect(h.machine.subject('pr-1')).toBeUndefined();
    expect(h.machine.lookupVerdict(outcomes[0]!.jwsHash)).toBeUndefined();
  });

  it('apply refuses an index that does not move forward', () => {
    const h = new Harness(fed, { quorum: 2 });
    h.vote('a', 'approve');
    expect(() => h.machine.apply(1, { v: 1, type: 'noop' }, { verifyAgentSignatures: false })).toThrow(/invariant/);
    expect(h.machine.apply(5, { v: 1, type: 'noop' }, { verifyAgentSignatures: false })).toEqual([]);
    expect(h.machine.appliedIndex).toBe(5);
  });
});

describe('snapshot and digest', () => {
  function populated(): Harness {
    const h = new Harness(fed, { quorum: 3 });
    h.vote('a', 'approve', 'pr-2');
    h.vote('c', 'reject', 'pr-1');
    h.vote('b', 'approve', 'pr-2');
    h.vote('a', 'reject', 'pr-1');
    h.vote('a', 'approve', 'pr-1'); // replaces
    h.vote('d', 'approve', 'pr-2'); // decides pr-2
    h.vote('e', 'reject', 'pr-2'); // decided-already
    return h;
  }

  it('restore gives an equal machine: same snapshot bytes, digest, subjects, lookups, and it keeps applying', () => {
    const h = populated();
    const bytes = h.machine.snapshot();
    const restored = DecisionMachine.restore(h.machine.swarm, fed.keyring, bytes);
    expect(restored.snapshot()).toEqual(bytes);
    expect(toHex(restored.stateDigest())).toBe(toHex(h.machine.stateDigest()));
    expect(restored.subject('pr-1')).toEqual(h.machine.subject('pr-1'));
    expect(restored.subject('pr-2')).toEqual(h.machine.subject('pr-2'));
    expect(restored.appliedIndex).toBe(h.machine.appliedIndex);
    const next = signProposal('s1', 'b', [verdictOf(fed, 'b', { subject: 'pr-1', verdict: 'approve' })], fed.keys.b!.node);
    const o1 = h.machine.apply(100, next, { verifyAgentSignatures: true });
    const o2 = restored.apply(100, next, { verifyAgentSignatures: false });
    expect(o2).toEqual(o1);
    expect(toHex(restored.stateDigest())).toBe(toHex(h.machine.stateDigest()));
  });

  it('the digest does not depend on the order subjects or votes were first seen, only on the state', () => {
    const x1 = verdictOf(fed, 'a', { subject: 'x', verdict: 'approve' });
    const y1 = verdictOf(fed, 'b', { subject: 'y', verdict: 'approve' });
    const m1 = new Harness(fed, { quorum: 5 });
    const m2 = new Harness(fed, { quorum: 5 });
    m1.batch(x1, y1);
    m2.batch(y1, x1);
    expect(toHex(m1.machine.stateDigest())).toBe(toHex(m2.machine.stateDigest()));
    expect(new TextDecoder().decode(m1.machine.snapshot())).toMatch(/^\{"appliedIndex":1,"nonces":\[/);
  });

  it('restore refuses a snapshot of another swarm', () => {
    const h = populated();
    expect(() => DecisionMachine.restore(makeSwarm('s2', ORGS), fed.keyring, h.machine.snapshot())).toThrow(/swarm s2/);
  });

  it('restore refuses bytes that are not a canonical snapshot', () => {
    const h = populated();
    const text = new TextDecoder().decode(h.machine.snapshot());
    const reordered = new TextEncoder().encode(text.replace('"appliedIndex":7,', '').replace(/\}$/, ',"appliedIndex":7}'));
    expect(() => DecisionMachine.restore(h.machine.swarm, fed.keyring, reordered)).toThrow(/canonical/);
    expect(() => DecisionMachine.restore(h.machine.swarm, fed.keyring, new Uint8Array([0x7b]))).toThrow(/JSON/);
  });
});
