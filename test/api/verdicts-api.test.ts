// The public verdict API over real HTTPS against a three-org federation of real nodes (Raft over mutual TLS,
// RocksDB): decisions agree on every node, and every kind of bad input is refused with its code, changing nothing.
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { everyNodeReady, startInProcessFederation, type InProcessFederation } from '../support/inproc-federation.ts';

const run = promisify(execFile);
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const policy = { values: ['approve', 'request-changes', 'reject'], quorum: 'all' as const, rule: 'majority' as const };
let fed: InProcessFederation;
let subjectCounter = 0;
const freshSubject = () => `github.com/acme/widget/pull/${++subjectCounter}@9f1c2e`;

async function logLength(org: string): Promise<number> {
  const status = await fed.api(org, 'GET', '/v1/swarms/reviews/status');
  return status.json.appliedIndex as number;
}

/** Asserts that a refused request changed nothing: same applied index on every node, node still healthy. */
async function expectNothingChanged(before: number): Promise<void> {
  for (const org of ['acme', 'globex', 'initech']) {
    expect((await fed.api(org, 'GET', '/healthz')).status).toBe(200);
  }
  // A refused verdict is never proposed: the leader's log does not grow because of it.
  expect(await logLength('acme')).toBe(before);
}

beforeAll(async () => {
  fed = await startInProcessFederation({
    orgs: ['acme', 'globex', 'initech'],
    swarms: [
      { id: 'reviews', mode: 'raft', policy },
      { id: 'pair', mode: 'raft', members: ['acme', 'globex'], policy: { values: ['approve', 'reject'], quorum: 'all', rule: 'unanimity', fallback: 'reject' } },
    ],
  });
  await everyNodeReady(fed);
});

afterAll(async () => {
  await fed?.close();
});

