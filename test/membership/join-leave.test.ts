// Membership through approved admin changes (owned by the membership feature): a three-org raft swarm under a
// steady stream of verdicts admits a fourth org (learner → snapshot catch-up → voter, logs identical afterwards);
// too few approvals change nothing; a removal takes the org out and its certificate is refused on the peer port.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { verifyExport } from '../../src/audit/verifier.ts';
import { loadFederation } from '../../src/config/load.ts';
import { membershipFixture, peerAccepts, SWARM, verdictStream, waitFor, type MembershipFixture } from './support.ts';

const ID_ADD = 'add-dora-0123456789abcdef';
const ID_REMOVE = 'remove-dora-0123456789abcd';
const ID_UNDER = 'under-approved-0123456789ab';

describe('membership: join and leave by approved admin changes (raft)', () => {
  let fx: MembershipFixture;

  beforeAll(async () => {
    // Every file carries all four member cards; the swarm starts with three. dora's own file lists the swarm with
    // the new membership (the three + itself): what every operator's file says once the change is agreed.
    fx = await membershipFixture({ orgs: ['acme', 'bolt', 'cato', 'dora'], swarmMembers: ['acme', 'bolt', 'cato'], snapshotEvery: 40 });
    fx.editFile('dora', (doc) => {
      doc.swarms[0].members = ['acme', 'bolt', 'cato', 'dora'];
    });
    await Promise.all(['acme', 'bolt', 'cato'].map((org) => fx.start(org)));
    await waitFor('a leader', async () => (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/status`)).json?.leader);
  }, 120_000);

  afterAll(async () => {
    await fx?.close();
  });

  const status = async (org: string) => (await fx.api(org, 'GET', `/v1/swarms/${SWARM}/status`)).json;

  it('an under-approved add-member stays pending, says why, and changes nothing', async () => {
    const answer = await fx.approve('acme', 'acme', ID_UNDER, { kind: 'add-member', org: 'dora' });
    expect(answer.status).toBe(200);
    expect(answer.json.status).toBe('pending');
    expect(answer.json.reason).toMatch(/approved by 1 of the 2 orgs required/);
    for (const org of ['acme', 'bolt', 'cato']) {
      const s = await status(org);
      expect(s.members).toEqual(['acme', 'bolt', 'cato']);
      expect(s.membership.learners).toEqual([]);
      expect(s.membership.pending).toEqual([]);
    }
    // An approval from a non-member admin does not count either.
    const outsider = await fx.approve('dora', 'acme', ID_UNDER, { kind: 'add-member', org: 'dora' });
    expect(outsider.status).toBeGreaterThanOrEqual(400);
    expect(outsider.json.code).toBe('ADMIN_APPROVAL_INVALID');
    expect((await fx.api('bolt', 'GET', `/v1/swarms/${SWARM}/admin/${ID_UNDER}`)).json.status).toBe('pending');
  }, 60_000);

  it('admits a fourth org under a steady stream of verdicts: learner, snapshot catch-up, voter, identical logs', async () => {
    const stream = verdictStream(fx, () => ['acme', 'bolt', 'cato']);
    try {
      await waitFor('some verdicts committed', () => stream.committed() >= 30);
      const proposed = await fx.approve('acme', 'acme', ID_ADD, { kind: 'add-member', org: 'dora' });
      expect(proposed.json.status).toBe('pending');
      const approved = await fx.approve('bolt', 'bolt', ID_ADD, { kind: 'add-member', org: 'dora' });
      expect(approved.status).toBe(200);
      expect(approved.json.status).toBe('applied');
      expect(approved.json.reason).toMatch(/dora admitted/);

      // The newcomer starts now, with an empty data folder.
      await fx.start('dora');
      await waitFor('dora a voter on all four nodes', async () => {
        for (const org of ['acme', 'bolt', 'cato', 'dora']) {
          const s = await status(org);
          if (!s?.members?.includes('dora') || s.membership.pending.length) return false;
        }
        return true;
      });
      const change = (await fx.api('cato', 'GET', `/v1/swarms/${SWARM}/admin/${ID_ADD}`)).json;
      expect(change.reason).toMatch(/dora became a voter at index \d+/);
      // dora's agents now count: a verdict submitted to dora's node commits.
      const jws = await fx.sign('dora', 'github.com/acme/widget/pull/dora-1', 'approve');
      const mine = await fx.api('dora', 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws });
      expect(mine.status).toBe(200);
      expect(mine.json.status).toBe('committed');
      await waitFor('more verdicts after the join', () => stream.committed() >= 80);
    } finally {
      const result = await stream.stop();
      expect(result.errors).toEqual([]);
    }

    // dora caught up from a snapshot (the leader compacts every 40 entries); the snapshot carries only the small
    // state, and dora copied every record before it from its peers (verified against the snapshot's head hash):
    // it holds the whole audit trail from index 1, like the others.
    const doraLog = (await fx.api('dora', 'GET', `/v1/swarms/${SWARM}/log?from=1&limit=1`)).json.entries;
    expect(doraLog[0].index).toBe(1);
    const first = 1;

    // Once every node applied the same index, the logs of all four are identical from dora's first record on.
    const target = (await status('acme')).commitIndex as number;
    await waitFor('all four applied the same index', async () => {
      for (const org of ['acme', 'bolt', 'cato', 'dora']) if ((await status(org)).appliedIndex < target) return false;
      return true;
    });
    const logs = await Promise.all(
      ['acme', 'bolt', 'cato', 'dora'].map(async (org) => {
        const entries: { index: number; hash: string }[] = [];
        for (let from = first; from <= target; from += 500) {
          entries.push(...(await fx.api(org, 'GET', `/v1/swarms/${SWARM}/log?from=${from}&limit=500`)).json.entries.filter((e: { index: number }) => e.index <= target));
        }
        return entries.map((e) => `${e.index}:${e.hash}`);
      }),
    );
    expect(logs[0]!.length).toBe(target - first + 1);
    for (const log of logs.slice(1)) expect(log).toEqual(logs[0]);
    // Conf entries are in the audit trail like any other entry (they carry no command).
    const kinds = (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/log?from=1&limit=${target}`)).json.entries.map((e: { kind: string }) => e.kind);
    expect(kinds.filter((k: string) => k === 'raw').length).toBeGreaterThanOrEqual(2); // add-learner + promote

    // The offline auditor verifies the whole log, configuration entries and the admission included.
    const exported = await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/export`);
    const summary = await verifyExport(Readable.from([String(exported.json)]), { federation: loadFederation(fx.orgs.get('acme')!.configPath) });
    expect(summary.failure).toBeNull();
    expect(summary.ok).toBe(true);
  }, 240_000);

  it('removes an org: voters shrink, commits continue, and its certificate is refused on the peer port', async () => {
    expect(await peerAccepts(fx, 'dora', 'acme')).toBe(true); // a member's certificate is accepted
    // Four members now: a majority is three approvals.
    await fx.approve('cato', 'cato', ID_REMOVE, { kind: 'remove-member', org: 'dora' });
    const two = await fx.approve('acme', 'acme', ID_REMOVE, { kind: 'remove-member', org: 'dora' });
    expect(two.json.status).toBe('pending');
    expect(two.json.reason).toMatch(/approved by 2 of the 3 orgs required/);
    const approved = await fx.approve('bolt', 'bolt', ID_REMOVE, { kind: 'remove-member', org: 'dora' });
    expect(approved.json.status).toBe('applied');
    // Approved is not yet out: the answer says to keep dora's node until the change says it left.
    expect(approved.json.reason).toMatch(/keep dora's node running \(with its data\) until this change says it left the configuration/);
    await waitFor('dora out of the configuration on the three', async () => {
      for (const org of ['acme', 'bolt', 'cato']) {
        const s = await status(org);
        if (s.members.includes('dora') || s.membership.learners.includes('dora') || s.membership.pending.length) return false;
      }
      return true;
    });
    await waitFor('the change to say dora left', async () => /dora left the Raft configuration at index \d+/.test((await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/admin/${ID_REMOVE}`)).json.reason));
    const jws = await fx.sign('bolt', 'github.com/acme/widget/pull/after-removal', 'approve');
    expect((await fx.api('bolt', 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws })).status).toBe(200);
    // dora's agents no longer count.
    const late = await fx.api('acme', 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws: await fx.sign('dora', 'github.com/acme/widget/pull/late', 'approve') });
    expect(late.status).toBe(403);

    // dora's node certificate, presented to acme's peer port: refused.
    expect(await peerAccepts(fx, 'dora', 'acme')).toBe(false);
    // (dora's own node may never learn of its removal — the leader stops sending it the log once the removal is
    // applied, as in any Raft — but nothing it sends is accepted any more.)
  }, 120_000);
});
