// A swarm's policy is replicated, not read from each node's file: it starts as the genesis policy (persisted at the
// first start) and changes only by an approved set-policy admin change, at one index on every node. A node restarted
// with an edited file keeps deciding by the committed policy and reports the difference as drift (before: it decided
// by its file's policy at once — one subject, different decisions on different nodes). After the change every node,
// a restarted one too, and the offline auditor (with a federation file that still states the old policy) decide by
// the new policy. Real nodes in one process (TLS, HTTP/2, RocksDB).
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { verifyExport } from '../../src/audit/verifier.ts';
import { loadFederation } from '../../src/config/load.ts';
import { newChangeId } from '../../src/verdict/admin.ts';
import type { AdminAction } from '../../src/verdict/proposal.ts';
import { membershipFixture, SWARM, waitFor, type MembershipFixture } from './support.ts';

const orgs = ['acme', 'globex', 'initech'];
let fx: MembershipFixture;

beforeAll(async () => {
  // umbrella has a card in every file but joins the swarm only in the last test (snapshot catch-up: every 10 entries).
  fx = await membershipFixture({ orgs: [...orgs, 'umbrella'], swarmMembers: orgs, snapshotEvery: 10, policy: { values: ['approve', 'reject'], quorum: 'all', rule: 'majority' } });
  for (const org of orgs) await fx.start(org);
  await waitFor('a leader everywhere', async () => {
    for (const org of orgs) if (!(await fx.api(org, 'GET', `/v1/swarms/${SWARM}/status`)).json?.leader) return false;
    return true;
  });
}, 120_000);

afterAll(async () => {
  await fx?.close();
});

const setQuorumOne = (doc: any) => {
  doc.swarms[0].policy.quorum = 1;
};

async function submit(org: string, subject: string, verdict: string) {
  const answer = await fx.api(org, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws: await fx.sign(org, subject, verdict) });
  expect(answer.status, JSON.stringify(answer.json)).toBe(200);
  return answer.json;
}

/** The subject as every node reports it once all of them applied `votes` verdicts on it. */
async function subjectEverywhere(subject: string, votes: number): Promise<any[]> {
  const views = [];
  for (const org of orgs) {
    views.push(
      await waitFor(`${org} to hold ${votes} votes on ${subject}`, async () => {
        const view = await fx.api(org, 'GET', `/v1/swarms/${SWARM}/subjects/${encodeURIComponent(subject)}`);
        return view.status === 200 && view.json.votes.length === votes ? view.json : null;
      }),
    );
  }
  return views;
}

async function rulesOf(org: string) {
  return (await fx.api(org, 'GET', `/v1/swarms/${SWARM}/status`)).json;
}

