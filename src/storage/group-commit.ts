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
// Bounds: one batch carries at most `maxBatchBytes` of keys+values (a single request larger than that is
// written alone, never split: each request is atomic). The queue itself is bounded by the callers (Raft
// bounds proposals and messages in flight). A failed synced write is fatal: the state on disk is unknown,
// so the writer rejects that batch, everything queued, and every later write with STORAGE_FAILED.
import type { RocksBatchOp, RocksLevel } from '@nxtedition/rocksdb';
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
}

export const DEFAULT_MAX_BATCH_BYTES = 32 * 1024 * 1024;

export class GroupCommitWriter {
  private pending: Request[] = [];
  private scheduled = false;
  private writing = false;
  private failure: StorageError | null = null;
  private closed = false;
  private idleWaiters: Array<() => void> = [];
  readonly stats: GroupCommitStats = { batches: 0, lazyBatches: 0, requests: 0, ops: 0 };

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
    const ops: RocksBatchOp[] = [];
    for (const request of batch) {
      for (const op of request.ops) {
        ops.push(op.value === null ? { type: 'del', key: op.key } : { type: 'put', key: op.key, value: op.value });
      }
    }

    try {
      const mustSync = batch.some((request) => !request.lazy);
      if (!mustSync) {
        await this.db.batch(ops, { sync: false });
        this.stats.lazyBatches++;
      } else if (this.wal) {
        await this.db.batch(ops, { sync: false });
        // Lazy writes are in the WAL, before everything written later: they need not wait for this sync.
        for (const request of batch) if (request.lazy) request.resolve();
        await this.wal.sync();
        this.stats.batches++;
      } else {
        await this.db.batch(ops, { sync: true });
        this.stats.batches++;
      }
      this.stats.requests += batch.length;
      this.stats.ops += ops.length;
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

  private notifyIdle(): void {
    for (const waiter of this.idleWaiters.splice(0)) waiter();
  }
}
