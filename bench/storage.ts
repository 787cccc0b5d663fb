// Storage benchmark: durable Raft-log writes through NodeStore's group commit. Prints one JSON line per batch
// size: `oneCaller` = sequential persistReady calls of B entries each (one Ready cycle = one synced batch);
// `concurrentCallers` = B callers with one entry each at once (coalesced across callers into shared batches).
// `rawSyncedBatchesPerSec` is the disk's floor measured in the same run (db.batch of one key, sync: true).
// No assertions. Run: node --import tsx bench/storage.ts [secondsPerCase]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Entry } from '../src/consensus/raft/types.ts';
import { NodeStore } from '../src/storage/node-store.ts';
import type { RaftLogStore } from '../src/storage/raft-log-store.ts';

const SECONDS = Number(process.argv[2] ?? 2);
const ENTRY_BYTES = 256;
const data = new Uint8Array(ENTRY_BYTES).fill(7);

function makeEntries(from: number, count: number): Entry[] {
  return Array.from({ length: count }, (_, i) => ({ index: from + i, term: 1, type: 'normal' as const, data }));
}

interface Result {
  calls: number;
  entries: number;
  syncedBatches: number;
  seconds: number;
  callsPerSec: number;
  entriesPerSec: number;
  entriesPerSyncedBatch: number;
}

async function measure(store: NodeStore, round: (log: RaftLogStore, next: number) => Promise<number>, log: RaftLogStore): Promise<Result> {
  const before = store.stats;
  const start = process.hrtime.bigint();
  const stop = start + BigInt(Math.round(SECONDS * 1e9));
  let calls = 0;
  let next = log.lastIndex() + 1;
  const first = next;
  while (process.hrtime.bigint() < stop) {
    calls += await round(log, next);
    next = log.lastIndex() + 1;
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const entries = next - first;
  const syncedBatches = store.stats.batches - before.batches;
  return {
    calls,
    entries,
    syncedBatches,
    seconds: round3(seconds),
    callsPerSec: Math.round(calls / seconds),
    entriesPerSec: Math.round(entries / seconds),
    entriesPerSyncedBatch: round3(entries / syncedBatches),
  };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

const none = { hardState: null, snapshot: null, compactedTo: null };

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'conclave-bench-storage-'));
  const store = await NodeStore.open(dir);
  try {
    // the floor under everything: one-key synced batches written straight to RocksDB, no group commit layer
    const rawStart = performance.now();
    let raw = 0;
    while (performance.now() - rawStart < SECONDS * 500) {
      await store.db.batch([{ type: 'put', key: Buffer.from(`raw/${raw}`), value: Buffer.from(data) }], { sync: true });
      raw++;
    }
    const rawSyncedBatchesPerSec = Math.round(raw / ((performance.now() - rawStart) / 1000));
    for (const batchSize of [1, 10, 100, 1000]) {
      const a = store.raftLog(`bench-one-${batchSize}`);
      await a.load();
      await a.persistReady({ ...none, hardState: { term: 1, vote: null, commit: 0 }, entries: [] });
      const oneCaller = await measure(
        store,
        async (log, next) => {
          await log.persistReady({ ...none, entries: makeEntries(next, batchSize) });
          return 1;
        },
        a,
      );

      const b = store.raftLog(`bench-many-${batchSize}`);
      await b.load();
      await b.persistReady({ ...none, hardState: { term: 1, vote: null, commit: 0 }, entries: [] });
      const concurrentCallers = await measure(
        store,
        async (log, next) => {
          const calls: Promise<void>[] = [];
          for (let i = 0; i < batchSize; i++) calls.push(log.persistReady({ ...none, entries: makeEntries(next + i, 1) }));
          await Promise.all(calls);
          return batchSize;
        },
        b,
      );
      console.log(JSON.stringify({ bench: 'storage', batchSize, entryBytes: ENTRY_BYTES, rawSyncedBatchesPerSec, oneCaller, concurrentCallers }));
    }
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
