// Quiescence (RaftConfig.quiesce, after CockroachDB): an idle group stops ticking and sending, any real input wakes
// it, and a quiesced follower whose leader died is woken from outside (node liveness) and elects a new leader.
import { describe, it, expect } from 'vitest';
import { Cluster } from './harness.ts';
import type { HeartbeatMessage } from '../../src/consensus/raft/types.ts';

const three = ['n1', 'n2', 'n3'];

/** A 3-node group led by n1 with one committed proposal, ticked until every node is quiesced. */
function quiescedGroup(): Cluster {
  const c = new Cluster({ voters: three, quiesce: true });
  c.elect('n1');
  c.propose('n1', 'a');
  c.deliver();
  tickUntilQuiesced(c, three);
  return c;
}

function tickUntilQuiesced(c: Cluster, ids: string[], maxTicks = 50): void {
  for (let i = 0; i < maxTicks; i++) {
    if (ids.every((id) => c.status(id).quiesced)) return;
    c.tickAll();
  }
  throw new Error(`not quiesced after ${maxTicks} ticks: ${ids.map((id) => `${id}=${JSON.stringify(c.core(id).basicStatus())}`).join(' ')}`);
}

function tickUntilLeader(c: Cluster, among: string[], maxTicks = 200): string {
  for (let i = 0; i < maxTicks; i++) {
    const leader = among.find((id) => c.status(id).role === 'leader');
    if (leader) return leader;
    c.tickAll();
  }
  throw new Error(`no leader among ${among.join(',')} after ${maxTicks} ticks: ${among.map((id) => `${id}=${JSON.stringify(c.core(id).basicStatus())}`).join(' ')}`);
}

