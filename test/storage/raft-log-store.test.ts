// Tests of NodeStore + RaftLogStore against a real RocksDB in a temp dir: round trips, truncation,
// snapshots, compaction, invariants, reopen, the locked-database error, group commit and the KV spaces.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NodeStore } from '../../src/storage/node-store.ts';
import { StorageError } from '../../src/storage/errors.ts';
import { AppliedStateStore } from '../../src/storage/applied-state.ts';
import { indexKey } from '../../src/storage/kv-store.ts';
import { entries, entry, tempDir } from './helpers.ts';

let dir: { path: string; cleanup: () => Promise<void> };
let store: NodeStore;

beforeEach(async () => {
  dir = await tempDir('unit');
  store = await NodeStore.open(dir.path);
});

afterEach(async () => {
  await store.close();
  await dir.cleanup();
});

async function reopen(): Promise<NodeStore> {
  await store.close();
  store = await NodeStore.open(dir.path);
  return store;
}

const none = { hardState: null, entries: [], snapshot: null, compactedTo: null };

describe('RaftLogStore', () => {
  it('a commit-index-only hard state is written in order without a sync of its own; term, vote and entries are synced', async () => {
    const log = store.raftLog('reviews');
    await log.load();
    await log.persistReady({ ...none, hardState: { term: 2, vote: 'acme', commit: 0 }, entries: entries(1, 5, 2) });
    const synced = store.stats.batches;
    await log.persistReady({ ...none, hardState: { term: 2, vote: 'acme', commit: 3 } });
    await log.persistReady({ ...none, hardState: { term: 2, vote: 'acme', commit: 5 } });
    expect(store.stats.batches).toBe(synced);
    expect(store.stats.lazyBatches).toBeGreaterThanOrEqual(1);
    expect(log.hardState()).toEqual({ term: 2, vote: 'acme', commit: 5 });
    // A new vote is never lazy.
    await log.persistReady({ ...none, hardState: { term: 3, vote: 'bolt', commit: 5 } });
    expect(store.stats.batches).toBe(synced + 1);
    // Written in order: after a reopen the commit-only write is there (durable with the synced one after it).
    const reopened = await reopen();
    const again = reopened.raftLog('reviews');
    expect((await again.load()).hardState).toEqual({ term: 3, vote: 'bolt', commit: 5 });
  });

  it('an empty store loads an empty log', async () => {
    const log = store.raftLog('s1');
    expect(await log.load()).toEqual({
      hardState: { term: 0, vote: null, commit: 0 },
      snapshot: null,
      entries: [],
      conf: { voters: [], learners: [] },
    });
    expect([log.firstIndex(), log.lastIndex(), log.term(0)]).toEqual([1, 0, 0]);
  });

  it('hard state, entries and snapshot survive a close and reopen with identical bytes', async () => {
    const log = store.raftLog('s1');
    await log.load();
    const written = entries(1, 50, 2);
    written[10] = entry(11, 2, 0, 'conf');
    await log.persistReady({ ...none, hardState: { term: 3, vote: 'acme', commit: 20 }, entries: written });
    const snap = { index: 20, term: 2, conf: { voters: ['acme', 'globex'], learners: ['initech'] }, data: new Uint8Array([9, 8, 7]) };
    await log.persistReady({ ...none, snapshot: snap });

    const again = (await reopen()).raftLog('s1');
    const loaded = await again.load();
    expect(loaded.hardState).toEqual({ term: 3, vote: 'acme', commit: 20 });
    expect(loaded.snapshot).toEqual(snap);
    expect(loaded.conf).toEqual(snap.conf);
    expect(loaded.entries).toEqual(written.slice(20));
    expect(loaded.entries[0]!.data).toBeInstanceOf(Uint8Array);
    // a local snapshot keeps the log: entries before it stay readable until compacted
    expect(again.firstIndex()).toBe(1);
    expect(await again.entries(1, 51)).toEqual(written);
    expect(await again.entries(5, 8)).toEqual(written.slice(4, 7));
    expect(again.term(11)).toBe(2);
  });

  it('a conflicting suffix is truncated and replaced in the same batch', async () => {
    const log = store.raftLog('s1');
    await log.load();
    await log.persistReady({ ...none, hardState: { term: 2, vote: null, commit: 3 }, entries: entries(1, 10, 2) });
    // a new leader of term 3 overwrites from 6 with a shorter log
    await log.persistReady({ ...none, hardState: { term: 3, vote: 'b', commit: 3 }, entries: entries(6, 7, 3, 1) });
    expect(log.lastIndex()).toBe(7);
    expect(log.term(5)).toBe(2);
    expect(log.term(6)).toBe(3);
    expect(log.term(8)).toBeUndefined();
    await expect(log.entries(1, 9)).rejects.toMatchObject({ code: 'STORAGE_UNAVAILABLE' });

    const loaded = await (await reopen()).raftLog('s1').load();
    expect(loaded.entries).toEqual([...entries(1, 5, 2), ...entries(6, 7, 3, 1)]);
  });

  it('compaction deletes the prefix covered by the snapshot and keeps the boundary term', async () => {
    const log = store.raftLog('s1');
    await log.load();
    await log.persistReady({ ...none, hardState: { term: 4, vote: null, commit: 30 }, entries: [...entries(1, 20, 3), ...entries(21, 40, 4)] });
    const snap = { index: 25, term: 4, conf: { voters: ['a'], learners: [] }, data: new Uint8Array([1]) };
    await log.persistReady({ ...none, snapshot: snap, compactedTo: 15 });
    expect([log.firstIndex(), log.lastIndex(), log.term(15), log.term(14)]).toEqual([16, 40, 3, undefined]);
    await expect(log.entries(15, 20)).rejects.toMatchObject({ code: 'STORAGE_COMPACTED' });
    expect((await log.entries(16, 41)).map((e) => e.index)).toEqual(Array.from({ length: 25 }, (_, i) => 16 + i));

    const again = (await reopen()).raftLog('s1');
    const loaded = await again.load();
    expect(loaded.entries.map((e) => e.index)).toEqual(Array.from({ length: 15 }, (_, i) => 26 + i));
    expect([again.firstIndex(), again.term(15), again.term(25)]).toEqual([16, 3, 4]);
    // nothing below the compacted index is left on disk
    const raw = await store.db.iterator({ gte: Buffer.from('s/s1/r/e/'), lt: Buffer.from('s/s1/r/e0') }).all();
    expect(raw.length).toBe(25);
  });

  it('compaction beyond the stored snapshot is refused and writes nothing', async () => {
    const log = store.raftLog('s1');
    await log.load();
    await log.persistReady({ ...none, hardState: { term: 1, vote: null, commit: 5 }, entries: entries(1, 10, 1) });
    await expect(log.persistReady({ ...none, compactedTo: 5 })).rejects.toMatchObject({ code: 'STORAGE_INVARIANT' });
    expect(log.firstIndex()).toBe(1);
  });

  it('a snapshot the log does not match replaces the whole log', async () => {
    const log = store.raftLog('s1');
    await log.load();
    await log.persistReady({ ...none, hardState: { term: 2, vote: null, commit: 2 }, entries: entries(1, 8, 2) });
    const snap = { index: 100, term: 5, conf: { voters: ['a', 'b', 'c'], learners: [] }, data: new Uint8Array([42]) };
    await log.persistReady({ ...none, hardState: { term: 5, vote: null, commit: 100 }, snapshot: snap, entries: entries(101, 103, 5) });
    expect([log.firstIndex(), log.lastIndex(), log.term(100)]).toEqual([101, 103, 5]);
    const loaded = await (await reopen()).raftLog('s1').load();
    expect(loaded.snapshot).toEqual(snap);
    expect(loaded.entries).toEqual(entries(101, 103, 5));
    expect(await store.db.iterator({ gte: Buffer.from('s/s1/r/e/'), lt: Buffer.from('s/s1/r/e0') }).all()).toHaveLength(3);
  });

  it('refuses writes that would break Raft invariants, with a message that says which', async () => {
    const log = store.raftLog('s1');
    await log.load();
    await log.persistReady({ ...none, hardState: { term: 3, vote: 'a', commit: 4 }, entries: entries(1, 6, 3) });
    const cases: Array<[string, Parameters<typeof log.persistReady>[0]]> = [
      ['gap', { ...none, entries: entries(9, 9, 3) }],
      ['committed', { ...none, hardState: { term: 4, vote: null, commit: 4 }, entries: entries(4, 6, 4) }],
      ['term decreases', { ...none, hardState: { term: 2, vote: null, commit: 4 } }],
      ['commit decreases', { ...none, hardState: { term: 3, vote: 'a', commit: 3 } }],
      ['vote changed', { ...none, hardState: { term: 3, vote: 'b', commit: 4 } }],
      ['above the hard state term', { ...none, entries: entries(7, 7, 4) }],
      ['beyond the last index', { ...none, hardState: { term: 3, vote: 'a', commit: 9 } }],
      ['not contiguous', { ...none, entries: [entry(7, 3), entry(9, 3)] }],
    ];
    for (const [words, request] of cases) {
      const err = await log.persistReady(request).then(() => null, (e: unknown) => e);
      expect(err, words).toBeInstanceOf(StorageError);
      expect((err as StorageError).code).toBe('STORAGE_INVARIANT');
      expect((err as StorageError).message).toContain(words);
    }
    const loaded = await (await reopen()).raftLog('s1').load();
    expect(loaded.entries).toEqual(entries(1, 6, 3));
    expect(loaded.hardState).toEqual({ term: 3, vote: 'a', commit: 4 });
  });

  it('swarms are separate key spaces', async () => {
    const a = store.raftLog('alpha');
    const b = store.raftLog('alpha2');
    await a.load();
    await b.load();
    await a.persistReady({ ...none, hardState: { term: 1, vote: null, commit: 0 }, entries: entries(1, 3, 1) });
    await b.persistReady({ ...none, hardState: { term: 7, vote: null, commit: 0 }, entries: entries(1, 9, 7) });
    await reopen();
    expect((await store.raftLog('alpha').load()).entries).toEqual(entries(1, 3, 1));
    expect((await store.raftLog('alpha2').load()).entries).toEqual(entries(1, 9, 7));
    expect(() => store.raftLog('a/b')).toThrow(/invalid swarm id/);
  });

  it('concurrent callers are group-committed: many calls, few synced batches, each resolved after its sync', async () => {
    const logs = ['g1', 'g2', 'g3', 'g4'].map((s) => store.raftLog(s));
    for (const log of logs) await log.load();
    const before = store.stats.batches;
    const calls: Promise<void>[] = [];
    for (let i = 1; i <= 50; i++) {
      for (const log of logs) calls.push(log.persistReady({ ...none, hardState: { term: 1, vote: null, commit: 0 }, entries: [entry(i, 1)] }));
    }
    await Promise.all(calls);
    const batches = store.stats.batches - before;
    expect(batches).toBeGreaterThanOrEqual(1);
    expect(batches).toBeLessThan(20);
    for (const log of logs) expect(log.lastIndex()).toBe(50);
    await reopen();
    for (const s of ['g1', 'g2', 'g3', 'g4']) expect((await store.raftLog(s).load()).entries).toEqual(entries(1, 50, 1));
  });

  it('entries() honours maxBytes but always returns one entry', async () => {
    const log = store.raftLog('s1');
    await log.load();
    await log.persistReady({ ...none, hardState: { term: 1, vote: null, commit: 0 }, entries: entries(1, 10, 1) });
    expect(await log.entries(1, 11, 0)).toHaveLength(1);
    const all = await log.entries(1, 11);
    const firstThree = all.slice(0, 3).reduce((n, e) => n + e.data.byteLength, 0);
    expect(await log.entries(1, 11, firstThree)).toHaveLength(3);
  });
});

