// Live raft <-> pbft switching of one swarm by a committed admin change, under a steady stream of verdicts: every
// acknowledged verdict is present exactly once on every node afterwards, and the logs are identical.
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importPrivateJwk } from '../../src/crypto/ed25519.ts';
import { adminCommand, newChangeId } from '../../src/verdict/admin.ts';
import type { AdminAction } from '../../src/verdict/proposal.ts';
import { verifyExport } from '../../src/audit/verifier.ts';
import { loadFederation } from '../../src/config/load.ts';
import { everyNodeReady, startInProcessFederation, type InProcessFederation } from '../support/inproc-federation.ts';

const orgs = ['acme', 'globex', 'initech', 'umbrella'];
let fed: InProcessFederation;

function adminKey(org: string) {
  const local = fed.orgs.find((o) => o.org === org)!;
  return importPrivateJwk(JSON.parse(readFileSync(join(local.certDir, 'admin.jwk'), 'utf8')));
}

async function approve(org: string, swarm: string, id: string, action: AdminAction) {
  return fed.api(org, 'POST', `/v1/swarms/${swarm}/admin`, adminCommand(adminKey(org), swarm, id, action));
}

beforeAll(async () => {
  fed = await startInProcessFederation({
    orgs,
    swarms: [
      { id: 'reviews', mode: 'raft', policy: { values: ['approve', 'reject'], quorum: 1, rule: 'majority' } },
      { id: 'trio', mode: 'raft', members: ['acme', 'globex', 'initech'], policy: { values: ['approve', 'reject'], quorum: 1, rule: 'majority' } },
    ],
  });
  await everyNodeReady(fed);
});

afterAll(async () => {
  await fed?.close();
});

describe('mode switching', () => {
  it('a switch to pbft with fewer than 4 members is refused with a clear error', async () => {
    const answer = await approve('acme', 'trio', newChangeId(), { kind: 'set-mode', mode: 'pbft' });
    expect(answer.status, answer.text).toBe(422);
    expect(answer.json.code).toBe('PBFT_TOO_FEW_MEMBERS');
  });

  it('an under-approved switch stays pending and says why', async () => {
    const id = newChangeId();
    const answer = await approve('acme', 'reviews', id, { kind: 'set-mode', mode: 'pbft' });
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json.status).toBe('pending');
    expect(answer.json.required).toBe(3);
    expect(answer.json.reason).toContain('1 of the 3');
    expect((await fed.api('globex', 'GET', '/v1/swarms/reviews/status')).json.mode).toBe('raft');
  });

  it('raft -> pbft -> raft under a steady stream of verdicts loses and duplicates nothing', async () => {
    const acked: { subject: string; jwsHash: string }[] = [];
    let streaming = true;
    let sent = 0;
    const failures: string[] = [];
    const stream = (async () => {
      while (streaming && sent < 400) {
        const org = orgs[sent % orgs.length]!;
        const subject = `github.com/acme/widget/pull/${1000 + sent}@c0ffee`;
        sent++;
        const jws = await fed.sign(org, { swarm: 'reviews', subject, verdict: 'approve' });
        // A verdict caught in a switch may time out or be told to retry: resubmitting the same JWS is safe.
        for (let attempt = 0; attempt < 5; attempt++) {
          const answer = await fed.api(org, 'POST', '/v1/swarms/reviews/verdicts', { jws });
          if (answer.status === 200) {
            acked.push({ subject, jwsHash: answer.json.jwsHash });
            break;
          }
          if (attempt === 4) failures.push(`${answer.status} ${answer.text}`);
        }
      }
    })();

    const switchTo = async (mode: 'raft' | 'pbft') => {
      await fed.waitFor('a few verdicts in this mode', () => acked.length >= sent / 2 && acked.length > 10);
      const before = acked.length;
      await fed.waitFor('verdicts flowing', () => acked.length >= before + 5);
      const id = newChangeId();
      let last: any = null;
      for (const org of ['acme', 'globex', 'initech']) last = await approve(org, 'reviews', id, { kind: 'set-mode', mode });
      expect(last.status, last.text).toBe(200);
      expect(last.json.status).toBe('applied');
      for (const org of orgs) await fed.waitFor(`${org} in ${mode}`, async () => (await fed.api(org, 'GET', '/v1/swarms/reviews/status')).json.mode === mode);
      const after = acked.length;
      await fed.waitFor(`verdicts committing under ${mode}`, () => acked.length >= after + 10, 90_000);
    };
    await switchTo('pbft');
    await switchTo('raft');
    streaming = false;
    await stream;
    expect(failures).toEqual([]);

    // Every node: the same log, and every acknowledged verdict counted exactly once.
    const logs: string[] = [];
    for (const org of orgs) {
      const entries: any[] = [];
      for (let from = 1; ; from += 1000) {
        const page = (await fed.api(org, 'GET', `/v1/swarms/reviews/log?from=${from}&limit=1000`)).json.entries;
        entries.push(...page);
        if (page.length < 1000) break;
      }
      logs.push(entries.map((e) => e.hash).join(','));
      const modes = new Set(entries.map((e) => e.mode));
      expect([...modes].sort()).toEqual(['pbft', 'raft']);
    }
    await fed.waitFor('identical logs on every node', async () => {
      const heads = await Promise.all(orgs.map(async (org) => (await fed.api(org, 'GET', '/v1/swarms/reviews/status')).json.appliedIndex));
      return heads.every((h) => h === heads[0]);
    });
    for (const { subject, jwsHash } of acked) {
      for (const org of orgs) {
        const view = (await fed.api(org, 'GET', `/v1/swarms/reviews/subjects/${subject}`)).json;
        expect(view.votes.filter((v: any) => v.jwsHash === jwsHash), `${subject} on ${org}`).toHaveLength(1);
      }
    }
    expect(acked.length).toBeGreaterThan(40);

    // The offline auditor verifies the whole log across both modes, including the approved switches.
    const exported = await fed.api('globex', 'GET', '/v1/swarms/reviews/export');
    expect(exported.status).toBe(200);
    const summary = await verifyExport(Readable.from([exported.text]), { federation: loadFederation(fed.orgs.find((o) => o.org === 'globex')!.configPath) });
    expect(summary.failure).toBeNull();
    expect(summary.ok).toBe(true);
    expect(summary.entries).toBeGreaterThan(40);
    // A record that claims the other mode without an approved switch is caught.
    const lines = exported.text.trim().split('\n');
    const at = lines.findIndex((line) => line.includes('"type":"record"') && line.includes('"mode":"raft"'));
    const forged = [...lines];
    forged[at] = forged[at]!.replace('"mode":"raft"', '"mode":"pbft"');
    const refused = await verifyExport(Readable.from([forged.join('\n') + '\n']), { federation: loadFederation(fed.orgs.find((o) => o.org === 'globex')!.configPath) });
    expect(refused.ok).toBe(false);
  }, 300_000);
});
