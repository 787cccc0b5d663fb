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
import type { FederationConfig } from '../../src/config/types.ts';
import { encodeConfChange } from '../../src/consensus/raft/confchange.ts';
import type { ConfChange } from '../../src/consensus/raft/types.ts';
import { AppliedStateStore } from '../../src/storage/applied-state.ts';
import { NodeStore } from '../../src/storage/node-store.ts';
import { SwarmState } from '../../src/swarm/swarm-state.ts';
import { encodeCommand } from '../../src/verdict/proposal.ts';
import { makeFederation, makeSwarm } from '../verdict/fixtures.ts';

const fed = makeFederation(['acme', 'globex', 'initech', 'eve']);
const swarm = makeSwarm('s1', ['acme', 'globex', 'initech']);
const federation = { version: 1, federation: 'fed-test', sourcePath: '/dev/null', node: { org: 'eve' }, members: fed.members, swarms: [swarm] } as unknown as FederationConfig;
const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('checkpoint signers', () => {
  it('a node signs and co-signs only the sizes at which it is a voter', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'conclave-signers-'));
    dirs.push(dir);
    const store = await NodeStore.open(dir);
    const gossip: Checkpoint[] = [];
    const state = new SwarmState({
      federation,
      swarm,
      self: 'eve',
      keyring: fed.keyring,
      signingKey: fed.keys.eve!.node,
      applied: new AppliedStateStore(store.kv('s1', 'applied')),
      checkpointEvery: 1, // every node checkpoints every size: each size shows whether eve signs it
      onOutcomes: () => undefined,
      onCheckpoint: (checkpoint) => gossip.push(checkpoint),
    });
    try {
      await state.loadCheckpoints();
      await state.rebuild();
      const noop = encodeCommand({ v: 1, type: 'noop' });
      const apply = (data: Uint8Array, kind: 'command' | 'conf' = 'command') => state.apply({ index: state.size + 1, epoch: 1, kind, data });
      const conf = (cc: ConfChange) => apply(encodeConfChange(cc), 'conf');
      /** acme's checkpoint of `size` as gossip brings it, and what eve keeps of it. */
      const fromAcme = (size: number) => {
        state.receiveCheckpoint(signCheckpoint({ v: 1, federation: 'fed-test', swarm: 's1', size, root: state.rootAt(size)!, time: 1_800_000_000, mode: 'raft' }, 'acme', fed.keys.acme!.node));
        return state.latestCheckpoint()!;
      };
      const signers = (size: number) => (state.latestCheckpoint()?.size === size ? state.latestCheckpoint()!.signatures.map((s) => s.org) : []);

      apply(noop); // 1: eve is not in the swarm
      apply(noop); // 2
      expect(gossip).toEqual([]); // no checkpoint of its own
      const kept = fromAcme(2);
      expect(kept.signatures.map((s) => s.org)).toEqual(['acme']); // kept and passed on, not co-signed
      conf({ type: 'add-learner', node: 'eve' }); // 3: a learner catching up
      expect(signers(3)).toEqual([]);
      expect(fromAcme(3).signatures.map((s) => s.org)).toEqual(['acme']);
      conf({ type: 'promote', node: 'eve' }); // 4: a voter from this entry on
      expect(signers(4)).toEqual(['eve']);
      apply(noop); // 5
      expect(signers(5)).toEqual(['eve']);
      expect(fromAcme(5).signatures.map((s) => s.org).sort()).toEqual(['acme', 'eve']);
      conf({ type: 'remove', node: 'eve' }); // 6: the finishing era's voters may sign the entry that ends it
      expect(signers(6)).toEqual(['eve']);
      apply(noop); // 7: out
      expect(signers(7)).toEqual([]);
      expect(fromAcme(7).signatures.map((s) => s.org)).toEqual(['acme']);
      expect(gossip.filter((cp) => cp.signatures.some((s) => s.org === 'eve')).map((cp) => cp.size)).toEqual([4, 5, 5, 6]);
      await state.flush();
    } finally {
      await store.close();
    }
  });
});
