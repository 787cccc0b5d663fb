// Scripted PBFT scenarios: normal case, batching, checkpoints and watermarks, view change, Byzantine
// primaries and new-views, state transfer and restart, each named for what it proves.
import { describe, expect, it } from 'vitest';
import { batchDigest, pbftFaults, pbftQuorum, pbftReadQuorum, pbftReadTarget, persistMustSync, toHex, type PbftMessage, type SignedPbftMessage } from '../../src/consensus/pbft/index.ts';
import { Cluster, req, sha256, signed } from './harness.ts';

const hex = (b: Uint8Array): string => toHex(b);

/**
 * Commits of view 0 never arrive: `request` prepares everywhere but commits nowhere, then the primary (org0) dies;
 * the others change view and org2 proposes 'y' in the new one.
 */
function preparedThenPrimaryDies(c: Cluster, request: string, beforeCrash: () => void = () => undefined): void {
  c.filter = (_to, m) => !(m.type === 'commit' && m.view === 0);
  c.propose('org0', request);
  c.deliverAll();
  beforeCrash();
  c.crash('org0');
  c.tick(60);
  c.propose('org2', 'y');
  c.tick(10);
}

function agreeOnEverySeq(c: Cluster, ids: string[]): void {
  const bySeq = new Map<number, string>();
  for (const id of ids) {
    for (const e of c.node(id).executed) {
      const d = hex(e.digest);
      const prev = bySeq.get(e.seq);
      expect(prev === undefined || prev === d, `${id} seq ${e.seq}: ${d} vs ${prev}`).toBe(true);
      bySeq.set(e.seq, d);
    }
  }
}

describe('quorum arithmetic', () => {
  it('tolerates f = floor((n-1)/3) faults with quorums of ceil((n+f+1)/2)', () => {
    expect([4, 5, 6, 7, 10].map(pbftFaults)).toEqual([1, 1, 1, 2, 3]);
    expect([4, 5, 6, 7, 10].map(pbftQuorum)).toEqual([3, 4, 4, 5, 7]);
  });
});

describe('read index (the pbft read barrier)', () => {
  it('a read needs n - quorum + f + 1 answers (2f+1 at n = 3f+1) and waits for the lowest maximum of that many', () => {
    expect([4, 5, 6, 7, 10].map(pbftReadQuorum)).toEqual([3, 3, 4, 5, 7]);
    expect(pbftReadTarget([5, 9], 4)).toBeNull();
    expect(pbftReadTarget([5, 9, 2], 4)).toBe(9);
    // A fourth answer drops the highest: one Byzantine replica answering 1e9 cannot hold the read back.
    expect(pbftReadTarget([5, 1e9, 2, 7], 4)).toBe(7);
    expect(pbftReadTarget([3, 3, 3, 3, 3, 1e9, 1e9], 7)).toBe(3);
    expect(pbftReadTarget([0, 0, 0, 0, 4, 1e9, 1e9], 7)).toBe(4);
  });

  it('a replica that sent its commit vote answers that sequence number before it executes it', () => {
    const c = new Cluster(4);
    // org3 never receives commits: it prepares and votes to commit, but cannot execute.
    c.filter = (to, m) => !(to === 'org3' && m.type === 'commit');
    c.propose('org0', 'a');
    c.deliverAll();
    for (const id of ['org0', 'org1', 'org2']) {
      expect(c.node(id).lastExecuted).toBe(1);
      expect(c.core(id).readIndex()).toBe(1);
    }
    expect(c.node('org3').lastExecuted).toBe(0);
    expect(c.core('org3').readIndex()).toBe(1);
  });

  it('the answer survives a restart (the commit vote is durable) and covers a stable checkpoint not executed yet', () => {
    const c = new Cluster(4);
    c.filter = (to, m) => !(to === 'org3' && m.type === 'commit');
    c.propose('org0', 'a');
    c.deliverAll();
    c.crash('org3');
    c.start('org3');
    expect(c.node('org3').lastExecuted).toBe(0);
    expect(c.core('org3').readIndex()).toBe(1);
    // A replica that only prepared (its commit vote not sent) does not count the batch: a read may not wait for it.
    const d = new Cluster(4);
    d.filter = (to, m) => !(to === 'org3' && (m.type === 'prepare' || m.type === 'commit'));
    d.propose('org0', 'b');
    d.deliverAll();
    expect(d.core('org3').readIndex()).toBe(0);
    expect(d.core('org0').readIndex()).toBe(1);
    // Neither prepares nor commits reach org3 for four batches, but the others' checkpoint votes at 4 do.
    for (const id of ['c', 'd', 'e']) {
      d.propose('org0', id);
      d.deliverAll();
    }
    expect(d.node('org0').lastExecuted).toBe(4);
    expect(d.core('org3').status().stableCheckpoint).toBe(4);
    expect(d.node('org3').lastExecuted).toBe(0);
    expect(d.core('org3').readIndex()).toBe(4);
  });
});

