// Log compaction with InstallSnapshot, and membership changes one server at a time through learners.
import { describe, it, expect } from 'vitest';
import { Cluster } from './harness.ts';
import { PROMOTION_MAX_LAG } from '../../src/consensus/raft/raft.ts';

const three = ['n1', 'n2', 'n3'];

describe('snapshots and compaction', () => {
  it('a follower behind the compacted log catches up through InstallSnapshot and then through appends', () => {
    const c = new Cluster({ voters: three });
    c.elect('n1');
    c.deliver();
    c.isolate('n3');
    for (let i = 0; i < 10; i++) c.propose('n1', `p${i}`);
    c.deliver();
    const leader = c.nodes.get('n1')!;
    expect(leader.compactNow()).toBe(true);
    c.flush();
    const snapIndex = c.status('n1').snapshotIndex;
    expect(snapIndex).toBe(11);
    expect(leader.durable.entries.length).toBe(0); // the Ready's compactedTo let storage drop the prefix
    c.heal();
    c.tickAll(3);
    expect(c.pending('snap')).toEqual([]); // delivered
    const n3 = c.nodes.get('n3')!;
    expect(n3.durable.snapshot?.index).toBe(snapIndex);
    expect(n3.applied).toBe(snapIndex);
    expect(n3.appChain).toBe(leader.appChain);
    c.propose('n1', 'after');
    c.deliver();
    c.tickAll(1);
    expect(c.appliedData('n3')).toEqual(['after']); // earlier entries came inside the snapshot
    expect(c.status('n3').commit).toBe(c.status('n1').commit);
  });

  it('compaction beyond the applied index is refused', () => {
    const c = new Cluster({ voters: three });
    c.elect('n1');
    expect(() => c.core('n1').compact(5, new Uint8Array())).toThrow(/beyond applied/);
  });

  it('a node restarts from its snapshot plus the entries after it', () => {
    const c = new Cluster({ voters: three });
    c.elect('n1');
    for (let i = 0; i < 4; i++) c.propose('n1', `p${i}`);
    c.deliver();
    c.tickAll(1);
    c.nodes.get('n2')!.compactNow();
    c.propose('n1', 'tail');
    c.deliver();
    c.tickAll(1);
    c.crash('n2');
    c.restart('n2');
    expect(c.status('n2')).toMatchObject({ snapshotIndex: 5, lastIndex: 6, commit: 6 });
    c.flush();
    expect(c.appliedData('n2').at(-1)).toBe('tail'); // re-applied after the snapshot on restart
  });
});