describe('KvStore and AppliedStateStore', () => {
  it('putSynced, get and scan by index order; deletes; reopen', async () => {
    const kv = store.kv('s1', 'pbft');
    await kv.putSynced([
      { key: 'view', value: new Uint8Array([1]) },
      { key: indexKey('msg/', 300), value: new Uint8Array([3]) },
      { key: indexKey('msg/', 2), value: new Uint8Array([2]) },
      { key: indexKey('msg/', 70_000), value: new Uint8Array([4]) },
    ]);
    await kv.putSynced([{ key: indexKey('msg/', 300), value: null }]);
    await reopen();
    const again = store.kv('s1', 'pbft');
    expect(await again.get('view')).toEqual(new Uint8Array([1]));
    expect(await again.get('nope')).toBeUndefined();
    expect((await again.scan('msg/')).map((r) => r.value[0])).toEqual([2, 4]);
    expect((await again.scan('msg/', { from: indexKey('msg/', 3) })).map((r) => r.value[0])).toEqual([4]);
    expect((await again.scan('msg/', { limit: 1, reverse: true })).map((r) => r.value[0])).toEqual([4]);
    // another namespace, another swarm, node-wide: all separate
    expect(await store.kv('s1', 'applied').scan()).toEqual([]);
    expect(await store.kv('s2', 'pbft').scan()).toEqual([]);
    expect(await store.kv(null, 'pbft').scan()).toEqual([]);
  });

  it('applied index, state meta, audit records and checkpoints commit together', async () => {
    const applied = new AppliedStateStore(store.kv('s1', 'applied'));
    expect(await applied.load()).toEqual({ appliedIndex: 0, meta: null, legacySnapshot: null, snapshot: null });
    await applied.commit({
      appliedIndex: 12,
      meta: new Uint8Array([5, 5]),
      audit: [10, 11, 12].map((index) => ({ index, record: new Uint8Array([index]) })),
      checkpoints: [{ size: 12, checkpoint: new Uint8Array([0xc]) }],
    });
    await applied.commit({ appliedIndex: 300, audit: [{ index: 300, record: new Uint8Array([1]) }], checkpoints: [{ size: 300, checkpoint: new Uint8Array([0xd]) }] });
    await reopen();
    const again = new AppliedStateStore(store.kv('s1', 'applied'));
    expect(await again.load()).toEqual({ appliedIndex: 300, meta: { index: 12, data: new Uint8Array([5, 5]) }, legacySnapshot: null, snapshot: null });
    expect((await again.audit(11)).map((a) => a.index)).toEqual([11, 12, 300]);
    expect(await again.latestCheckpoint()).toEqual({ size: 300, checkpoint: new Uint8Array([0xd]) });
  });
});

describe('NodeStore.open', () => {
  it('a database held by another process fails with STORAGE_LOCKED naming the path', async () => {
    await store.close();
    const fixture = fileURLToPath(new URL('./fixtures/crash-writer.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, dir.path, 'hold'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const lines = createInterface({ input: child.stdout! });
      for await (const line of lines) if (line === 'open') break;
      const err = await NodeStore.open(dir.path).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(StorageError);
      expect((err as StorageError).code).toBe('STORAGE_LOCKED');
      expect((err as StorageError).message).toContain(dir.path);
    } finally {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    // the lock dies with the process
    store = await NodeStore.open(dir.path);
  });

  it('a second store on the same path in this process is refused the same way', async () => {
    await expect(NodeStore.open(dir.path)).rejects.toMatchObject({ code: 'STORAGE_LOCKED' });
  });
});
