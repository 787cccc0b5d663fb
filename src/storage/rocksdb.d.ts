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
    /** Durable only with `{ sync: true }`. */
    batch(ops: RocksBatchOp[], options?: { sync?: boolean }): Promise<void>;
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
    /** Not atomic with other writes and not synced: src/storage never uses it for durable state. */
    clear(options?: { gt?: RocksKey; gte?: RocksKey; lt?: RocksKey; lte?: RocksKey }): Promise<void>;
  }
}