describe('membership: one server at a time, through learners', () => {
  function withLearner() {
    const c = new Cluster({ voters: three, spares: ['n4'] });
    c.elect('n1');
    c.deliver();
    c.tickAll(1);
    expect(c.proposeConfChange('n1', { type: 'add-learner', node: 'n4' }).ok).toBe(true);
    c.deliver();
    c.tickAll(2);
    return c;
  }

  it('an added learner receives the whole log but neither votes nor counts toward commitment', () => {
    const c = withLearner();
    expect(c.status('n1').conf).toEqual({ voters: three, learners: ['n4'] });
    expect(c.status('n4').role).toBe('learner');
    expect(c.status('n4').lastIndex).toBe(c.status('n1').lastIndex);
    c.isolate('n2');
    c.isolate('n3');
    const res = c.propose('n1', 'x') as { index: number };
    c.deliver();
    expect(c.status('n4').lastIndex).toBe(res.index); // the learner stored it...
    expect(c.status('n1').commit).toBeLessThan(res.index); // ...but n1 + learner is no quorum
  });

  it('a learner never campaigns', () => {
    const c = withLearner();
    c.isolate('n4');
    c.tickAll(100);
    expect(c.status('n4')).toMatchObject({ role: 'learner', term: 1 });
  });

  it(`promotion is refused while the learner is more than ${PROMOTION_MAX_LAG} entries behind, and accepted once it caught up`, () => {
    const c = withLearner();
    c.isolate('n4');
    for (let i = 0; i < PROMOTION_MAX_LAG + 5; i++) c.propose('n1', `p${i}`);
    c.deliver();
    expect(c.proposeConfChange('n1', { type: 'promote', node: 'n4' })).toMatchObject({ ok: false, code: 'LEARNER_BEHIND' });
    c.heal();
    c.tickAll(3);
    expect(c.proposeConfChange('n1', { type: 'promote', node: 'n4' }).ok).toBe(true);
    c.deliver();
    c.tickAll(2);
    for (const id of ['n1', 'n2', 'n3', 'n4']) expect(c.status(id).conf, id).toEqual({ voters: ['n1', 'n2', 'n3', 'n4'], learners: [] });
    // Now a voter: with n1 and n4, one more is needed out of four.
    c.isolate('n2');
    c.isolate('n3');
    const res = c.propose('n1', 'y') as { index: number };
    c.deliver();
    expect(c.status('n1').commit).toBeLessThan(res.index);
  });

  it('a second conf change is refused while the first is not yet applied', () => {
    const c = new Cluster({ voters: three, spares: ['n4', 'n5'] });
    c.elect('n1');
    c.deliver();
    c.tickAll(1);
    expect(c.proposeConfChange('n1', { type: 'add-learner', node: 'n4' }).ok).toBe(true);
    expect(c.proposeConfChange('n1', { type: 'add-learner', node: 'n5' })).toMatchObject({ ok: false, code: 'CONF_CHANGE_PENDING' });
    c.deliver();
    expect(c.proposeConfChange('n1', { type: 'add-learner', node: 'n5' }).ok).toBe(true);
  });

  it('a new leader proposes no conf change before an entry of its own term is committed', () => {
    const c = new Cluster({ voters: three, spares: ['n4'] });
    c.campaign('n1');
    c.deliver((m) => m.type !== 'app');
    expect(c.status('n1').role).toBe('leader');
    expect(c.proposeConfChange('n1', { type: 'add-learner', node: 'n4' })).toMatchObject({ ok: false, code: 'CONF_CHANGE_PENDING' });
    c.deliver();
    expect(c.proposeConfChange('n1', { type: 'add-learner', node: 'n4' }).ok).toBe(true);
  });

  it('invalid changes are refused: promoting a voter, removing a non-member, adding a member', () => {
    const c = withLearner();
    expect(c.proposeConfChange('n1', { type: 'promote', node: 'n2' })).toMatchObject({ ok: false, code: 'CONF_CHANGE_INVALID' });
    expect(c.proposeConfChange('n1', { type: 'remove', node: 'zz' })).toMatchObject({ ok: false, code: 'CONF_CHANGE_INVALID' });
    expect(c.proposeConfChange('n1', { type: 'add-learner', node: 'n2' })).toMatchObject({ ok: false, code: 'CONF_CHANGE_INVALID' });
  });

  it('removing a follower shrinks the quorum: the two remaining voters commit alone', () => {
    const c = new Cluster({ voters: three });
    c.elect('n1');
    c.deliver();
    c.tickAll(1);
    c.proposeConfChange('n1', { type: 'remove', node: 'n3' });
    c.deliver();
    c.tickAll(1);
    expect(c.status('n1').conf.voters).toEqual(['n1', 'n2']);
    c.crash('n3');
    const res = c.propose('n1', 'x') as { index: number };
    c.deliver();
    expect(c.status('n1').commit).toBe(res.index);
  });

  it('a removed leader steps down once the removal is applied and the others elect a leader among themselves', () => {
    const c = new Cluster({ voters: three });
    c.elect('n1');
    c.deliver();
    c.tickAll(1);
    expect(c.proposeConfChange('n1', { type: 'remove', node: 'n1' }).ok).toBe(true);
    c.deliver();
    expect(c.status('n1').role).not.toBe('leader');
    c.tickAll(1);
    c.tickAll(40);
    const leader = c.leader();
    expect(['n2', 'n3']).toContain(leader);
    expect(c.status(leader!).conf.voters).toEqual(['n2', 'n3']);
  });
});
