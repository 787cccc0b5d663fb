// PBFT mode end to end inside one process: four real nodes (mutual TLS, RocksDB) in a pbft swarm commit verdicts,
// every node reaches the same decision and the same audit head, and the answer waits for f+1 matching replies.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { verifyExport } from '../../src/audit/verifier.ts';
import { loadFederation } from '../../src/config/load.ts';
import { everyNodeReady, startInProcessFederation, type InProcessFederation } from '../support/inproc-federation.ts';

const orgs = ['acme', 'globex', 'initech', 'umbrella'];
let fed: InProcessFederation;

beforeAll(async () => {
  fed = await startInProcessFederation({
    orgs,
    swarms: [{ id: 'audit', mode: 'pbft', policy: { values: ['approve', 'reject'], quorum: 'all', rule: 'majority' } }],
  });
  await everyNodeReady(fed);
});

afterAll(async () => {
  await fed?.close();
});

describe('pbft swarm', () => {
  it('four orgs commit verdicts and every replica reports the same decision and log head', async () => {
    const subject = 'github.com/acme/widget/pull/7@abc123';
    const answers = await Promise.all(
      orgs.map(async (org, i) => fed.api(org, 'POST', '/v1/swarms/audit/verdicts', { jws: await fed.sign(org, { swarm: 'audit', subject, verdict: i === 3 ? 'reject' : 'approve' }) })),
    );
    for (const answer of answers) {
      expect(answer.status, answer.text).toBe(200);
      expect(answer.json.status).toBe('committed');
    }
    const views = [];
    for (const org of orgs) {
      views.push(
        await fed.waitFor(`decision on ${org}`, async () => {
          const answer = await fed.api(org, 'GET', `/v1/swarms/audit/subjects/${subject}`);
          return answer.json?.decision ? answer.json : null;
        }),
      );
    }
    for (const view of views) expect(view.decision).toEqual(views[0].decision);
    expect(views[0].decision.value).toBe('approve');
    const heads = await fed.waitFor('identical logs', async () => {
      const logs = await Promise.all(orgs.map(async (org) => (await fed.api(org, 'GET', '/v1/swarms/audit/log?from=1&limit=100')).json.entries));
      const hashes = logs.map((entries: any[]) => entries.map((e) => e.hash).join(','));
      return hashes.every((h) => h === hashes[0]) && logs[0].length >= 4 ? logs[0] : null;
    });
    expect(heads.every((entry: any) => entry.mode === 'pbft')).toBe(true);
    const status = await fed.api('acme', 'GET', '/v1/swarms/audit/status');
    expect(status.json.mode).toBe('pbft');
    expect(status.json.detail.f).toBe(1);

    // The primary checkpoints the grown log; every replica that computed the same root co-signs it, so the
    // checkpoint becomes a commit certificate (2f+1 = 3 of 4 signatures) that the auditor can demand.
    const certified = await fed.waitFor('a checkpoint signed by at least 3 replicas on every node', async () => {
      const lists = await Promise.all(orgs.map(async (org) => (await fed.api(org, 'GET', '/v1/swarms/audit/checkpoints')).json.checkpoints as { size: number; signatures: unknown[] }[]));
      return lists.every((list) => list.some((cp) => cp.signatures.length >= 3)) ? lists[0] : null;
    });
    expect(certified.length).toBeGreaterThan(0);
    const exported = await fed.api('umbrella', 'GET', '/v1/swarms/audit/export');
    const summary = await verifyExport(Readable.from([exported.text]), {
      federation: loadFederation(fed.orgs.find((o) => o.org === 'umbrella')!.configPath),
      requireCertificates: true,
    });
    expect(summary.failure).toBeNull();
    expect(summary.certificates).toBeGreaterThan(0);
  });
});
