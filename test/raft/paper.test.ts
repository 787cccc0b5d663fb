// Scenarios of the Raft paper, §5.2 (election), §5.3 (replication), §5.4 (safety), Figures 7 and 8.
// PreVote and CheckQuorum are off here so that the behaviour is exactly the paper's.
import { describe, it, expect } from 'vitest';
import { Cluster } from './harness.ts';
import type { Message, VoteRequest } from '../../src/consensus/raft/types.ts';

const paper = { preVote: false, checkQuorum: false };
const five = ['n1', 'n2', 'n3', 'n4', 'n5'];

describe('§5.2 leader election', () => {
  it('a follower that hears nothing for its election timeout becomes candidate, increments its term, votes for itself and asks every peer', () => {
    const c = new Cluster({ voters: ['n1', 'n2', 'n3'], ...paper, rand: () => 0 });
    c.tick('n1', 9);
    expect(c.status('n1').role).toBe('follower');
    c.tick('n1', 1);
    const st = c.status('n1');
    expect([st.role, st.term, st.vote]).toEqual(['candidate', 1, 'n1']);
    const votes = c.pending('vote') as VoteRequest[];
    expect(votes.map((m) => m.to).sort()).toEqual(['n2', 'n3']);
    expect(votes.every((m) => m.term === 1 && m.index === 0 && m.logTerm === 0)).toBe(true);
  });

  it('election timeouts are randomized in [electionTick, 2*electionTick)', () => {
    for (const [r, expected] of [
      [0, 10],
      [0.5, 15],
      [0.999, 19],
    ] as const) {
      const c = new Cluster({ voters: ['n1', 'n2', 'n3'], ...paper, rand: () => r });
      let ticks = 0;
      while (c.status('n1').role === 'follower') {
        c.tick('n1');
        ticks++;
      }
      expect(ticks, `rand ${r}`).toBe(expected);
    }
  });

  it('a candidate with a majority of votes becomes leader, appends an empty entry of its term, and every node commits it', () => {
    const c = new Cluster({ voters: ['n1', 'n2', 'n3'], ...paper });
    c.elect('n1');
    expect(c.status('n1').role).toBe('leader');
    for (const id of ['n1', 'n2', 'n3']) {
      expect(c.logTerms(id), id).toEqual([1]);
      expect(c.status(id).leader).toBe('n1');
    }
    c.tickAll(1); // a heartbeat carries the commit index to followers
    for (const id of ['n1', 'n2', 'n3']) expect(c.status(id).commit, id).toBe(1);
  });

  it('a node grants at most one vote per term, to the first candidate that asks', () => {
    const c = new Cluster({ voters: ['n1', 'n2', 'n3'], ...paper });
    c.campaign('n1');
    c.campaign('n2');
    // n3 hears n1 first, then n2, in the same term 1.
    c.deliver((m) => m.to === 'n3' && m.from === 'n1');
    c.deliver((m) => m.to === 'n3' && m.from === 'n2');
    const answers = c.pending('vote-resp').filter((m) => m.from === 'n3');
    expect(answers.map((m) => [m.to, (m as { reject: boolean }).reject])).toEqual([
      ['n1', false],
      ['n2', true],
    ]);
    expect(c.status('n3').vote).toBe('n1');
  });

  it('a candidate that receives an append from a leader of its term steps down and follows it', () => {
    const c = new Cluster({ voters: ['n1', 'n2', 'n3'], ...paper });
    c.campaign('n1');
    c.campaign('n2'); // both candidates in term 1
    c.deliver((m) => m.from === 'n3' || m.to === 'n3' || m.from === 'n1'); // n3 votes for n1 first
    expect(c.status('n1').role).toBe('leader');
    c.deliver();
    const st = c.status('n2');
    expect([st.role, st.term, st.leader]).toEqual(['follower', 1, 'n1']);
  });

  it('a split vote ends with a new election in a higher term and a single leader', () => {
    const c = new Cluster({ voters: ['n1', 'n2', 'n3', 'n4'], ...paper });
    c.campaign('n1');
    c.campaign('n2');
    // n3 votes n1, n4 votes n2: 2 of 4 each, no majority.
    c.deliver((m) => (m.from === 'n1' && m.to === 'n3') || (m.from === 'n2' && m.to === 'n4') || m.type === 'vote-resp');
    c.drop();
    expect(c.leader()).toBeNull();
    c.tickAll(40);
    expect(c.leader()).not.toBeNull();
    expect(c.status(c.leader()!).term).toBeGreaterThan(1);
  });
});

