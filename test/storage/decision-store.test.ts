// The decision machine over StoredDecisions (real RocksDB): the same answers as the in-memory machine with a tiny
// subject cache, reads that see writes still waiting for their batch, and after a reopen from disk alone — a late
// vote is decided-already, a resent JWS a duplicate, a replayed nonce refused.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DecisionMachine, type ApplyOutcome } from '../../src/verdict/machine.ts';
import { jwsHashOf } from '../../src/verdict/verify.ts';
import { signProposal } from '../../src/verdict/proposal.ts';
import { StoredDecisions } from '../../src/storage/decision-store.ts';
import { NodeStore } from '../../src/storage/node-store.ts';
import { makeFederation, makeSwarm, verdictOf } from '../verdict/fixtures.ts';
import { tempDir } from './helpers.ts';

const ORGS = ['a', 'b', 'c'];
const fed = makeFederation(ORGS);
const swarm = makeSwarm('s1', ORGS, { quorum: 'majority' });

let dir: { path: string; cleanup: () => Promise<void> };
let store: NodeStore;

beforeEach(async () => {
  dir = await tempDir('decisions');
  store = await NodeStore.open(dir.path);
});

afterEach(async () => {
  await store.close();
  await dir.cleanup();
});

function applyOne(machine: DecisionMachine, index: number, jws: string): ApplyOutcome {
  return machine.apply(index, signProposal('s1', 'a', [jws], fed.keys.a!.node), { verifyAgentSignatures: true })[0]!;
}

/** Writes what the store holds unsaved, as SwarmState.flush does (the counters travel in its meta). */
async function persist(decisions: StoredDecisions): Promise<void> {
  const { ops, settle } = decisions.drain();
  await store.kv('s1', 'applied').putSynced(ops);
  settle();
}

