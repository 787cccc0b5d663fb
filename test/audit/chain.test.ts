// Tests of audit records, the hash chain and AuditLog (src/audit/chain.ts), checkpoints (src/audit/checkpoint.ts)
// and the export reader (src/audit/export.ts).
import { describe, expect, it } from 'vitest';
import { AuditLog, GENESIS_PREV, makeRecord, recordHash, recordLeaf, verifyChain, type AuditRecord } from '../../src/audit/chain.ts';
import {
  CheckpointPolicy,
  checkpointSigningBytes,
  mergeCheckpointSignatures,
  pbftQuorum,
  signCheckpoint,
  verifyCheckpoint,
} from '../../src/audit/checkpoint.ts';
import { readExport, splitLines } from '../../src/audit/export.ts';
import { MerkleTree } from '../../src/audit/merkle.ts';
import { canonicalBytes } from '../../src/crypto/canonical.ts';
import { generateSigningKey } from '../../src/crypto/ed25519.ts';
import { concatBytes, toHex, utf8 } from '../../src/crypto/encoding.ts';
import { sha256 } from '../../src/crypto/hash.ts';
import { Keyring } from '../../src/verdict/keyring.ts';
import { makeFederation } from './fixtures.ts';

const noop = utf8('{"type":"noop","v":1}');

function chainOf(n: number): AuditRecord[] {
  const log = AuditLog.create('fed', 'swarm');
  return Array.from({ length: n }, (_, i) => log.append({ index: i + 1, mode: 'raft', epoch: 1, data: noop }).record);
}

describe('audit records and the hash chain', () => {
  it('the record hash is SHA-256 of "conclave/audit-record/v1\\n" + canonical JSON; the leaf is the canonical JSON', () => {
    const record = makeRecord(null, { federation: 'fed', swarm: 'swarm', index: 1, mode: 'raft', epoch: 3, data: noop });
    expect(record.prev).toBe(GENESIS_PREV);
    const canonical = '{"data":"eyJ0eXBlIjoibm9vcCIsInYiOjF9","federation":"fed","index":1,"mode":"raft","prev":"' + GENESIS_PREV + '","swarm":"swarm","term":3,"v":1}';
    expect(Buffer.from(recordLeaf(record)).toString()).toBe(canonical);
    expect(recordHash(record)).toBe(toHex(sha256(concatBytes(utf8('conclave/audit-record/v1\n'), utf8(canonical)))));
    const pbft = makeRecord(record, { federation: 'fed', swarm: 'swarm', index: 2, mode: 'pbft', epoch: 0, data: noop });
    expect(pbft.prev).toBe(recordHash(record));
    expect(pbft.view).toBe(0);
    expect('term' in pbft).toBe(false);
  });

  it('a record must follow the previous index', () => {
    const first = makeRecord(null, { federation: 'fed', swarm: 'swarm', index: 1, mode: 'raft', epoch: 1, data: noop });
    expect(() => makeRecord(first, { federation: 'fed', swarm: 'swarm', index: 3, mode: 'raft', epoch: 1, data: noop })).toThrow(/cannot follow/);
    expect(() => makeRecord(null, { federation: 'fed', swarm: 'swarm', index: 2, mode: 'raft', epoch: 1, data: noop })).toThrow(/cannot follow/);
  });

  it('verifyChain accepts an intact chain and names the first broken link, gap or term regression', () => {
    const records = chainOf(10);
    expect(verifyChain(records)).toBeNull();
    const edited = records.map((r) => ({ ...r }));
    edited[4] = { ...edited[4]!, data: 'e30' };
    expect(verifyChain(edited)).toMatchObject({ code: 'CHAIN_BROKEN', index: 6 });
    expect(verifyChain([...records.slice(0, 3), ...records.slice(4)])).toMatchObject({ code: 'INDEX_GAP', index: 4 });
    const log = AuditLog.create('fed', 'swarm');
    const terms = [1, 2, 2, 1].map((t, i) => log.append({ index: i + 1, mode: 'raft', epoch: t, data: noop }).record);
    expect(verifyChain(terms)).toMatchObject({ code: 'TERM_REGRESSED', index: 4 });
  });

  it('an AuditLog restored from its persisted state continues with exactly the same records and roots', () => {
    const full = AuditLog.create('fed', 'swarm');
    const half = AuditLog.create('fed', 'swarm');
    const tree = new MerkleTree();
    let restored: AuditLog | null = null;
    for (let i = 1; i <= 300; i++) {
      const data = utf8(`entry ${i}`);
      const a = full.append({ index: i, mode: i > 150 ? 'pbft' : 'raft', epoch: Math.floor(i / 40), data });
      tree.appendLeafHash(a.leafHash);
      const target = i <= 123 ? half : restored!;
      const b = target.append({ index: i, mode: i > 150 ? 'pbft' : 'raft', epoch: Math.floor(i / 40), data });
      if (i === 123) restored = AuditLog.restore(JSON.parse(JSON.stringify(half.state())));
      expect(b.hash).toBe(a.hash);
      expect(toHex(b.root)).toBe(toHex(tree.root()));
    }
    expect(verifyChain([])).toBeNull();
  });
});

