// WalSyncer: makes RocksDB's write-ahead log durable from the libuv thread pool instead of the JavaScript thread.
//
// Why: @nxtedition/rocksdb writes a batch synchronously on the calling thread (binding batch_write →
// DB::Write), so `batch(ops, { sync: true })` holds the event loop for the whole fsync — 3–6 ms on this machine's
// disk, during which a node sends, receives and answers nothing (a leader cannot even overlap its own log write
// with its followers', which Raft allows). The binding has no asynchronous write and no SyncWAL.
//
// How: the group-commit writer writes its batch with `sync: false` — RocksDB appends the batch to the current WAL
// file and hands it to the kernel (write(2)) before DB::Write returns, since manual_wal_flush is off — and then
// calls `sync()`, which fdatasyncs the WAL file(s) through fs/promises (thread pool). Writes are resolved only after
// that, so "synced before acknowledged" holds exactly as with `sync: true`: fdatasync flushes every dirty page of the
// file, whichever descriptor wrote it.
//
// WAL files are `<dir>/<number>.log`; RocksDB starts a new one only when it switches memtables. A sync lists the
// directory and syncs every WAL file numbered at or above the newest one synced before (a batch written just as the
// file switched may sit in either), and fsyncs the directory when a new WAL file appeared, so its directory entry
// survives a power loss too. Listing the directory at every sync cost ~2 % of a busy node's CPU, so with a
// `memtableGeneration` (RocksDB's super-version number, read synchronously right after the batch was written) a sync
// lists only when it changed since the last listing: every memtable switch — the only moment RocksDB creates a WAL
// file — installs a new super version before any write reaches the new file, so an unchanged number means every
// write so far sits in a file that listing saw, and only the newest of them can have taken writes since. A WAL file RocksDB already deleted holds nothing still needed (its contents are in
// table files that RocksDB synced before deleting it): ENOENT is not an error.
import { open, readdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

const WAL_FILE = /^(\d+)\.log$/;

export class WalSyncer {
  /** Open handles of the WAL files still being synced, by file number. */
  private readonly handles = new Map<number, FileHandle>();
  /** Syncs that listed the directory and syncs that did not need to. */
  readonly stats = { listings: 0, quickSyncs: 0 };
  /** Newest WAL file number synced so far (-1 before the first sync). */
  private newestSynced = -1;
  private closed = false;
  /** memtableGeneration() read just before the last complete listing (null: none yet). */
  private listedAtGeneration: string | null = null;

  constructor(
    private readonly dir: string,
    private readonly memtableGeneration: (() => string) | null = null,
  ) {}

  /**
   * Makes everything written to the WAL so far durable (WAL files and, when one is new, the directory). Call it
   * synchronously after the write it must cover (the memtable generation is read before the first await).
   */
  async sync(): Promise<void> {
    if (this.closed) throw new Error('the WAL syncer is closed');
    const generation = this.memtableGeneration?.() ?? null;
    if (generation !== null && generation === this.listedAtGeneration && this.handles.has(this.newestSynced)) {
      await this.syncFile(this.newestSynced, '');
      if (this.handles.has(this.newestSynced)) {
        this.stats.quickSyncs++;
        return;
      }
      // ENOENT: RocksDB deleted the file (it cannot have, while it is the active WAL) — fall back to a listing.
    }
    // The newest file synced before is synced while the directory is listed (both on the thread pool): the
    // listing then only adds files RocksDB started since — one round trip on an ack's path instead of two.
    const current = this.newestSynced >= 0 && this.handles.has(this.newestSynced) ? this.newestSynced : null;
    const [names] = await Promise.all([readdir(this.dir), current === null ? undefined : this.syncFile(current, '')]);
    const files = names
      .map((name) => ({ name, match: WAL_FILE.exec(name) }))
      .filter((file) => file.match !== null)
      .map((file) => ({ name: file.name, n: Number(file.match![1]) }))
      .filter((file) => file.n >= this.newestSynced)
      .sort((a, b) => a.n - b.n);
    this.stats.listings++;
    if (files.length === 0) return;
    const newest = files.at(-1)!.n;
    const sawNewFile = newest > this.newestSynced;
    await Promise.all(files.filter((file) => file.n !== current).map((file) => this.syncFile(file.n, file.name)));
    if (sawNewFile) await this.syncDirectory();
    this.newestSynced = newest;
    this.listedAtGeneration = generation;
    // Older files get no more writes once RocksDB moved to a newer one (and each was synced once more above).
    for (const [n, handle] of this.handles) {
      if (n >= newest) continue;
      this.handles.delete(n);
      await handle.close().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const handles = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(handles.map((handle) => handle.close().catch(() => undefined)));
  }

  /** `name` is needed only for a file not open yet. */
  private async syncFile(n: number, name: string): Promise<void> {
    let handle = this.handles.get(n);
    try {
      if (!handle) {
        handle = await open(join(this.dir, name), 'r');
        this.handles.set(n, handle);
      }
      await handle.datasync();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      this.handles.delete(n);
    }
  }

  private async syncDirectory(): Promise<void> {
    const handle = await open(this.dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}
