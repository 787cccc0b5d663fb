// A node catching up by snapshot answers from what the swarm committed, never from the older state it is replaying
// (real nodes, HTTPS, RocksDB, a TCP proxy mesh between them): a submission it holds is answered where its verdict
// counted, and a verdict its lagging state would refuse is answered 503 CATCHING_UP, not 403.
// Found by the chaos tool (leave-join, 4 clients per org): raft seed 201 — an agent of an org removed and admitted
// again resubmitted a verdict committed before the removal to its org's node, which was catching up; the node held
// the submission, applied the verdict while installing a snapshot without answering it, proposed it again as a
// learner, saw that batch refused as a whole (its proposer no voter yet) and told the agent 403 ORG_NOT_IN_SWARM — for
// a verdict that had counted; pbft seed 213 — a node replaying the records between its org's removal and its return
// refused its agents' held verdicts (403 ORG_NOT_IN_SWARM), which committed through the primary.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SwarmPolicy } from '../../src/config/types.ts';
import { adminCommand } from '../../src/verdict/admin.ts';
import type { AdminAction } from '../../src/verdict/proposal.ts';
import { adminKeyOf, metricOf, startRaftTrio, type InProcessFederation } from '../support/inproc-federation.ts';

const SWARM = 'reviews';

interface Status {
  leader: string | null;
  appliedIndex: number;
  membership: { voters: string[]; learners: string[] };
  rules: { policy: SwarmPolicy };
  detail: { snapshotIndex: number; snapshotsInstalled: number };
}

const status = async (fed: InProcessFederation, org: string): Promise<Status> => (await fed.api(org, 'GET', `/v1/swarms/${SWARM}/status`)).json as Status;

/** `admins` approve `action` through `via`'s node (two of three: a majority); the index it was applied at. */
async function approve(fed: InProcessFederation, via: string, admins: string[], id: string, action: AdminAction): Promise<number> {
  let index = 0;
  for (const admin of admins) {
    const answer = await fed.api(via, 'POST', `/v1/swarms/${SWARM}/admin`, adminCommand(adminKeyOf(fed, admin), SWARM, id, action));
    expect(answer.status, answer.text).toBeLessThan(300);
    index = answer.json.index ?? index;
  }
  return index;
}

/** Verdicts of `org`'s agent through its node until that node's snapshot index passes `index`. */
async function compactPast(fed: InProcessFederation, org: string, index: number): Promise<void> {
  let filler = 0;
  await fed.waitFor(`a snapshot past ${index} on ${org}`, async () => {
    const subject = `github.com/acme/widget/pull/filler-${index}-${filler++}@9f1c2e`;
    const answer = await fed.api(org, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws: await fed.sign(org, { swarm: SWARM, subject, verdict: 'approve' }) });
    expect(answer.status, answer.text).toBe(200);
    return (await status(fed, org)).detail.snapshotIndex > index;
  });
}

