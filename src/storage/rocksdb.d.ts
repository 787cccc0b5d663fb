// Types for the part of @nxtedition/rocksdb 12 (abstract-level 1 API) that src/storage uses; the package ships none.
declare module '@nxtedition/rocksdb' {
  export type RocksKey = Buffer | Uint8Array | string;

  export interface RocksBatchOp {
    type: 'put' | 'del';
    key: RocksKey;
    value?: RocksKey;
  }

  export interface RocksIteratorOptions {
    gt?: RocksKey;
    gte?: RocksKey;
    lt?: RocksKey;
    lte?: RocksKey;
    reverse?: boolean;
    limit?: number;
    keys?: boolean;
    values?: boolean;
    keyEncoding?: 'buffer';
    valueEncoding?: 'buffer';
  }

  export interface RocksIterator extends AsyncIterable<[Buffer, Buffer]> {
    next(): Promise<[Buffer, Buffer] | undefined>;
    all(): Promise<Array<[Buffer, Buffer]>>;
    close(): Promise<void>;
  }

  /**
   * A chained batch (`db.batch()` without arguments). It is attached to the database until closed, and owns a
   * native rocksdb::WriteBatch that the binding frees only when V8 collects the batch. The underscore methods are
   * the binding's own (ChainedBatch in chained-batch.js, no abstract-level bookkeeping): `_clear()` empties the
   * native batch so it can be written again.
   */
  export interface RocksChainedBatch {
    readonly length: number;
    put(key: RocksKey, value: RocksKey): this;
    del(key: RocksKey): this;
    /** Writes and closes the batch. */
    write(options?: { sync?: boolean }): Promise<void>;
    close(): Promise<void>;
    _put(key: Uint8Array, value: Uint8Array, options: Record<string, never>): void;
    _del(key: Uint8Array, options: Record<string, never>): void;
    _clear(): void;
    /** Writes the native batch on the calling thread (what `write` and `db.batch(ops)` do too); throws on failure. */
    _writeSync(options: { sync?: boolean }): void;
  }

  export interface RocksOpenOptions {
    createIfMissing?: boolean;
    errorIfExists?: boolean;
    parallelism?: number;
    /** level | universal: also sizes memtables from memtableMemoryBudget (without it, RocksDB's 64 MiB ones). */
    compaction?: 'level' | 'universal';
    memtableMemoryBudget?: number;
    /** block cache bytes (default 8 MiB) */
    cacheSize?: number;
    cacheIndexAndFilterBlocks?: boolean;
  }

  export class RocksLevel {
    constructor(location: string, options?: { keyEncoding?: 'buffer'; valueEncoding?: 'buffer' });
    readonly location: string;
    readonly status: 'opening' | 'open' | 'closing' | 'closed';
    open(options?: RocksOpenOptions): Promise<void>;
    close(): Promise<void>;
    /**
     * Durable only with `{ sync: true }`. LEAKS in 12.2.12: the binding's `_batch` builds a chained batch and writes
     * it without closing it, so the batch (and its native WriteBatch holding every key and value) stays attached to
     * the database until the database closes. src/storage writes through one reused chained batch instead.
     */
    batch(ops: RocksBatchOp[], options?: { sync?: boolean }): Promise<void>;
    batch(): RocksChainedBatch;
    /** NOT durable even with `{ sync: true }`: the binding drops the option (see node-store.ts). */
    put(key: RocksKey, value: RocksKey, options?: { sync?: boolean }): Promise<void>;
    get(key: RocksKey, options?: { valueEncoding?: 'buffer' }): Promise<Buffer | undefined>;
    getMany(keys: RocksKey[], options?: { valueEncoding?: 'buffer' }): Promise<Array<Buffer | undefined>>;
    /**
     * Synchronous multi-get on the calling thread (binding db_get_many_sync; not part of abstract-level, hence the
     * underscore). Keys must be buffers; missing keys are undefined.
     */
    _getManySync(keys: Buffer[], options?: Record<string, never>): Array<Buffer | undefined>;
    iterator(options?: RocksIteratorOptions): RocksIterator;
    /** A RocksDB property (`rocksdb.cur-size-all-mem-tables`, ...); synchronous, '' when unknown. */
    getProperty(property: string): string;
    /** Not atomic with other writes and not synced: src/storage never uses it for durable state. */
    clear(options?: { gt?: RocksKey; gte?: RocksKey; lt?: RocksKey; lte?: RocksKey }): Promise<void>;
  }
}
