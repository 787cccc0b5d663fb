// A replica that is slow to start its next era (owned by the membership feature): when a pbft swarm admits a fifth
// org, dora's node applies the change like the others but starts the new era's engine 2 s late (a loaded machine).
// Meanwhile the others already speak on the new era's channels. That is no reason for dora to catch up: it is
// entering that era itself. (It did: the catch-up stopped its engines, answered its agents CATCHING_UP, and then
// started a second engine of the same era beside the one its own era change started — verdicts proposed to the
// orphaned one timed out.) Every verdict of every org commits through the change, and the logs stay identical.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { membershipFixture, SWARM, verdictStream, waitFor, type MembershipFixture } from './support.ts';

const FIRST = ['acme', 'bolt', 'cato', 'dora'];
const ID_ADD = 'slow-era-add-eve-0123456789';
const SLOW_ERA_START_MS = 2000;

describe('a replica slow to start the next pbft era', () => {
  let fx: MembershipFixture;

  beforeAll(async () => {
    fx = await membershipFixture({ orgs: [...FIRST, 'eve'], swarmMembers: FIRST, mode: 'pbft' });
    await Promise.all(FIRST.map((org) => fx.start(org, org === 'dora' ? { eraStartDelayMs: SLOW_ERA_START_MS } : {})));
    await waitFor('a primary', async () => (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/status`)).json?.leader);
  }, 120_000);

  afterAll(async () => {
    await fx?.close();
  });

  const status = async (org: string) => (await fx.api(org, 'GET', `/v1/swarms/${SWARM}/status`)).json;

  it('enters the era it applied instead of catching up with it; its agents see no error', async () => {
    const stream = verdictStream(fx, () => FIRST);
    let head = 0;
    try {
      await waitFor('some verdicts committed', () => stream.committed() >= 12);
      for (const org of ['acme', 'bolt', 'cato']) await fx.approve(org, org, ID_ADD, { kind: 'add-member', org: 'eve' });
      for (const org of FIRST) await waitFor(`${org} in the new era`, async () => (await status(org)).era === 1);
      // The new era has five replicas and eve is not running: its quorum of four needs dora's new engine.
      const committedBefore = stream.committed();
      await waitFor('verdicts of every org committed in the new era', () => stream.committed() >= committedBefore + 24);
    } finally {
      const result = await stream.stop();
      expect(result.errors).toEqual([]);
    }
    head = (await status('acme')).commitIndex as number;
    const logs = await Promise.all(
      FIRST.map(async (org) => {
        await waitFor(`${org} applied index ${head}`, async () => (await status(org)).appliedIndex >= head);
        const entries = (await fx.api(org, 'GET', `/v1/swarms/${SWARM}/log?from=1&limit=500`)).json.entries as { index: number; hash: string }[];
        return entries.filter((e) => e.index <= head).map((e) => `${e.index}:${e.hash}`);
      }),
    );
    expect(logs[0]!.length).toBe(head);
    for (const log of logs.slice(1)) expect(log).toEqual(logs[0]);
    // dora serves the new era with its one engine: its own agent's verdict commits there.
    const jws = await fx.sign('dora', 'github.com/acme/widget/pull/after-era', 'approve');
    const mine = await fx.api('dora', 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws });
    expect(mine.status, JSON.stringify(mine.json)).toBe(200);
  }, 180_000);
});
