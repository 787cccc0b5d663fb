// Verified record transfer (src/swarm/record-transfer.ts) against peers that lie, lack records or fail, with the
// staging space in real RocksDB: only a chain that hashes down from the trusted head to this node's head is ever
// handed out, and nothing is handed out before all of it verified.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, GENESIS_PREV, type AuditRecord } from '../../src/audit/chain.ts';
import { toBase64Url } from '../../src/crypto/encoding.ts';
import { NodeStore } from '../../src/storage/node-store.ts';
import { RecordTransferError, verifiedRecords, type ChainHead } from '../../src/swarm/record-transfer.ts';

const SIZE = 1300;
let dir: string;
let store: NodeStore;
const records: AuditRecord[] = [];
const hashes: string[] = [GENESIS_PREV];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'conclave-transfer-'));
  store = await NodeStore.open(dir);
  const log = AuditLog.create('fed', 'reviews');
  for (let index = 1; index <= SIZE; index++) {
    const appended = log.append({ index, mode: index > 900 ? 'pbft' : 'raft', epoch: 1 + Math.floor(index / 100), data: Buffer.from(JSON.stringify({ n: index })) });
    records.push(appended.record);
    hashes.push(appended.hash);
  }
});

afterAll(async () => {
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

const head = (size: number): ChainHead => ({ size, hash: hashes[size]! });
const honest = async (_peer: string, from: number, limit: number) => records.slice(from - 1, from - 1 + limit).map((r) => ({ ...r }));

async function collect(options: Parameters<typeof verifiedRecords>[0]): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const chunk of verifiedRecords(options)) out.push(...chunk);
  return out;
}

describe('verified record transfer', () => {
  it('copies (from, to] in order from an honest peer, in chunks, and leaves no staged records behind', async () => {
    const staging = store.kv('reviews', 'transfer-1');
    const got = await collect({ from: head(37), to: head(SIZE), peers: ['bolt'], fetch: honest, staging, chunk: 100 });
    expect(got.map((r) => r.index)).toEqual(records.slice(37).map((r) => r.index));
    expect(got).toEqual(records.slice(37));
    expect(await staging.scan('', { limit: 10 })).toEqual([]);
  });

  it('skips a peer that alters one record deep in the range, and one that serves too few, and uses the honest one', async () => {
    const problems: string[] = [];
    const liar = async (peer: string, from: number, limit: number) => {
      const chunk = await honest(peer, from, limit);
      const target = chunk.find((r) => r.index === 400);
      if (target) target.data = toBase64Url(Buffer.from(JSON.stringify({ n: 'forged' })));
      return chunk;
    };
    const short = async (peer: string, from: number, limit: number) => (await honest(peer, from, limit)).slice(1);
    const got = await collect({
      from: head(0),
      to: head(SIZE),
      peers: ['liar', 'short', 'bolt'],
      fetch: (peer, from, limit) => (peer === 'liar' ? liar(peer, from, limit) : peer === 'short' ? short(peer, from, limit) : honest(peer, from, limit)),
      staging: store.kv('reviews', 'transfer-2'),
      chunk: 256,
      onProblem: (peer, problem) => problems.push(`${peer}: ${problem}`),
    });
    expect(got).toEqual(records);
    expect(problems.some((p) => p.startsWith('liar: record 400 hashes to'))).toBe(true);
    expect(problems.some((p) => p.startsWith('short: asked for records'))).toBe(true);
  });

  it('a self-consistent forged chain (every prev recomputed) still fails: it does not reach the trusted head', async () => {
    const forger = async (_peer: string, from: number, limit: number) => {
      const log = AuditLog.create('fed', 'reviews');
      const forged: AuditRecord[] = [];
      for (let index = 1; index < from + limit; index++) forged.push(log.append({ index, mode: 'raft', epoch: 1, data: Buffer.from('{}') }).record);
      return forged.slice(from - 1);
    };
    const staging = store.kv('reviews', 'transfer-3');
    const attempt = collect({ from: head(0), to: head(500), peers: ['forger'], fetch: forger, staging, chunk: 128 });
    await expect(attempt).rejects.toBeInstanceOf(RecordTransferError);
    await expect(collect({ from: head(0), to: head(500), peers: ['forger'], fetch: forger, staging, chunk: 128 })).rejects.toMatchObject({ code: 'NO_VERIFIED_SOURCE' });
    expect(await staging.scan('', { limit: 10 })).toEqual([]);
  });

  it('refuses when the trusted chain does not extend this node’s own head (divergence), handing out nothing', async () => {
    const handed: AuditRecord[] = [];
    const attempt = (async () => {
      for await (const chunk of verifiedRecords({ from: { size: 100, hash: 'f'.repeat(64) }, to: head(300), peers: ['bolt'], fetch: honest, staging: store.kv('reviews', 'transfer-4') })) handed.push(...chunk);
    })();
    await expect(attempt).rejects.toMatchObject({ code: 'DIVERGED' });
    expect(handed).toEqual([]);
  });

  it('a peer that throws (unreachable, records compacted away) is skipped for that chunk', async () => {
    let calls = 0;
    const flaky = async (peer: string, from: number, limit: number) => {
      if (peer === 'down') {
        calls++;
        throw new Error('connect ECONNREFUSED');
      }
      return honest(peer, from, limit);
    };
    const got = await collect({ from: head(1000), to: head(SIZE), peers: ['down', 'bolt'], fetch: flaky, staging: store.kv('reviews', 'transfer-5'), chunk: 100 });
    expect(got).toEqual(records.slice(1000));
    expect(calls).toBe(3); // asked once per chunk: an error is not a lie
  });
});
