// PreVote and CheckQuorum: a partitioned node cannot disrupt a healthy leader, and a leader that lost
// its quorum stops acting as leader.
import { describe, it, expect } from 'vitest';
import { Cluster } from './harness.ts';

const three = ['n1', 'n2', 'n3'];

describe('PreVote', () => {
  it('a partitioned follower rejoining does not disrupt the leader: its pre-votes never raise its term', () => {
    const c = new Cluster({ voters: three });
    c.elect('n1');
    c.isolate('n3');
    c.tickAll(100); // n3 pre-campaigns again and again, alone
    expect(c.status('n3').term).toBe(1);
    expect(c.status('n3').role).not.toBe('leader');
    c.heal();
    c.tickAll(5);
    expect(c.leader()).toBe('n1');
    expect(c.status('n1').term).toBe(1);
    expect(c.status('n3')).toMatchObject({ term: 1, leader: 'n1', role: 'follower' });
  });

  it('without PreVote the same rejoin forces a new election (what PreVote prevents)', () => {
    const c = new Cluster({ voters: three, preVote: false, checkQuorum: false });
    c.elect('n1');
    c.isolate('n3');
    c.tickAll(100);
    expect(c.status('n3').term).toBeGreaterThan(3);
    c.heal();
    c.tickAll(40);
    expect(c.status(c.leader()!).term).toBeGreaterThan(1); // n1's term was deposed
  });

  it('a pre-candidate whose log is behind cannot win a pre-vote', () => {
    const c = new Cluster({ voters: three, logs: { n1: [1], n2: [1, 1], n3: [1, 1] } });
    c.campaign('n1');
    c.deliver();
    expect(c.status('n1').role).toBe('follower');
    expect(c.status('n1').term).toBe(1);
  });
});

describe('CheckQuorum', () => {
  it('a leader that hears from no quorum for an election timeout steps down', () => {
    const c = new Cluster({ voters: three });
    c.elect('n1');
    c.isolate('n1');
    c.tick('n1', 9);
    expect(c.status('n1').role).toBe('leader');
    c.tick('n1', 11); // the quorum check runs every election timeout
    expect(c.status('n1').role).toBe('follower');
    expect(c.core('n1').propose(new Uint8Array([1]))).toMatchObject({ ok: false, code: 'NOT_LEADER' });
  });

  it('a leader with a quorum keeps leading even if one follower is gone', () => {
    const c = new Cluster({ voters: three });
    c.elect('n1');
    c.isolate('n3');
    c.tickAll(50);
    expect(c.leader()).toBe('n1');
    expect(c.status('n1').term).toBe(1);
  });

  it('a follower within the leader lease ignores a higher-term vote request (lease), so the leader stays', () => {
    const c = new Cluster({ voters: three, preVote: false });
    c.elect('n1');
    c.cutBoth('n1', 'n3'); // n3 no longer hears n1, but can reach n2
    c.tickAll(30); // n3 campaigns in higher terms; n2 keeps hearing n1 and ignores it
    expect(c.status('n2').term).toBe(1);
    expect(c.leader()).toBe('n1');
    expect(c.status('n3').term).toBeGreaterThan(1);
  });

  it('a stale leader back from a partition learns the new term from the answer to its heartbeat and steps down', () => {
    const c = new Cluster({ voters: three, checkQuorum: false });
    c.elect('n1');
    c.isolate('n1');
    c.tickAll(40);
    const leader = c.leader()!;
    expect(leader).not.toBe('n1');
    c.heal();
    c.tick('n1'); // n1 still believes it leads (no CheckQuorum) and sends heartbeats of its old term
    c.deliver();
    expect(c.status('n1')).toMatchObject({ role: 'follower', leader: null });
    expect(c.status('n1').term).toBe(c.status(leader).term);
  });
});
