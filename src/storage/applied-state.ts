// AppliedStateStore: what a swarm's state machine has made durable — the applied index, the small state written
// with every commit (audit head, membership, counters: `meta`), audit records keyed by index and signed checkpoints
// keyed by tree size — on a KvStore; the decision state itself lives in the same space (storage/decision-store.ts),
// and so does the Merkle block-hash cache that proofs use (audit/stored-tree.ts; derived from the records).
// One commit() is one atomic synced batch, so the applied index never runs ahead of the records and state it covers.
import type { KvOp, KvStore } from './kv-store.ts';
import { indexKey } from './kv-store.ts';
import { readU64, u64 } from './keys.ts';

const APPLIED = 'applied';
/** Written by earlier versions: a whole state machine snapshot every few thousand entries (read, never written). */
const SM_SNAPSHOT = 'sm-snapshot';
const META = 'meta';
const AUDIT = 'audit/';
const CHECKPOINT = 'ckpt/';
/** RFC 6962 hashes of complete 256-leaf blocks of the audit records, by block number (derived; see stored-tree.ts). */
const MERKLE_BLOCK = 'mblock256/';

export interface AppliedCommit {
  /** the index now applied (never decreases) */
  appliedIndex: number;
  /** the small state as of appliedIndex (the rest of the state is in `extra` ops of the same batch) */
  meta?: Uint8Array;
  /** @deprecated a whole-state snapshot as of appliedIndex (the format before `meta`; read back as legacySnapshot) */
  snapshot?: Uint8Array;
  /** audit records to add, keyed by log index */
  audit?: Array<{ index: number; record: Uint8Array }>;
  /** checkpoints to add, keyed by tree size */
  checkpoints?: Array<{ size: number; checkpoint: Uint8Array }>;
  /** Merkle block hashes of blocks these records completed (see audit/stored-tree.ts) */
  merkleBlocks?: Map<number, Uint8Array>;
  /** other keys of this space written in the same batch (e.g. the swarm's consensus era), value null deletes */
  extra?: KvOp[];
}

export interface AppliedLoad {
  appliedIndex: number;
  /** the meta written with the last commit that carried one, and the applied index it was written at */
  meta: { index: number; data: Uint8Array } | null;
  /** a whole-state snapshot written by an earlier version (only when no meta was written since) */
  legacySnapshot: { index: number; data: Uint8Array } | null;
  /** @deprecated the same as legacySnapshot, for readers of the earlier format */
  snapshot: { index: number; data: Uint8Array } | null;
}

export class AppliedStateStore {
  constructor(readonly kv: KvStore) {}

  async load(): Promise<AppliedLoad> {
    const [applied, meta, snap] = await this.kv.getMany([APPLIED, META, SM_SNAPSHOT]);
    const legacySnapshot = snap && !meta ? { index: readU64(snap), data: snap.subarray(8) } : null;
    return {
      appliedIndex: applied ? readU64(applied) : 0,
      meta: meta ? { index: readU64(meta), data: meta.subarray(8) } : null,
      legacySnapshot,
      snapshot: legacySnapshot,
    };
  }

  /**
   * `lazy`: durable with the node's next synced write instead of its own — for state a restart can rebuild from the
   * Raft log (the applied index never runs ahead of what the log holds).
   */
  commit(c: AppliedCommit, options: { lazy?: boolean } = {}): Promise<void> {
    const ops: KvOp[] = [{ key: APPLIED, value: u64(c.appliedIndex) }];
    if (c.meta) ops.push({ key: META, value: Buffer.concat([u64(c.appliedIndex), c.meta]) }, { key: SM_SNAPSHOT, value: null });
    else if (c.snapshot) ops.push({ key: SM_SNAPSHOT, value: Buffer.concat([u64(c.appliedIndex), c.snapshot]) });
    for (const a of c.audit ?? []) ops.push({ key: indexKey(AUDIT, a.index), value: a.record });
    for (const cp of c.checkpoints ?? []) ops.push({ key: indexKey(CHECKPOINT, cp.size), value: cp.checkpoint });
    for (const [block, hash] of c.merkleBlocks ?? []) ops.push({ key: indexKey(MERKLE_BLOCK, block), value: hash });
    for (const op of c.extra ?? []) ops.push(op);
    return options.lazy ? this.kv.putLazy(ops) : this.kv.putSynced(ops);
  }

  /** Audit records from index `from` on, in index order. */
  async audit(from: number, limit = 1000): Promise<Array<{ index: number; record: Uint8Array }>> {
    const rows = await this.kv.scan(AUDIT, { from: indexKey(AUDIT, from), limit });
    return rows.map((r) => ({ index: readU64(r.key, AUDIT.length), record: r.value }));
  }

  /**
   * Stored checkpoints, ascending by tree size: from size `from` on (at most `limit`), or without `from` the newest
   * `limit` ones.
   */
  async checkpoints(query: { from?: number; limit: number }): Promise<Array<{ size: number; checkpoint: Uint8Array }>> {
    const rows =
      query.from === undefined
        ? (await this.kv.scan(CHECKPOINT, { reverse: true, limit: query.limit })).reverse()
        : await this.kv.scan(CHECKPOINT, { from: indexKey(CHECKPOINT, query.from), limit: query.limit });
    return rows.map((row) => ({ size: readU64(row.key, CHECKPOINT.length), checkpoint: row.value }));
  }

  /** The stored checkpoint of one tree size, or null. */
  async checkpointAt(size: number): Promise<Uint8Array | null> {
    return (await this.kv.get(indexKey(CHECKPOINT, size))) ?? null;
  }

  /** The checkpoint with the largest tree size, or null. */
  async latestCheckpoint(): Promise<{ size: number; checkpoint: Uint8Array } | null> {
    const [row] = await this.kv.scan(CHECKPOINT, { reverse: true, limit: 1 });
    return row ? { size: readU64(row.key, CHECKPOINT.length), checkpoint: row.value } : null;
  }

  /** Stored Merkle block hashes of blocks [from, from + limit) (those present). */
  async merkleBlocks(from: number, limit: number): Promise<Map<number, Uint8Array>> {
    const rows = await this.kv.scan(MERKLE_BLOCK, { from: indexKey(MERKLE_BLOCK, from), limit });
    const blocks = new Map<number, Uint8Array>();
    for (const row of rows) {
      const block = readU64(row.key, MERKLE_BLOCK.length);
      if (block < from + limit) blocks.set(block, row.value);
    }
    return blocks;
  }

  /** Keeps Merkle block hashes derived from the records: durable with the next synced write (a cache). */
  putMerkleBlocks(blocks: Map<number, Uint8Array>): Promise<void> {
    return this.kv.putLazy([...blocks].map(([block, hash]) => ({ key: indexKey(MERKLE_BLOCK, block), value: hash })));
  }

  /** Deletes every stored Merkle block hash. */
  async dropMerkleBlocks(): Promise<void> {
    for (;;) {
      const rows = await this.kv.scan(MERKLE_BLOCK, { limit: 4096 });
      if (rows.length === 0) return;
      await this.kv.putLazy(rows.map((row) => ({ key: row.key, value: null })));
    }
  }
}