describe('decisions on disk', () => {
  it('answer like the in-memory machine with a two-subject cache, across batches still syncing', async () => {
    const decisions = new StoredDecisions(store.kv('s1', 'applied'), 2);
    const onDisk = new DecisionMachine(swarm, fed.keyring, decisions);
    const inMemory = new DecisionMachine(swarm, fed.keyring);
    const votes: string[] = [];
    for (let s = 0; s < 12; s++) for (const org of ORGS) votes.push(verdictOf(fed, org, { subject: `pr-${s}`, verdict: s % 3 === 0 ? 'reject' : 'approve' }));
    // resend a few (duplicates) and replay a nonce under another verdict
    votes.push(votes[0]!, votes[7]!);
    const replayedNonce = verdictOf(fed, 'b', { subject: 'pr-x', verdict: 'approve', nonce: JSON.parse(Buffer.from(votes[4]!.split('.')[1]!, 'base64url').toString()).nonce as string });
    votes.push(replayedNonce);
    let syncing: Promise<void> = Promise.resolve();
    for (let i = 0; i < votes.length; i++) {
      expect(applyOne(onDisk, i + 1, votes[i]!)).toEqual(applyOne(inMemory, i + 1, votes[i]!));
      // every third entry starts a batch without waiting for it: reads must see what is still syncing
      if (i % 3 === 2) {
        const previous = syncing;
        const batch = persist(decisions);
        syncing = Promise.all([previous, batch]).then(() => undefined);
      }
    }
    await syncing;
    expect(onDisk.subjectCount()).toBe(inMemory.subjectCount());
    for (let s = 0; s < 12; s++) expect(onDisk.subject(`pr-${s}`)).toEqual(inMemory.subject(`pr-${s}`));
    expect(onDisk.subject('pr-x')).toEqual(inMemory.subject('pr-x'));
  });

  it('a batch reads the disk in one multi-get and answers like the in-memory machine, its own writes included', async () => {
    const kv = store.kv('s1', 'applied');
    const calls = { getSync: 0, getManySync: 0 };
    const counted = new Proxy(kv, {
      get(target, name, receiver) {
        const value = Reflect.get(target, name, receiver) as unknown;
        if ((name === 'getSync' || name === 'getManySync') && typeof value === 'function') {
          return (...args: unknown[]) => (calls[name]++, (value as (...a: unknown[]) => unknown).apply(target, args));
        }
        return value;
      },
    });
    const decisions = new StoredDecisions(counted, 2);
    const onDisk = new DecisionMachine(swarm, fed.keyring, decisions);
    const inMemory = new DecisionMachine(swarm, fed.keyring);
    const first = ORGS.map((org) => verdictOf(fed, org, { subject: 'pr-1', verdict: 'approve' }));
    const replay = verdictOf(fed, 'c', { subject: 'pr-9', verdict: 'approve', nonce: JSON.parse(Buffer.from(first[2]!.split('.')[1]!, 'base64url').toString()).nonce as string });
    const batches = [
      first.slice(0, 2),
      // same subject twice in one batch, a resend of an earlier batch, one of this batch, a malformed JWS
      [first[2]!, verdictOf(fed, 'a', { subject: 'pr-2', verdict: 'reject' }), first[0]!, verdictOf(fed, 'b', { subject: 'pr-2', verdict: 'reject' }), 'not.a.jws'],
      // a late vote, a nonce replay, a new subject twice
      [verdictOf(fed, 'c', { subject: 'pr-2', verdict: 'approve' }), replay, verdictOf(fed, 'a', { subject: 'pr-3', verdict: 'approve' }), verdictOf(fed, 'a', { subject: 'pr-3', verdict: 'reject' })],
    ];
    for (const [i, batch] of batches.entries()) {
      const command = signProposal('s1', 'a', batch, fed.keys.a!.node);
      const before = { ...calls };
      const got = onDisk.apply(i + 1, command, { verifyAgentSignatures: true });
      expect(got).toEqual(inMemory.apply(i + 1, command, { verifyAgentSignatures: true }));
      expect(calls.getManySync - before.getManySync, `batch ${i}: one multi-get`).toBe(1);
      expect(calls.getSync - before.getSync, `batch ${i}: no single reads`).toBe(0);
      await persist(decisions); // the next batch reads what this one wrote from disk
    }
    expect(onDisk.subject('pr-2')).toEqual(inMemory.subject('pr-2'));
    expect(onDisk.subject('pr-3')).toEqual(inMemory.subject('pr-3'));

    // Admission on the receiving node: one multi-get for the nonce and the verdict, answers as in memory.
    const hashOf = jwsHashOf;
    const payloadOf = (jws: string) => JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString()) as { org: string; nonce: string };
    const fresh = verdictOf(fed, 'b', { subject: 'pr-4', verdict: 'approve' });
    for (const [jws, expected] of [
      [first[0]!, { index: 1, subject: 'pr-1' }],
      [fresh, undefined],
    ] as const) {
      const before = { ...calls };
      const { org, nonce } = payloadOf(jws);
      expect(onDisk.admissionLookup(org, nonce, hashOf(jws))).toEqual(expected);
      expect(inMemory.admissionLookup(org, nonce, hashOf(jws))).toEqual(expected);
      expect(calls.getManySync - before.getManySync, 'admission: one multi-get').toBe(1);
      expect(calls.getSync - before.getSync, 'admission: no single reads').toBe(0);
    }
    const { org, nonce } = payloadOf(replay);
    expect(() => onDisk.admissionLookup(org, nonce, hashOf(replay))).toThrow(/NONCE_REPLAYED|already used nonce/);
  });

  it('after a reopen, from disk alone: decided-already, duplicate and a refused nonce replay', async () => {
    const first = new StoredDecisions(store.kv('s1', 'applied'));
    const machine = new DecisionMachine(swarm, fed.keyring, first);
    const a = verdictOf(fed, 'a', { subject: 'pr-1', verdict: 'approve', nonce: 'AAAAAAAAAAAAAAAAAAAAAQ' });
    const b = verdictOf(fed, 'b', { subject: 'pr-1', verdict: 'approve' });
    expect(applyOne(machine, 1, a).status).toBe('recorded');
    expect(applyOne(machine, 2, b)).toMatchObject({ status: 'decision', decision: { value: 'approve', index: 2 } });
    await persist(first);
    const counters = machine.counters();
    await store.close();
    store = await NodeStore.open(dir.path);

    const again = new DecisionMachine(swarm, fed.keyring, new StoredDecisions(store.kv('s1', 'applied')), counters);
    expect(again.subject('pr-1')?.decision).toMatchObject({ value: 'approve', index: 2, votes: 2 });
    const late = verdictOf(fed, 'c', { subject: 'pr-1', verdict: 'reject' });
    expect(applyOne(again, 3, late)).toMatchObject({ status: 'decided-already', decision: { value: 'approve', index: 2 } });
    expect(applyOne(again, 4, a)).toMatchObject({ status: 'duplicate', index: 1, decision: { value: 'approve' } });
    const replay = verdictOf(fed, 'a', { subject: 'pr-2', verdict: 'approve', nonce: 'AAAAAAAAAAAAAAAAAAAAAQ' });
    expect(applyOne(again, 5, replay)).toMatchObject({ status: 'rejected', code: 'NONCE_REPLAYED' });
    expect(again.subject('pr-1')?.late).toEqual([{ org: 'c', agent: 'c-bot', verdict: 'reject', index: 3, jwsHash: expect.any(String) }]);
    expect(again.lookupVerdict(applyOne(again, 6, b).jwsHash)).toEqual({ index: 2, subject: 'pr-1' });
    expect(again.subjectCount()).toBe(1);
  });
});
