// Group commit: the single write path of a NodeStore. Every durable write of every swarm goes through one queue,
// and the writes queued while a batch is being synced are coalesced into the next synced batch.
//
// Why `batch(..., { sync: true })` and nothing else: in @nxtedition/rocksdb 12.2.12 only a batch write passes
// `sync` through to rocksdb::WriteOptions. `put(k, v, { sync: true })` goes through `_put`, which builds a
// chained batch and writes it WITHOUT the options, so it is silently NOT synced. Measured here with
// `strace -f -e trace=fsync,fdatasync`: 5 x `put(..., { sync: true })` -> 0 fsync/fdatasync calls;
// 5 x `batch([...], { sync: true })` -> 6 (one fdatasync of the WAL per batch, plus one directory fsync on
// the first WAL write). Through this writer: 5 sequential persistReady calls + 100 concurrent ones -> 7
// (5 + 1 coalesced batch + the directory fsync). `db.clear()` is an unsynced DeleteRange outside any batch, so it is not used either.
//
// The binding writes a batch synchronously on the JS thread, so a `sync: true` batch holds the event loop for the
// whole fsync (3–6 ms on this machine's disk). With a WalSyncer (NodeStore gives one) the batch is written with
// `sync: false` — a quick append to the WAL file in the kernel — and the WAL is then fdatasynced from the thread
// pool (wal-sync.ts): the node keeps serving while its disk syncs. A flush runs from setImmediate: everything that
// arrived since the last flush, including I/O callbacks that ran after it (peer messages, proposals), joins one
// batch and one fsync; what arrives while a sync runs joins the next. Each caller's promise resolves only after
// the batch holding its ops is synced.
//
// Native memory: every batch goes through ONE reused chained batch (`db.batch()`, written with `_writeSync`, then
// `_clear`ed), never `db.batch(ops)`. In @nxtedition/rocksdb 12.2.12 `db.batch(ops)` builds a chained batch and
// writes it without closing it: the batch stays in the database's resource set until the database closes, and with
// it its native rocksdb::WriteBatch — a copy of every key and value ever written (a node's RSS grew by the bytes it
// wrote, ~4–7 KB per committed verdict, in the malloc heap). A closed chained batch is freed only when V8 collects
// its small JS object (the binding reports no external memory), so even closing each batch leaves the native
// copies to the GC's pace. Reusing one batch allocates nothing per write; one that grew past
// RETAINED_BATCH_BYTES is closed after its write and a fresh one taken, so its capacity is not kept.
//
// Bounds: one batch carries at most `maxBatchBytes` of keys+values (a single request larger than that is
// written alone, never split: each request is atomic). The queue itself is bounded by the callers (Raft
// bounds proposals and messages in flight). A failed synced write is fatal: the state on disk is unknown,
// so the writer rejects that batch, everything queued, and every later write with STORAGE_FAILED.
import type { RocksChainedBatch, RocksLevel } from '@nxtedition/rocksdb';
import { StorageError } from './errors.ts';
import type { WalSyncer } from './wal-sync.ts';

/** One key write of a durable batch; `value: null` deletes the key. */
export interface WriteOp {
  key: Uint8Array;
  value: Uint8Array | null;
}

interface Request {
  ops: WriteOp[];
  bytes: number;
  /** Ordered but not synced by itself: see GroupCommitWriter.write. */
  lazy: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

export interface GroupCommitStats {
  /** synced batches written (= fsyncs of the WAL) */
  batches: number;
  /** batches of lazy writes only, written without a sync */
  lazyBatches: number;
  /** write requests covered by those batches */
  requests: number;
  /** key operations covered by those batches */
  ops: number;
  /**
   * Longest time one batch write held the JavaScript thread (the binding writes synchronously; a RocksDB write stall
   * or the kernel throttling dirty pages shows here). Reset by whoever reports it.
   */
  slowestWriteMs: number;
}

export const DEFAULT_MAX_BATCH_BYTES = 32 * 1024 * 1024;
/** A reused native batch that carried more key+value bytes than this is dropped after its write (capacity kept). */
export const RETAINED_BATCH_BYTES = 1024 * 1024;
const NO_OPTIONS: Record<string, never> = {};

export class GroupCommitWriter {
  private pending: Request[] = [];
  private scheduled = false;
  private writing = false;
  private failure: StorageError | null = null;
  private closed = false;
  private idleWaiters: Array<() => void> = [];
  /** The one native batch every write goes through (see the top of this file); null until the first write. */
  private native: RocksChainedBatch | null = null;
  readonly stats: GroupCommitStats = { batches: 0, lazyBatches: 0, requests: 0, ops: 0, slowestWriteMs: 0 };