describe('quiescence', () => {
  it('is off by default (etcd behaviour): an idle leader heartbeats for ever', () => {
    const c = new Cluster({ voters: three });
    c.elect('n1');
    c.tickAll(30);
    expect(three.map((id) => c.status(id).quiesced)).toEqual([false, false, false]);
    c.tick('n1');
    expect(c.pending('heartbeat')).toHaveLength(2);
  });

  it('an idle leader quiesces once its followers hold its whole log, and then nobody ticks or sends anything', () => {
    const c = new Cluster({ voters: three, quiesce: true });
    c.elect('n1');
    c.propose('n1', 'a');
    c.deliver();
    // The quiescing round: one heartbeat per follower, flagged, telling each to commit everything.
    c.tick('n1');
    const round = c.pending('heartbeat') as HeartbeatMessage[];
    expect(round.map((m) => [m.to, m.quiesce, m.commit])).toEqual([
      ['n2', true, 2],
      ['n3', true, 2],
    ]);
    expect(c.status('n1').quiesced).toBe(true);
    c.deliver();
    expect(three.map((id) => c.status(id).quiesced)).toEqual([true, true, true]);
    // Ten election timeouts of silence: no message, no election, every follower knows everything is committed.
    c.tickAll(100);
    expect(c.pending()).toEqual([]);
    for (const id of three) expect(c.status(id)).toMatchObject({ term: 1, leader: 'n1', commit: 2, quiesced: true });
    expect(c.status('n1').role).toBe('leader');
  });

  it('a leader does not quiesce before an entry of its term is committed, nor with a proposal in flight', () => {
    const c = new Cluster({ voters: three, quiesce: true });
    c.campaign('n1');
    c.deliver((m) => m.type !== 'app-resp'); // elected; nobody acknowledged its empty entry yet
    expect(c.status('n1').role).toBe('leader');
    c.tick('n1', 3);
    expect(c.status('n1').quiesced).toBe(false);
    c.deliver();
    c.propose('n1', 'x');
    c.tick('n1'); // 'x' is not acknowledged yet
    expect(c.status('n1').quiesced).toBe(false);
    c.deliver();
    tickUntilQuiesced(c, three);
  });

  it('a proposal wakes the quiesced group: it commits, and the group quiesces again', () => {
    const c = quiescedGroup();
    expect(c.propose('n1', 'b')).toMatchObject({ ok: true, index: 3 });
    expect(c.status('n1').quiesced).toBe(false);
    c.deliver();
    for (const id of three) expect(c.status(id)).toMatchObject({ commit: 3, quiesced: false });
    expect(c.appliedData('n3')).toEqual(['a', 'b']);
    tickUntilQuiesced(c, three);
  });

  it('a proposal refused by a quiesced follower wakes it, so it would notice a dead leader by itself', () => {
    const c = quiescedGroup();
    expect(c.propose('n2', 'x')).toMatchObject({ ok: false, code: 'NOT_LEADER', leader: 'n1' });
    expect(c.status('n2').quiesced).toBe(false);
    expect(c.status('n1').quiesced).toBe(true);
  });

  it('a read, a transfer and a conf change each wake the quiesced leader', () => {
    const read = quiescedGroup();
    read.core('n1').readIndex(new TextEncoder().encode('r1'));
    expect(read.status('n1').quiesced).toBe(false);
    read.deliver();
    expect(read.readStates.get('n1')!.map((r) => r.index)).toEqual([2]);

    const transfer = quiescedGroup();
    transfer.core('n1').transferLeadership('n2');
    transfer.deliver();
    expect(transfer.leader()).toBe('n2');
    expect(transfer.status('n2').quiesced).toBe(false);

    const conf = new Cluster({ voters: three, spares: ['n4'], quiesce: true });
    conf.elect('n1');
    conf.deliver();
    tickUntilQuiesced(conf, three);
    expect(conf.proposeConfChange('n1', { type: 'add-learner', node: 'n4' })).toMatchObject({ ok: true });
    expect(conf.status('n1').quiesced).toBe(false);
    conf.deliver();
    tickUntilQuiesced(conf, [...three, 'n4']);
    expect(conf.status('n4')).toMatchObject({ role: 'learner', commit: conf.status('n1').commit });
  });

  it('a leader crash while quiesced: followers stay quiet until told the leader is down, then elect a new leader that commits', () => {
    const c = quiescedGroup();
    c.crash('n1');
    c.tickAll(100); // without outside news nothing happens: this is what node liveness is for
    for (const id of ['n2', 'n3']) expect(c.status(id)).toMatchObject({ role: 'follower', leader: 'n1', term: 1, quiesced: true });
    // Node liveness reports n1's node down on both nodes.
    c.core('n2').peerDown('n1');
    c.core('n3').peerDown('n1');
    for (const id of ['n2', 'n3']) expect(c.status(id)).toMatchObject({ leader: null, quiesced: false });
    const leader = tickUntilLeader(c, ['n2', 'n3']);
    expect(c.status(leader).term).toBe(2);
    expect(c.propose(leader, 'after')).toMatchObject({ ok: true });
    c.deliver();
    expect(c.appliedData('n2')).toEqual(['a', 'after']);
    expect(c.appliedData('n3')).toEqual(['a', 'after']);
  });

  it('one follower told the leader is down cannot depose it: the other follower wakes in the lease and refuses', () => {
    const c = quiescedGroup();
    // A false alarm on n3 only (say its link to n1's node flapped): n2's node liveness still hears n1's node.
    c.core('n3').peerDown('n1');
    c.tickAll(60);
    expect(c.leader()).toBe('n1');
    for (const id of three) expect(c.status(id).term).toBe(1);
    expect(c.status('n3').leader).toBe('n1'); // n1, woken by n3's pre-vote, heartbeats it back
    tickUntilQuiesced(c, three);
  });

  it('a quiesced leader woken because a follower went down keeps leading with a quorum, and quiesces again', () => {
    const c = quiescedGroup();
    c.crash('n3');
    c.core('n2').peerDown('n3'); // n2 does not lead n3: nothing to do
    expect(c.status('n2').quiesced).toBe(true);
    c.core('n1').peerDown('n3');
    expect(c.pending('heartbeat')).toHaveLength(2); // it heartbeats at once (a fresh CheckQuorum round)
    c.tickAll(30);
    expect(c.status('n1')).toMatchObject({ role: 'leader', term: 1 });
    tickUntilQuiesced(c, ['n1', 'n2']);
  });

  it('a quiesced leader cut off from every follower and woken steps down within an election timeout (CheckQuorum)', () => {
    const c = quiescedGroup();
    c.isolate('n1');
    c.core('n1').peerDown('n2');
    c.core('n1').peerDown('n3');
    c.tick('n1', 10);
    expect(c.status('n1')).toMatchObject({ role: 'follower', quiesced: false });
  });

  it('a follower that restarts after the group quiesced wakes it with its pre-vote and rejoins without a new term', () => {
    const c = quiescedGroup();
    c.crash('n3');
    c.restart('n3'); // a fresh core: follower of term 1, no leader known, ticking
    expect(c.status('n3')).toMatchObject({ leader: null, quiesced: false });
    c.tickAll(40);
    expect(c.status('n3')).toMatchObject({ leader: 'n1', term: 1 });
    expect(c.leader()).toBe('n1');
    tickUntilQuiesced(c, three);
    expect(c.status('n3').term).toBe(1);
  });

  it('a lost quiescing heartbeat leaves that follower ticking; its pre-vote wakes the group, no new term, and it quiesces again', () => {
    const c = new Cluster({ voters: three, quiesce: true });
    c.elect('n1');
    c.deliver();
    c.tick('n1');
    expect(c.status('n1').quiesced).toBe(true);
    c.drop((m) => m.type === 'heartbeat' && m.to === 'n3');
    c.deliver();
    expect(c.status('n2').quiesced).toBe(true);
    expect(c.status('n3').quiesced).toBe(false);
    tickUntilQuiesced(c, three, 80);
    for (const id of three) expect(c.status(id)).toMatchObject({ term: 1, leader: 'n1' });
  });

  it('a follower behind is never told to quiesce; when it answers, the leader wakes and catches it up', () => {
    const c = new Cluster({ voters: three, quiesce: true });
    c.elect('n1');
    c.deliver();
    c.isolate('n3');
    c.tickAll(12); // a CheckQuorum round passes without n3: the leader now presumes it down
    c.propose('n1', 'while-away');
    c.deliver();
    c.tick('n1');
    expect(c.status('n1').quiesced).toBe(true);
    const round = c.pending('heartbeat') as HeartbeatMessage[];
    expect(round.map((m) => [m.to, m.quiesce, m.commit])).toEqual([
      ['n2', true, 2],
      ['n3', false, 1], // only what n3 is known to hold
    ]);
    c.deliver();
    c.heal();
    // n3 has been pre-campaigning alone; its next pre-vote wakes the group, and its answer to the leader's heartbeat
    // shows it behind, so the leader sends what it lacks before quiescing again.
    tickUntilQuiesced(c, three, 80);
    expect(c.appliedData('n3')).toEqual(['while-away']);
    for (const id of three) expect(c.status(id).term).toBe(1);
  });

  it('a message of an older term does not wake a quiesced node; one of a newer term does', () => {
    const c = quiescedGroup();
    c.core('n2').step({ type: 'heartbeat', from: 'n3', to: 'n2', term: 0, commit: 0, ctx: null, quiesce: false });
    expect(c.status('n2').quiesced).toBe(true);
    c.core('n2').step({ type: 'app-resp', from: 'n3', to: 'n2', term: 5, index: 0, reject: false, rejectHint: 0, logTerm: 0 });
    expect(c.status('n2')).toMatchObject({ quiesced: false, term: 5 });
  });

  it('a quiesced node ignores tick(); unquiesce() restarts its timers from zero', () => {
    const c = quiescedGroup();
    c.crash('n1');
    c.tick('n2', 1000);
    expect(c.status('n2').role).toBe('follower');
    c.core('n2').unquiesce();
    c.tick('n2', 9);
    expect(c.status('n2').role).toBe('follower'); // still inside the lease: n1 was last heard when n2 woke
    c.tick('n2', 20);
    expect(c.status('n2').role).toBe('pre-candidate');
  });
});