describe('verdict submission', () => {
  it('three agents of three orgs submit to their own nodes and every node reports the same decision', async () => {
    const subject = freshSubject();
    const answers = await Promise.all(
      (['acme', 'globex', 'initech'] as const).map(async (org, i) => {
        const jws = await fed.sign(org, { swarm: 'reviews', subject, verdict: i === 2 ? 'request-changes' : 'approve' });
        return fed.api(org, 'POST', '/v1/swarms/reviews/verdicts', { jws });
      }),
    );
    for (const answer of answers) {
      expect(answer.status, answer.text).toBe(200);
      expect(answer.json.status).toBe('committed');
      expect(answer.json.index).toBeGreaterThan(0);
      expect(answer.json.entryHash).toMatch(/^[0-9a-f]{64}$/);
    }
    const decisions = [];
    for (const org of ['acme', 'globex', 'initech']) {
      const view = await fed.waitFor(`decision on ${org}`, async () => {
        const answer = await fed.api(org, 'GET', `/v1/swarms/reviews/subjects/${subject}`);
        return answer.status === 200 && answer.json.decision ? answer.json : null;
      });
      decisions.push(view.decision);
      expect(view.votes).toHaveLength(3);
    }
    expect(decisions[0].value).toBe('approve');
    expect(decisions[1]).toEqual(decisions[0]);
    expect(decisions[2]).toEqual(decisions[0]);
  });

  it('re-sending the identical JWS returns the same committed entry', async () => {
    const subject = freshSubject();
    const jws = await fed.sign('globex', { swarm: 'reviews', subject, verdict: 'approve' });
    const first = await fed.api('globex', 'POST', '/v1/swarms/reviews/verdicts', { jws });
    expect(first.status, first.text).toBe(200);
    const before = await logLength('globex');
    const again = await fed.api('globex', 'POST', '/v1/swarms/reviews/verdicts', { jws });
    expect(again.status, again.text).toBe(200);
    expect(again.json.status).toBe('duplicate');
    expect(again.json.index).toBe(first.json.index);
    expect(again.json.entryHash).toBe(first.json.entryHash);
    expect(await logLength('globex')).toBe(before);
  });

  it('a verdict on an already decided subject is answered with the decision and says so', async () => {
    const subject = freshSubject();
    for (const org of ['acme', 'globex', 'initech']) {
      const jws = await fed.sign(org, { swarm: 'reviews', subject, verdict: 'approve' });
      expect((await fed.api(org, 'POST', '/v1/swarms/reviews/verdicts', { jws })).status).toBe(200);
    }
    const late = await fed.sign('acme', { swarm: 'reviews', subject, verdict: 'reject', agent: 'second-opinion' });
    const answer = await fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', { jws: late });
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json.status).toBe('decided-already');
    expect(answer.json.subject.decision.value).toBe('approve');
  });

  it('?wait=false answers 202 on acceptance and the verdict then commits', async () => {
    const subject = freshSubject();
    const jws = await fed.sign('initech', { swarm: 'reviews', subject, verdict: 'reject' });
    const answer = await fed.api('initech', 'POST', '/v1/swarms/reviews/verdicts?wait=false', { jws });
    expect(answer.status, answer.text).toBe(202);
    expect(answer.json.status).toBe('accepted');
    await fed.waitFor('the accepted verdict to commit', async () => (await fed.api('initech', 'GET', `/v1/swarms/reviews/subjects/${subject}`)).status === 200);
  });

  it('swarms are independent: a two-org swarm decides with its own policy', async () => {
    const subject = freshSubject();
    const a = await fed.api('acme', 'POST', '/v1/swarms/pair/verdicts', { jws: await fed.sign('acme', { swarm: 'pair', subject, verdict: 'approve' }) });
    const b = await fed.api('globex', 'POST', '/v1/swarms/pair/verdicts', { jws: await fed.sign('globex', { swarm: 'pair', subject, verdict: 'reject' }) });
    expect(a.status, a.text).toBe(200);
    expect(b.status, b.text).toBe(200);
    const view = await fed.waitFor('the pair decision', async () => {
      const answer = await fed.api('acme', 'GET', `/v1/swarms/pair/subjects/${subject}`);
      return answer.json?.decision ? answer.json : null;
    });
    expect(view.decision.value).toBe('reject'); // unanimity broken → fallback
    expect((await fed.api('initech', 'GET', `/v1/swarms/pair/status`)).json.code).toBe('UNKNOWN_SWARM');
  });
});

