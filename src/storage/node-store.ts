// NodeStore: the one RocksDB database of a node (at its dataDir), its group-commit write path,
// and the per-swarm stores on top of it (Raft log, key-value spaces). Key layout: see keys.ts.
import { RocksLevel } from '@nxtedition/rocksdb';
import { StorageError } from './errors.ts';
import { DEFAULT_MAX_BATCH_BYTES, GroupCommitWriter } from './group-commit.ts';
import type { GroupCommitStats, WriteOp } from './group-commit.ts';
import { checkSwarmId, kvPrefix } from './keys.ts';
import { KvStore } from './kv-store.ts';
import { RaftLogStore } from './raft-log-store.ts';
import { WalSyncer } from './wal-sync.ts';

export interface NodeStoreOptions {
  /** upper bound of one synced batch in key+value bytes (default 32 MiB) */
  maxBatchBytes?: number;
}

/**
 * RocksDB's native memory, bounded: the binding's defaults (two 64 MiB memtables, index and filter blocks of every
 * table file held outside the block cache) let a node's RSS grow with the data it ever wrote. Here: level
 * compaction with a 32 MiB memtable budget (8 MiB memtables, at most 6 while flushes lag), and a 16 MiB block cache
 * that also holds index and filter blocks (bloom filters keep the point lookups of absent keys off the disk).
 */
export const ROCKS_MEMORY_OPTIONS = {
  compaction: 'level',
  memtableMemoryBudget: 32 * 1024 * 1024,
  cacheSize: 16 * 1024 * 1024,
  cacheIndexAndFilterBlocks: true,
  // The binding compresses the WAL with zstd by default — on the JavaScript thread, inside every write: a CPU
  // profile (perf, raft-3 at 64 in flight) showed ZSTD_compressBlock 2.4 % of the nodes' main threads. The WAL
  // holds each write only until its memtable is flushed (table files of levels >= 2 stay compressed), and an fsync
  // costs the same for 10 or 40 KB here. Either kind of WAL file replays after a crash whatever this says.
  walCompression: false,
  // A whole-key bloom filter on the memtable (and ribbon filters, hashed data-block indexes in table files): most
  // point reads of the decision store are misses (a new verdict, nonce or subject) and a miss otherwise walks the
  // memtable's skip list — 0.85 µs a key with 100k keys in the memtable, 0.39 µs with the filter (multi-get of 30).
  optimize: 'point-lookup',
} as const;

export class NodeStore {
  private readonly raftLogs = new Map<string, RaftLogStore>();
  private closing: Promise<void> | null = null;

  private constructor(
    readonly path: string,
    /** @internal read access for the stores of this module */
    readonly db: RocksLevel,
    /** @internal the only write path */
    readonly writer: GroupCommitWriter,
  ) {}

  /**
   * Opens (creating if missing) the database at `dataDir`. A database held by another process — or by
   * another open NodeStore in this process — fails with STORAGE_LOCKED naming the path.
   */
  static async open(dataDir: string, options: NodeStoreOptions = {}): Promise<NodeStore> {
    const db = new RocksLevel(dataDir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    try {
      await db.open({ createIfMissing: true, ...ROCKS_MEMORY_OPTIONS });
    } catch (err) {
      // abstract-level wraps the binding's error: LEVEL_DATABASE_NOT_OPEN with cause LEVEL_LOCKED
      const cause = (err as { cause?: unknown }).cause;
      const detail = messageOf(cause) ?? messageOf(err);
      if (errorCode(err) === 'LEVEL_LOCKED' || errorCode(cause) === 'LEVEL_LOCKED') {
        throw new StorageError(
          'STORAGE_LOCKED',
          `the database at ${dataDir} is locked: another process (or another store in this one) has it open — ` +
            `is another node running with this data directory? (${detail})`,
          { cause: err },
        );
      }
      throw new StorageError('STORAGE_OPEN_FAILED', `cannot open the database at ${dataDir}: ${detail}`, { cause: err });
    }
    return new NodeStore(dataDir, db, new GroupCommitWriter(db, options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES, new WalSyncer(dataDir, () => db.getProperty('rocksdb.current-super-version-number'))));
  }

  /** The Raft log of one swarm (one instance per swarm; call `load()` before writing). */
  raftLog(swarm: string): RaftLogStore {
    this.checkOpen();
    checkSwarmId(swarm);
    let store = this.raftLogs.get(swarm);
    if (!store) {
      store = new RaftLogStore(this, swarm);
      this.raftLogs.set(swarm, store);
    }
    return store;
  }

  /** A synced key-value space: per swarm (`swarm` given) or node-wide (`swarm: null`). */
  kv(swarm: string | null, namespace: string): KvStore {
    this.checkOpen();
    return new KvStore(this, kvPrefix(swarm, namespace));
  }

  /** Writes `ops` atomically in the next group-committed synced batch. */
  writeSynced(ops: WriteOp[]): Promise<void> {
    return this.writer.write(ops);
  }

  /** Writes `ops` atomically, in order with every other write, durable with the next synced one (see write()). */
  writeLazy(ops: WriteOp[]): Promise<void> {
    return this.writer.write(ops, true);
  }

  get stats(): GroupCommitStats & { walListings: number; walQuickSyncs: number } {
    const wal = this.writer.walStats;
    return { ...this.writer.stats, walListings: wal.listings, walQuickSyncs: wal.quickSyncs };
  }

  /** Starts a new measurement of the longest synchronous batch write (see GroupCommitStats.slowestWriteMs). */
  resetSlowestWrite(): void {
    this.writer.stats.slowestWriteMs = 0;
  }

  get isOpen(): boolean {
    return this.closing === null;
  }

  /** Waits for queued writes to be synced, then closes the database. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.writer.close();
      await this.db.close();
    })();
    return this.closing;
  }

  private checkOpen(): void {
    if (this.closing) throw new StorageError('STORAGE_CLOSED', `the store at ${this.path} is closed`);
  }
}

function errorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string'
    ? (err as { code: string }).code
    : undefined;
}

function messageOf(err: unknown): string | undefined {
  return err instanceof Error ? err.message : undefined;
}
