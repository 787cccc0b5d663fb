// The audit proofs a node serves on its public API, checked the way an auditor or an agent would: an entry's
// inclusion bundle (record, RFC 9162 proof, the latest signed checkpoint) verifies offline against the federation
// file alone — in this process and with `conclave audit --index` / `--inclusion` as a process — and a consistency
// proof links a signed checkpoint to the current tree, whose root is recomputed here from the exported records. An
// entry newer than the latest checkpoint is refused with a stable code until one covers it; bad requests get a
// stable code and change nothing. Real nodes in one process (TLS, HTTP/2, RocksDB); checkpoints every 8 entries and
// no timed ones after the first, so their sizes are known.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordLeafHash, type AuditRecord } from '../../src/audit/chain.ts';
import type { Checkpoint } from '../../src/audit/checkpoint.ts';
import { rootFromLeafHashes, verifyConsistency } from '../../src/audit/merkle.ts';
import { checkCheckpointConsistency, checkInclusionBundle, verifyExport } from '../../src/audit/verifier.ts';
import { signCheckpoint } from '../../src/audit/checkpoint.ts';
import { importPrivateJwk, type PrivateJwk } from '../../src/crypto/ed25519.ts';
import { loadFederation } from '../../src/config/load.ts';
import { fromHex, toHex } from '../../src/crypto/encoding.ts';
import { jwsHashOf } from '../../src/verdict/verify.ts';
import { startRaftTrio, type InProcessFederation } from '../support/inproc-federation.ts';
import { REPO_ROOT } from '../support/processes.ts';

const SWARM = 'proofs';
const EVERY = 8;
let fed: InProcessFederation;
let leader: string;
let follower: string;
/** Index → JWS of every verdict submitted, and the subject it named. */
const submitted = new Map<number, { jws: string; subject: string }>();

