// A client waiting on a node that catches up by snapshot, for a verdict the snapshot's records carry, is told where
// its verdict counted — never refused (real nodes, HTTPS, RocksDB, a TCP proxy mesh between them).
// Found by the chaos tool (raft, leave-join, 4 clients per org, seed 201): an agent of an org removed and admitted
// again resubmitted a verdict committed before the removal to its org's node, which was catching up; the node held
// the submission, applied the verdict while installing a snapshot without answering it, proposed it again as a
// learner, saw that batch refused as a whole (its proposer no voter yet) and told the agent 403 ORG_NOT_IN_SWARM —
// for a verdict that had counted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCommand } from '../../src/verdict/admin.ts';
import type { AdminAction } from '../../src/verdict/proposal.ts';
import { adminKeyOf, metricOf, startRaftTrio, type InProcessFederation } from '../support/inproc-federation.ts';

const SWARM = 'reviews';
const SUBJECT = 'github.com/acme/widget/pull/42@9f1c2e';

let fed: InProcessFederation;
let leader: string;
let follower: string;
let third: string;

interface Status {
  leader: string | null;
  appliedIndex: number;
  membership: { voters: string[]; learners: string[] };
  detail: { snapshotIndex: number; snapshotsInstalled: number };
}

beforeAll(async () => {
  // Snapshots every 20 entries: the log is compacted past the verdict quickly, so the follower must install one.
  ({ fed, leader, follower } = await startRaftTrio(SWARM, () => ({ snapshotEvery: 20 }), { mesh: true }));
  third = fed.orgs.map((o) => o.org).find((org) => org !== leader && org !== follower)!;
}, 120_000);

afterAll(async () => {
  await fed?.close();
});

const status = async (org: string): Promise<Status> => (await fed.api(org, 'GET', `/v1/swarms/${SWARM}/status`)).json as Status;

/** The leader's and the third org's admins approve `action` through the leader (a majority of three). */
async function approveByMajority(id: string, action: AdminAction): Promise<void> {
  for (const admin of [leader, third]) {
    const answer = await fed.api(leader, 'POST', `/v1/swarms/${SWARM}/admin`, adminCommand(adminKeyOf(fed, admin), SWARM, id, action));
    expect(answer.status, answer.text).toBeLessThan(300);
  }
}

describe('a submission held by a node catching up by snapshot', () => {
  it('is answered with the entry where its verdict counted when the install applies it, not left to a second proposal', async () => {
    fed.mesh!.isolate([follower]);
    const jws = await fed.sign(follower, { swarm: SWARM, subject: SUBJECT, verdict: 'approve' });
    const first = await fed.api(leader, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws });
    expect(first.status, first.text).toBe(200);
    expect(first.json.status).toBe('committed');

    // The agent resubmits to its own org's node, cut off and behind: the node does not know the verdict, admits it
    // and proposes it (no leader in reach), holding the request.
    const proposedBefore = await metricOf(fed, follower, 'conclave_proposals_total', 'outcome="proposed"');
    const held = fed.api(follower, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws }).catch((error: Error) => ({ status: -1, json: null, text: error.message }));
    await fed.waitFor(`${follower} to propose the resubmitted verdict`, async () => (await metricOf(fed, follower, 'conclave_proposals_total', 'outcome="proposed"')) > proposedBefore);

    // Meanwhile the follower's org is removed, the log compacted past the verdict, and the org admitted again.
    await approveByMajority('remove-follower-once', { kind: 'remove-member', org: follower });
    await fed.waitFor(`${follower} out of the configuration`, async () => {
      const m = (await status(leader)).membership;
      return !m.voters.includes(follower) && !m.learners.includes(follower);
    });
    let filler = 0;
    await fed.waitFor('a snapshot past the verdict on the leader', async () => {
      const answer = await fed.api(leader, 'POST', `/v1/swarms/${SWARM}/verdicts`, {
        jws: await fed.sign(leader, { swarm: SWARM, subject: `github.com/acme/widget/pull/filler-${filler++}@9f1c2e`, verdict: 'approve' }),
      });
      expect(answer.status, answer.text).toBe(200);
      return (await status(leader)).detail.snapshotIndex > first.json.index;
    });
    await approveByMajority('add-follower-again', { kind: 'add-member', org: follower });
    await fed.waitFor(`${follower} admitted again (a learner)`, async () => (await status(leader)).membership.learners.includes(follower));

    // Healed, the node installs the leader's snapshot, replaying the records — the verdict's among them: that is when
    // this node applies the verdict, and the held submission is answered then with its entry, as any held submission
    // is when its verdict is applied. (Before: the replay answered nobody; the submission waited for the node's own
    // proposal of the verdict — a duplicate if it committed after the node was a voter again, a 403 if before, when
    // the batch was refused as a whole and the verdict judged anew as its org's, not yet a member.)
    fed.mesh!.healAll();
    const answer = await held;
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json).toMatchObject({ status: 'committed', jwsHash: first.json.jwsHash, index: first.json.index, entryHash: first.json.entryHash });
    expect((await status(follower)).detail.snapshotsInstalled).toBeGreaterThan(0);

    // It catches up and votes again; the verdict counts once, on every node.
    await fed.waitFor(`${follower} a voter again`, async () => (await status(leader)).membership.voters.includes(follower), 90_000);
    for (const { org } of fed.orgs) {
      await fed.waitFor(`${org} to hold the verdict once`, async () => {
        const view = await fed.api(org, 'GET', `/v1/swarms/${SWARM}/subjects/${encodeURIComponent(SUBJECT)}`);
        return view.status === 200 && view.json.votes.length === 1 && view.json.votes[0].jwsHash === first.json.jwsHash;
      });
    }
  }, 180_000);
});