describe('bad input is refused with a stable code and changes nothing', () => {
  const cases: { name: string; status: number; code: string; send: () => Promise<{ status: number; json: any; text: string }> }[] = [
    { name: 'malformed JSON', status: 400, code: 'MALFORMED_JSON', send: () => fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', '{"jws": "abc"') },
    { name: 'a body over the size limit', status: 413, code: 'BODY_TOO_LARGE', send: () => fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', { jws: 'a'.repeat(100_000) }) },
    { name: 'a body that is not a JWS', status: 400, code: 'MALFORMED_JWS', send: () => fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', { jws: 'hello world' }) },
    { name: 'a body without a jws member', status: 400, code: 'INVALID_REQUEST', send: () => fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', { verdict: 'approve' }) },
    {
      name: 'a bad signature',
      status: 401,
      code: 'BAD_SIGNATURE',
      send: async () => {
        const jws = await fed.sign('acme', { swarm: 'reviews', subject: freshSubject(), verdict: 'approve' });
        const [h, p, s] = jws.split('.');
        const flipped = (s!.startsWith('A') ? 'B' : 'A') + s!.slice(1);
        return fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', { jws: `${h}.${p}.${flipped}` });
      },
    },
    {
      name: 'an unknown kid',
      status: 401,
      code: 'UNKNOWN_KID',
      send: async () => {
        const jws = await fed.sign('acme', { swarm: 'reviews', subject: freshSubject(), verdict: 'approve' });
        const [, p, s] = jws.split('.');
        const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: 'no-such-key', typ: 'conclave-verdict+jws' })).toString('base64url');
        return fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', { jws: `${header}.${p}.${s}` });
      },
    },
    {
      name: 'a key of another org than the payload claims',
      status: 403,
      code: 'KEY_ORG_MISMATCH',
      send: async () => fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', { jws: await fed.sign('acme', { swarm: 'reviews', subject: freshSubject(), verdict: 'approve', asOrg: 'globex' }) }),
    },
    {
      name: 'an unknown swarm',
      status: 404,
      code: 'UNKNOWN_SWARM',
      send: async () => fed.api('acme', 'POST', '/v1/swarms/nope/verdicts', { jws: await fed.sign('acme', { swarm: 'nope', subject: freshSubject(), verdict: 'approve' }) }),
    },
    {
      name: 'an org not in that swarm',
      status: 403,
      code: 'ORG_NOT_IN_SWARM',
      send: async () => fed.api('acme', 'POST', '/v1/swarms/pair/verdicts', { jws: await fed.sign('initech', { swarm: 'pair', subject: freshSubject(), verdict: 'approve' }) }),
    },
    {
      name: 'a value outside the policy',
      status: 422,
      code: 'VALUE_NOT_ALLOWED',
      send: async () => fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', { jws: await fed.sign('acme', { swarm: 'reviews', subject: freshSubject(), verdict: 'maybe' }) }),
    },
    {
      name: 'an issue time too far in the past',
      status: 422,
      code: 'IAT_OUT_OF_RANGE',
      send: async () => fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', { jws: await fed.sign('acme', { swarm: 'reviews', subject: freshSubject(), verdict: 'approve', iat: Math.floor(Date.now() / 1000) - 3600 }) }),
    },
    {
      name: 'an issue time too far in the future',
      status: 422,
      code: 'IAT_OUT_OF_RANGE',
      send: async () => fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', { jws: await fed.sign('acme', { swarm: 'reviews', subject: freshSubject(), verdict: 'approve', iat: Math.floor(Date.now() / 1000) + 3600 }) }),
    },
    {
      name: 'a verdict sent to another swarm than it names',
      status: 400,
      code: 'SWARM_MISMATCH',
      send: async () => fed.api('acme', 'POST', '/v1/swarms/pair/verdicts', { jws: await fed.sign('acme', { swarm: 'reviews', subject: freshSubject(), verdict: 'approve' }) }),
    },
    { name: 'a body of another content type', status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', send: () => fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', '<jws/>', { 'content-type': 'application/xml' }) },
    { name: 'a bare body that is not a JWS (application/jose)', status: 400, code: 'MALFORMED_JWS', send: () => fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', 'not.a-jws', { 'content-type': 'application/jose' }) },
    {
      name: 'a verdicts command sent to the admin route',
      status: 400,
      code: 'NOT_AN_ADMIN_COMMAND',
      send: async () => {
        const jws = await fed.sign('acme', { swarm: 'reviews', subject: freshSubject(), verdict: 'approve' });
        return fed.api('acme', 'POST', '/v1/swarms/reviews/admin', { v: 1, type: 'verdicts', swarm: 'reviews', proposer: 'acme', batch: [jws], sig: 'AA', id: 'x'.repeat(16), action: {}, approvals: [] });
      },
    },
    { name: 'an admin command that is not one', status: 400, code: 'MALFORMED_COMMAND', send: () => fed.api('acme', 'POST', '/v1/swarms/reviews/admin', { v: 1, type: 'admin', swarm: 'reviews', id: 'short', action: { kind: 'nothing' }, approvals: [] }) },
    { name: 'an empty subject', status: 400, code: 'INVALID_REQUEST', send: () => fed.api('acme', 'GET', '/v1/swarms/reviews/subjects/') },
    { name: 'an unknown admin change', status: 404, code: 'UNKNOWN_CHANGE', send: () => fed.api('acme', 'GET', '/v1/swarms/reviews/admin/no-such-change-0123') },
  ];

  for (const testCase of cases) {
    it(`${testCase.name} → ${testCase.status} ${testCase.code}`, async () => {
      const before = await logLength('acme');
      const answer = await testCase.send();
      expect(answer.status, answer.text).toBe(testCase.status);
      expect(answer.json?.code, answer.text).toBe(testCase.code);
      expect(typeof answer.json?.message).toBe('string');
      await expectNothingChanged(before);
    });
  }

  it('a nonce replayed with different content → 409 NONCE_REPLAYED', async () => {
    const nonce = 'replayed-nonce-0123456789';
    const first = await fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', { jws: await fed.sign('acme', { swarm: 'reviews', subject: freshSubject(), verdict: 'approve', nonce }) });
    expect(first.status, first.text).toBe(200);
    const before = await logLength('acme');
    const replay = await fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', { jws: await fed.sign('acme', { swarm: 'reviews', subject: freshSubject(), verdict: 'reject', nonce }) });
    expect(replay.status, replay.text).toBe(409);
    expect(replay.json.code).toBe('NONCE_REPLAYED');
    await expectNothingChanged(before);
  });

  it('a bare compact JWS posted as application/jose (RFC 7515) or text/plain commits like the JSON form', async () => {
    for (const type of ['application/jose', 'text/plain']) {
      const jws = await fed.sign('acme', { swarm: 'reviews', subject: freshSubject(), verdict: 'approve' });
      const answer = await fed.api('acme', 'POST', '/v1/swarms/reviews/verdicts', `${jws}\n`, { 'content-type': type });
      expect(answer.status, answer.text).toBe(200);
      expect(answer.json.status).toBe('committed');
    }
  });

  it('unknown routes and subjects answer 404 with a code', async () => {
    expect((await fed.api('acme', 'GET', '/v1/nothing')).json.code).toBe('NOT_FOUND');
    expect((await fed.api('acme', 'GET', '/v1/swarms/reviews/subjects/never-seen')).json.code).toBe('UNKNOWN_SUBJECT');
  });
});

describe('read side', () => {
  it('serves status, the log, metrics and the OpenAPI document', async () => {
    const status = await fed.api('globex', 'GET', '/v1/status');
    expect(status.json.org).toBe('globex');
    expect(status.json.swarms.map((s: any) => s.swarm).sort()).toEqual(['pair', 'reviews']);
    const log = await fed.api('globex', 'GET', '/v1/swarms/reviews/log?from=1&limit=5');
    expect(log.json.entries.length).toBeGreaterThan(0);
    expect(log.json.entries[0].index).toBe(1);
    const metrics = await fed.api('globex', 'GET', '/metrics');
    expect(metrics.text).toContain('conclave_commit_index');
    expect(metrics.text).toContain('conclave_commit_latency_seconds');
    // Signature checks: globex verified the verdicts it admitted and the proposals it applied (earlier tests).
    const verified = /conclave_signature_checks\{result="verified",org="globex"\} (\d+)/.exec(metrics.text);
    expect(Number(verified?.[1])).toBeGreaterThan(0);
    expect(metrics.text).toMatch(/conclave_signature_checks\{result="cached",org="globex"\} \d+/);
    // `conclave status` prints the same view from the command line.
    const globex = fed.orgs.find((o) => o.org === 'globex')!;
    const { stdout } = await run(process.execPath, [join(repoRoot, 'bin', 'conclave.js'), 'status', '--node', `https://127.0.0.1:${globex.apiPort}`, '--ca', join(globex.certDir, 'ca.crt'), '--json']);
    const printed = JSON.parse(stdout);
    expect(printed.org).toBe('globex');
    expect(printed.swarms.find((s: any) => s.swarm === 'reviews').leader).toBeTruthy();
    const docs = await fed.api('globex', 'GET', '/docs');
    expect(docs.json.openapi).toBe('3.1.0');
    expect(Object.keys(docs.json.paths)).toContain('/v1/swarms/{swarm}/verdicts');
  });
});
