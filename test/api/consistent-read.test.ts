// Linearizable reads (`GET .../subjects/{subject}?consistent=true`): a node answers only after applying everything
// committed before the request — raft through ReadIndex, pbft through the read-index answers of 2f+1 replicas
// (PbftSwarm.readBarrier); cut off it refuses (503) where a plain read answers from its stale state; once the links
// heal it answers the committed decision. Real nodes in one process (TLS, HTTP/2, RocksDB); the lagging node's links
// go through TCP proxies that the test delays and cuts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { importPrivateJwk } from '../../src/crypto/ed25519.ts';
import { adminCommand, newChangeId } from '../../src/verdict/admin.ts';
import { startInProcessFederation, startPbftFour, startRaftTrio, type InProcessFederation } from '../support/inproc-federation.ts';

let fed: InProcessFederation | undefined;

afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

/** 24 concurrent consistent reads on `org`'s node all answer, served by fewer read rounds than reads (status detail). */
async function expectSharedRounds(org: string, swarm: string, readPath: string): Promise<void> {
  const reads = () => fed!.api(org, 'GET', `/v1/swarms/${swarm}/status`).then((r) => r.json.detail.consistentReads as { barriers: number; rounds: number });
  const before = await reads();
  const answers = await Promise.all(Array.from({ length: 24 }, () => fed!.api(org, 'GET', readPath)));
  expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
  const after = await reads();
  expect(after.barriers - before.barriers).toBe(24);
  expect(after.rounds - before.rounds).toBeGreaterThanOrEqual(1);
  expect(after.rounds - before.rounds).toBeLessThan(24);
}

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

    // Concurrent reads share ReadIndex requests: one is out at a time, those arriving meanwhile join the next.
    await expectSharedRounds(follower, 'reads', path(second, true));
  }, 120_000);

  it('pbft: a backup behind the others reads what they executed; cut off it refuses; answers once healed', async () => {
    const started = await startPbftFour('bft-reads', undefined, { mesh: true });
    fed = started.fed;
    const orgs = ['acme', 'globex', 'initech', 'umbrella'];
    const { primary } = started;
    // The replica that lags: a backup other than the one that takes the verdict.
    const lagging = orgs.find((org) => org !== primary && org !== started.backup)!;
    const others = orgs.filter((org) => org !== lagging);
    const path = (subject: string, consistent: boolean) => `/v1/swarms/bft-reads/subjects/${encodeURIComponent(subject)}${consistent ? '?consistent=true' : ''}`;
    const submit = async (subject: string) => {
      const answer = await fed!.api(started.backup, 'POST', '/v1/swarms/bft-reads/verdicts', {
        jws: await fed!.sign(started.backup, { swarm: 'bft-reads', subject, verdict: 'approve' }),
      });
      expect(answer.status, answer.text).toBe(200);
      return answer.json as { index: number; jwsHash: string };
    };
    const lookup = (jwsHash: string, consistent: boolean) => fed!.api(lagging, 'GET', `/v1/swarms/bft-reads/verdicts/${jwsHash}${consistent ? '?consistent=true' : ''}`);

    // Everything the others send the lagging replica arrives 1.5 s late; its own messages and calls leave at once.
    for (const org of others) fed.mesh!.link(org, lagging).delay(1500);
    const first = 'github.com/acme/widget/pull/11@9f1c2e';
    const { index, jwsHash } = await submit(first); // answered once f+1 = 2 replicas executed it: the three others suffice
    // Right after that answer, the lagging replica's consistent lookup finds the verdict: it waited to execute it.
    const found = await lookup(jwsHash, true);
    expect(found.status, found.text).toBe(200);
    expect([found.json.status, found.json.index]).toEqual(['committed', index]);
    const read = await fed.api(lagging, 'GET', path(first, true));
    expect(read.status, read.text).toBe(200);
    expect(read.json.votes.map((v: { index: number }) => v.index)).toEqual([index]);
    for (const org of others) fed.mesh!.link(org, lagging).delay(0);

    // Cut off both ways: the others execute without it; it cannot collect 2f = 2 read-index answers.
    fed.mesh!.isolate([lagging]);
    const second = 'github.com/acme/widget/pull/12@9f1c2e';
    const secondHash = (await submit(second)).jwsHash;
    expect((await fed.api(lagging, 'GET', path(second, false))).json.code).toBe('UNKNOWN_SUBJECT');
    expect((await lookup(secondHash, false)).json.code).toBe('VERDICT_NOT_FOUND');
    const notConfirmed = await lookup(secondHash, true);
    expect([notConfirmed.status, notConfirmed.json.code]).toEqual([503, 'NO_QUORUM']);
    const refused = await fed.api(lagging, 'GET', path(second, true));
    expect(refused.status, refused.text).toBe(503);
    expect(refused.json.code).toBe('NO_QUORUM');
    expect(refused.json.message).toMatch(/other replicas a read needs/);
    // The others still serve consistent reads: three of four answer.
    const onPrimary = await fed.api(primary, 'GET', path(second, true));
    expect(onPrimary.status, onPrimary.text).toBe(200);

    fed.mesh!.healAll();
    const healed = await fed.waitFor('a consistent read on the healed replica', async () => {
      const answer = await fed!.api(lagging, 'GET', path(second, true));
      return answer.status === 200 ? answer : null;
    });
    expect(healed.json.votes).toHaveLength(1);
  }, 120_000);

  it('a mode switch during the read: the next era vouches for what it committed, not the halted raft', async () => {
    const orgs = ['acme', 'globex', 'initech', 'umbrella'];
    // umbrella starts each new era's engine 2 s after applying the switch (a loaded machine): meanwhile the other
    // three run pbft without it and commit verdicts it has not seen.
    fed = await startInProcessFederation({
      orgs,
      swarms: [{ id: 'switching', mode: 'raft', policy: { values: ['approve', 'reject'], quorum: 1, rule: 'majority' } }],
      nodeOptions: (org) => (org === 'umbrella' ? { eraStartDelayMs: 2000 } : {}),
    });
    const status = async (org: string) => (await fed!.api(org, 'GET', '/v1/swarms/switching/status')).json;
    await fed.waitFor('a raft leader everywhere', async () => {
      for (const org of orgs) if (!(await status(org))?.leader) return false;
      return true;
    });
    const id = newChangeId();
    for (const org of ['acme', 'globex', 'initech']) {
      const key = importPrivateJwk(JSON.parse(readFileSync(join(fed.orgs.find((o) => o.org === org)!.certDir, 'admin.jwk'), 'utf8')));
      const answer = await fed.api(org, 'POST', '/v1/swarms/switching/admin', adminCommand(key, 'switching', id, { kind: 'set-mode', mode: 'pbft' }));
      expect(answer.status, answer.text).toBe(200);
    }
    await fed.waitFor('acme in pbft', async () => (await status('acme')).mode === 'pbft');
    const subject = 'github.com/acme/widget/pull/21@9f1c2e';
    const submitted = await fed.api('acme', 'POST', '/v1/swarms/switching/verdicts', { jws: await fed.sign('acme', { swarm: 'switching', subject, verdict: 'approve' }) });
    expect(submitted.status, submitted.text).toBe(200);
    const read = await fed.api('umbrella', 'GET', `/v1/swarms/switching/subjects/${encodeURIComponent(subject)}?consistent=true`);
    expect(read.status, read.text).toBe(200);
    expect(read.json.votes.map((v: { jwsHash: string }) => v.jwsHash)).toEqual([submitted.json.jwsHash]);
    expect((await status('umbrella')).mode).toBe('pbft');
  }, 120_000);

  it('pbft: with every replica up, each one — primary and backups — answers a consistent read', async () => {
    const started = await startPbftFour('bft-index');
    fed = started.fed;
    const subject = 'github.com/acme/widget/pull/13@9f1c2e';
    const submitted = await fed.api(started.backup, 'POST', '/v1/swarms/bft-index/verdicts', { jws: await fed.sign(started.backup, { swarm: 'bft-index', subject, verdict: 'approve' }) });
    expect(submitted.status, submitted.text).toBe(200);
    for (const org of ['acme', 'globex', 'initech', 'umbrella']) {
      const answer = await fed.api(org, 'GET', `/v1/swarms/bft-index/subjects/${encodeURIComponent(subject)}?consistent=true`);
      expect(answer.status, `${org}: ${answer.text}`).toBe(200);
      expect(answer.json.votes).toHaveLength(1);
    }
    // Concurrent reads share read-index rounds (one query per peer serves every read that began before it asked).
    await expectSharedRounds(started.backup, 'bft-index', `/v1/swarms/bft-index/subjects/${encodeURIComponent(subject)}?consistent=true`);
  }, 120_000);
});