describe('a swarm policy committed through the log', () => {
  it('a node restarted with another policy in its file still decides by the committed one, and reports the drift', async () => {
    fx.editFile('initech', setQuorumOne);
    await fx.stop('initech');
    await fx.start('initech');
    await submit('acme', 'policy/s1', 'approve');
    const views = await subjectEverywhere('policy/s1', 1);
    for (const view of views) expect(view.decision ?? null).toBeNull();
    const status = await rulesOf('initech');
    expect(status.rules.policy.quorum).toBe('all');
    expect(status.membership.drift.join('\n')).toMatch(/the file's policy .* is not the committed one .*propose set-policy/);
    expect((await rulesOf('acme')).membership.drift).toEqual([]);
  }, 120_000);

  it('an approved set-policy changes the policy on every node at one index; a restarted node keeps it', async () => {
    for (const org of ['acme', 'globex']) {
      fx.editFile(org, setQuorumOne);
      expect(fx.nodes.get(org)!.reload().ok).toBe(true);
    }
    expect((await rulesOf('acme')).membership.drift.join('\n')).toMatch(/the file's policy/);
    const policy = loadFederation(fx.orgs.get('acme')!.configPath).swarms[0]!.policy;
    const action: AdminAction = { kind: 'set-policy', policy, adminPolicy: 'majority' };
    const id = newChangeId();
    const first = await fx.approve('acme', 'acme', id, action);
    expect(first.status, JSON.stringify(first.json)).toBe(200);
    expect(first.json.status).toBe('pending');
    // Still pending: nothing changed anywhere.
    expect((await rulesOf('globex')).rules.policy.quorum).toBe('all');
    const second = await fx.approve('globex', 'globex', id, action);
    expect(second.status, JSON.stringify(second.json)).toBe(200);
    expect(second.json.status).toBe('applied');
    const index = second.json.index as number;
    for (const org of orgs) {
      const change = await waitFor(`${org} to apply the change`, async () => {
        const view = await fx.api(org, 'GET', `/v1/swarms/${SWARM}/admin/${id}`);
        return view.status === 200 && view.json.status === 'applied' ? view.json : null;
      });
      expect(change.index).toBe(index);
      const status = await rulesOf(org);
      expect(status.rules.policy.quorum).toBe(1);
      expect(status.membership.drift).toEqual([]);
    }

    // Decided by the new policy everywhere: a fresh subject on one vote, and the open one on its next vote.
    await submit('globex', 'policy/s2', 'approve');
    for (const view of await subjectEverywhere('policy/s2', 1)) expect(view.decision?.value).toBe('approve');
    await submit('initech', 'policy/s1', 'approve');
    for (const view of await subjectEverywhere('policy/s1', 2)) expect(view.decision?.value).toBe('approve');

    await fx.stop('globex');
    await fx.start('globex');
    await waitFor('globex serving again', async () => (await fx.api('globex', 'GET', '/readyz')).status === 200);
    expect((await rulesOf('globex')).rules.policy.quorum).toBe(1);
    await submit('globex', 'policy/s3', 'reject');
    for (const view of await subjectEverywhere('policy/s3', 1)) expect(view.decision?.value).toBe('reject');
  }, 180_000);

  it('a policy the swarm cannot meet, or a malformed one, is refused up front and changes nothing', async () => {
    const policy = { ...loadFederation(fx.orgs.get('acme')!.configPath).swarms[0]!.policy, quorum: 5 };
    const tooMany = await fx.approve('acme', 'acme', newChangeId(), { kind: 'set-policy', policy, adminPolicy: 'majority' });
    expect(tooMany.status, JSON.stringify(tooMany.json)).toBe(422);
    expect(tooMany.json.code).toBe('POLICY_INVALID');
    expect(tooMany.json.message).toMatch(/quorum 5 is not between 1 and the 3 members/);
    const adminTooMany = await fx.approve('acme', 'acme', newChangeId(), { kind: 'set-policy', policy: { ...policy, quorum: 1 }, adminPolicy: 4 });
    expect(adminTooMany.status, JSON.stringify(adminTooMany.json)).toBe(422);
    expect(adminTooMany.json.code).toBe('POLICY_INVALID');
    for (const org of orgs) expect((await rulesOf(org)).rules.policy.quorum).toBe(1);
    const malformed = await fx.approve('acme', 'acme', newChangeId(), { kind: 'set-policy', policy: { ...policy, quorum: 'most' }, adminPolicy: 'majority' } as unknown as AdminAction);
    expect(malformed.status, JSON.stringify(malformed.json)).toBe(400);
    expect(malformed.json.code).toBe('MALFORMED_COMMAND');
  }, 120_000);

  it('`conclave admin propose set-policy --config F` proposes the file’s policy; `conclave admin approve` completes it', async () => {
    const cli = async (org: string, args: string[]) => {
      const local = fx.orgs.get(org)!;
      const connection = ['--swarm', SWARM, '--key', join(local.certDir, 'admin.jwk'), '--node', `https://127.0.0.1:${local.apiPort}`, '--ca', join(local.certDir, 'ca.crt')];
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'admin', ...args, ...connection], { cwd: process.cwd() });
      return JSON.parse(stdout);
    };
    fx.editFile('acme', (doc) => {
      doc.swarms[0].policy.rule = 'unanimity';
    });
    const proposed = await cli('acme', ['propose', 'set-policy', '--config', fx.orgs.get('acme')!.configPath]);
    expect(proposed.status).toBe('pending');
    expect(proposed.action.policy.rule).toEqual({ kind: 'unanimity' });
    const approved = await cli('globex', ['approve', proposed.id]);
    expect(approved.status).toBe('applied');
    for (const org of orgs) {
      await waitFor(`${org} to commit unanimity`, async () => (await rulesOf(org)).rules.policy.rule.kind === 'unanimity');
    }
  }, 120_000);

  it('the auditor decides by the log’s policy, whatever policy its federation file states', async () => {
    const exported = await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/export`);
    expect(exported.status).toBe(200);
    const text = typeof exported.json === 'string' ? exported.json : String(exported.json);
    const header = JSON.parse(text.split('\n')[0]!);
    expect(header.genesis.rules.policy.quorum).toBe('all');
    // The auditor's file states the genesis policy (quorum all), the log changed it to 1 at an index.
    const auditorFile = join(dirname(fx.orgs.get('acme')!.configPath), 'auditor-federation.yaml');
    const doc = parse(readFileSync(fx.orgs.get('acme')!.configPath, 'utf8'));
    doc.swarms[0].policy.quorum = 'all';
    doc.swarms[0].policy.rule = 'majority';
    writeFileSync(auditorFile, stringify(doc, { lineWidth: 0 }));
    const summary = await verifyExport(Readable.from([text]), { federation: loadFederation(auditorFile) });
    expect(summary.failure).toBeNull();
    // The three subjects every node decided (s1, s2, s3): by the file's policy the auditor would have decided none.
    expect(summary.decisions).toBe(3);
  }, 120_000);

  it('a newcomer catching up from a snapshot adopts the genesis and committed rules, and keeps them across a restart', async () => {
    // Its own file states the swarm as the operators agreed it now, with a policy nobody committed.
    fx.editFile('umbrella', (doc) => {
      doc.swarms[0].members = [...orgs, 'umbrella'];
      doc.swarms[0].policy.quorum = 2;
    });
    for (let i = 0; i < 12; i++) await submit(orgs[i % 3]!, `policy/fill/${i}`, 'approve');
    const id = newChangeId();
    expect((await fx.approve('acme', 'acme', id, { kind: 'add-member', org: 'umbrella' })).json.status).toBe('pending');
    expect((await fx.approve('globex', 'globex', id, { kind: 'add-member', org: 'umbrella' })).json.status).toBe('applied');
    await fx.start('umbrella');
    await waitFor('umbrella a voter everywhere', async () => {
      for (const org of [...orgs, 'umbrella']) {
        const status = await rulesOf(org);
        if (!status?.members?.includes('umbrella') || status.membership.pending.length) return false;
      }
      return true;
    });
    const check = async () => {
      const status = await rulesOf('umbrella');
      expect(status.rules.policy.quorum).toBe(1);
      expect(status.rules.policy.rule).toEqual({ kind: 'unanimity' });
      expect(status.membership.drift.join('\n')).toMatch(/the file's policy/);
      // The history it exports starts from the swarm's genesis rules, not from its own file's.
      const exported = await fx.api('umbrella', 'GET', `/v1/swarms/${SWARM}/export`);
      const header = JSON.parse(String(exported.json).split('\n')[0]!);
      expect(header.genesis.rules.policy.quorum).toBe('all');
      expect(header.genesis.members).toEqual(orgs);
    };
    await check();
    await fx.stop('umbrella');
    await fx.start('umbrella');
    await waitFor('umbrella serving again', async () => (await fx.api('umbrella', 'GET', '/readyz')).status === 200);
    await check();
    // One vote decides (quorum 1, committed), not two (umbrella's file), on every node.
    await submit('umbrella', 'policy/newcomer', 'reject');
    for (const org of [...orgs, 'umbrella']) {
      const view = await waitFor(`${org} to decide policy/newcomer`, async () => {
        const answer = await fx.api(org, 'GET', `/v1/swarms/${SWARM}/subjects/${encodeURIComponent('policy/newcomer')}`);
        return answer.status === 200 && answer.json.decision ? answer.json : null;
      });
      expect(view.decision.value).toBe('reject');
    }
  }, 180_000);
});