  /** Syncs that listed the data directory for new WAL files, and syncs that needed not (wal-sync.ts). */
  get walStats(): { listings: number; quickSyncs: number } {
    return this.wal ? { ...this.wal.stats } : { listings: 0, quickSyncs: 0 };
  }

  constructor(
    private readonly db: RocksLevel,
    private readonly maxBatchBytes = DEFAULT_MAX_BATCH_BYTES,
    /** Syncs the WAL off the JS thread; without one, batches are written with `sync: true` on it. */
    private readonly wal: WalSyncer | null = null,
  ) {}

  /**
   * Queues `ops` as one atomic unit; resolves once they are synced to disk. A `lazy` write keeps its place in the
   * queue (so in the WAL) but resolves once written, without a sync of its own: it becomes durable with the next
   * synced write, which the WAL orders after it — what etcd does for a commit-index-only hard state, and for state
   * that can be rebuilt from the Raft log. Never lazy for anything acknowledged to a client or a peer.
   */
  write(ops: WriteOp[], lazy = false): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new StorageError('STORAGE_CLOSED', 'the node store is closed'));
    let bytes = 0;
    for (const op of ops) bytes += op.key.byteLength + (op.value?.byteLength ?? 0);
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ ops, bytes, lazy, resolve, reject });
      this.schedule();
    });
  }

  /** Stops accepting writes and waits until everything already queued is synced (or has failed). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.writing || this.scheduled || this.pending.length > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    const native = this.native;
    this.native = null;
    await native?.close();
    await this.wal?.close();
  }

  private schedule(): void {
    if (this.scheduled || this.writing) return;
    this.scheduled = true;
    setImmediate(() => void this.flush());
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    if (this.pending.length === 0) return this.notifyIdle();
    this.writing = true;

    let take = 0;
    let bytes = 0;
    while (take < this.pending.length && (take === 0 || bytes + this.pending[take]!.bytes <= this.maxBatchBytes)) {
      bytes += this.pending[take]!.bytes;
      take++;
    }
    const batch = this.pending.splice(0, take);
    let ops = 0;
    for (const request of batch) ops += request.ops.length;

    try {
      const mustSync = batch.some((request) => !request.lazy);
      if (!mustSync) {
        this.writeBatch(batch, bytes, false);
        this.stats.lazyBatches++;
      } else if (this.wal) {
        this.writeBatch(batch, bytes, false);
        // Lazy writes are in the WAL, before everything written later: they need not wait for this sync.
        for (const request of batch) if (request.lazy) request.resolve();
        await this.wal.sync();
        this.stats.batches++;
      } else {
        this.writeBatch(batch, bytes, true);
        this.stats.batches++;
      }
      this.stats.requests += batch.length;
      this.stats.ops += ops;
      for (const request of batch) request.resolve();
    } catch (err) {
      this.failure = new StorageError('STORAGE_FAILED', `synced batch write failed: ${String(err)}`, { cause: err });
      const failed = [...batch, ...this.pending.splice(0)];
      for (const request of failed) request.reject(this.failure);
    } finally {
      this.writing = false;
      if (this.pending.length > 0) this.schedule();
      else this.notifyIdle();
    }
  }

  /** Writes the ops of `requests` as one atomic batch through the reused native batch; throws on failure. */
  private writeBatch(requests: Request[], bytes: number, sync: boolean): void {
    const native = (this.native ??= this.db.batch());
    try {
      for (const request of requests) {
        for (const op of request.ops) {
          if (op.value === null) native._del(op.key, NO_OPTIONS);
          else native._put(op.key, op.value, NO_OPTIONS);
        }
      }
      const started = performance.now();
      native._writeSync({ sync });
      this.stats.slowestWriteMs = Math.max(this.stats.slowestWriteMs, performance.now() - started);
    } finally {
      native._clear();
      if (bytes > RETAINED_BATCH_BYTES) {
        this.native = null;
        void native.close();
      }
    }
  }

  private notifyIdle(): void {
    for (const waiter of this.idleWaiters.splice(0)) waiter();
  }
}
