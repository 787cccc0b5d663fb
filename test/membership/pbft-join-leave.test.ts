// Membership of a pbft swarm (owned by the membership feature): under a steady stream of verdicts a fifth org is
// admitted with 2f+1 approvals — a new pbft era with five replicas begins after the change, and the newcomer, started
// with an empty data folder, finds that era through its members (f+1 must vouch), copies every record verified
// against the vouched-for hash, and takes part — logs identical on all five; too few approvals change nothing; a
// removal ends the era again and the removed org's certificate is refused. Then the swarm switches to raft and a
// sixth org joins a swarm whose history has moved through three eras (the newcomer catches up with the current era
// before Raft's learner → snapshot → voter flow).
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyExport } from '../../src/audit/verifier.ts';
import { loadFederation } from '../../src/config/load.ts';
import { membershipFixture, peerAccepts, SWARM, verdictStream, waitFor, type MembershipFixture } from './support.ts';

const FIRST = ['acme', 'bolt', 'cato', 'dora'];
const ID_UNDER = 'pbft-under-0123456789abcdef';
const ID_ADD = 'pbft-add-eve-0123456789abcd';
const ID_REMOVE = 'pbft-remove-dora-0123456789';
const ID_RAFT = 'pbft-to-raft-0123456789abcd';
const ID_ADD_FINN = 'raft-add-finn-0123456789ab';