describe('normal case', () => {
  it('a request proposed at the primary commits everywhere at seq 1 with a 2f+1 commit certificate', () => {
    const c = new Cluster(4);
    c.propose('org0', 'a');
    c.deliverAll();
    for (const id of c.ids) {
      const [e] = c.node(id).executed;
      expect(e?.seq).toBe(1);
      expect(e?.requests.map((r) => r.id)).toEqual(['a']);
      expect(e?.certificate).toHaveLength(3);
      expect(new Set(e?.certificate.map((m) => m.from)).size).toBe(3);
      expect(e?.certificate.every((m) => m.type === 'commit' && m.sig.length > 0)).toBe(true);
      expect(hex(e!.digest)).toBe(hex(batchDigest(sha256, [req('a')])));
    }
  });

  it('a request proposed at a backup is forwarded and committed', () => {
    const c = new Cluster(4);
    c.propose('org2', 'b');
    c.deliverAll();
    for (const id of c.ids) expect(c.executedIds(id)).toEqual(['b']);
  });

  it('batches queued requests up to maxBatch and executes a re-proposed request id once', () => {
    const c = new Cluster(4, { maxBatch: 4 });
    for (let i = 0; i < 10; i++) c.core('org0').propose(req(`r${i}`));
    c.drain('org0');
    c.deliverAll();
    c.propose('org2', 'r3');
    c.tick(5);
    for (const id of c.ids) {
      const sizes = c.node(id).executed.map((e) => e.batch.length);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(4);
      expect(Math.max(...sizes)).toBeGreaterThan(1);
      expect([...c.executedIds(id)].sort()).toEqual(Array.from({ length: 10 }, (_, i) => `r${i}`).sort());
    }
  });
});

describe('request validation', () => {
  it('a replica validates a request once: a pre-prepare carrying bytes it already validated is not checked again', () => {
    const checked: string[] = [];
    const c = new Cluster(4, { validateRequest: (p) => (checked.push(new TextDecoder().decode(p)), p.length > 0 && p[0] !== 0xff) });
    c.propose('org2', 'b'); // org2 validates, forwards; org0, org1, org3 validate the forward; org0 pre-prepares
    c.deliverAll();
    for (const id of c.ids) expect(c.executedIds(id)).toEqual(['b']);
    expect(checked).toEqual(Array.from({ length: 4 }, () => 'payload-b'));
  });

  it('the same request id with other bytes in a pre-prepare is validated (and refused when invalid)', () => {
    const c = new Cluster(4);
    const target = 'org2';
    c.inject(target, signed({ type: 'request', to: 'all', request: req('x') }, 'org1'));
    const forged = [{ id: 'x', payload: new Uint8Array([0xff]) }];
    c.inject(target, signed({ type: 'pre-prepare', to: target, view: 0, seq: 1, digest: batchDigest(sha256, forged), requests: forged }, 'org0'));
    expect(c.core(target).status().dropped).toMatchObject({ 'invalid-request': 1 });
    expect(c.core(target).status().lastExecuted).toBe(0);
  });
});

