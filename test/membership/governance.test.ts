// What an approved set-policy change does to a swarm's committed rules (decideAdminAction: the one function the
// replicas and the auditor both call), how the other admin changes respect the committed rules, and the strict
// decoding of a set-policy command from the log.
import { describe, expect, it } from 'vitest';
import type { SwarmPolicy } from '../../src/config/types.ts';
import { decideAdminAction, decodeRules, emptyMembership, rulesDrift, type Governance } from '../../src/swarm/membership.ts';
import { decodeCommand, encodeCommand, type AdminCommand } from '../../src/verdict/proposal.ts';

const policy: SwarmPolicy = { values: ['approve', 'reject'], quorum: 'all', rule: { kind: 'majority' }, fallback: null, maxClockSkewSeconds: 300 };
const governance = (voters: string[]): Governance => ({ mode: 'raft', membership: emptyMembership(voters), rules: { policy, adminPolicy: 'majority' } });
const context = { index: 7, swarm: 's1', changeId: 'change-0000000001' };

describe('set-policy', () => {
  it('takes effect at its index with the new rules; the same rules again change nothing', () => {
    const next = { ...policy, quorum: 2 as const, rule: { kind: 'threshold' as const, value: 'approve', count: 2 } };
    const decision = decideAdminAction(governance(['a', 'b', 'c']), { kind: 'set-policy', policy: next, adminPolicy: 'all' }, context);
    expect(decision.status).toBe('applied');
    expect(decision.reason).toMatch(/policy set at index 7/);
    expect(decision.next.rules).toEqual({ policy: next, adminPolicy: 'all' });
    expect(decision.next.membership).toEqual(governance(['a', 'b', 'c']).membership);
    expect(decision.endsEra).toBe(false);
    const again = decideAdminAction(decision.next, { kind: 'set-policy', policy: next, adminPolicy: 'all' }, context);
    expect(again.status).toBe('applied');
    expect(again.next).toBe(decision.next);
    expect(again.reason).toMatch(/already has this policy/);
  });

  it('is refused when the voters now, or once a pending removal is carried out, could not meet it', () => {
    const three = governance(['a', 'b', 'c']);
    const tooBig = decideAdminAction(three, { kind: 'set-policy', policy: { ...policy, quorum: 4 }, adminPolicy: 'majority' }, context);
    expect(tooBig.status).toBe('refused');
    expect(tooBig.next).toBe(three);
    const adminTooBig = decideAdminAction(three, { kind: 'set-policy', policy, adminPolicy: 4 }, context);
    expect(adminTooBig.status).toBe('refused');
    expect(adminTooBig.reason).toMatch(/4 approvals, but the swarm has 3 members/);
    const removing: Governance = { ...three, membership: { ...three.membership, pending: [{ id: 'x', kind: 'remove', org: 'c', index: 5 }] } };
    const afterRemoval = decideAdminAction(removing, { kind: 'set-policy', policy: { ...policy, quorum: 3 }, adminPolicy: 'majority' }, context);
    expect(afterRemoval.status).toBe('refused');
    expect(afterRemoval.reason).toMatch(/has 2 members/);
  });

  it('a removal is judged against the committed rules, not the genesis ones', () => {
    const committed: Governance = { ...governance(['a', 'b', 'c']), rules: { policy: { ...policy, quorum: 3 }, adminPolicy: 'majority' } };
    expect(decideAdminAction(committed, { kind: 'remove-member', org: 'c' }, context).status).toBe('refused');
    expect(decideAdminAction(governance(['a', 'b', 'c']), { kind: 'remove-member', org: 'c' }, context).status).toBe('applied');
    const strictAdmin: Governance = { ...governance(['a', 'b', 'c']), rules: { policy, adminPolicy: 3 } };
    expect(decideAdminAction(strictAdmin, { kind: 'remove-member', org: 'c' }, context).reason).toMatch(/3 approvals, but the swarm has 2 members/);
  });

  it('a mode switch or admission keeps the committed rules', () => {
    const committed: Governance = { ...governance(['a', 'b', 'c', 'd']), rules: { policy: { ...policy, quorum: 2 }, adminPolicy: 'two-thirds' } };
    expect(decideAdminAction(committed, { kind: 'set-mode', mode: 'pbft' }, context).next.rules).toBe(committed.rules);
    expect(decideAdminAction(committed, { kind: 'add-member', org: 'e' }, context).next.rules).toBe(committed.rules);
  });

  it('drift names what differs between the file and the committed rules', () => {
    const rules = { policy, adminPolicy: 'majority' as const };
    expect(rulesDrift(rules, rules)).toEqual([]);
    const drift = rulesDrift({ policy: { ...policy, quorum: 1 }, adminPolicy: 'all' }, rules);
    expect(drift).toHaveLength(2);
    expect(drift[0]).toMatch(/the file's policy .*"quorum":1.* is not the committed one .*"quorum":"all"/);
    expect(drift[1]).toMatch(/adminPolicy "all" is not the committed one "majority"/);
  });
});

describe('a set-policy command in the log', () => {
  const command = (action: unknown): AdminCommand => ({ v: 1, type: 'admin', swarm: 's1', id: 'change-0000000001', action, approvals: ['a.b.c'] }) as AdminCommand;

  it('round-trips through its canonical bytes', () => {
    const cmd = command({ kind: 'set-policy', policy: { ...policy, rule: { kind: 'threshold', value: 'approve', count: 2 }, fallback: 'reject' }, adminPolicy: 3 });
    expect(decodeCommand(encodeCommand(cmd))).toEqual(cmd);
  });

  it.each([
    ['an extra member', { kind: 'set-policy', policy, adminPolicy: 'majority', note: 1 }, /exactly the members/],
    ['no adminPolicy', { kind: 'set-policy', policy }, /exactly the members/],
    ['an unknown quorum', { kind: 'set-policy', policy: { ...policy, quorum: 'most' }, adminPolicy: 'majority' }, /quorum must be/],
    ['a fractional quorum', { kind: 'set-policy', policy: { ...policy, quorum: 1.5 }, adminPolicy: 'majority' }, /quorum must be/],
    ['no values', { kind: 'set-policy', policy: { ...policy, values: [] }, adminPolicy: 'majority' }, /values must list/],
    ['a value with capitals', { kind: 'set-policy', policy: { ...policy, values: ['Approve'] }, adminPolicy: 'majority' }, /values must list/],
    ['a value twice', { kind: 'set-policy', policy: { ...policy, values: ['approve', 'approve'] }, adminPolicy: 'majority' }, /values lists a value twice/],
    ['a threshold on a value not listed', { kind: 'set-policy', policy: { ...policy, rule: { kind: 'threshold', value: 'merge', count: 1 } }, adminPolicy: 'majority' }, /threshold value "merge"/],
    ['a fallback not listed', { kind: 'set-policy', policy: { ...policy, fallback: 'merge' }, adminPolicy: 'majority' }, /fallback "merge"/],
    ['the file’s rule shape', { kind: 'set-policy', policy: { ...policy, rule: 'majority' }, adminPolicy: 'majority' }, /rule must be an object/],
    ['a zero admin policy', { kind: 'set-policy', policy, adminPolicy: 0 }, /adminPolicy must be/],
  ])('refuses %s as MALFORMED_COMMAND', (_what, action, message) => {
    const bytes = new TextEncoder().encode(JSON.stringify(command(action)));
    expect(() => decodeCommand(bytes)).toThrow(message);
    try {
      decodeCommand(bytes);
    } catch (error) {
      expect((error as { code?: string }).code).toBe('MALFORMED_COMMAND');
    }
  });

  it('stored or vouched-for rules decode with the same checks', () => {
    expect(decodeRules({ policy, adminPolicy: 'two-thirds' }, 'rules')).toEqual({ policy, adminPolicy: 'two-thirds' });
    expect(() => decodeRules({ policy }, 'rules')).toThrow(/exactly the members adminPolicy, policy/);
    expect(() => decodeRules(null, 'rules')).toThrow(/must be an object/);
  });
});

describe('membership and mode changes a swarm cannot carry out', () => {
  const pending = (g: Governance, kind: 'add' | 'remove', org: string): Governance => ({ ...g, membership: { ...g.membership, pending: [{ id: 'change-under-way', kind, org, index: 5 }] } });
  const pbft = (voters: string[]): Governance => ({ ...governance(voters), mode: 'pbft' });
  const cases: [string, Governance, Parameters<typeof decideAdminAction>[1], 'refused' | 'applied', RegExp][] = [
    ['pbft with fewer than 4 members', governance(['a', 'b', 'c']), { kind: 'set-mode', mode: 'pbft' }, 'refused', /pbft needs at least 4 members \(3f\+1 with f >= 1\); swarm s1 has 3/],
    ['a mode switch while a member is being admitted', pending(governance(['a', 'b', 'c', 'd']), 'add', 'e'), { kind: 'set-mode', mode: 'pbft' }, 'refused', /membership change change-under-way \(add e\) is still under way; switch modes once it completed/],
    ['the mode the swarm already runs', governance(['a', 'b', 'c']), { kind: 'set-mode', mode: 'raft' }, 'applied', /already in raft mode/],
    ['a second change for an org whose first is under way', pending(governance(['a', 'b', 'c']), 'remove', 'c'), { kind: 'add-member', org: 'c' }, 'refused', /c's removal \(change change-under-way\) is still under way; propose this again once it completed/],
    ['admitting a member again', governance(['a', 'b', 'c']), { kind: 'add-member', org: 'b' }, 'applied', /b is already a member/],
    ['removing an org that is not a member', governance(['a', 'b', 'c']), { kind: 'remove-member', org: 'z' }, 'refused', /z is not a member of swarm s1 \(members: a, b, c\)/],
    ['removing the last member', governance(['a']), { kind: 'remove-member', org: 'a' }, 'refused', /a is the last member of swarm s1/],
    ['a pbft swarm shrinking below 4', pbft(['a', 'b', 'c', 'd']), { kind: 'remove-member', org: 'd' }, 'refused', /without d swarm s1 would have 3 members; pbft needs at least 4: switch it to raft first/],
  ];
  it.each(cases)('%s', (_what, before, action, status, reason) => {
    const decision = decideAdminAction(before, action, context);
    expect(decision.status).toBe(status);
    expect(decision.reason).toMatch(reason);
    expect(decision.next).toBe(before); // nothing changes
    expect(decision.endsEra).toBe(false);
  });
});
