// Linearizable reads (`GET .../subjects/{subject}?consistent=true`, Raft ReadIndex): a follower answers only after
// applying everything committed before the request; cut off from its leader it refuses (503) where a plain read
// answers from its stale state; once the links heal it answers the committed decision. Pbft swarms refuse the
// option with a stable code. Real nodes in one process (TLS, HTTP/2, RocksDB); the follower's links go through TCP
// proxies that the test cuts.
import { afterEach, describe, expect, it } from 'vitest';
import { startPbftFour, startRaftTrio, type InProcessFederation } from '../support/inproc-federation.ts';

let fed: InProcessFederation | undefined;

afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

describe('consistent reads', () => {
  it('a follower reads what the leader committed; cut off it refuses rather than answer stale, and answers once healed', async () => {
    const started = await startRaftTrio('reads', undefined, { mesh: true });
    fed = started.fed;
    const { leader, follower } = started;
    const path = (subject: string, consistent: boolean) => `/v1/swarms/reads/subjects/${encodeURIComponent(subject)}${consistent ? '?consistent=true' : ''}`;
    const submit = async (subject: string) => {
      const answer = await fed!.api(leader, 'POST', '/v1/swarms/reads/verdicts', { jws: await fed!.sign(leader, { swarm: 'reads', subject, verdict: 'approve' }) });
      expect(answer.status, answer.text).toBe(200);
      return answer.json.index as number;
    };

    // What the leader sends the follower arrives 1.5 s late: the leader and the third node commit without waiting.
    fed.mesh!.link(leader, follower).delay(1500);
    const first = 'github.com/acme/widget/pull/1@9f1c2e';
    const index = await submit(first);
    // Right after the leader answered, the follower's consistent read includes the verdict: it waited to apply it.
    const read = await fed.api(follower, 'GET', path(first, true));
    expect(read.status, read.text).toBe(200);
    expect(read.json.votes.map((v: { index: number }) => v.index)).toEqual([index]);
    fed.mesh!.link(leader, follower).delay(0);

    // Cut off both ways: the leader and the third node commit without it.
    fed.mesh!.isolate([follower]);
    const second = 'github.com/acme/widget/pull/2@9f1c2e';
    await submit(second);
    const stale = await fed.api(follower, 'GET', path(second, false));
    expect(stale.json.code).toBe('UNKNOWN_SUBJECT'); // a plain read answers from what this node applied
    const refused = await fed.api(follower, 'GET', path(second, true));
    expect(refused.status, refused.text).toBe(503);
    expect(['NO_QUORUM', 'NOT_APPLIED']).toContain(refused.json.code);
    expect(typeof refused.json.message).toBe('string');

    fed.mesh!.healAll();
    const healed = await fed.waitFor('a consistent read on the healed follower', async () => {
      const answer = await fed!.api(follower, 'GET', path(second, true));
      return answer.status === 200 ? answer : null;
    });
    expect(healed.json.votes).toHaveLength(1);
    const onLeader = await fed.api(leader, 'GET', path(second, true));
    expect(onLeader.status, onLeader.text).toBe(200);
  }, 120_000);

  it('a pbft swarm refuses consistent=true with a stable code; the plain read answers', async () => {
    const started = await startPbftFour('bft-reads');
    fed = started.fed;
    const subject = 'github.com/acme/widget/pull/3@9f1c2e';
    const submitted = await fed.api(started.backup, 'POST', '/v1/swarms/bft-reads/verdicts', { jws: await fed.sign(started.backup, { swarm: 'bft-reads', subject, verdict: 'approve' }) });
    expect(submitted.status, submitted.text).toBe(200);
    const refused = await fed.api(started.backup, 'GET', `/v1/swarms/bft-reads/subjects/${encodeURIComponent(subject)}?consistent=true`);
    expect([refused.status, refused.json.code]).toEqual([400, 'CONSISTENT_READ_UNSUPPORTED']);
    expect((await fed.api(started.backup, 'GET', `/v1/swarms/bft-reads/subjects/${encodeURIComponent(subject)}`)).status).toBe(200);
  }, 120_000);
});
