// Tests of the offline auditor (src/audit/verifier.ts) over real logs: a valid export verifies, and every kind of
// tampering is caught at the first bad entry with its stable code.
import { beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, type AuditRecord } from '../../src/audit/chain.ts';
import { signCheckpoint, type Checkpoint } from '../../src/audit/checkpoint.ts';
import { exportLines } from '../../src/audit/export.ts';
import { MerkleTree } from '../../src/audit/merkle.ts';
import { makeInclusionBundle, verifyExport, verifyInclusionBundle, type AuditSummary } from '../../src/audit/verifier.ts';
import { generateSigningKey, signBytes } from '../../src/crypto/ed25519.ts';
import { fromBase64Url, toBase64Url, toHex } from '../../src/crypto/encoding.ts';
import { adminCommand } from '../../src/verdict/admin.ts';
import { decodeCommand, encodeCommand, signProposal, type LogCommand, type VerdictsCommand } from '../../src/verdict/proposal.ts';
import { buildLog, exportText, FEDERATION, lineOf, makeCheckpoint, makeFederation, signAgentVerdict, streamOf, SWARM, type BuiltLog } from './fixtures.ts';

const ORGS = ['acme', 'globex', 'initech', 'umbrella'];

async function audit(built: BuiltLog, lines: string[], extra: { requireCertificates?: boolean } = {}): Promise<AuditSummary> {
  return verifyExport(streamOf(lines, 1000), { federation: built.fed.config, ...extra });
}

function parse(line: string): Record<string, unknown> {
  return JSON.parse(line) as Record<string, unknown>;
}

function recordLineIndex(lines: string[], index: number): number {
  const at = lines.findIndex((l) => {
    const v = parse(l);
    return v.type === 'record' && v.index === index;
  });
  if (at < 0) throw new Error(`no record ${index}`);
  return at;
}

/** Recomputes prev links (and the tree) over records whose data may have been changed: a careful forger. */
function rechain(records: AuditRecord[]): { records: AuditRecord[]; tree: MerkleTree } {
  const log = AuditLog.create(FEDERATION, SWARM);
  const tree = new MerkleTree();
  const out = records.map((r, i) => {
    const appended = log.append({ index: i + 1, mode: r.mode, epoch: (r.term ?? r.view)!, data: fromBase64Url(r.data) });
    tree.appendLeafHash(appended.leafHash);
    return appended.record;
  });
  return { records: out, tree };
}

function expectFailure(summary: AuditSummary, code: string, index: number | null): void {
  expect(summary.ok, `expected ${code} at ${index}, got ${JSON.stringify(summary.failure)}`).toBe(false);
  expect({ code: summary.failure?.code, index: summary.failure?.index }, summary.failure?.message).toEqual({ code, index });
}