describe('a replica that cannot vouch for a request the others accept (its federation file lacks a key)', () => {
  // org3 refuses every request whose id starts with k; the other three accept them.
  function skewed(): Cluster {
    const c = new Cluster(4);
    c.judge = (id, payload) => !(id === 'org3' && new TextDecoder().decode(payload).startsWith('payload-k'));
    return c;
  }
  const votesOf = (c: Cluster, from: string) => c.node(from).durable.log.filter((m) => (m.type === 'prepare' || m.type === 'commit') && m.from === from && m.seq === 1);

  it('never prepares the batch, but executes it in order once 2f+1 replicas commit it', () => {
    const c = skewed();
    c.propose('org0', 'k1');
    c.deliverAll();
    c.propose('org1', 'p2');
    c.deliverAll();
    for (const id of c.ids) expect(c.executedIds(id), id).toEqual(['k1', 'p2']);
    agreeOnEverySeq(c, c.ids);
    expect(votesOf(c, 'org3')).toEqual([]);
    expect(new Set(votesOf(c, 'org1').map((m) => m.type))).toEqual(new Set(['prepare', 'commit']));
    expect(c.core('org3').status().dropped['invalid-request']).toBeGreaterThanOrEqual(1);
  });

  it('a batch it cannot judge and that no quorum commits is never executed by it', () => {
    const c = skewed();
    c.filter = (to, m) => !(to === 'org3' && m.type === 'commit');
    c.propose('org0', 'k1');
    c.deliverAll();
    expect(c.executedIds('org0')).toEqual(['k1']);
    expect(c.core('org3').status().lastExecuted).toBe(0);
  });

  it('follows a new view that re-proposes a batch it cannot judge (prepared by a quorum) and prepares it there', () => {
    const c = skewed();
    preparedThenPrimaryDies(c, 'k1');
    for (const id of ['org1', 'org2', 'org3']) {
      const st = c.core(id).status();
      expect(st.view, id).toBeGreaterThanOrEqual(1);
      expect(st.inViewChange, id).toBe(false);
      expect(c.executedIds(id), id).toEqual(['k1', 'y']);
    }
    expect(c.core('org3').status().dropped['bad-new-view'] ?? 0).toBe(0);
  });

  it('held for an equivocating primary, a batch it cannot judge does not block the one the others commit there', () => {
    const c = skewed();
    c.crash('org0');
    const send = (to: string, m: PbftMessage): void => c.inject(to, signed(m, 'org0'));
    // org3 gets a batch it cannot judge at seq 1; org1 and org2 get another, which they commit with org0's votes.
    const held = [req('k1')];
    send('org3', { type: 'pre-prepare', to: 'org3', view: 0, seq: 1, digest: batchDigest(sha256, held), requests: held });
    const committed = [req('b1')];
    const digest = batchDigest(sha256, committed);
    for (const to of ['org1', 'org2']) {
      send(to, { type: 'pre-prepare', to, view: 0, seq: 1, digest, requests: committed });
      send(to, { type: 'prepare', to, view: 0, seq: 1, digest });
      send(to, { type: 'commit', to, view: 0, seq: 1, digest });
    }
    c.deliverAll();
    expect(c.executedIds('org1')).toEqual(['b1']);
    expect(c.executedIds('org3')).toEqual([]);
    // The next request finds the primary gone: the view changes, seq 1 is re-proposed from its prepared certificate
    // (b1), and org3 — whose held batch never gathered a quorum — prepares and executes it, then the new request.
    c.propose('org1', 'r2');
    c.tick(80);
    for (const id of ['org1', 'org2', 'org3']) expect(c.executedIds(id), id).toEqual(['b1', 'r2']);
    agreeOnEverySeq(c, ['org1', 'org2', 'org3']);
  });

  it('executes a batch it cannot judge on f+1 matching executed claims, and never on one', () => {
    const c = skewed();
    c.filter = (to) => to !== 'org3';
    c.propose('org0', 'k1');
    c.deliverAll();
    expect(c.executedIds('org1')).toEqual(['k1']);
    const batch = [req('k1')];
    const claim = { type: 'executed', to: 'org3', seq: 1, digest: batchDigest(sha256, batch), requests: batch } as PbftMessage;
    c.inject('org3', signed(claim, 'org1'));
    expect(c.core('org3').status().lastExecuted).toBe(0);
    c.inject('org3', signed(claim, 'org2'));
    expect(c.executedIds('org3')).toEqual(['k1']);
  });
});

