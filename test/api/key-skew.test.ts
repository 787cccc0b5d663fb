// Replicas whose federation files differ on a key still apply the same log. A raft swarm's keys are judged before an
// entry commits (the leader's admission of what it proposes, its check of a follower's forwarded proposal), never
// when applying: a follower whose file already lists a new agent key of its org (the file updated on one node
// first) commits that agent's verdicts, and every node — including the leader, whose file lacks the key — applies
// them the same way. Before this, the others applied UNKNOWN_KID and their subjects diverged. Admin changes alike:
// approvals judged before commit, counted from the approvers the entry names. Also: a forwarded proposal whose node
// signature does not verify, or an admin command naming the wrong approvers, is refused by the leader.
// Real nodes in one process (TLS, HTTP/2, RocksDB).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../src/crypto/ed25519.ts';
import { adminCommand, newChangeId } from '../../src/verdict/admin.ts';
import { encodeCommand, signProposal, type AdminAction } from '../../src/verdict/proposal.ts';
import { adminKeyOf, metricOf, peerClientAs, rollOutAgentKey, rollOutKey, startRaftTrio, type InProcessFederation } from '../support/inproc-federation.ts';

const SWARM = 'skew';
let fed: InProcessFederation;
let leader: string;
let follower: string;

beforeAll(async () => {
  ({ fed, leader, follower } = await startRaftTrio(SWARM));
}, 120_000);

afterAll(async () => {
  await fed?.close();
});

describe('federation files that differ on a key', () => {
  it('verdicts signed with a key only the follower’s file lists commit, and every node applies them alike', async () => {
    const sign = rollOutAgentKey(fed, SWARM, follower, [follower]);

    // The leader's file lacks the key: submitted there, the verdict is refused at admission, as it should be.
    const atLeader = await fed.api(leader, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws: await sign('skew/at-leader') });
    expect(atLeader.status, atLeader.text).toBe(401);
    expect(atLeader.json.code).toBe('UNKNOWN_KID');

    // Submitted to the follower, one at a time and then a burst (which relays some to the leader, who refuses
    // them; the follower then proposes them itself): each commits.
    const subjects = ['skew/0', 'skew/1'];
    for (const subject of subjects) {
      const answer = await fed.api(follower, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws: await sign(subject) });
      expect(answer.status, answer.text).toBe(200);
      expect(answer.json.status).toBe('committed');
    }
    const burst = Array.from({ length: 16 }, (_, i) => `skew/burst/${i}`);
    const answers = await Promise.all(burst.map(async (subject) => fed.api(follower, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws: await sign(subject) })));
    for (const answer of answers) {
      expect(answer.status, answer.text).toBe(200);
      expect(answer.json.status).toBe('committed');
    }
    subjects.push(...burst);

    // Every node applied every one of them, with the same vote and the same log head.
    for (const { org } of fed.orgs) {
      await fed.waitFor(`${org} to apply all ${subjects.length}`, async () => {
        for (const subject of subjects) {
          const view = await fed.api(org, 'GET', `/v1/swarms/${SWARM}/subjects/${encodeURIComponent(subject)}`);
          if (view.status !== 200) return false;
          expect(view.json.votes.map((v: { org: string; agent: string }) => `${v.org}/${v.agent}`), `${org} ${subject}`).toEqual([`${follower}/${follower}-new-bot`]);
        }
        return true;
      });
    }
    const heads = await fed.waitFor('the same log head everywhere', async () => {
      const seen = new Set<string>();
      for (const { org } of fed.orgs) {
        const { appliedIndex } = (await fed.api(org, 'GET', `/v1/swarms/${SWARM}/status`)).json;
        const [entry] = (await fed.api(org, 'GET', `/v1/swarms/${SWARM}/log?from=${appliedIndex}&limit=1`)).json.entries;
        seen.add(`${appliedIndex}:${entry.hash}`);
      }
      return seen.size === 1 ? [...seen][0] : null;
    });
    expect(heads).toMatch(/^\d+:[0-9a-f]{64}$/);
  }, 180_000);

  it('a forwarded proposal whose node signature does not verify is refused by the leader and never committed', async () => {
    const pool = peerClientAs(fed, follower, leader);
    try {
      const dropped = () => metricOf(fed, leader, 'conclave_dropped_messages_total', `swarm="${SWARM}",reason="bad-raft-message"`);
      const before = await dropped();
      const commitBefore = (await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/status`)).json.commitIndex;
      const jws = await fed.sign(follower, { swarm: SWARM, subject: 'skew/forged', verdict: 'approve' });
      const forged = encodeCommand(signProposal(SWARM, follower, [jws], generateSigningKey()));
      const otherSwarm = encodeCommand(signProposal('elsewhere', follower, [jws], generateSigningKey()));
      // An admin command whose approval verifies, but which names another org as its approver.
      const change = adminCommand(adminKeyOf(fed, follower), SWARM, newChangeId(), { kind: 'set-mode', mode: 'raft' });
      const misnamed = encodeCommand({ ...change, approvers: [leader] });
      pool.send(leader, SWARM, 'raft.e0.forward', [forged, otherSwarm, misnamed, Buffer.from('{"not":"a command"}'), Buffer.from('junk')]);
      await pool.flush();
      await fed.waitFor('the leader to refuse all five', async () => (await dropped()) === before + 5);
      expect((await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/status`)).json.commitIndex).toBe(commitBefore);
      expect((await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/subjects/${encodeURIComponent('skew/forged')}`)).status).toBe(404);
      // The same verdict, submitted honestly, commits.
      const ok = await fed.api(follower, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws });
      expect(ok.status, ok.text).toBe(200);
    } finally {
      await pool.close();
    }
  }, 120_000);

  it('an admin change approved with a key only some files list is applied alike on every node', async () => {
    // The follower's org rolls out a new admin key: its file and the leader's list it, the third node's not yet.
    const newAdminKey = rollOutKey(fed, follower, [follower, leader], 'adminKeys');
    const { rules } = (await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/status`)).json;
    const action: AdminAction = { kind: 'set-policy', policy: { ...rules.policy, quorum: 2 }, adminPolicy: rules.adminPolicy };
    const id = newChangeId();
    const command = adminCommand(newAdminKey, SWARM, id, action);
    command.approvals.push(...adminCommand(adminKeyOf(fed, leader), SWARM, id, action).approvals);
    const answer = await fed.api(follower, 'POST', `/v1/swarms/${SWARM}/admin`, command);
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json.status).toBe('applied');
    // The third node counts the approvers the entry names (judged before it committed), not its own keys: before,
    // it counted one approval of the two required and left the change pending while the others applied it.
    for (const { org } of fed.orgs) {
      const view = await fed.waitFor(`${org} to apply the change`, async () => {
        const change = await fed.api(org, 'GET', `/v1/swarms/${SWARM}/admin/${id}`);
        return change.status === 200 && change.json.status !== 'pending' ? change.json : null;
      });
      expect(view.status, `${org}: ${view.reason}`).toBe('applied');
      expect(view.index).toBe(answer.json.index);
      expect(view.approvers).toEqual([leader, follower].sort());
      expect((await fed.api(org, 'GET', `/v1/swarms/${SWARM}/status`)).json.rules.policy.quorum).toBe(2);
    }
  }, 120_000);
});
