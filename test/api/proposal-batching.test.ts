// Under load a node keeps one proposal awaiting commit per swarm: verdicts admitted meanwhile are held and leave
// together in its next proposal (fewer, bigger log entries). Real nodes in one process (TLS, HTTP/2, RocksDB): with
// its peers down, a node's first proposal cannot commit; three verdicts admitted after it must wait and go out as ONE
// proposal once the peers are back — and every verdict still commits exactly once. Without the bound each verdict
// leaves in its own proposal (four in all), which this test refuses. Relaying is off here (a follower would otherwise
// hand the held verdicts to the leader it believes in: test/api/verdict-relay.test.ts covers that).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.ts';
import { ConclaveNode } from '../../src/node/node.ts';
import { metricOf, startInProcessFederation, type InProcessFederation } from '../support/inproc-federation.ts';

const orgs = ['acme', 'globex', 'initech'];
const policy = { values: ['approve', 'reject'], quorum: 'all' as const, rule: 'majority' as const };
let fed: InProcessFederation;

const metric = (org: string, name: string, labels: string) => metricOf(fed, org, name, labels);

async function accept(org: string, subject: string): Promise<void> {
  const jws = await fed.sign(org, { swarm: 'batch', subject, verdict: 'approve' });
  const answer = await fed.api(org, 'POST', '/v1/swarms/batch/verdicts?wait=false', { jws });
  expect(answer.status, answer.text).toBe(202);
  expect(answer.json.status).toBe('accepted');
}

beforeAll(async () => {
  // The hold outlasts the outage: the held verdicts may leave only when the first proposal commits.
  fed = await startInProcessFederation({ orgs, swarms: [{ id: 'batch', mode: 'raft', policy }], proposalHoldMs: 600_000, nodeOptions: () => ({ relayVerdicts: false }) });
  await fed.waitFor('a raft leader', async () => {
    const status = await fed.api('acme', 'GET', '/v1/swarms/batch/status');
    return status.status === 200 && status.json.leader ? status.json.leader : null;
  });
}, 120_000);

afterAll(async () => {
  await fed?.close();
});

describe('proposals in flight per node', () => {
  it('verdicts admitted while a proposal awaits commit leave together in the next proposal', async () => {
    const proposed = () => metric('acme', 'conclave_proposals_total', 'swarm="batch",outcome="proposed"');
    expect(await proposed()).toBe(0);
    for (const org of ['globex', 'initech']) await fed.nodes.get(org)!.stop();

    await accept('acme', 'pr/1');
    await fed.waitFor('the first proposal', async () => (await proposed()) === 1);
    for (const subject of ['pr/2', 'pr/3', 'pr/4']) await accept('acme', subject);

    for (const org of ['globex', 'initech']) {
      const config = fed.orgs.find((o) => o.org === org)!;
      const node = new ConclaveNode({ configPath: config.configPath, logger: createLogger({ level: 'silent' }), tickMs: 20, relayVerdicts: false });
      fed.nodes.set(org, node);
      await node.start();
    }
    for (const subject of ['pr/1', 'pr/2', 'pr/3', 'pr/4']) {
      await fed.waitFor(`${subject} to commit on acme`, async () => {
        const view = await fed.api('acme', 'GET', `/v1/swarms/batch/subjects/${encodeURIComponent(subject)}`);
        return view.status === 200 && view.json.votes.length === 1;
      }, 120_000);
    }
    expect(await proposed()).toBe(2);
    expect(await metric('acme', 'conclave_proposal_verdicts_count', 'swarm="batch"')).toBe(2);
    expect(await metric('acme', 'conclave_proposal_verdicts_sum', 'swarm="batch"')).toBe(4);
    expect(await metric('acme', 'conclave_proposal_verdicts_bucket', 'swarm="batch",le="1"')).toBe(1);
    // Each verdict committed once, on every node.
    for (const org of orgs) {
      await fed.waitFor(`${org} to apply all four`, async () => {
        const views = await Promise.all(['pr/1', 'pr/2', 'pr/3', 'pr/4'].map((s) => fed.api(org, 'GET', `/v1/swarms/batch/subjects/${encodeURIComponent(s)}`)));
        return views.every((v) => v.status === 200 && v.json.votes.length === 1);
      }, 60_000);
    }
  }, 240_000);
});
