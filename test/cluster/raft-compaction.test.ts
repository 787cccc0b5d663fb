// Raft log compaction (src/swarm/raft-swarm.ts maybeCompact): the core holds the log since its last snapshot in
// memory, and a batch of verdicts is kilobytes, so the driver snapshots once the entries applied since the last
// snapshot carry `snapshotBytes` — here with a count trigger far out of reach, so only the bytes trigger it. Each
// trigger compacts up to the snapshot of the previous trigger, so the log keeps one interval of entries: a follower
// that was down for less than that is sent entries on its return, and only a longer absence costs it a snapshot.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { membershipFixture, SWARM, waitFor, type MembershipFixture } from '../membership/support.ts';

const ORGS = ['acme', 'bolt', 'cato'];

interface Status {
  leader: string | null;
  appliedIndex: number;
  detail: { snapshotIndex: number; snapshotsInstalled: number };
}

describe('raft compaction by bytes, with a catch-up margin', () => {
  let fx: MembershipFixture;
  let counter = 0;

  beforeAll(async () => {
    fx = await membershipFixture({ orgs: ORGS, swarmMembers: ORGS, snapshotEvery: 1_000_000, snapshotBytes: 16 * 1024 });
    await Promise.all(ORGS.map((org) => fx.start(org)));
    await waitFor('a leader', async () => (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/status`)).json?.leader);
  }, 120_000);

  afterAll(async () => {
    await fx?.close();
  });

  const status = async (org: string): Promise<Status> => (await fx.api(org, 'GET', `/v1/swarms/${SWARM}/status`)).json as Status;

  /** One verdict (~1 KB signed entry) submitted to `org`'s node, answered once applied there. */
  async function submitOne(org: string): Promise<void> {
    const jws = await fx.sign(org, `github.com/acme/widget/pull/${counter++}`, 'approve');
    const answer = await fx.api(org, 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws });
    expect(answer.status, JSON.stringify(answer.json)).toBe(200);
  }

  /** Submits to the leader until its snapshot index moves past `from` (at most `limit` verdicts); the new index. */
  async function submitUntilCompacted(leader: string, from: number, limit = 200): Promise<number> {
    for (let i = 0; i < limit; i++) {
      await submitOne(leader);
      const now = (await status(leader)).detail.snapshotIndex;
      if (now > from) return now;
    }
    throw new Error(`no compaction past ${from} within ${limit} verdicts`);
  }

  async function converged(orgs: string[]): Promise<number> {
    return waitFor('the nodes applied the same index', async () => {
      const applied = await Promise.all(orgs.map(async (org) => (await status(org)).appliedIndex));
      return applied.every((a) => a === applied[0]) ? applied[0]! : null;
    });
  }

  it('compacts by bytes and keeps the last interval of entries after the snapshot', async () => {
    const leader = (await status('acme')).leader!;
    const first = await submitUntilCompacted(leader, 0);
    // At the moment of compaction the leader keeps every entry applied since the previous trigger: ≥ 16 KiB of
    // ~1-2 KB entries. (Compacting to the applied index, as before, left none.)
    const right = await status(leader);
    expect(right.appliedIndex - right.detail.snapshotIndex).toBeGreaterThanOrEqual(6);
    const second = await submitUntilCompacted(leader, first);
    expect(second).toBeGreaterThan(first);
    await converged(ORGS);
    for (const org of ORGS) {
      const s = await status(org);
      expect(s.detail.snapshotIndex).toBeGreaterThan(0);
      expect(s.detail.snapshotIndex).toBeLessThan(s.appliedIndex);
    }
  }, 120_000);

  it('a follower down for less than the margin is sent entries; a longer absence costs it one snapshot', async () => {
    const leader = (await status('acme')).leader!;
    const follower = ORGS.find((org) => org !== leader)!;
    const others = ORGS.filter((org) => org !== follower);

    // Stop the follower right after a compaction: the leader's next compaction then goes up to the point taken at
    // this one, which the follower holds.
    const before = (await status(leader)).detail.snapshotIndex;
    const at = await submitUntilCompacted(leader, before);
    await converged(ORGS);
    await fx.stop(follower);
    await submitUntilCompacted(leader, at);
    await fx.start(follower);
    await converged(ORGS);
    expect((await status(follower)).detail.snapshotsInstalled).toBe(0);

    // Down across two compactions past what it may hold: the entries it lacks are gone from the leader's log. The
    // follower holds at most the leader's last index when it stopped; the first snapshot must be taken beyond it
    // (a trigger already due when the follower stopped snapshots at an index the follower has), and the compaction
    // after it cuts the log up to that snapshot.
    await fx.stop(follower);
    const heldAtMost = (await status(leader)).appliedIndex;
    const beyond = await submitUntilCompacted(leader, heldAtMost);
    await submitUntilCompacted(leader, beyond);
    await converged(others);
    await fx.start(follower);
    const applied = await converged(ORGS);
    expect((await status(follower)).detail.snapshotsInstalled).toBe(1);
    // The records it copied for the snapshot are the leader's: the same last record on every node.
    const last = await Promise.all(ORGS.map(async (org) => (await fx.api(org, 'GET', `/v1/swarms/${SWARM}/log?from=${applied}&limit=1`)).json.entries));
    expect(last[0]).toHaveLength(1);
    expect(last[1]).toEqual(last[0]);
    expect(last[2]).toEqual(last[0]);
  }, 180_000);
});