describe('checkpoints and watermarks', () => {
  it('a checkpoint signed by 2f+1 becomes stable, moves the watermarks and garbage-collects the log', () => {
    const c = new Cluster(4, { checkpointInterval: 4, watermarkWindow: 8 });
    for (let i = 0; i < 12; i++) {
      c.propose('org0', `r${i}`);
      c.deliverAll();
    }
    for (const id of c.ids) {
      const st = c.core(id).status();
      expect(st.lastExecuted).toBe(12);
      expect(st.lowWatermark).toBe(12);
      expect(st.highWatermark).toBe(20);
      const d = c.node(id).durable;
      expect(d.stableCheckpoint?.seq).toBe(12);
      expect(d.stableCheckpoint?.proof.length).toBeGreaterThanOrEqual(3);
      expect(d.log.some((m) => 'seq' in m && m.type !== 'executed' && (m as { seq: number }).seq <= 12)).toBe(false);
    }
    const before = c.core('org2').status().dropped['outside-watermarks'] ?? 0;
    c.inject('org2', signed({ type: 'prepare', to: 'all', view: 0, seq: 21, digest: new Uint8Array(32) }, 'org1'));
    c.inject('org2', signed({ type: 'prepare', to: 'all', view: 0, seq: 12, digest: new Uint8Array(32) }, 'org1'));
    expect(c.core('org2').status().dropped['outside-watermarks']).toBe(before + 2);
  });

  it('the primary stops assigning sequence numbers at the high watermark until a checkpoint is stable', () => {
    const c = new Cluster(4, { checkpointInterval: 4, watermarkWindow: 8, maxBatch: 1 });
    // Checkpoint messages are lost: nothing becomes stable, so at most L = 8 batches are ordered.
    c.filter = (_to, m) => m.type !== 'checkpoint';
    for (let i = 0; i < 12; i++) {
      c.propose('org0', `r${i}`);
      c.deliverAll();
    }
    expect(c.core('org1').status().lastExecuted).toBe(8);
    c.filter = () => true;
    c.tick(8);
    expect(c.core('org1').status().lastExecuted).toBe(12);
  });
});

describe('view change', () => {
  it('a silent primary is replaced and a request prepared in the old view commits at the same seq', () => {
    const c = new Cluster(4);
    preparedThenPrimaryDies(c, 'x', () => {
      const prepared = c.node('org1').durable.log.filter((m) => m.type === 'prepare' && m.sig.length > 0);
      expect(prepared.length).toBeGreaterThanOrEqual(3);
      expect(c.core('org1').status().lastExecuted).toBe(0);
    });
    for (const id of ['org1', 'org2', 'org3']) {
      const st = c.core(id).status();
      expect(st.view).toBeGreaterThanOrEqual(1);
      expect(st.inViewChange).toBe(false);
      const [e] = c.node(id).executed;
      expect(e?.seq).toBe(1);
      expect(e?.view).toBeGreaterThanOrEqual(1);
      expect(e?.requests.map((r) => r.id)).toEqual(['x']);
      expect(c.executedIds(id)).toEqual(['x', 'y']);
    }
  });

  it('a replica that sees f+1 view-changes for a higher view joins it', () => {
    const c = new Cluster(4);
    const vc = (from: string): SignedPbftMessage => signed({ type: 'view-change', to: 'all', view: 2, checkpoint: null, prepared: [] }, from);
    c.inject('org3', vc('org1'));
    expect(c.core('org3').status().inViewChange).toBe(false);
    c.inject('org3', vc('org2'));
    expect(c.core('org3').status()).toMatchObject({ view: 2, inViewChange: true });
  });

  it('a new-view whose O set differs from what V implies, or with too few view-changes, is rejected', () => {
    const c = new Cluster(4);
    const vcs = ['org1', 'org2', 'org3'].map((from) =>
      signed({ type: 'view-change', to: 'all', view: 1, checkpoint: null, prepared: [] }, from),
    );
    const forged = [req('evil')];
    const badO = signed(
      { type: 'new-view', to: 'all', view: 1, viewChanges: vcs, prePrepares: [{ seq: 1, digest: batchDigest(sha256, forged), requests: forged }] },
      'org1',
    );
    const fewV = signed({ type: 'new-view', to: 'all', view: 1, viewChanges: vcs.slice(0, 2), prePrepares: [] }, 'org1');
    const notPrimary = signed({ type: 'new-view', to: 'all', view: 1, viewChanges: vcs, prePrepares: [] }, 'org2');
    for (const m of [badO, fewV, notPrimary]) c.inject('org2', m);
    expect(c.core('org2').status()).toMatchObject({ view: 0, dropped: { 'bad-new-view': 3 } });
    c.inject('org2', signed({ type: 'new-view', to: 'all', view: 1, viewChanges: vcs, prePrepares: [] }, 'org1'));
    expect(c.core('org2').status()).toMatchObject({ view: 1, inViewChange: false, primary: 'org1' });
  });
});