describe('conclave audit over a raft log', () => {
  let built: BuiltLog;
  let lines: string[];
  beforeAll(async () => {
    built = buildLog(makeFederation(ORGS, 'raft'), { entries: 120, checkpointEvery: 16, signers: [1] });
    lines = await exportText(built, { withProofs: true });
  });

  it('a faithful export verifies: entries, subjects, decisions, checkpoints and proofs are all counted', async () => {
    const summary = await audit(built, lines);
    expect(summary.failure).toBeNull();
    expect(summary.ok).toBe(true);
    expect(summary.entries).toBe(120);
    expect(summary.checkpoints).toBe(7);
    expect(summary.consistencyProofs).toBe(6);
    expect(summary.decisions).toBeGreaterThan(20);
    expect(summary.decisionsCompared).toBe(summary.decisions);
    expect(summary.subjects).toBeGreaterThan(20);
    expect(summary.root).toBe(toHex(built.tree.root()));
  });

  it('checkpoints streamed in ascending size give the same export, each read only as the records reach it', async () => {
    let recordsRead = 0;
    const readWhen: { size: number; recordsRead: number }[] = [];
    async function* records(): AsyncGenerator<AuditRecord> {
      for (const record of built.records) {
        recordsRead++;
        yield record;
      }
    }
    async function* checkpoints(): AsyncGenerator<Checkpoint> {
      for (const cp of [...built.checkpoints].sort((a, b) => a.size - b.size)) {
        readWhen.push({ size: cp.size, recordsRead });
        yield cp;
      }
    }
    const streamed: string[] = [];
    for await (const line of exportLines({
      federation: FEDERATION,
      swarm: SWARM,
      from: 1,
      to: built.records.length,
      exportedAt: 1_760_000_999,
      records: records(),
      checkpoints: checkpoints(),
      decisionsAt: (i) => built.decisions.get(i) ?? [],
      consistencyProof: (a, b) => built.tree.consistencyProof(a, b),
    })) streamed.push(line);
    expect(streamed).toEqual(lines);
    // One checkpoint of look-ahead: the one after size s is read once the records reached s, never all up front.
    for (let i = 1; i < readWhen.length; i++) expect(readWhen[i]!.recordsRead).toBeGreaterThanOrEqual(readWhen[i - 1]!.size);
  });

  it('progress is reported through the callback every N entries', async () => {
    const seen: number[] = [];
    const summary = await verifyExport(streamOf(lines), { federation: built.fed.config, progressEvery: 50, onProgress: (p) => seen.push(p.entries) });
    expect(summary.ok).toBe(true);
    expect(seen).toEqual([50, 100]);
  });

  it('a flipped byte in a verdict is BAD_AGENT_SIGNATURE at that entry', async () => {
    const tampered = [...lines];
    const at = recordLineIndex(tampered, 42);
    const record = parse(tampered[at]!);
    const cmd = decodeCommand(fromBase64Url(record.data as string)) as VerdictsCommand;
    const [h, p, s] = cmd.batch[0]!.split('.') as [string, string, string];
    const payload = Buffer.from(p, 'base64url');
    const reasonAt = payload.indexOf('reviewed');
    payload[reasonAt]! ^= 0x01; // "reviewed" -> "seviewed"
    const forged: VerdictsCommand = { ...cmd, batch: [`${h}.${payload.toString('base64url')}.${s}`] };
    tampered[at] = lineOf({ ...record, data: toBase64Url(encodeCommand(forged)) });
    expectFailure(await audit(built, tampered), 'BAD_AGENT_SIGNATURE', 42);
  });

  it('a changed decision is DECISION_MISMATCH at the entry that decided it', async () => {
    const tampered = [...lines];
    const at = tampered.findIndex((l) => parse(l).type === 'decision');
    const decision = parse(tampered[at]!);
    tampered[at] = lineOf({ ...decision, value: decision.value === 'approve' ? 'reject' : 'approve' });
    expectFailure(await audit(built, tampered), 'DECISION_MISMATCH', decision.index as number);
  });

  it('a removed decision line is DECISION_MISMATCH when the export claims to carry every decision', async () => {
    const tampered = [...lines];
    const at = tampered.findIndex((l) => parse(l).type === 'decision');
    const decision = parse(tampered[at]!);
    tampered.splice(at, 1);
    expectFailure(await audit(built, tampered), 'DECISION_MISMATCH', decision.index as number);
  });

  it('an entry removed is INDEX_GAP at the missing index', async () => {
    const tampered = [...lines];
    tampered.splice(recordLineIndex(tampered, 30), 1);
    expectFailure(await audit(built, tampered), 'INDEX_GAP', 30);
  });

  it('two record lines swapped is INDEX_GAP at the first of them', async () => {
    const tampered = [...lines];
    const a = recordLineIndex(tampered, 20);
    const b = recordLineIndex(tampered, 21);
    [tampered[a], tampered[b]] = [tampered[b]!, tampered[a]!];
    expectFailure(await audit(built, tampered), 'INDEX_GAP', 20);
  });

  it('two entries swapped with their indexes renumbered is CHAIN_BROKEN at the first of them', async () => {
    const tampered = [...lines];
    const a = recordLineIndex(tampered, 20);
    const b = recordLineIndex(tampered, 21);
    const ra = parse(tampered[a]!);
    const rb = parse(tampered[b]!);
    tampered[a] = lineOf({ ...ra, data: rb.data });
    tampered[b] = lineOf({ ...rb, data: ra.data });
    expectFailure(await audit(built, tampered), 'CHAIN_BROKEN', 21);
  });

  it('two entries swapped and the whole chain recomputed is caught by the next signed checkpoint (ROOT_MISMATCH)', async () => {
    const swapped = [...built.records];
    [swapped[19], swapped[20]] = [swapped[20]!, swapped[19]!];
    const { records } = rechain(swapped);
    const tampered = await exportText(built, { records, withDecisions: false });
    expectFailure(await audit(built, tampered), 'ROOT_MISMATCH', 32);
  });

  it('a forged node signature on a proposal is BAD_PROPOSAL_SIGNATURE', async () => {
    const tampered = [...lines];
    const at = recordLineIndex(tampered, 55);
    const record = parse(tampered[at]!);
    const cmd = decodeCommand(fromBase64Url(record.data as string)) as VerdictsCommand;
    const forged = signProposal(SWARM, cmd.proposer, cmd.batch, generateSigningKey());
    tampered[at] = lineOf({ ...record, data: toBase64Url(encodeCommand(forged)) });
    expectFailure(await audit(built, tampered), 'BAD_PROPOSAL_SIGNATURE', 55);
  });

  it('a proposal by an org that is not in the federation is UNKNOWN_KEY', async () => {
    const tampered = [...lines];
    const at = recordLineIndex(tampered, 56);
    const record = parse(tampered[at]!);
    const cmd = decodeCommand(fromBase64Url(record.data as string)) as VerdictsCommand;
    const forged = signProposal(SWARM, 'mallory', cmd.batch, generateSigningKey());
    tampered[at] = lineOf({ ...record, data: toBase64Url(encodeCommand(forged)) });
    expectFailure(await audit(built, tampered), 'UNKNOWN_KEY', 56);
  });

  it('a verdict signed by an agent key outside the federation is UNKNOWN_KEY', async () => {
    const outsider = { org: 'acme', nodeKey: generateSigningKey(), agentKey: generateSigningKey(), adminKey: generateSigningKey() };
    const tampered = [...lines];
    const at = recordLineIndex(tampered, 57);
    const record = parse(tampered[at]!);
    const proposer = built.fed.orgs[57 % ORGS.length]!;
    const jws = signAgentVerdict(outsider, { subject: 'github.com/acme/widget/pull/999@c0ffee', verdict: 'approve', nonce: 'outsider-nonce-000001' });
    tampered[at] = lineOf({ ...record, data: toBase64Url(encodeCommand(signProposal(SWARM, proposer.org, [jws], proposer.nodeKey))) });
    expectFailure(await audit(built, tampered), 'UNKNOWN_KEY', 57);
  });

  it('a checkpoint signed by a key not in the federation is CHECKPOINT_UNKNOWN_KEY', async () => {
    const tampered = [...lines];
    const at = tampered.findIndex((l) => parse(l).type === 'checkpoint' && parse(l).size === 48);
    const cp = parse(tampered[at]!);
    const { type: _t, ...body } = cp;
    const rogue = signCheckpoint(body as never, 'globex', generateSigningKey());
    tampered[at] = lineOf({ type: 'checkpoint', ...rogue });
    expectFailure(await audit(built, tampered), 'CHECKPOINT_UNKNOWN_KEY', 48);
  });

  it('a checkpoint whose root was edited after signing is CHECKPOINT_BAD_SIGNATURE', async () => {
    const tampered = [...lines];
    const at = tampered.findIndex((l) => parse(l).type === 'checkpoint' && parse(l).size === 64);
    const cp = parse(tampered[at]!);
    tampered[at] = lineOf({ ...cp, root: toHex(built.tree.root(63)) });
    expectFailure(await audit(built, tampered), 'CHECKPOINT_BAD_SIGNATURE', 64);
  });

  it('a validly signed checkpoint whose root disagrees with the records is ROOT_MISMATCH', async () => {
    const tampered = [...lines];
    const at = tampered.findIndex((l) => parse(l).type === 'checkpoint' && parse(l).size === 112);
    tampered[at] = lineOf({ type: 'checkpoint', ...makeCheckpoint(built.fed, 'raft', 112, toHex(built.tree.root(111)), [2]) });
    const withoutProofs = tampered.filter((l) => parse(l).type !== 'proof');
    expectFailure(await audit(built, withoutProofs), 'ROOT_MISMATCH', 112);
  });

  it('a log rewritten after a checkpoint is INCONSISTENT_CHECKPOINTS (the earlier signed head cannot be a prefix)', async () => {
    // Entry 10 is replaced by another validly signed proposal after the checkpoint of size 16 was signed; the node
    // then re-chains, re-hashes and signs new checkpoints over the rewritten log.
    const proposer = built.fed.orgs[10 % ORGS.length]!;
    const other = signAgentVerdict(built.fed.orgs[0]!, { subject: 'github.com/acme/widget/pull/2@c0ffee', verdict: 'reject', nonce: 'rewritten-nonce-00001' });
    const rewritten = [...built.records];
    rewritten[9] = { ...rewritten[9]!, data: toBase64Url(encodeCommand(signProposal(SWARM, proposer.org, [other], proposer.nodeKey))) };
    const { records, tree } = rechain(rewritten);
    const checkpoints = built.checkpoints.map((cp) => (cp.size <= 16 ? cp : makeCheckpoint(built.fed, 'raft', cp.size, toHex(tree.root(cp.size)), [1])));
    const forgedBuilt: BuiltLog = { ...built, records, tree };
    for (const withProofs of [false, true]) {
      const tampered = await exportText(forgedBuilt, { records, checkpoints, withDecisions: false, withProofs });
      expectFailure(await audit(built, tampered), 'INCONSISTENT_CHECKPOINTS', 16);
    }
  });

  it('a consistency proof line that does not link two signed checkpoints is INCONSISTENT_CHECKPOINTS', async () => {
    const tampered = [...lines];
    const at = tampered.findIndex((l) => parse(l).type === 'proof');
    const proof = parse(tampered[at]!);
    const hashes = [...(proof.hashes as string[])];
    hashes[0] = hashes[0]!.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    tampered[at] = lineOf({ ...proof, hashes });
    expectFailure(await audit(built, tampered), 'INCONSISTENT_CHECKPOINTS', proof.size1 as number);
  });

  it('a line that is not JSON is MALFORMED_LINE; a cut-off export is TRUNCATED', async () => {
    const broken = [...lines];
    broken.splice(recordLineIndex(broken, 70), 0, '{"type":"record",');
    expectFailure(await audit(built, broken), 'MALFORMED_LINE', 70);
    expectFailure(await audit(built, lines.slice(0, recordLineIndex(lines, 90))), 'TRUNCATED', 90);
  });

  it('an export of a range after index 1 verifies against its anchor (decisions are not recomputed)', async () => {
    const partial = await exportText(built, { from: 33, withDecisions: false, checkpoints: built.checkpoints });
    const summary = await audit(built, partial);
    expect(summary.failure).toBeNull();
    expect(summary.entries).toBe(120 - 32);
    expect(summary.decisionsRecomputed).toBe(false);
    expect(summary.checkpoints).toBe(6); // sizes 32 (right after the header) .. 112
  });

  it('an inclusion bundle (record, proof, checkpoint) verifies offline, and not for another record', () => {
    const cp = built.checkpoints.find((c) => c.size === 96)!;
    const bundle = makeInclusionBundle(built.records[40]!, cp, built.tree);
    expect(verifyInclusionBundle(bundle, built.fed.config)).toBeNull();
    expect(verifyInclusionBundle({ ...bundle, record: built.records[41]! }, built.fed.config)?.code).toBe('ROOT_MISMATCH');
  });
});