function runAudit(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli', 'main.ts'), 'audit', ...args], { cwd: REPO_ROOT, timeout: 120_000 }, (error, stdout, stderr) => {
      done({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function logSize(org: string): Promise<number> {
  return (await fed.api(org, 'GET', `/v1/swarms/${SWARM}/status`)).json.commitIndex as number;
}

beforeAll(async () => {
  ({ fed, leader, follower } = await startRaftTrio(SWARM, () => ({ checkpointEvery: EVERY, checkpointSeconds: 3600 })));
  // The first timed checkpoint (of the leader's first entry) comes before any verdict: there is no other for an hour.
  await fed.waitFor('the first timed checkpoint', async () => (await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/checkpoints`)).json.checkpoints.length > 0);
  // One verdict at a time (each its own entry) until the log is two entries past the checkpoint at 8.
  let last = 0;
  for (let i = 0; last < EVERY + 2; i++) {
    const org = i % 2 === 0 ? leader : follower;
    const subject = `github.com/acme/widget/pull/${i}@9f1c2e`;
    const jws = await fed.sign(org, { swarm: SWARM, subject, verdict: 'approve' });
    const answer = await fed.api(org, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws });
    expect(answer.status, answer.text).toBe(200);
    last = answer.json.index as number;
    submitted.set(last, { jws, subject });
  }
  // Every node signs the checkpoint at 8; the gossip brings each node the others' signatures.
  await fed.waitFor('the checkpoint at 8 signed by all three nodes, on the leader', async () => {
    const answer = await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/checkpoints?from=${EVERY}&limit=1`);
    const checkpoint = answer.json.checkpoints[0] as Checkpoint | undefined;
    return checkpoint?.size === EVERY && checkpoint.signatures.length === 3;
  });
}, 180_000);

afterAll(async () => {
  await fed?.close();
});

describe('inclusion proofs', () => {
  it('an entry under the latest checkpoint: the bundle verifies offline and names the verdict it carries', async () => {
    const index = [...submitted.keys()].find((i) => i <= EVERY && i > 1)!;
    const answer = await fed.api(follower, 'GET', `/v1/swarms/${SWARM}/proofs/inclusion?index=${index}`);
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json).toMatchObject({ swarm: SWARM, index, size: EVERY });
    expect(answer.json.checkpoint.size).toBe(EVERY);
    const federation = loadFederation(fed.orgs[0]!.configPath);
    const check = checkInclusionBundle(answer.json, federation);
    expect(check.failure).toBeNull();
    expect(check.ok).toBe(true);
    expect(check.signers.length).toBeGreaterThanOrEqual(1);
    expect(check.root).toBe(answer.json.checkpoint.root);
    const { jws, subject } = submitted.get(index)!;
    expect(check.entry?.kind).toBe('verdicts');
    expect(check.entry?.verdicts).toEqual([expect.objectContaining({ jwsHash: jwsHashOf(jws), subject, verdict: 'approve' })]);

    // Tampered or foreign bundles do not verify, each with its code.
    const otherRecord = (await fed.api(follower, 'GET', `/v1/swarms/${SWARM}/proofs/inclusion?index=${index + 1}`)).json.record as AuditRecord;
    expect(checkInclusionBundle({ ...answer.json, record: otherRecord }, federation).failure?.code).toBe('ROOT_MISMATCH');
    const flipped = [...answer.json.proof] as string[];
    flipped[0] = flipped[0]!.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    expect(checkInclusionBundle({ ...answer.json, proof: flipped }, federation).failure?.code).toBe('ROOT_MISMATCH');
    const checkpoint = answer.json.checkpoint as Checkpoint;
    const forged = { ...checkpoint, root: toHex(new Uint8Array(32)) };
    expect(checkInclusionBundle({ ...answer.json, checkpoint: forged }, federation).failure?.code).toBe('CHECKPOINT_BAD_SIGNATURE');
    expect(checkInclusionBundle({ ...answer.json, checkpoint: { ...checkpoint, signatures: [] } }, federation).failure?.code).toBe('CHECKPOINT_UNSIGNED');
    expect(checkInclusionBundle(answer.json, { ...federation, federation: 'another' }).failure?.code).toBe('WRONG_FEDERATION');
    expect(checkInclusionBundle({ ...answer.json, proof: 'nope' }, federation).failure?.code).toBe('MALFORMED_BUNDLE');
    expect(checkInclusionBundle('not a bundle', federation).failure?.code).toBe('MALFORMED_BUNDLE');
  });

  it('an entry newer than the latest checkpoint: NOT_YET_CHECKPOINTED; at an unsigned size the bundle has no checkpoint and does not verify', async () => {
    const newest = Math.max(...submitted.keys());
    expect(newest).toBeGreaterThan(EVERY);
    const refused = await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/proofs/inclusion?index=${newest}`);
    expect(refused.status, refused.text).toBe(409);
    expect(refused.json.code).toBe('NOT_YET_CHECKPOINTED');
    expect(refused.json.message).toContain(`size ${EVERY}`);
    const unsigned = await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/proofs/inclusion?index=${newest}&size=${newest}`);
    expect(unsigned.status, unsigned.text).toBe(200);
    expect(unsigned.json.checkpoint).toBeNull();
    expect(checkInclusionBundle(unsigned.json, loadFederation(fed.orgs[0]!.configPath)).failure?.code).toBe('MALFORMED_BUNDLE');
  });

  it('conclave audit --index fetches and verifies a bundle; --inclusion verifies a file; exit 1 on a tampered one, 2 when the node refuses', async () => {
    const org = fed.orgs.find((o) => o.org === follower)!;
    const common = ['--federation', org.configPath, '--url', `https://127.0.0.1:${org.apiPort}`, '--ca', join(org.certDir, 'ca.crt'), '--swarm', SWARM];
    const index = [...submitted.keys()].find((i) => i <= EVERY && i > 1)!;
    const fetched = await runAudit([...common, '--index', String(index)]);
    expect(fetched.code, fetched.stdout + fetched.stderr).toBe(0);
    expect(fetched.stdout).toContain(`approve ${submitted.get(index)!.subject}`);
    expect(fetched.stdout).toContain('OK: the entry is in the log');

    const bundle = (await fed.api(follower, 'GET', `/v1/swarms/${SWARM}/proofs/inclusion?index=${index}`)).json;
    const file = join(fed.dir, 'bundle.json');
    writeFileSync(file, JSON.stringify(bundle));
    const fromFile = await runAudit(['--federation', org.configPath, '--inclusion', file, '--json']);
    expect(fromFile.code, fromFile.stdout + fromFile.stderr).toBe(0);
    expect(JSON.parse(fromFile.stdout)).toMatchObject({ ok: true, index, size: EVERY, entry: { kind: 'verdicts' } });

    const other = (await fed.api(follower, 'GET', `/v1/swarms/${SWARM}/proofs/inclusion?index=${index + 1}`)).json.record;
    writeFileSync(file, JSON.stringify({ ...bundle, record: other }));
    const tampered = await runAudit(['--federation', org.configPath, '--inclusion', file]);
    expect(tampered.code).toBe(1);
    expect(tampered.stdout).toContain('FAILED: ROOT_MISMATCH');

    const tooNew = await runAudit([...common, '--index', String(Math.max(...submitted.keys()))]);
    expect(tooNew.code).toBe(2);
    expect(tooNew.stderr).toContain('NOT_YET_CHECKPOINTED');
    expect(readFileSync(file, 'utf8')).toContain('"record"'); // the file is read, never written, by the audit
  }, 180_000);
});