describe('a submission held by a node catching up by snapshot', () => {
  let fed: InProcessFederation;
  let leader: string;
  let follower: string;
  let third: string;

  beforeAll(async () => {
    // Snapshots every 20 entries: the log is compacted past the verdict quickly, so the follower must install one.
    ({ fed, leader, follower } = await startRaftTrio(SWARM, () => ({ snapshotEvery: 20 }), { mesh: true }));
    third = fed.orgs.map((o) => o.org).find((org) => org !== leader && org !== follower)!;
  }, 120_000);

  afterAll(async () => {
    await fed?.close();
  });

  it('is answered with the entry where its verdict counted when the install applies it, not left to a second proposal', async () => {
    const subject = 'github.com/acme/widget/pull/42@9f1c2e';
    fed.mesh!.isolate([follower]);
    const jws = await fed.sign(follower, { swarm: SWARM, subject, verdict: 'approve' });
    const first = await fed.api(leader, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws });
    expect(first.status, first.text).toBe(200);
    expect(first.json.status).toBe('committed');

    // The agent resubmits to its own org's node, cut off and behind: the node does not know the verdict, admits it
    // and proposes it (no leader in reach), holding the request.
    const proposedBefore = await metricOf(fed, follower, 'conclave_proposals_total', 'outcome="proposed"');
    const held = fed.api(follower, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws }).catch((error: Error) => ({ status: -1, json: null, text: error.message }));
    await fed.waitFor(`${follower} to propose the resubmitted verdict`, async () => (await metricOf(fed, follower, 'conclave_proposals_total', 'outcome="proposed"')) > proposedBefore);

    // Meanwhile the follower's org is removed, the log compacted past the verdict, and the org admitted again.
    await approve(fed, leader, [leader, third], 'remove-follower-once', { kind: 'remove-member', org: follower });
    await fed.waitFor(`${follower} out of the configuration`, async () => {
      const m = (await status(fed, leader)).membership;
      return !m.voters.includes(follower) && !m.learners.includes(follower);
    });
    await compactPast(fed, leader, first.json.index);
    await approve(fed, leader, [leader, third], 'add-follower-again', { kind: 'add-member', org: follower });
    await fed.waitFor(`${follower} admitted again (a learner)`, async () => (await status(fed, leader)).membership.learners.includes(follower));

    // Healed, the node installs the leader's snapshot, replaying the records — the verdict's among them: that is when
    // this node applies the verdict, and the held submission is answered then with its entry, as any held submission
    // is when its verdict is applied. (Before: the replay answered nobody; the submission waited for the node's own
    // proposal of the verdict — a duplicate if it committed after the node was a voter again, a 403 if before, when
    // the batch was refused as a whole and the verdict judged anew as its org's, not yet a member.)
    fed.mesh!.healAll();
    const answer = await held;
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json).toMatchObject({ status: 'committed', jwsHash: first.json.jwsHash, index: first.json.index, entryHash: first.json.entryHash });
    expect((await status(fed, follower)).detail.snapshotsInstalled).toBeGreaterThan(0);

    // It catches up and votes again; the verdict counts once, on every node.
    await fed.waitFor(`${follower} a voter again`, async () => (await status(fed, leader)).membership.voters.includes(follower), 90_000);
    for (const { org } of fed.orgs) {
      await fed.waitFor(`${org} to hold the verdict once`, async () => {
        const view = await fed.api(org, 'GET', `/v1/swarms/${SWARM}/subjects/${encodeURIComponent(subject)}`);
        return view.status === 200 && view.json.votes.length === 1 && view.json.votes[0].jwsHash === first.json.jwsHash;
      });
    }
  }, 180_000);
});

describe('a node whose state lags while it copies records', () => {
  let fed: InProcessFederation;
  let leader: string;
  let lagging: string;
  let third: string;

  beforeAll(async () => {
    // Every copy of records from a peer waits 5 s first: a node installing a snapshot stays mid-install that long.
    ({ fed, leader, follower: lagging } = await startRaftTrio(SWARM, () => ({ snapshotEvery: 20, recordCopyDelayMs: 5_000 }), { mesh: true }));
    third = fed.orgs.map((o) => o.org).find((org) => org !== leader && org !== lagging)!;
  }, 120_000);

  afterAll(async () => {
    await fed?.close();
  });

  it('answers 503 CATCHING_UP, not a refusal, for a verdict its old state would refuse but the swarm allows', async () => {
    // The swarm allows a new value while one node is cut off; the log is compacted past the change.
    fed.mesh!.isolate([lagging]);
    const policy: SwarmPolicy = { ...(await status(fed, leader)).rules.policy };
    policy.values = [...policy.values, 'abstain'];
    const changed = await approve(fed, leader, [leader, third], 'allow-abstain-now', { kind: 'set-policy', policy, adminPolicy: 'majority' });
    expect(changed).toBeGreaterThan(0);
    await compactPast(fed, leader, changed);

    // Healed, it is sent the leader's snapshot and copies the records (slowly): its state is the old policy's.
    const installsBefore = (await status(fed, lagging)).detail.snapshotsInstalled;
    fed.mesh!.healAll();
    await fed.waitFor(`${lagging} to start installing a snapshot`, async () => (await status(fed, lagging)).detail.snapshotsInstalled > installsBefore);
    const jws = await fed.sign(lagging, { swarm: SWARM, subject: 'github.com/acme/widget/pull/43@9f1c2e', verdict: 'abstain' });
    const early = await fed.api(lagging, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws });
    expect(early.status, early.text).toBe(503);
    expect(early.json.code).toBe('CATCHING_UP');

    // Caught up, it takes the verdict the swarm allows.
    await fed.waitFor(`${lagging} to catch up`, async () => (await status(fed, lagging)).rules.policy.values.includes('abstain'), 90_000);
    const later = await fed.api(lagging, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws });
    expect(later.status, later.text).toBe(200);
    expect(later.json.status).toBe('committed');
  }, 180_000);
});
