// Replicas whose federation files differ on a key still apply the same log. A raft swarm's keys are judged before an
// entry commits (the leader's admission of what it proposes, its check of a follower's forwarded proposal), never
// when applying: a follower whose file already lists a new agent key of its org (the file updated on one node
// first) commits that agent's verdicts, and every node — including the leader, whose file lacks the key — applies
// them the same way. Before this, the others applied UNKNOWN_KID and their subjects diverged. Also: a forwarded
// proposal whose node signature does not verify is refused by the leader and never enters the log.
// Real nodes in one process (TLS, HTTP/2, RocksDB).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../src/crypto/ed25519.ts';
import { encodeCommand, signProposal } from '../../src/verdict/proposal.ts';
import { metricOf, peerClientAs, rollOutAgentKey, startRaftTrio, type InProcessFederation } from '../support/inproc-federation.ts';

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
      pool.send(leader, SWARM, 'raft.e0.forward', [forged, otherSwarm, Buffer.from('{"not":"a command"}'), Buffer.from('junk')]);
      await pool.flush();
      await fed.waitFor('the leader to refuse all four', async () => (await dropped()) === before + 4);
      expect((await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/status`)).json.commitIndex).toBe(commitBefore);
      expect((await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/subjects/${encodeURIComponent('skew/forged')}`)).status).toBe(404);
      // The same verdict, submitted honestly, commits.
      const ok = await fed.api(follower, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws });
      expect(ok.status, ok.text).toBe(200);
    } finally {
      await pool.close();
    }
  }, 120_000);
});
