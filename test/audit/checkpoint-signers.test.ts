// Which tree sizes a node signs checkpoints of (SwarmState over real RocksDB): only those at which it is a voter of
// the swarm — plus the entry that changed the voters, which the finishing era may sign. A newcomer catching up
// computes every root the members signed long before it joined; its signature there is refused by an auditor
// replaying the membership (CHECKPOINT_NOT_MEMBER — seen in CI when a joining pbft replica co-signed the primary's
// checkpoint of a size before its admission, which gossip delivered while it caught up).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { signCheckpoint, type Checkpoint } from '../../src/audit/checkpoint.ts';
import { encodeConfChange } from '../../src/consensus/raft/confchange.ts';
import type { ConfChange } from '../../src/consensus/raft/types.ts';
import { SwarmState } from '../../src/swarm/swarm-state.ts';
import { encodeCommand } from '../../src/verdict/proposal.ts';
import { makeFederation, makeSwarm } from '../verdict/fixtures.ts';
import { openSwarmState } from '../support/swarm-state.ts';

const fed = makeFederation(['acme', 'globex', 'initech', 'eve']);
// The file lists eve already (as the newcomer's own file does); the swarm's history starts without it.
const swarm = makeSwarm('s1', ['acme', 'globex', 'initech', 'eve']);
const GENESIS = ['acme', 'globex', 'initech'];
const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A swarm state of `self` over a fresh RocksDB folder, its history starting without eve. */
async function openState(self: string): Promise<{ state: SwarmState; gossip: Checkpoint[]; close: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'conclave-signers-'));
  dirs.push(dir);
  const { store, state, gossip } = await openSwarmState(fed, swarm, dir, self, GENESIS);
  return { state, gossip, close: () => store.close() };
}

const noop = encodeCommand({ v: 1, type: 'noop' });
const apply = (state: SwarmState, data: Uint8Array = noop, kind: 'command' | 'conf' = 'command') => state.apply({ index: state.size + 1, epoch: 1, kind, data });
const conf = (state: SwarmState, cc: ConfChange) => apply(state, encodeConfChange(cc), 'conf');
/** `orgs`' checkpoint of `size` (over `state`'s root there), as gossip brings it. */
const signedBy = (state: SwarmState, size: number, orgs: string[]): Checkpoint =>
  orgs.reduce(
    (cp: Checkpoint, org) => signCheckpoint(cp, org, fed.keys[org]!.node),
    { v: 1, federation: 'fed-test', swarm: 's1', size, root: state.rootAt(size)!, time: 1_800_000_000, mode: 'raft', signatures: [] } as Checkpoint,
  );
const orgsOf = (cp: Checkpoint | null | undefined) => (cp ? cp.signatures.map((s) => s.org).sort() : []);

describe('checkpoint signers', () => {
  it('a node signs and co-signs only the sizes at which it is a voter', async () => {
    const { state, gossip, close } = await openState('eve');
    try {
      /** acme's checkpoint of `size` as gossip brings it, and what eve keeps of it. */
      const fromAcme = (size: number) => {
        state.receiveCheckpoint(signedBy(state, size, ['acme']));
        return state.latestCheckpoint()!;
      };
      const signers = (size: number) => (state.latestCheckpoint()?.size === size ? orgsOf(state.latestCheckpoint()) : []);

      apply(state); // 1: eve is not in the swarm
      apply(state); // 2
      expect(gossip).toEqual([]); // no checkpoint of its own
      expect(orgsOf(fromAcme(2))).toEqual(['acme']); // kept and passed on, not co-signed
      conf(state, { type: 'add-learner', node: 'eve' }); // 3: a learner catching up
      expect(signers(3)).toEqual([]);
      expect(orgsOf(fromAcme(3))).toEqual(['acme']);
      conf(state, { type: 'promote', node: 'eve' }); // 4: a voter from this entry on
      expect(signers(4)).toEqual(['eve']);
      apply(state); // 5
      expect(signers(5)).toEqual(['eve']);
      expect(orgsOf(fromAcme(5))).toEqual(['acme', 'eve']);
      conf(state, { type: 'remove', node: 'eve' }); // 6: the finishing era's voters may sign the entry that ends it
      expect(signers(6)).toEqual(['eve']);
      apply(state); // 7: out
      expect(signers(7)).toEqual([]);
      expect(orgsOf(fromAcme(7))).toEqual(['acme']);
      expect(gossip.filter((cp) => cp.signatures.some((s) => s.org === 'eve')).map((cp) => cp.size)).toEqual([4, 5, 5, 6]);
      await state.flush();
    } finally {
      await close();
    }
  });

  it("a member keeps the members' signatures of a gossiped checkpoint and drops those of orgs that were no voters then", async () => {
    const acme = await openState('acme');
    const globex = await openState('globex');
    try {
      for (const { state } of [acme, globex]) {
        apply(state); // 1
        apply(state); // 2
      }
      const { state } = acme;
      // globex's checkpoint, co-signed by eve before eve's admission (a Byzantine newcomer, or an older version).
      state.receiveCheckpoint(signedBy(state, 2, ['globex', 'eve']));
      expect(orgsOf(await state.checkpointAt(2))).toEqual(['acme', 'globex']);
      // Signed by eve alone: nothing of it is kept.
      const before = await state.checkpointAt(2);
      state.receiveCheckpoint(signedBy(state, 2, ['eve']));
      expect(await state.checkpointAt(2)).toEqual(before);
      // A checkpoint of a size acme has not applied yet waits, and is judged by the voters at that size once it is.
      apply(globex.state); // 3
      const ahead = globex.gossip.find((cp) => cp.size === 3)!;
      state.receiveCheckpoint(signCheckpoint(ahead, 'eve', fed.keys.eve!.node));
      expect(await state.checkpointAt(3)).toBeNull();
      apply(state); // 3
      expect(orgsOf(await state.checkpointAt(3))).toEqual(['acme', 'globex']);
      // Once eve is a voter, its signature counts.
      conf(state, { type: 'add-learner', node: 'eve' }); // 4
      conf(state, { type: 'promote', node: 'eve' }); // 5
      apply(state); // 6
      state.receiveCheckpoint(signedBy(state, 6, ['eve']));
      expect(orgsOf(await state.checkpointAt(6))).toEqual(['acme', 'eve']);
      // Nothing acme passed on carries a signature of an org that was no voter at its size.
      expect(acme.gossip.filter((cp) => cp.size < 5 && orgsOf(cp).includes('eve'))).toEqual([]);
      await state.flush();
    } finally {
      await acme.close();
      await globex.close();
    }
  });
});