describe('Byzantine primary and messages', () => {
  function equivocate(c: Cluster): void {
    c.crash('org0');
    const send = (to: string, m: PbftMessage): void => c.inject(to, signed(m, 'org0'));
    for (const [to, id] of [['org1', 'A'], ['org2', 'B'], ['org3', 'B']] as const) {
      const requests = [req(id)];
      const digest = batchDigest(sha256, requests);
      send(to, { type: 'pre-prepare', to, view: 0, seq: 1, digest, requests });
      for (const peer of ['org1', 'org2', 'org3']) {
        if ((peer === 'org1') === (to === 'org1')) {
          send(peer, { type: 'prepare', to: peer, view: 0, seq: 1, digest });
          send(peer, { type: 'commit', to: peer, view: 0, seq: 1, digest });
        }
      }
    }
    c.deliverAll();
  }

  it('an equivocating primary cannot make correct replicas commit different batches at one seq', () => {
    const c = new Cluster(4);
    equivocate(c);
    agreeOnEverySeq(c, ['org1', 'org2', 'org3']);
    c.tick(300);
    agreeOnEverySeq(c, ['org1', 'org2', 'org3']);
    for (const id of ['org1', 'org2', 'org3']) expect([...c.executedIds(id)].sort()).toEqual(['A', 'B']);
  });

  it('the same equivocation splits replicas when the quorum is (unsafely) 2f: the check above is meaningful', () => {
    const c = new Cluster(4, { testOnlyQuorum: 2 });
    equivocate(c);
    const d1 = c.node('org1').executed[0]?.digest;
    const d2 = c.node('org2').executed[0]?.digest;
    expect(d1 && d2 && hex(d1) !== hex(d2)).toBe(true);
  });

  it('drops and counts votes from non-replicas, wrong-primary pre-prepares, duplicates, conflicts and bad digests', () => {
    const c = new Cluster(4);
    const digest = batchDigest(sha256, [req('a')]);
    const target = 'org2';
    c.inject(target, signed({ type: 'prepare', to: target, view: 0, seq: 1, digest }, 'mallory'));
    c.inject(target, signed({ type: 'pre-prepare', to: target, view: 0, seq: 1, digest, requests: [req('a')] }, 'org1'));
    c.inject(target, signed({ type: 'pre-prepare', to: target, view: 0, seq: 2, digest: new Uint8Array(32), requests: [req('a')] }, 'org0'));
    c.inject(target, signed({ type: 'pre-prepare', to: target, view: 0, seq: 3, digest: batchDigest(sha256, [{ id: 'z', payload: new Uint8Array([0xff]) }]), requests: [{ id: 'z', payload: new Uint8Array([0xff]) }] }, 'org0'));
    c.inject(target, signed({ type: 'prepare', to: target, view: 0, seq: 1, digest }, 'org3'));
    c.inject(target, signed({ type: 'prepare', to: target, view: 0, seq: 1, digest }, 'org3'));
    c.inject(target, signed({ type: 'prepare', to: target, view: 0, seq: 1, digest: new Uint8Array(32) }, 'org3'));
    c.inject(target, signed({ type: 'commit', to: target, view: 5, seq: 1, digest }, 'org3'));
    expect(c.core(target).status().dropped).toMatchObject({
      'not-replica': 1,
      'not-primary': 1,
      'bad-digest': 1,
      'invalid-request': 1,
      duplicate: 1,
      'conflicting-vote': 1,
      'wrong-view': 1,
    });
    expect(c.core(target).status().lastExecuted).toBe(0);
  });
});

