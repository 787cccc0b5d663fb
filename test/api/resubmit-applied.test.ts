// A verdict that was applied is answered as such when it is submitted again, whatever the node would now say of a
// new one (real nodes, HTTPS, RocksDB): a client that lost the first answer must learn that its verdict counted.
// Found by the chaos tool's leave-join fault — an agent resubmitting after its org had left the swarm was told
// 403 ORG_NOT_IN_SWARM for a verdict committed before the removal took effect. Here the refusal that appears with
// time is the issue time aging past the swarm's allowed clock skew.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { everyNodeReady, startInProcessFederation, type InProcessFederation } from '../support/inproc-federation.ts';

const SKEW_SECONDS = 3;
let fed: InProcessFederation;

beforeAll(async () => {
  fed = await startInProcessFederation({
    orgs: ['acme', 'globex', 'initech'],
    swarms: [{ id: 'reviews', mode: 'raft', policy: { values: ['approve', 'reject'], quorum: 'all', rule: 'majority', maxClockSkewSeconds: SKEW_SECONDS } }],
  });
  await everyNodeReady(fed);
});

afterAll(async () => {
  await fed?.close();
});

describe('resubmitting an applied verdict', () => {
  it('answers duplicate with its entry after its iat aged past the allowed skew; a new verdict that old is refused', async () => {
    const iat = Math.floor(Date.now() / 1000);
    const jws = await fed.sign('globex', { swarm: 'reviews', subject: 'github.com/acme/widget/pull/1@9f1c2e', verdict: 'approve', iat });
    const first = await fed.api('globex', 'POST', '/v1/swarms/reviews/verdicts', { jws });
    expect(first.status, first.text).toBe(200);
    expect(first.json.status).toBe('committed');

    // Wait until a new verdict issued at `iat` is refused (a condition, not a fixed sleep): each probe is a fresh one.
    let probes = 0;
    await fed.waitFor("a new verdict issued at the first one's iat to be refused", async () => {
      const late = await fed.sign('globex', { swarm: 'reviews', subject: `github.com/acme/widget/pull/probe-${++probes}@9f1c2e`, verdict: 'approve', iat });
      const answer = await fed.api('globex', 'POST', '/v1/swarms/reviews/verdicts?wait=false', { jws: late });
      return answer.json.code === 'IAT_OUT_OF_RANGE';
    });

    for (const org of ['globex', 'acme']) {
      const again = await fed.api(org, 'POST', '/v1/swarms/reviews/verdicts', { jws });
      expect(again.status, again.text).toBe(200);
      expect(again.json).toMatchObject({ status: 'duplicate', jwsHash: first.json.jwsHash, index: first.json.index, entryHash: first.json.entryHash });
    }
    // Garbage is still refused with its own code.
    const garbage = await fed.api('globex', 'POST', '/v1/swarms/reviews/verdicts', { jws: 'not.a.jws' });
    expect(garbage.status).toBe(400);
  }, 60_000);
});