describe('finding a verdict by its jwsHash', () => {
  it('GET .../verdicts/{jwsHash} names its entry; conclave audit --verdict proves that entry carries it', async () => {
    const index = [...submitted.keys()].find((i) => i <= EVERY && i > 1)!;
    const { jws, subject } = submitted.get(index)!;
    const jwsHash = jwsHashOf(jws);
    for (const org of [leader, follower]) {
      const found = await fed.api(org, 'GET', `/v1/swarms/${SWARM}/verdicts/${jwsHash}`);
      expect(found.status, found.text).toBe(200);
      expect(found.json).toMatchObject({ status: 'committed', swarm: SWARM, jwsHash, index, subject: { subject } });
      expect(found.json.entryHash).toMatch(/^[0-9a-f]{64}$/);
    }
    const unknown = await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/verdicts/${'0'.repeat(64)}`);
    expect([unknown.status, unknown.json.code]).toEqual([404, 'VERDICT_NOT_FOUND']);
    const malformed = await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/verdicts/NOT-A-HASH`);
    expect([malformed.status, malformed.json.code]).toEqual([400, 'INVALID_REQUEST']);
    const noSwarm = await fed.api(leader, 'GET', `/v1/swarms/nope/verdicts/${jwsHash}`);
    expect([noSwarm.status, noSwarm.json.code]).toEqual([404, 'UNKNOWN_SWARM']);

    const org = fed.orgs.find((o) => o.org === follower)!;
    const common = ['--federation', org.configPath, '--url', `https://127.0.0.1:${org.apiPort}`, '--ca', join(org.certDir, 'ca.crt'), '--swarm', SWARM];
    const proved = await runAudit([...common, '--verdict', jwsHash]);
    expect(proved.code, proved.stdout + proved.stderr).toBe(0);
    expect(proved.stdout).toContain(`approve ${subject}`);
    expect(proved.stdout).toContain(`with verdict ${jwsHash}`);
    const bundleFile = join(fed.dir, 'verdict-bundle.json');
    writeFileSync(bundleFile, (await fed.api(follower, 'GET', `/v1/swarms/${SWARM}/proofs/inclusion?index=${index}`)).text);
    const other = jwsHashOf([...submitted].find(([i]) => i !== index)![1].jws);
    const wrong = await runAudit(['--federation', org.configPath, '--inclusion', bundleFile, '--verdict', other]);
    expect(wrong.code, wrong.stdout + wrong.stderr).toBe(1);
    expect(wrong.stdout).toContain('FAILED: VERDICT_NOT_IN_ENTRY');
    const missing = await runAudit([...common, '--verdict', '0'.repeat(64)]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('VERDICT_NOT_FOUND');
  }, 180_000);
});

