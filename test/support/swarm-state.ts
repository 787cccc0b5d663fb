// Owns the tests' SwarmState over a real RocksDB folder (one swarm "s1" of a fixtures federation), checkpointing every
// entry so that each tree size shows what is signed; the checkpoints it gossips are collected in `gossip`.
import type { Checkpoint } from '../../src/audit/checkpoint.ts';
import type { FederationConfig, SwarmConfig } from '../../src/config/types.ts';
import { AppliedStateStore } from '../../src/storage/applied-state.ts';
import { NodeStore } from '../../src/storage/node-store.ts';
import { SwarmState } from '../../src/swarm/swarm-state.ts';
import type { Federation } from '../verdict/fixtures.ts';

export interface OpenedSwarmState {
  store: NodeStore;
  state: SwarmState;
  gossip: Checkpoint[];
}

/**
 * Opens `self`'s state of `swarm` in `dir` (loading what is there). `genesis`: the members the swarm's history starts
 * with, when not the file's (a newcomer's file already lists it).
 */
export async function openSwarmState(fed: Federation, swarm: SwarmConfig, dir: string, self: string, genesis?: readonly string[]): Promise<OpenedSwarmState> {
  const federation = { version: 1, federation: 'fed-test', sourcePath: '/dev/null', node: { org: self }, members: fed.members, swarms: [swarm] } as unknown as FederationConfig;
  const store = await NodeStore.open(dir);
  const gossip: Checkpoint[] = [];
  const state = new SwarmState({
    federation,
    swarm,
    self,
    keyring: fed.keyring,
    signingKey: fed.keys[self]!.node,
    applied: new AppliedStateStore(store.kv(swarm.id, 'applied')),
    checkpointEvery: 1, // one checkpoint per entry: many sizes quickly
    onOutcomes: () => undefined,
    onCheckpoint: (checkpoint) => gossip.push(checkpoint),
  });
  if (genesis) state.setGenesis(genesis);
  await state.loadCheckpoints();
  await state.rebuild();
  return { store, state, gossip };
}
