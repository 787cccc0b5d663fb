// Log replication machinery beyond the paper: fast backtracking, pipelining with an inflight bound,
// batching of proposals, proposal refusals, and durability across crashes.
import { describe, it, expect } from 'vitest';
import { Cluster } from './harness.ts';
import type { AppendMessage, AppendResponse } from '../../src/consensus/raft/types.ts';

const three = ['n1', 'n2', 'n3'];

describe('fast backtracking', () => {
  it('a follower with a long conflicting tail is repaired in one rejection, not one per entry (Figure 7 f)', () => {
    const c = new Cluster({
      voters: ['n1', 'n2', 'n3'],
      preVote: false,
      logs: { n1: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6], n2: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6], n3: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3] },
      terms: { n1: 7, n2: 7, n3: 7 },
    });
    c.campaign('n1');
    c.deliver((m) => m.type === 'vote' || m.type === 'vote-resp');
    const rejections: AppendResponse[] = [];
    for (let i = 0; i < 20 && c.pending().length > 0; i++) {
      rejections.push(...(c.pending('app-resp') as AppendResponse[]).filter((m) => m.from === 'n3' && m.reject));
      c.deliverOnce();
    }
    expect(rejections.length).toBe(1);
    // The hint names n3's last entry with a term <= the leader's probe term: index 11, term 3.
    expect(rejections[0]).toMatchObject({ index: 10, rejectHint: 10, logTerm: 3 });
    expect(c.logTerms('n3')).toEqual([1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 8]);
  });
});

describe('pipelining and batching', () => {
  it('proposals made between two Readies leave in a single append per follower', () => {
    const c = new Cluster({ voters: three });
    c.elect('n1');
    for (let i = 0; i < 5; i++) c.core('n1').propose(new TextEncoder().encode(`p${i}`));
    const apps = c.pending('app') as AppendMessage[];
    expect(apps.map((m) => [m.to, m.entries.length]).sort()).toEqual([
      ['n2', 5],
      ['n3', 5],
    ]);
  });

  it('a follower in replicate state gets appends pipelined without waiting for acks, up to maxInflightMsgs', () => {
    const c = new Cluster({ voters: three, maxInflightMsgs: 3, maxSizePerMsg: 1 });
    c.elect('n1');
    c.deliver();
    expect(c.status('n1').progress['n2']!.state).toBe('replicate');
    for (const p of 'abcdefghij') c.propose('n1', p); // each propose is its own Ready
    const toN2 = (c.pending('app') as AppendMessage[]).filter((m) => m.to === 'n2');
    expect(toN2.length).toBe(3); // the window is full: the rest waits for acks
    c.deliver();
    expect(c.status('n2').lastIndex).toBe(11);
    expect(c.status('n1').commit).toBe(11);
  });

  it('the inflight window is also bounded in bytes (default maxInflightMsgs * maxSizePerMsg)', () => {
    const c = new Cluster({ voters: three, maxInflightMsgs: 3, maxSizePerMsg: 1 });
    c.elect('n1');
    c.deliver();
    for (let i = 0; i < 10; i++) c.propose('n1', `p${i}`); // 2 bytes each: the 3-byte window holds 2
    expect((c.pending('app') as AppendMessage[]).filter((m) => m.to === 'n2').length).toBe(2);
  });

  it('lost appends are recovered: the heartbeat answer reopens the window and the gap is probed', () => {
    const c = new Cluster({ voters: three, maxInflightMsgs: 2 });
    c.elect('n1');
    c.deliver();
    for (let i = 0; i < 6; i++) c.propose('n1', `p${i}`);
    c.drop((m) => m.type === 'app' && m.to === 'n2');
    c.tickAll(3);
    expect(c.status('n2').lastIndex).toBe(c.status('n1').lastIndex);
    expect(c.appliedData('n2')).toEqual(['p0', 'p1', 'p2', 'p3', 'p4', 'p5']);
  });
});

describe('proposals', () => {
  it('a follower refuses a proposal with NOT_LEADER and names the leader, for the driver to forward', () => {
    const c = new Cluster({ voters: three });
    c.elect('n1');
    expect(c.core('n2').propose(new Uint8Array([1]))).toEqual({ ok: false, code: 'NOT_LEADER', leader: 'n1' });
  });

  it('the leader refuses proposals once maxUncommittedBytes are uncommitted, and accepts again after commit', () => {
    const c = new Cluster({ voters: three, maxUncommittedBytes: 10 });
    c.elect('n1');
    c.deliver();
    c.isolate('n1');
    expect(c.propose('n1', '12345678').ok).toBe(true);
    expect(c.propose('n1', '1234')).toMatchObject({ ok: false, code: 'TOO_MANY_UNCOMMITTED' });
    c.heal();
    c.tickAll(2);
    expect(c.propose('n1', '1234').ok).toBe(true);
  });
});

describe('durability', () => {
  it('a node restarted from durable state keeps its term, vote and log, and acknowledged entries survive a full restart', () => {
    const c = new Cluster({ voters: three });
    c.elect('n1');
    c.propose('n1', 'a');
    c.propose('n1', 'b');
    c.deliver();
    const before = c.status('n2');
    for (const id of three) c.crash(id);
    for (const id of three) c.restart(id);
    const after = c.status('n2');
    expect([after.term, after.vote, after.lastIndex, after.commit]).toEqual([before.term, before.vote, before.lastIndex, before.commit]);
    c.tickAll(40);
    const leader = c.leader()!;
    c.propose(leader, 'c');
    c.deliver();
    c.tickAll(1);
    for (const id of three) expect(c.appliedData(id).slice(-3), id).toEqual(['a', 'b', 'c']);
  });

  it('a follower acknowledges an append only in the Ready that also hands out its entries for persisting', () => {
    const c = new Cluster({ voters: three });
    c.elect('n1');
    c.deliver();
    const { index } = c.propose('n1', 'x') as { index: number };
    const app = (c.queue.find((m) => m.type === 'app' && m.to === 'n2') as AppendMessage)!;
    c.queue = [];
    const core = c.core('n2');
    core.step(app);
    const rd = core.ready();
    expect(rd.entries.map((e) => e.index)).toEqual([index]);
    expect(rd.messages.find((m) => m.type === 'app-resp')).toMatchObject({ index });
    // The contract: the driver persists rd.entries before sending rd.messages.
    core.advance(rd);
  });
});