describe('§5.3 log replication', () => {
  it('the leader commits an entry once a majority stored it, and followers learn the commit index', () => {
    const c = new Cluster({ voters: ['n1', 'n2', 'n3'], ...paper });
    c.elect('n1');
    c.isolate('n3');
    const res = c.propose('n1', 'x');
    expect(res).toEqual({ ok: true, index: 2, term: 1 });
    c.deliver();
    expect(c.status('n1').commit).toBe(2); // n1 + n2 is a majority of 3
    expect(c.appliedData('n1')).toEqual(['x']);
    c.tickAll(1);
    expect(c.status('n2').commit).toBe(2);
    expect(c.appliedData('n2')).toEqual(['x']);
    expect(c.status('n3').lastIndex).toBe(1); // isolated: never got x
    expect(c.appliedData('n3')).toEqual([]);
  });

  it('without a majority nothing commits', () => {
    const c = new Cluster({ voters: ['n1', 'n2', 'n3'], ...paper });
    c.elect('n1');
    c.isolate('n2');
    c.isolate('n3');
    c.propose('n1', 'x');
    c.tickAll(5);
    expect(c.status('n1').commit).toBe(1);
    expect(c.appliedData('n1')).toEqual([]);
  });

  it('a follower rejects an append whose previous entry does not match its log (consistency check)', () => {
    const c = new Cluster({ voters: ['n1', 'n2'], ...paper, logs: { n1: [1, 1], n2: [1] }, terms: { n1: 1, n2: 1 } });
    c.core('n2').step({ type: 'app', from: 'n1', to: 'n2', term: 1, index: 2, logTerm: 1, entries: [], commit: 0 });
    c.flush();
    const [resp] = c.pending('app-resp') as Extract<Message, { type: 'app-resp' }>[];
    expect(resp).toMatchObject({ reject: true, index: 2, rejectHint: 1, logTerm: 1 });
  });

  it('Figure 7: whatever the followers hold, the leader of term 8 makes every log identical to its own', () => {
    const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    const c = new Cluster({
      voters: ['leader', 'a', 'b', 'c', 'd', 'e', 'f'],
      ...paper,
      logs: {
        leader: leaderLog,
        a: [1, 1, 1, 4, 4, 5, 5, 6, 6],
        b: [1, 1, 1, 4],
        c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        e: [1, 1, 1, 4, 4, 4, 4],
        f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
      },
      terms: { leader: 7, a: 7, b: 7, c: 7, d: 7, e: 7, f: 7 },
    });
    c.elect('leader'); // a, b, e, f vote for it: 5 of 7
    expect(c.status('leader').term).toBe(8);
    c.deliver();
    const expected = [...leaderLog, 8];
    for (const id of ['leader', 'a', 'b', 'c', 'd', 'e', 'f']) expect(c.logTerms(id), id).toEqual(expected);
    // The durable logs were rewritten too (Ready.entries may start below the stored last index).
    expect(c.nodes.get('d')!.durable.entries.map((e) => e.term)).toEqual(expected);
  });
});