/** org0 proposes requests r<from>..r<to - 1>, one at a time, each delivered everywhere. */
function proposeRange(c: Cluster, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    c.propose('org0', `r${i}`);
    c.deliverAll();
  }
}

/** A cluster (K = 4) in which org3 was down for 12 requests, restarted, and learnt it must transfer state to 12. */
function org3BehindTwelve(): Cluster {
  const c = new Cluster(4, { checkpointInterval: 4, watermarkWindow: 8 });
  c.crash('org3');
  proposeRange(c, 0, 12);
  c.start('org3');
  c.tick(6);
  return c;
}

describe('recovery', () => {
  it('a replica that missed checkpoints is told to transfer state, installs it and keeps executing', () => {
    const c = org3BehindTwelve();
    const t = c.node('org3').transfer;
    expect(t?.seq).toBe(12);
    expect(c.core('org3').status().stateTransferPending).toBe(12);
    c.transfer('org3', 'org0');
    c.propose('org0', 'after');
    c.deliverAll();
    expect(c.core('org3').status().lastExecuted).toBe(13);
    expect(c.executedIds('org3')).toContain('after');
    agreeOnEverySeq(c, c.ids);
  });

  it('a transfer that completes after a newer checkpoint became stable counts, and goes on to the newer one', () => {
    const c = org3BehindTwelve();
    const first = c.node('org3').transfer!;
    expect(first.seq).toBe(12);
    // While org3 copies the records up to 12, the others move on and a newer checkpoint becomes stable at org3 too.
    proposeRange(c, 12, 20);
    c.tick(6);
    expect(c.core('org3').status().stableCheckpoint).toBe(20);
    // The copy up to 12 completes: it counts (before, installState threw, and the requests it copied were not counted
    // as executed here — one carried again by a later batch ran twice on this replica only).
    const copied = c.node('org0').executed.filter((e) => e.seq <= first.seq);
    const ids = copied.flatMap((e) => e.requests.map((r) => r.id));
    const n = c.node('org3');
    n.executed = [...copied];
    n.ids = [...ids];
    n.lastExecuted = first.seq;
    c.core('org3').installState(first.seq, first.digest, ids);
    c.drain('org3');
    expect(c.core('org3').status().lastExecuted).toBe(12);
    expect(n.transfer?.seq).toBe(20);
    // A request executed up to 12, forwarded again, is known as executed: it does not wait (r12..r19 do: they
    // executed after 12, and org3 learns that with the next transfer).
    const waiting = c.core('org3').status().pendingRequests;
    c.inject('org3', signed({ type: 'request', to: 'all', request: req('r3') }, 'org1'));
    expect(c.core('org3').status().pendingRequests).toBe(waiting);
    c.inject('org3', signed({ type: 'request', to: 'all', request: req('fresh') }, 'org1'));
    expect(c.core('org3').status().pendingRequests).toBe(waiting + 1);
    // The rest of the way, then normal work.
    c.transfer('org3', 'org0');
    expect(c.core('org3').status().lastExecuted).toBe(20);
    c.propose('org0', 'after');
    c.deliverAll();
    expect(c.executedIds('org3')).toContain('after');
    expect(c.executedIds('org3').filter((id) => id === 'r3')).toHaveLength(1);
    agreeOnEverySeq(c, c.ids);
  });

  it('a replica restarted from its persisted state finishes the round without executing anything twice', () => {
    const c = new Cluster(4);
    c.filter = (to, m) => !(to === 'org2' && m.type === 'commit');
    c.propose('org0', 'a');
    c.deliverAll();
    expect(c.core('org2').status().lastExecuted).toBe(0);
    c.crash('org2');
    c.filter = () => true;
    c.start('org2');
    c.tick(10);
    expect(c.executedIds('org2')).toEqual(['a']);
    c.propose('org0', 'b');
    c.deliverAll();
    for (const id of c.ids) expect(c.executedIds(id)).toEqual(['a', 'b']);
  });

  it('at most once within the executed window: an id re-sent after `executedWindow` newer requests executes again, alike on a restarted replica', () => {
    const c = new Cluster(4, { executedWindow: 3 });
    for (const id of ['a', 'b']) {
      c.propose('org0', id);
      c.deliverAll();
    }
    c.propose('org1', 'a'); // within the window: not executed again
    c.deliverAll();
    c.tick(5);
    for (const id of c.ids) expect(c.executedIds(id)).toEqual(['a', 'b']);
    // org3 restarts: it rebuilds its window from its (longer) executed list, as the driver loads the stored ids.
    c.crash('org3');
    c.start('org3');
    for (const id of ['c', 'd']) {
      c.propose('org0', id);
      c.deliverAll();
    }
    c.propose('org2', 'a'); // 'a' left the window (b, c, d are newer): it executes again, on every replica
    c.deliverAll();
    c.tick(5);
    c.deliverAll();
    for (const id of c.ids) expect(c.executedIds(id)).toEqual(['a', 'b', 'c', 'd', 'a']);
  });

  it('a backup that executed before crashing does not execute again after restart', () => {
    const c = new Cluster(4);
    c.propose('org0', 'a');
    c.deliverAll();
    c.crash('org1');
    c.start('org1');
    c.tick(10);
    expect(c.executedIds('org1')).toEqual(['a']);
  });
});