describe('membership of a pbft swarm: a new era per change, newcomers catch up through their members', () => {
  let fx: MembershipFixture;

  beforeAll(async () => {
    fx = await membershipFixture({ orgs: [...FIRST, 'eve', 'finn'], swarmMembers: FIRST, mode: 'pbft', snapshotEvery: 40 });
    // Each newcomer's own file lists the swarm as it is meant to be once it joined.
    fx.editFile('eve', (doc) => {
      doc.swarms[0].members = [...FIRST, 'eve'];
    });
    fx.editFile('finn', (doc) => {
      doc.swarms[0].members = ['acme', 'bolt', 'cato', 'eve', 'finn'];
    });
    await Promise.all(FIRST.map((org) => fx.start(org)));
    await waitFor('a primary', async () => (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/status`)).json?.leader);
  }, 120_000);

  afterAll(async () => {
    await fx?.close();
  });

  const status = async (org: string) => (await fx.api(org, 'GET', `/v1/swarms/${SWARM}/status`)).json;

  /** Every org's log over [from, to], as index:hash lines. */
  async function logsOf(orgs: string[], from: number, to: number): Promise<string[][]> {
    await waitFor(`${orgs.join(', ')} applied index ${to}`, async () => {
      for (const org of orgs) if ((await status(org)).appliedIndex < to) return false;
      return true;
    });
    return Promise.all(
      orgs.map(async (org) => {
        const entries: { index: number; hash: string }[] = [];
        for (let next = from; next <= to; next += 500) {
          entries.push(...(await fx.api(org, 'GET', `/v1/swarms/${SWARM}/log?from=${next}&limit=500`)).json.entries.filter((e: { index: number }) => e.index <= to));
        }
        return entries.map((e) => `${e.index}:${e.hash}`);
      }),
    );
  }

  /**
   * The whole export of `org` verifies offline; `members`: the swarm as an up-to-date federation file lists it.
   * (Certificates are counted, not required: the newest checkpoint may still be gathering its co-signatures.)
   */
  async function audits(org: string, members?: string[]): Promise<{ checkpoints: number; certificates: number }> {
    const exported = await fx.api(org, 'GET', `/v1/swarms/${SWARM}/export`);
    const file = loadFederation(fx.orgs.get(org)!.configPath);
    const federation = members ? { ...file, swarms: file.swarms.map((s) => (s.id === SWARM ? { ...s, members } : s)) } : file;
    const summary = await verifyExport(Readable.from([String(exported.json)]), { federation });
    expect(summary.failure).toBeNull();
    expect(summary.ok).toBe(true);
    return summary;
  }

  it('an add-member with fewer than 2f+1 approvals stays pending and changes nothing', async () => {
    const answer = await fx.approve('acme', 'acme', ID_UNDER, { kind: 'add-member', org: 'eve' });
    expect(answer.status).toBe(200);
    expect(answer.json.status).toBe('pending');
    expect(answer.json.required).toBe(3); // n = 4, f = 1: 2f+1
    const second = await fx.approve('bolt', 'bolt', ID_UNDER, { kind: 'add-member', org: 'eve' });
    expect(second.json.status).toBe('pending');
    expect(second.json.reason).toMatch(/approved by 2 of the 3 orgs required/);
    for (const org of FIRST) {
      const s = await status(org);
      expect(s.members).toEqual(FIRST);
      expect(s.mode).toBe('pbft');
    }
  }, 60_000);

  it('admits a fifth org under a steady stream of verdicts: new era, verified catch-up, identical logs', async () => {
    const stream = verdictStream(fx, () => FIRST);
    let eraBase = 0;
    try {
      await waitFor('some verdicts committed', () => stream.committed() >= 20);
      await fx.approve('acme', 'acme', ID_ADD, { kind: 'add-member', org: 'eve' });
      await fx.approve('bolt', 'bolt', ID_ADD, { kind: 'add-member', org: 'eve' });
      const approved = await fx.approve('cato', 'cato', ID_ADD, { kind: 'add-member', org: 'eve' });
      expect(approved.status).toBe(200);
      expect(approved.json.status).toBe('applied');
      expect(approved.json.reason).toMatch(/eve admitted at index \d+: a new pbft era begins/);
      eraBase = approved.json.index as number;
      for (const org of FIRST) await waitFor(`${org} counts eve as a replica`, async () => (await status(org)).members.includes('eve'));

      // The newcomer starts now with an empty data folder and a file that lists the swarm with five members.
      await fx.start('eve');
      await waitFor('eve caught up past the change', async () => {
        const s = await status('eve');
        return s.mode === 'pbft' && s.members.length === 5 && s.appliedIndex > eraBase;
      });
      // eve's agents count, and eve's node proposes as a replica of the new era.
      const jws = await fx.sign('eve', 'github.com/acme/widget/pull/eve-1', 'approve');
      const mine = await fx.api('eve', 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws });
      expect(mine.status, JSON.stringify(mine.json)).toBe(200);
      expect(mine.json.status).toBe('committed');
      const committedBefore = stream.committed();
      await waitFor('more verdicts after the join', () => stream.committed() >= committedBefore + 20);
    } finally {
      const result = await stream.stop();
      expect(result.errors).toEqual([]);
    }
    // eve copied every record from index 1 (each verified against the hash its members vouched for): the five logs
    // are identical from the first entry.
    const head = (await status('acme')).commitIndex as number;
    const logs = await logsOf([...FIRST, 'eve'], 1, head);
    expect(logs[0]!.length).toBe(head);
    for (const log of logs.slice(1)) expect(log).toEqual(logs[0]);
    const change = (await fx.api('eve', 'GET', `/v1/swarms/${SWARM}/admin/${ID_ADD}`)).json;
    expect(change.status).toBe('applied');
    // The export carries the genesis membership; the auditor replays the admission from it.
    await audits('eve');
  }, 240_000);

  it('removes an org: a new era with four replicas, commits continue, its certificate is refused', async () => {
    expect(await peerAccepts(fx, 'dora', 'acme')).toBe(true); // a member's certificate is accepted
    // n = 5, f = 1: 2f+1 = 3 approvals.
    await fx.approve('acme', 'acme', ID_REMOVE, { kind: 'remove-member', org: 'dora' });
    await fx.approve('bolt', 'bolt', ID_REMOVE, { kind: 'remove-member', org: 'dora' });
    const approved = await fx.approve('eve', 'eve', ID_REMOVE, { kind: 'remove-member', org: 'dora' });
    expect(approved.json.status).toBe('applied');
    expect(approved.json.reason).toMatch(/dora removed at index \d+: a new pbft era begins/);
    const remaining = ['acme', 'bolt', 'cato', 'eve'];
    for (const org of remaining) await waitFor(`${org} without dora`, async () => !(await status(org)).members.includes('dora'));
    const jws = await fx.sign('cato', 'github.com/acme/widget/pull/after-dora', 'approve');
    const answer = await fx.api('cato', 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws });
    expect(answer.status, JSON.stringify(answer.json)).toBe(200);
    // dora's own node applied its removal too: it proposes nothing any more and says why.
    await waitFor('dora knows it is out', async () => (await status('dora')).role === 'removed');
    const refused = await fx.api('dora', 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws: await fx.sign('bolt', 'github.com/acme/widget/pull/via-dora', 'approve') });
    expect(refused.status).toBeGreaterThanOrEqual(400);
    // It still answers plain reads from the state it holds, but no consistent read: it takes no part in the new era.
    const subjectPath = `/v1/swarms/${SWARM}/subjects/${encodeURIComponent('github.com/acme/widget/pull/after-dora')}`;
    expect((await fx.api('dora', 'GET', subjectPath)).json.code).toBe('UNKNOWN_SUBJECT');
    const stale = await fx.api('dora', 'GET', `${subjectPath}?consistent=true`);
    expect([stale.status, stale.json.code]).toEqual([409, 'NOT_A_MEMBER']);
    // The remaining members' consistent reads hold the verdict committed after dora left.
    expect((await fx.api('acme', 'GET', `${subjectPath}?consistent=true`)).json.votes).toHaveLength(1);
    // dora's node certificate, presented to acme's peer port: refused.
    expect(await peerAccepts(fx, 'dora', 'acme')).toBe(false);
    await fx.stop('dora');
    // Below four replicas pbft cannot run: refused up front.
    const tooFew = await fx.approve('acme', 'acme', 'pbft-remove-eve-0123456789a', { kind: 'remove-member', org: 'eve' });
    expect(tooFew.status).toBe(422);
    expect(tooFew.json.code).toBe('PBFT_TOO_FEW_MEMBERS');
    // The whole log audits offline — checkpoints certified while dora was a replica included — also for an auditor
    // whose federation file already lists the swarm without dora (signers are judged by the voters of their time).
    const audited = await audits('acme', remaining);
    expect(audited.certificates).toBeGreaterThan(0);
    await audits('acme');
  }, 120_000);

  it('a newcomer joins after the swarm moved through several eras (pbft → raft, then add-member in raft)', async () => {
    const members = ['acme', 'bolt', 'cato', 'eve'];
    await fx.approve('acme', 'acme', ID_RAFT, { kind: 'set-mode', mode: 'raft' });
    await fx.approve('bolt', 'bolt', ID_RAFT, { kind: 'set-mode', mode: 'raft' });
    const switched = await fx.approve('eve', 'eve', ID_RAFT, { kind: 'set-mode', mode: 'raft' });
    expect(switched.json.status).toBe('applied');
    for (const org of members) await waitFor(`${org} in raft with a leader`, async () => {
      const s = await status(org);
      return s.mode === 'raft' && s.leader;
    });
    const stream = verdictStream(fx, () => members);
    try {
      await waitFor('verdicts in raft mode', () => stream.committed() >= 10);
      // raft, four voters: a majority is three approvals.
      await fx.approve('acme', 'acme', ID_ADD_FINN, { kind: 'add-member', org: 'finn' });
      await fx.approve('cato', 'cato', ID_ADD_FINN, { kind: 'add-member', org: 'finn' });
      const approved = await fx.approve('eve', 'eve', ID_ADD_FINN, { kind: 'add-member', org: 'finn' });
      expect(approved.json.status).toBe('applied');
      await fx.start('finn');
      await waitFor('finn a voter on all five nodes', async () => {
        for (const org of [...members, 'finn']) {
          const s = await status(org);
          if (s?.mode !== 'raft' || !s.members?.includes('finn') || s.membership.pending.length) return false;
        }
        return true;
      });
      const jws = await fx.sign('finn', 'github.com/acme/widget/pull/finn-1', 'approve');
      const mine = await fx.api('finn', 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws });
      expect(mine.status, JSON.stringify(mine.json)).toBe(200);
      const committedBefore = stream.committed();
      await waitFor('more verdicts after finn joined', () => stream.committed() >= committedBefore + 10);
    } finally {
      const result = await stream.stop();
      expect(result.errors).toEqual([]);
    }
    const head = (await status('acme')).commitIndex as number;
    const first = (await fx.api('finn', 'GET', `/v1/swarms/${SWARM}/log?from=1&limit=1`)).json.entries[0].index as number;
    const logs = await logsOf([...members, 'finn'], first, head);
    expect(logs[0]!.length).toBe(head - first + 1);
    for (const log of logs.slice(1)) expect(log).toEqual(logs[0]);
    await audits('acme');
  }, 240_000);
});