describe('conclave audit over a pbft log', () => {
  it('checkpoints signed by a PBFT quorum (3 of 4) are commit certificates', async () => {
    const built = buildLog(makeFederation(ORGS, 'pbft'), { entries: 40, checkpointEvery: 10, signers: [0, 1, 3], batch: 3 });
    const summary = await audit(built, await exportText(built), { requireCertificates: true });
    expect(summary.failure).toBeNull();
    expect(summary.certificates).toBe(4);
    expect(summary.verdicts).toBeGreaterThan(100);
  });

  it('with certificates required, a pbft checkpoint signed by 2 of 4 is CHECKPOINT_NO_QUORUM', async () => {
    const built = buildLog(makeFederation(ORGS, 'pbft'), { entries: 20, checkpointEvery: 10, signers: [0, 2] });
    const lines = await exportText(built);
    expect((await audit(built, lines)).ok).toBe(true);
    expectFailure(await audit(built, lines, { requireCertificates: true }), 'CHECKPOINT_NO_QUORUM', 10);
  });

  describe('checkpoint signers are judged by the voters of their time (wayne removed at entry 10)', () => {
    const FIVE = [...ORGS, 'wayne'];
    // Entries 8, 9, 10: admin approvals of acme, globex, initech (2f+1 of five) remove wayne; the removal applies at 10.
    const removal = (fed: ReturnType<typeof makeFederation>) => (index: number, cmd: LogCommand): LogCommand =>
      index >= 8 && index <= 10 ? adminCommand(fed.orgs[index - 8]!.adminKey, SWARM, 'remove-wayne-0123456789ab', { kind: 'remove-member', org: 'wayne' }) : cmd;
    let built: BuiltLog;
    /** The federation file as an auditor holds it today: the swarm without wayne (its keys still in the file). */
    let today: BuiltLog['fed']['config'];
    const byIndex = (orgs: string[]) => orgs.map((org) => FIVE.indexOf(org));
    const checkpointsSignedBy = (signers: (size: number) => string[]) =>
      built.checkpoints.map((cp) => makeCheckpoint(built.fed, 'pbft', cp.size, cp.root, byIndex(signers(cp.size))));
    const auditToday = async (lines: string[]) => verifyExport(streamOf(lines, 1000), { federation: today, requireCertificates: true });

    beforeAll(() => {
      const fed = makeFederation(FIVE, 'pbft');
      built = buildLog(fed, { entries: 30, checkpointEvery: 10, batch: 2, override: removal(fed) });
      today = { ...fed.config, swarms: fed.config.swarms.map((s) => ({ ...s, members: [...ORGS] })) };
    });

    it('the old voters certify up to the change (all five at 10, the era that ends there), the four after it', async () => {
      const checkpoints = checkpointsSignedBy((size) => (size <= 10 ? FIVE : ['acme', 'globex', 'initech']));
      const summary = await auditToday(await exportText(built, { withDecisions: false, checkpoints, genesis: { members: FIVE, mode: 'pbft' } }));
      expect(summary.failure).toBeNull();
      expect(summary.certificates).toBe(3);
    });

    it('wayne signing after its removal is CHECKPOINT_NOT_MEMBER', async () => {
      const checkpoints = checkpointsSignedBy((size) => (size <= 10 ? FIVE : ['acme', 'globex', 'wayne']));
      expectFailure(await auditToday(await exportText(built, { withDecisions: false, checkpoints, genesis: { members: FIVE, mode: 'pbft' } })), 'CHECKPOINT_NOT_MEMBER', 20);
    });

    it('before the change a certificate needs 4 of the 5 voters: 3 is CHECKPOINT_NO_QUORUM', async () => {
      const fed = built.fed;
      const early = buildLog(fed, { entries: 30, checkpointEvery: 5, batch: 2, override: removal(fed) });
      const checkpoints = early.checkpoints.map((cp) => makeCheckpoint(fed, 'pbft', cp.size, cp.root, byIndex(cp.size < 10 ? ['acme', 'globex', 'initech'] : FIVE)));
      expectFailure(await auditToday(await exportText(early, { withDecisions: false, checkpoints, genesis: { members: FIVE, mode: 'pbft' } })), 'CHECKPOINT_NO_QUORUM', 5);
    });
  });

  it('a forged agent signature is caught at the entry even though the machine would reject it', async () => {
    const built = buildLog(makeFederation(ORGS, 'pbft'), { entries: 20, checkpointEvery: 10 });
    const lines = await exportText(built);
    const at = recordLineIndex(lines, 7);
    const record = parse(lines[at]!);
    const cmd = decodeCommand(fromBase64Url(record.data as string)) as VerdictsCommand;
    const [h, p] = cmd.batch[0]!.split('.') as [string, string];
    const badSig = toBase64Url(signBytes(generateSigningKey(), Buffer.from(`${h}.${p}`)));
    const proposer = built.fed.orgs.find((o) => o.org === cmd.proposer)!;
    lines[at] = lineOf({ ...record, data: toBase64Url(encodeCommand(signProposal(SWARM, cmd.proposer, [`${h}.${p}.${badSig}`], proposer.nodeKey))) });
    expectFailure(await audit(built, lines), 'BAD_AGENT_SIGNATURE', 7);
  });
});