describe('what a driver must sync before sending (persistMustSync)', () => {
  // Drivers write a Ready's persist lazily unless persistMustSync says otherwise: safety needs every statement a
  // replica makes for the first time (pre-prepare, prepare, commit, checkpoint, view-change, new-view) durable
  // before it leaves, so that a restarted replica can never contradict itself.
  function statementKey(id: string, m: PbftMessage): string | null {
    switch (m.type) {
      case 'pre-prepare':
      case 'prepare':
      case 'commit':
        return `${id}/${m.type}/${m.view}/${m.seq}/${hex(m.digest)}`;
      case 'checkpoint':
        return `${id}/checkpoint/${m.seq}/${hex(m.digest)}`;
      case 'view-change':
      case 'new-view':
        return `${id}/${m.type}/${m.view}`;
      default:
        return null; // requests and `executed` answers state nothing of the sender's own
    }
  }

  it('every first statement of a replica leaves in a synced Ready; a persist that sends nothing is lazy', () => {
    const c = new Cluster(4);
    const stated = new Set<string>();
    let synced = 0;
    let lazyWithoutMessages = 0;
    c.onReady = (id, ready, durable) => {
      const sync = persistMustSync(ready, durable, id);
      if (ready.persist && !sync && ready.messages.length === 0) lazyWithoutMessages++;
      if (sync) synced++;
      for (const m of ready.messages) {
        const key = statementKey(id, m);
        if (key === null || stated.has(key)) continue;
        stated.add(key);
        expect(sync, `${key} left in a Ready that was not synced`).toBe(true);
        // A new-view states the pre-prepares of its O set: re-sending one later states nothing new.
        if (m.type === 'new-view') for (const e of m.prePrepares) stated.add(`${id}/pre-prepare/${m.view}/${e.seq}/${hex(e.digest)}`);
      }
    };
    // Normal case with checkpoints (K=4), then a view change: commits of view 0 for 'x' are lost, the primary dies.
    for (let i = 0; i < 9; i++) {
      c.propose(`org${i % 4}`, `r${i}`);
      c.deliverAll();
    }
    c.filter = (_to, m) => !(m.type === 'commit' && m.view === 0);
    c.propose('org0', 'x');
    c.deliverAll();
    c.crash('org0');
    c.filter = () => true;
    c.tick(60);
    c.propose('org2', 'y');
    for (let i = 0; i < 20 && !c.executedIds('org1').includes('y'); i++) c.tick(10);
    for (const id of ['org1', 'org2', 'org3']) expect(c.executedIds(id)).toEqual([...Array.from({ length: 9 }, (_, i) => `r${i}`), 'x', 'y']);
    expect([...stated].some((k) => k.includes('/new-view/'))).toBe(true);
    expect([...stated].some((k) => k.includes('/checkpoint/'))).toBe(true);
    // The rule is not "sync everything": most Readies that persist something need no fsync.
    expect(synced).toBeGreaterThan(0);
    expect(lazyWithoutMessages).toBeGreaterThan(synced);
  });
});
