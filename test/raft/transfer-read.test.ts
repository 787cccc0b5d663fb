// Leadership transfer (TimeoutNow) and linearizable reads (ReadIndex).
import { describe, it, expect } from 'vitest';
import { Cluster, bytes, text } from './harness.ts';

const three = ['n1', 'n2', 'n3'];

function stable(): Cluster {
  const c = new Cluster({ voters: three });
  c.elect('n1');
  c.deliver();
  c.tickAll(1);
  return c;
}

describe('leadership transfer', () => {
  it('a caught-up target gets TimeoutNow at once and wins the next term, even inside the others\' leader lease', () => {
    const c = stable();
    c.core('n1').transferLeadership('n2');
    expect(c.pending('timeout-now').map((m) => m.to)).toEqual(['n2']);
    c.deliver();
    expect(c.leader()).toBe('n2');
    expect(c.status('n2').term).toBe(2);
    expect(c.status('n1')).toMatchObject({ role: 'follower', leader: 'n2' });
  });

  it('a lagging target is caught up first, and proposals are refused with TRANSFERRING meanwhile', () => {
    const c = stable();
    c.isolate('n3');
    for (let i = 0; i < 5; i++) c.propose('n1', `p${i}`);
    c.deliver();
    c.heal();
    c.core('n1').transferLeadership('n3');
    expect(c.pending('timeout-now')).toEqual([]);
    expect(c.core('n1').propose(bytes('late'))).toEqual({ ok: false, code: 'TRANSFERRING', leader: 'n1' });
    c.deliver(); // n3 catches up, then gets TimeoutNow
    expect(c.leader()).toBe('n3');
    expect(c.status('n3').lastIndex).toBeGreaterThanOrEqual(7);
  });

  it('a transfer that cannot complete is aborted after an election timeout and proposals are accepted again', () => {
    const c = stable();
    c.isolate('n3');
    c.core('n1').transferLeadership('n3');
    expect(c.status('n1').transferee).toBe('n3');
    c.tickAll(10);
    expect(c.status('n1').transferee).toBeNull();
    expect(c.leader()).toBe('n1');
    expect(c.propose('n1', 'x').ok).toBe(true);
  });

  it('transfer to a learner or to a non-member is ignored', () => {
    const c = new Cluster({ voters: three, spares: ['n4'] });
    c.elect('n1');
    c.deliver();
    c.tickAll(1);
    c.proposeConfChange('n1', { type: 'add-learner', node: 'n4' });
    c.deliver();
    c.core('n1').transferLeadership('n4');
    c.core('n1').transferLeadership('nobody');
    expect(c.status('n1').transferee).toBeNull();
  });
});

describe('ReadIndex', () => {
  it('the leader answers a read only after a heartbeat round confirms its leadership to a quorum', () => {
    const c = stable();
    c.propose('n1', 'w');
    c.deliver();
    c.core('n1').readIndex(bytes('r1'));
    c.flush();
    expect(c.readStates.get('n1')).toEqual([]); // not yet: heartbeats are out
    expect(c.pending('heartbeat').every((m) => m.type === 'heartbeat' && m.ctx !== null && text(m.ctx) === 'r1')).toBe(true);
    c.deliver();
    expect(c.readStates.get('n1')!.map((r) => [r.index, text(r.ctx)])).toEqual([[c.status('n1').commit, 'r1']]);
  });

  it('a leader cut off from its quorum never answers a read (it may have been deposed)', () => {
    const c = stable();
    c.isolate('n1');
    c.core('n1').readIndex(bytes('r1'));
    c.tickAll(5);
    expect(c.readStates.get('n1')).toEqual([]);
  });

  it('a read on a follower is forwarded to the leader and answered with the leader\'s commit index', () => {
    const c = stable();
    c.propose('n1', 'w');
    c.deliver();
    c.core('n2').readIndex(bytes('f1'));
    c.deliver();
    expect(c.readStates.get('n2')!.map((r) => [r.index, text(r.ctx)])).toEqual([[c.status('n1').commit, 'f1']]);
  });

  it('a new leader defers reads until an entry of its term is committed', () => {
    const c = new Cluster({ voters: three });
    c.campaign('n1');
    c.deliver((m) => m.type !== 'app');
    expect(c.status('n1').role).toBe('leader');
    c.core('n1').readIndex(bytes('early'));
    c.deliver((m) => m.type === 'heartbeat' || m.type === 'heartbeat-resp');
    expect(c.readStates.get('n1')).toEqual([]);
    c.deliver();
    c.tickAll(1);
    const rs = c.readStates.get('n1')!;
    expect(rs.map((r) => text(r.ctx))).toEqual(['early']);
    expect(rs[0]!.index).toBe(1); // covers the new term's first entry
  });
});