describe('consistency proofs', () => {
  it('link the signed checkpoint at 8 to the current tree, whose root is recomputed from the exported records', async () => {
    const size = await logSize(leader);
    const checkpoint = (await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/checkpoints?from=${EVERY}&limit=1`)).json.checkpoints[0] as Checkpoint;
    const answer = await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/proofs/consistency?from=${EVERY}&to=${size}`);
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json.root1).toBe(checkpoint.root);
    const exported = (await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/export?to=${size}`)).text.trim().split('\n').map((line) => JSON.parse(line) as { type: string });
    const records = exported.filter((line) => line.type === 'record') as unknown as AuditRecord[];
    expect(records.length).toBe(size);
    const root = rootFromLeafHashes(records.map((record) => recordLeafHash(record))); // the leaf takes the record members only
    expect(answer.json.root2).toBe(toHex(root));
    const proof = (answer.json.proof as string[]).map(fromHex);
    expect(verifyConsistency(EVERY, size, fromHex(checkpoint.root), root, proof)).toBe(true);
    expect(verifyConsistency(EVERY, size, fromHex(checkpoint.root), new Uint8Array(32), proof)).toBe(false);
  });
});

describe('partial exports', () => {
  it('from an index after 1: the anchor (frontier and previous record hash) comes from the stored tree and verifies', async () => {
    // Past the checkpoint at 16: it authenticates the anchors of exports that start between 9 and 16.
    for (let i = 0; (await logSize(leader)) < 2 * EVERY + 1; i++) {
      const jws = await fed.sign(leader, { swarm: SWARM, subject: `github.com/acme/widget/pull/${i}@partial`, verdict: 'approve' });
      expect((await fed.api(leader, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws })).status).toBe(200);
    }
    await fed.waitFor('the checkpoint at 16 on the follower', async () => (await fed.api(follower, 'GET', `/v1/swarms/${SWARM}/checkpoints?from=${2 * EVERY}&limit=1`)).json.checkpoints[0]?.size === 2 * EVERY);
    const size = await logSize(follower);
    const federation = loadFederation(fed.orgs[0]!.configPath);
    for (const from of [2, 5, EVERY + 1, EVERY + 2, EVERY + 5, 2 * EVERY, size]) {
      const text = (await fed.api(follower, 'GET', `/v1/swarms/${SWARM}/export?from=${from}`)).text;
      const summary = await verifyExport(
        (async function* () {
          yield text;
        })(),
        { federation },
      );
      expect(summary.failure, `from ${from}`).toBeNull();
      expect(summary.from).toBe(from);
      expect(summary.entries).toBe(size - from + 1);
      if (from <= 2 * EVERY) expect(summary.checkpoints, `from ${from}`).toBeGreaterThan(0);
    }
  });
});

describe('log monitor (conclave audit --since)', () => {
  it('the newest checkpoint extends a kept one; a kept checkpoint of another history is caught as INCONSISTENT_CHECKPOINTS', async () => {
    const org = fed.orgs.find((o) => o.org === follower)!;
    const common = ['--federation', org.configPath, '--url', `https://127.0.0.1:${org.apiPort}`, '--ca', join(org.certDir, 'ca.crt'), '--swarm', SWARM];
    const kept = (await fed.api(follower, 'GET', `/v1/swarms/${SWARM}/checkpoints?from=${EVERY}&limit=1`)).json.checkpoints[0] as Checkpoint;
    const keptFile = join(fed.dir, 'kept.json');
    const seenFile = join(fed.dir, 'seen.json');
    writeFileSync(keptFile, JSON.stringify(kept));
    const first = await runAudit([...common, '--since', keptFile, '--save', seenFile]);
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect(first.stdout).toContain('OK: the newest checkpoint extends the kept one');
    const seen = JSON.parse(readFileSync(seenFile, 'utf8')) as Checkpoint;
    expect(seen.size).toBeGreaterThanOrEqual(2 * EVERY);
    const again = await runAudit([...common, '--since', seenFile, '--json']);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ ok: true, older: { size: seen.size }, newer: { size: seen.size } });

    // A checkpoint of size 8 over another history, validly signed by a member node (as a node that forked the log,
    // or showed this reader another one, would sign it): the node's own history does not extend it.
    const acme = fed.orgs.find((o) => o.org === 'acme')!;
    const nodeKey = importPrivateJwk(JSON.parse(readFileSync(acme.files.nodeSigningKey, 'utf8')) as PrivateJwk);
    const { signatures: _theirs, ...body } = kept;
    const forged = signCheckpoint({ ...body, root: toHex(new Uint8Array(32).fill(9)) }, 'acme', nodeKey);
    writeFileSync(keptFile, JSON.stringify(forged));
    const caught = await runAudit([...common, '--since', keptFile, '--save', join(fed.dir, 'never.json')]);
    expect(caught.code, caught.stdout + caught.stderr).toBe(1);
    expect(caught.stdout).toContain('FAILED: INCONSISTENT_CHECKPOINTS');
    expect(() => readFileSync(join(fed.dir, 'never.json'))).toThrow(); // nothing saved from a failed check

    // The same rules offline, on the function.
    const federation = loadFederation(org.configPath);
    const proof = (await fed.api(follower, 'GET', `/v1/swarms/${SWARM}/proofs/consistency?from=${EVERY}&to=${seen.size}`)).json.proof as string[];
    expect(checkCheckpointConsistency(kept, seen, proof, federation).ok).toBe(true);
    expect(checkCheckpointConsistency(seen, kept, proof, federation).failure?.code).toBe('MALFORMED_PROOF');
    expect(checkCheckpointConsistency(kept, seen, proof.slice(1), federation).failure?.code).toBe('INCONSISTENT_CHECKPOINTS');
    expect(checkCheckpointConsistency(kept, { ...seen, signatures: [] }, proof, federation).failure?.code).toBe('CHECKPOINT_UNSIGNED');
    expect(checkCheckpointConsistency(kept, { ...seen, root: kept.root }, proof, federation).failure?.code).toBe('CHECKPOINT_BAD_SIGNATURE');
  }, 180_000);
});