describe('§5.4 safety', () => {
  it('a voter denies its vote to a candidate whose log is less up to date (§5.4.1)', () => {
    const c = new Cluster({ voters: ['n1', 'n2', 'n3'], ...paper, logs: { n1: [1], n2: [1, 2], n3: [1, 1, 1] }, terms: { n1: 2, n2: 2, n3: 2 } });
    c.campaign('n3'); // last term 1 at index 3: behind n2's last term 2, ahead of n1
    c.deliver((m) => m.type === 'vote');
    const answers = Object.fromEntries(c.pending('vote-resp').map((m) => [m.from, (m as { reject: boolean }).reject]));
    expect(answers).toEqual({ n1: false, n2: true });
  });

  describe('Figure 8: entries of a previous term are never committed by counting replicas', () => {
    // (a)-(c): S1 leads term 4 holding 2@2 (also on S2); S5 holds 2@3 from a term-3 leadership nobody saw.
    function figure8(unsafe: boolean): Cluster {
      const c = new Cluster({
        voters: five,
        ...paper,
        maxSizePerMsg: 1, // one entry per append, so 2@2 can arrive without S1's own 3@4
        unsafeCommitPreviousTermByCounting: unsafe,
        logs: { n1: [1, 2], n2: [1, 2], n3: [1], n4: [1], n5: [1, 3] },
        terms: { n1: 3, n2: 3, n3: 3, n4: 3, n5: 3 },
        commit: 1,
      });
      c.campaign('n1');
      c.deliver((m) => m.type === 'vote' || m.type === 'vote-resp'); // S2, S3, S4 vote; S5's log is newer
      expect(c.status('n1')).toMatchObject({ role: 'leader', term: 4, lastIndex: 3 });
      // S1 gets 2@2 (only) onto S3 and S4; everything else is lost.
      c.drop((m) => m.to === 'n2' || m.to === 'n5');
      c.deliverOnce((m) => m.to === 'n3' || m.to === 'n4'); // reject: they lack index 2
      c.deliverOnce((m) => m.to === 'n1'); // S1 backs up and sends 2@2 alone
      c.deliverOnce((m) => m.to === 'n3' || m.to === 'n4');
      c.deliverOnce((m) => m.to === 'n1'); // S1 learns 2@2 is on S1, S3, S4: a majority
      c.drop();
      return c;
    }

    it('the leader of term 4 does not commit 2@2 although a majority stores it, so S5 may later overwrite it', () => {
      const c = figure8(false);
      expect(c.status('n1').commit).toBe(1);
      c.crash('n1');
      c.elect('n5'); // S5's last term 3 beats 2: S2, S3, S4 elect it
      c.deliver();
      for (const id of ['n2', 'n3', 'n4', 'n5']) expect(c.logTerms(id).slice(0, 2), id).toEqual([1, 3]);
      expect(c.appliedData('n1')).toEqual(['1@1']); // nothing S1 applied was lost
    });

    it('the broken rule (commit by counting) commits 2@2, which S5 then overwrites: a committed entry is lost', () => {
      const c = figure8(true);
      expect(c.status('n1').commit).toBe(2);
      expect(c.appliedData('n1')).toEqual(['1@1', '2@2']);
      c.crash('n1');
      c.elect('n5');
      c.deliver();
      expect(c.logTerms('n3').slice(0, 2)).toEqual([1, 3]); // the "committed" 2@2 is gone
    });

    it('(e): once an entry of term 4 is on a majority, it commits together with 2@2 and S5 can no longer win', () => {
      const c = figure8(false);
      c.isolate('n5');
      c.tickAll(1); // heartbeats: S1 re-sends 3@4 to the others
      expect(c.status('n1').commit).toBe(3);
      expect(c.appliedData('n1')).toEqual(['1@1', '2@2']);
      c.crash('n1');
      c.heal();
      c.campaign('n5');
      c.deliver();
      c.campaign('n5');
      c.deliver();
      expect(c.status('n5').role).not.toBe('leader');
      // Whoever wins next holds both committed entries.
      c.tickAll(40);
      expect(c.logTerms(c.leader()!).slice(0, 3)).toEqual([1, 2, 4]);
    });
  });
});
