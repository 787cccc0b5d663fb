// Raft log compaction by bytes (src/swarm/raft-swarm.ts): the core holds the log since its last snapshot in memory,
// and a batch of verdicts is kilobytes, so the driver also snapshots once the entries applied since the last
// snapshot carry `snapshotBytes` — here with a count trigger far out of reach, so only the bytes can trigger it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { membershipFixture, SWARM, waitFor, type MembershipFixture } from '../membership/support.ts';

const ORGS = ['acme', 'bolt', 'cato'];

describe('raft compaction by bytes', () => {
  let fx: MembershipFixture;

  beforeAll(async () => {
    fx = await membershipFixture({ orgs: ORGS, swarmMembers: ORGS, snapshotEvery: 1_000_000, snapshotBytes: 16 * 1024 });
    await Promise.all(ORGS.map((org) => fx.start(org)));
    await waitFor('a leader', async () => (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/status`)).json?.leader);
  }, 120_000);

  afterAll(async () => {
    await fx?.close();
  });

  const snapshotIndexes = async () => Promise.all(ORGS.map(async (org) => (await fx.api(org, 'GET', `/v1/swarms/${SWARM}/status`)).json.detail.snapshotIndex as number));

  async function submit(count: number, tag: string): Promise<void> {
    for (let i = 0; i < count; i++) {
      const org = ORGS[i % ORGS.length]!;
      const jws = await fx.sign(org, `github.com/acme/widget/pull/${tag}-${i}`, 'approve');
      const answer = await fx.api(org, 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws });
      expect(answer.status, JSON.stringify(answer.json)).toBe(200);
    }
  }

  it('every node compacts once the applied entries carry the byte budget, and again after the next budget', async () => {
    expect(await snapshotIndexes()).toEqual([0, 0, 0]);
    await submit(30, 'a'); // ~30 entries of a ~1 KB signed proposal each: past 16 KiB
    const first = await waitFor('every node compacted', async () => {
      const indexes = await snapshotIndexes();
      return indexes.every((i) => i > 0) ? indexes : null;
    });
    await submit(30, 'b');
    await waitFor('every node compacted again', async () => {
      const indexes = await snapshotIndexes();
      return indexes.every((i, n) => i > first[n]!) ? indexes : null;
    });
    const status = (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/status`)).json;
    expect(status.detail.snapshotIndex).toBeLessThanOrEqual(status.appliedIndex);
  }, 120_000);
});
