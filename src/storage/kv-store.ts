// KvStore: a synced key-value space under one prefix of the node database (per swarm or node-wide), for the
// state that is not the Raft log: applied state, audit records, checkpoints, PBFT durable state.
// Writes go through the node's group commit; keys are bytes (strings are UTF-8) relative to the space.
import { concat, prefixEnd, u64 } from './keys.ts';
import type { NodeStore } from './node-store.ts';

export type KvKey = Uint8Array | string;

export interface KvOp {
  key: KvKey;
  /** null deletes the key */
  value: Uint8Array | null;
}

export interface KvRecord {
  key: Uint8Array;
  value: Uint8Array;
}

export interface ScanOptions {
  /** first key (inclusive, relative to the space) to return; default: the scan prefix itself */
  from?: KvKey;
  /** at most this many records (default 1000) */
  limit?: number;
  reverse?: boolean;
}

function keyBytes(key: KvKey): Buffer {
  return typeof key === 'string' ? Buffer.from(key, 'utf8') : Buffer.from(key.buffer, key.byteOffset, key.byteLength);
}

/** `name` followed by the 8-byte big-endian index: such keys sort by index (audit/000..42 < audit/000..43). */
export function indexKey(name: string, index: number): Buffer {
  return concat(Buffer.from(name, 'utf8'), u64(index));
}

export class KvStore {
  /** @internal use NodeStore.kv(swarm, namespace) */
  constructor(
    private readonly node: NodeStore,
    readonly prefix: Buffer,
  ) {}

  /** Applies all ops atomically; resolves once they are synced to disk. */
  putSynced(ops: KvOp[]): Promise<void> {
    return this.node.writeSynced(
      ops.map((op) => ({ key: concat(this.prefix, keyBytes(op.key)), value: op.value === null ? null : keyBytes(op.value) })),
    );
  }

  /** Applies all ops atomically, in order with the node's other writes; durable with the next synced write. */
  putLazy(ops: KvOp[]): Promise<void> {
    return this.node.writeLazy(
      ops.map((op) => ({ key: concat(this.prefix, keyBytes(op.key)), value: op.value === null ? null : keyBytes(op.value) })),
    );
  }

  async get(key: KvKey): Promise<Uint8Array | undefined> {
    const [value] = await this.node.db.getMany([concat(this.prefix, keyBytes(key))]);
    return value ? new Uint8Array(value) : undefined;
  }

  /**
   * Reads one key on the calling thread (a point lookup, ~10 µs here), for state machines that apply inside a
   * synchronous loop. Sees only what earlier batches made durable or at least wrote; the caller tracks its own
   * writes that are still queued.
   */
  getSync(key: KvKey): Uint8Array | undefined {
    return this.getManySync([key])[0];
  }

  /** getSync for several keys in one multi-get (one call into RocksDB instead of one per key). */
  getManySync(keys: KvKey[]): Array<Uint8Array | undefined> {
    const values = this.node.db._getManySync(keys.map((k) => concat(this.prefix, keyBytes(k))));
    return values.map((value) => (value ? new Uint8Array(value.buffer, value.byteOffset, value.byteLength) : undefined));
  }

  async getMany(keys: KvKey[]): Promise<Array<Uint8Array | undefined>> {
    const values = await this.node.db.getMany(keys.map((k) => concat(this.prefix, keyBytes(k))));
    return values.map((v) => (v ? new Uint8Array(v) : undefined));
  }

  /** Records whose key starts with `prefix`, in key order (or reverse), from `from` on, at most `limit`. */
  async scan(prefix: KvKey = '', options: ScanOptions = {}): Promise<KvRecord[]> {
    const full = concat(this.prefix, keyBytes(prefix));
    const end = prefixEnd(full);
    const limit = options.limit ?? 1000;
    const range = options.from === undefined
      ? { gte: full, lt: end }
      : options.reverse
        ? { gte: full, lte: concat(this.prefix, keyBytes(options.from)) }
        : { gte: concat(this.prefix, keyBytes(options.from)), lt: end };
    if (range.gte.compare(full) < 0) range.gte = full;
    const it = this.node.db.iterator({ ...range, limit, reverse: options.reverse ?? false });
    try {
      const out: KvRecord[] = [];
      for await (const [key, value] of it) {
        out.push({ key: new Uint8Array(key.subarray(this.prefix.byteLength)), value: new Uint8Array(value) });
      }
      return out;
    } finally {
      await it.close();
    }
  }
}