describe('checkpoints', () => {
  const fed = makeFederation(['a', 'b', 'c', 'd', 'e'], 'pbft');
  const keyring = Keyring.fromMembers(fed.config.members);
  const body = { v: 1 as const, federation: 'test-fed', swarm: 'reviews', size: 42, root: 'ab'.repeat(32), time: 1_760_000_000, mode: 'pbft' as const };

  it('each node signs "conclave/checkpoint/v1\\n" + canonical JSON of the unsigned body', () => {
    expect(Buffer.from(checkpointSigningBytes(body)).toString()).toBe(
      `conclave/checkpoint/v1\n${Buffer.from(canonicalBytes(body)).toString()}`,
    );
    expect(Buffer.from(canonicalBytes(body)).toString()).toBe(
      '{"federation":"test-fed","mode":"pbft","root":"' + 'ab'.repeat(32) + '","size":42,"swarm":"reviews","time":1760000000,"v":1}',
    );
  });

  it('merged signatures of 2f+1 members make a pbft commit certificate (n=5: f=1, quorum ceil((5+1+1)/2)=4)', () => {
    expect(pbftQuorum(4)).toBe(3);
    expect(pbftQuorum(5)).toBe(4);
    expect(pbftQuorum(7)).toBe(5);
    const parts = fed.orgs.slice(0, 3).map((o) => signCheckpoint(body, o.org, o.nodeKey));
    const three = mergeCheckpointSignatures(...parts);
    const v3 = verifyCheckpoint(three, { keyring, members: fed.swarm.members });
    expect(v3).toMatchObject({ validOrgs: ['a', 'b', 'c'], problems: [], quorum: 4, certificate: false });
    const four = mergeCheckpointSignatures(three, signCheckpoint(body, 'd', fed.orgs[3]!.nodeKey), three);
    expect(four.signatures.map((s) => s.org)).toEqual(['a', 'b', 'c', 'd']);
    expect(verifyCheckpoint(four, fed.config).certificate).toBe(true);
    expect(() => mergeCheckpointSignatures(four, signCheckpoint({ ...body, size: 43 }, 'e', fed.orgs[4]!.nodeKey))).toThrow(/different bodies/);
  });

  it('refuses unknown keys, another org\'s key, agent keys, non-members and edited bodies, each with its code', () => {
    const outsider = signCheckpoint(body, 'a', generateSigningKey());
    expect(verifyCheckpoint(outsider, fed.config).problems[0]!.code).toBe('CHECKPOINT_UNKNOWN_KEY');
    const wrongOrg = signCheckpoint(body, 'b', fed.orgs[0]!.nodeKey);
    expect(verifyCheckpoint(wrongOrg, fed.config).problems[0]!.message).toMatch(/node key of a, not of b/);
    const agentKey = signCheckpoint(body, 'a', fed.orgs[0]!.agentKey);
    expect(verifyCheckpoint(agentKey, fed.config).problems[0]!.message).toMatch(/agent key/);
    const nonMember = signCheckpoint(body, 'e', fed.orgs[4]!.nodeKey);
    expect(verifyCheckpoint(nonMember, { keyring, members: ['a', 'b', 'c', 'd'] }).problems[0]!.code).toBe('CHECKPOINT_NOT_MEMBER');
    const edited = { ...signCheckpoint(body, 'a', fed.orgs[0]!.nodeKey), size: 41 };
    expect(verifyCheckpoint(edited, fed.config).problems[0]!.code).toBe('CHECKPOINT_BAD_SIGNATURE');
    expect(verifyCheckpoint({ ...body, signatures: [] }, fed.config).problems[0]!.code).toBe('CHECKPOINT_UNSIGNED');
  });

  it('the policy checkpoints every N entries or after T seconds when the log grew', () => {
    const policy = new CheckpointPolicy({ everyEntries: 100, everySeconds: 60 }, { size: 0, time: 1000 });
    expect(policy.due(99, 1059)).toBe(false);
    expect(policy.due(100, 1001)).toBe(true);
    expect(policy.due(1, 1060)).toBe(true);
    policy.taken(1, 1060);
    expect(policy.due(1, 5000)).toBe(false); // nothing new
    expect(policy.due(2, 1119)).toBe(false);
    expect(policy.due(2, 1120)).toBe(true);
  });
});

describe('export reading', () => {
  async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
    for (const p of parts) yield Buffer.from(p);
  }

  it('splits lines across chunk boundaries (CRLF tolerated, multi-byte UTF-8 split in two) and numbers them', async () => {
    const text = '{"type":"header"}\r\n{"type":"decision","subject":"é"}\n\n{"type":"nope"}\nnot json';
    const bytes = Buffer.from(text);
    const cut = bytes.indexOf(0xc3) + 1; // split inside "é"
    const read = [];
    for await (const item of readExport((async function* () {
      yield bytes.subarray(0, 5);
      yield bytes.subarray(5, cut);
      yield bytes.subarray(cut);
    })())) read.push(item);
    expect(read).toEqual([
      { lineNumber: 1, line: { type: 'header' } },
      { lineNumber: 2, line: { type: 'decision', subject: 'é' } },
      { lineNumber: 4, error: 'unknown line type "nope"' },
      { lineNumber: 5, error: 'line is not JSON' },
    ]);
  });

  it('refuses an over-long line without buffering it', async () => {
    const out = [];
    for await (const item of splitLines(chunks('x'.repeat(50), 'y'.repeat(50), '\nok\n'), 64)) out.push(item);
    expect(out).toEqual([
      { lineNumber: 1, error: 'line longer than 64 bytes' },
      { lineNumber: 2, text: 'ok' },
    ]);
  });
});