describe('bad proof requests', () => {
  it('get a stable code, change nothing, and the node keeps committing', async () => {
    const before = await logSize(leader);
    const cases: [string, number, string][] = [
      [`/v1/swarms/${SWARM}/proofs/inclusion?index=${before + 1}`, 400, 'OUT_OF_RANGE'],
      [`/v1/swarms/${SWARM}/proofs/inclusion?index=1&size=${before + 5}`, 400, 'OUT_OF_RANGE'],
      [`/v1/swarms/${SWARM}/proofs/inclusion?index=0`, 400, 'INVALID_REQUEST'],
      [`/v1/swarms/${SWARM}/proofs/inclusion?index=abc`, 400, 'INVALID_REQUEST'],
      [`/v1/swarms/${SWARM}/proofs/inclusion`, 400, 'INVALID_REQUEST'],
      [`/v1/swarms/${SWARM}/proofs/consistency?from=${EVERY}&to=2`, 400, 'OUT_OF_RANGE'],
      [`/v1/swarms/${SWARM}/proofs/consistency?from=1&to=${before + 1}`, 400, 'OUT_OF_RANGE'],
      [`/v1/swarms/${SWARM}/proofs/consistency?from=-1&to=2`, 400, 'INVALID_REQUEST'],
      ['/v1/swarms/nope/proofs/inclusion?index=1', 404, 'UNKNOWN_SWARM'],
      ['/v1/swarms/nope/proofs/consistency?from=1&to=2', 404, 'UNKNOWN_SWARM'],
    ];
    for (const [path, status, code] of cases) {
      const answer = await fed.api(leader, 'GET', path);
      expect(answer.status, `${path}: ${answer.text}`).toBe(status);
      expect(answer.json?.code, path).toBe(code);
      expect(typeof answer.json?.message, path).toBe('string');
    }
    expect(await logSize(leader)).toBe(before);
    const jws = await fed.sign(leader, { swarm: SWARM, subject: 'github.com/acme/widget/pull/after@9f1c2e', verdict: 'approve' });
    const after = await fed.api(leader, 'POST', `/v1/swarms/${SWARM}/verdicts`, { jws });
    expect(after.status, after.text).toBe(200);
    expect(after.json.index).toBe(before + 1);
  });
});
