// A swarm's checkpoints over real RocksDB: memory keeps only the newest RECENT_CHECKPOINTS (a busy swarm signs one
// every few seconds for as long as the node runs), older ones are read from disk for the API, proofs and exports,
// pages are ascending and complete, and a restart finds the newest ones (not the oldest).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Checkpoint } from '../../src/audit/checkpoint.ts';
import { RECENT_CHECKPOINTS, SwarmState } from '../../src/swarm/swarm-state.ts';
import { encodeCommand } from '../../src/verdict/proposal.ts';
import { makeFederation, makeSwarm } from '../verdict/fixtures.ts';
import { openSwarmState, type OpenedSwarmState } from '../support/swarm-state.ts';

const fed = makeFederation(['acme', 'globex', 'initech']);
const swarm = makeSwarm('s1', ['acme', 'globex', 'initech']);
const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function openState(dir: string, self = 'acme'): Promise<OpenedSwarmState> {
  return openSwarmState(fed, swarm, dir, self);
}

/** Applies `count` no-op entries after the current size, flushing every 50 (each size gets a checkpoint). */
async function grow(state: SwarmState, count: number): Promise<void> {
  const noop = encodeCommand({ v: 1, type: 'noop' });
  for (let i = 0; i < count; i++) {
    state.apply({ index: state.size + 1, epoch: 1, kind: 'command', data: noop });
    if (i % 50 === 49) await state.flush();
  }
  await state.flush();
}

describe('checkpoint memory', () => {
  it('keeps the newest in memory, reads older ones from disk, pages them completely, and restarts on the newest', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'conclave-ckpt-'));
    dirs.push(dir);
    const total = RECENT_CHECKPOINTS + 300;
    let { store, state } = await openState(dir);
    await grow(state, total);

    expect((state as unknown as { recentCheckpoints: Map<number, Checkpoint> }).recentCheckpoints.size).toBe(RECENT_CHECKPOINTS);
    expect(state.latestCheckpoint()?.size).toBe(total);
    // The oldest are no longer in memory, yet every size is served.
    expect((await state.checkpointAt(1))?.size).toBe(1);
    expect((await state.checkpointAt(total))?.size).toBe(total);
    expect(await state.checkpointAt(total + 1)).toBeNull();

    // Pages from size 0 cover every size exactly once, ascending.
    const seen: number[] = [];
    for (let from = 0; ; ) {
      const page = await state.checkpoints({ from, limit: 100 });
      seen.push(...page.map((cp) => cp.size));
      if (page.length < 100) break;
      from = page.at(-1)!.size + 1;
    }
    expect(seen).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    // Without `from`: the newest, ascending.
    expect((await state.checkpoints({ limit: 3 })).map((cp) => cp.size)).toEqual([total - 2, total - 1, total]);
    // An export's range crosses the memory boundary (pages of 100: several reads from disk, then memory).
    const between: number[] = [];
    for await (const cp of state.checkpointsBetween(10, total - 10, 100)) between.push(cp.size);
    expect(between).toEqual(Array.from({ length: total - 19 }, (_, i) => i + 10));

    await store.close();
    ({ store, state } = await openState(dir));
    expect(state.latestCheckpoint()?.size).toBe(total);
    expect((state as unknown as { recentCheckpoints: Map<number, Checkpoint> }).recentCheckpoints.size).toBe(RECENT_CHECKPOINTS);
    await store.close();
  });

  it('co-signs a peer checkpoint of a recent size, and ignores gossip about a size older than memory keeps', async () => {
    const dirA = mkdtempSync(join(tmpdir(), 'conclave-ckpt-a-'));
    const dirB = mkdtempSync(join(tmpdir(), 'conclave-ckpt-b-'));
    dirs.push(dirA, dirB);
    const a = await openState(dirA, 'acme');
    const b = await openState(dirB, 'globex');
    const total = RECENT_CHECKPOINTS + 20;
    await grow(a.state, total);
    await grow(b.state, total);

    const recent = b.gossip.find((cp) => cp.size === total)!;
    const old = b.gossip.find((cp) => cp.size === 5)!;
    a.gossip.length = 0;
    a.state.receiveCheckpoint(old);
    expect(a.gossip).toEqual([]);
    expect((await a.state.checkpointAt(5))?.signatures.map((s) => s.org)).toEqual(['acme']);
    a.state.receiveCheckpoint(recent);
    expect(a.gossip.length).toBe(1);
    expect(a.state.latestCheckpoint()?.signatures.map((s) => s.org).sort()).toEqual(['acme', 'globex']);
    await a.store.close();
    await b.store.close();
  });
});
