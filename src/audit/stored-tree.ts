// Owns Merkle proofs over a swarm's stored log without reading the whole log per proof. The RFC 6962 hash of every
// complete block of `blockSize` leaves (256) is hashed as the swarm appends the block (BlockHasher, stored with its
// records) or derived once from the stored records (StoredMerkleTree, for blocks written before this or split by a
// restart), and kept in memory and beside the records: a derived cache, rebuilt from the records when it is missing
// or disagrees with a known root.
// A proof then hashes O(size / blockSize) block hashes plus the leaves of the few blocks its path enters (the leaf's,
// the tree's last partial block) — before, every inclusion or consistency proof read and hashed every record of the
// log (a 1,000,000-entry log: a million reads per request, from the public API).
import { fromUtf8, toHex } from '../crypto/encoding.ts';
import type { AppliedStateStore } from '../storage/applied-state.ts';
import { recordLeafHash, type AuditRecord } from './chain.ts';
import { EMPTY_ROOT, nodeHash, rootFromLeafHashes, splitPoint, type SubtreeHasher } from './merkle.ts';

/** The stored records of a tree size do not hash to the root the caller knows for it: the storage is damaged. */
export class TreeMismatch extends Error {
  constructor(
    readonly size: number,
    readonly computed: string,
    readonly expected: string,
  ) {
    super(`the stored records of tree size ${size} hash to root ${computed}, not the known ${expected}`);
  }
}

/** Where the tree's data comes from (the swarm's stored records and its block-hash cache). */
export interface StoredTreeSource {
  /** Leaf hashes of the records at log indexes [from, from + limit), in order; throws when the node lacks one. */
  leafHashes(from: number, limit: number): Promise<Uint8Array[]>;
  /** The stored hashes of blocks [from, from + limit) (0-based block numbers); absent ones are missing from the map. */
  blockHashes(from: number, limit: number): Promise<Map<number, Uint8Array>>;
  /** Keeps hashes computed from the records (derived data: durable with the next synced write is enough). */
  storeBlockHashes(hashes: Map<number, Uint8Array>): Promise<void>;
  /** Forgets every stored block hash (they will be derived from the records again). */
  dropBlockHashes(): Promise<void>;
}

/** The node lacks audit records a proof needs (its log was installed from a snapshot). */
export class RecordsUnavailable extends Error {}

/** A swarm's applied state as a StoredTreeSource: leaves from its stored audit records, blocks from its cache. */
export function appliedTreeSource(applied: AppliedStateStore): StoredTreeSource {
  return {
    async leafHashes(from, limit) {
      const rows = await applied.audit(from, limit);
      if (rows.length < limit || rows[0]!.index !== from || rows.at(-1)!.index !== from + limit - 1) {
        throw new RecordsUnavailable(`this node does not hold every audit record of ${from}..${from + limit - 1} (it was installed from a snapshot); ask another member`);
      }
      return rows.map((row) => recordLeafHash(JSON.parse(fromUtf8(row.record)) as AuditRecord));
    },
    blockHashes: (from, limit) => applied.merkleBlocks(from, limit),
    storeBlockHashes: (hashes) => applied.putMerkleBlocks(hashes),
    dropBlockHashes: () => applied.dropMerkleBlocks(),
  };
}

/** Leaves per block: what the swarm state hashes as it appends (BlockHasher) and what proofs read (StoredMerkleTree). */
export const MERKLE_BLOCK_SIZE = 256;

/**
 * Hashes each complete block as its leaves are appended, so a growing log needs no derivation later: fed every leaf
 * in order, it returns a block's hash when its last leaf arrives. A block it did not see from its first leaf (the
 * node restarted inside it) yields nothing; proofs derive that one from the records.
 */
export class BlockHasher {
  private leaves: Uint8Array[] = [];
  /** 0-based index of the next leaf that continues `leaves`, or -1 until a block starts. */
  private next = -1;

  constructor(readonly blockSize = MERKLE_BLOCK_SIZE) {}

  /** Leaf `index` (0-based) was appended; returns [block, hash] when it completes a block seen whole. */
  append(index: number, leafHash: Uint8Array): [number, Uint8Array] | null {
    if (index % this.blockSize === 0) {
      this.leaves = [];
      this.next = index;
    }
    if (index !== this.next) {
      this.next = -1;
      return null;
    }
    this.leaves.push(leafHash);
    this.next = index + 1;
    if (this.leaves.length < this.blockSize) return null;
    const hash = rootFromLeafHashes(this.leaves);
    this.leaves = [];
    this.next = -1;
    return [Math.floor(index / this.blockSize), hash];
  }
}

/** Block hashes computed in one go before they are stored (bounds the memory of a first build on a long log). */
const STORE_EVERY = 1024;

export class StoredMerkleTree {
  /** Hashes of blocks 0 .. blocks.length - 1, all present (loaded or derived since start). */
  private blocks: Uint8Array[] = [];
  /** Proofs run one at a time per swarm: a first build on a long log is done once, not once per waiting request. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly source: StoredTreeSource,
    readonly blockSize = MERKLE_BLOCK_SIZE,
  ) {
    if (!(blockSize >= 2 && (blockSize & (blockSize - 1)) === 0)) throw new RangeError(`block size ${blockSize} must be a power of two >= 2`);
  }

  /**
   * Runs `use` (which asks its hasher only for ranges of the RFC 6962 decomposition of [0, size), as proof
   * generation does) with a hasher over the first `size` stored leaves. `use` is run twice: once to learn which
   * blocks it enters (hashes are placeholders then; its control flow must depend on sizes only), then for real.
   * Yields what `use` returned and the tree's root. `expectedRoot` (hex), when the caller knows the root of that size
   * (a signed checkpoint's): a tree whose root differs drops the block-hash cache and derives it from the records
   * again; if the records themselves hash to another root, TreeMismatch.
   */
  prove<T>(size: number, use: (hasher: SubtreeHasher) => T, expectedRoot: string | null = null): Promise<{ value: T; root: Uint8Array }> {
    const run = this.queue.then(async () => {
      for (let attempt = 0; ; attempt++) {
        const proved = await this.proveNow(size, (hasher) => ({ root: hasher.subtreeHash(0, size), value: use(hasher) }));
        if (expectedRoot === null || toHex(proved.root) === expectedRoot) return proved;
        if (attempt > 0) throw new TreeMismatch(size, toHex(proved.root), expectedRoot);
        this.cacheRepairs++;
        this.blocks = [];
        await this.source.dropBlockHashes();
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Times a root differed from the expected one and the block-hash cache was derived again (since start). */
  cacheRepairs = 0;

  /** Forgets the block hashes (in memory and stored): the next proof derives them from the records again. */
  forget(): Promise<void> {
    const run = this.queue.then(async () => {
      this.blocks = [];
      await this.source.dropBlockHashes();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async proveNow<T>(size: number, use: (hasher: SubtreeHasher) => T): Promise<T> {
    const b = this.blockSize;
    const full = Math.floor(size / b);
    const leafBlocks = new Set<number>();
    const visit = (start: number, end: number): void => {
      const n = end - start;
      if (n === 0 || (start % b === 0 && n === b)) return; // empty, or a complete block: its hash
      if (n <= b) {
        leafBlocks.add(Math.floor(start / b)); // inside one block (see subtreeHash): from its leaves
        return;
      }
      const k = splitPoint(n);
      visit(start, start + k);
      visit(start + k, end);
    };
    use({
      subtreeHash: (start, end) => {
        visit(start, end);
        return EMPTY_ROOT;
      },
    });

    await this.deriveBlocks(full);
    const leaves = new Map<number, Uint8Array[]>();
    for (const block of leafBlocks) {
      const count = Math.min(b, size - block * b);
      const hashes = await this.source.leafHashes(block * b + 1, count);
      if (hashes.length !== count) throw new Error(`stored tree: ${hashes.length} leaves of block ${block}, expected ${count}`);
      leaves.set(block, hashes);
    }

    const blocks = this.blocks;
    const subtreeHash = (start: number, end: number): Uint8Array => {
      const n = end - start;
      if (n === 0) return EMPTY_ROOT;
      if (start % b === 0 && n === b) return blocks[start / b]!;
      if (n <= b) {
        // A range of the decomposition no larger than a block never crosses a block boundary: its start is aligned
        // to a power of two at least as large as the range.
        const block = Math.floor(start / b);
        const own = leaves.get(block);
        if (!own || Math.floor((end - 1) / b) !== block) throw new Error(`stored tree: range [${start}, ${end}) was not prepared`);
        return rootFromLeafHashes(own.slice(start - block * b, end - block * b));
      }
      const k = splitPoint(n);
      return nodeHash(subtreeHash(start, start + k), subtreeHash(start + k, end));
    };
    return use({ subtreeHash });
  }

  /** Makes blocks [0, full) present: loaded from the store, else derived from the records (and stored). */
  private async deriveBlocks(full: number): Promise<void> {
    const b = this.blockSize;
    while (this.blocks.length < full) {
      const from = this.blocks.length;
      const limit = Math.min(STORE_EVERY, full - from);
      const stored = await this.source.blockHashes(from, limit);
      const derived = new Map<number, Uint8Array>();
      for (let block = from; block < from + limit; block++) {
        let hash = stored.get(block);
        if (!hash) {
          const leaves = await this.source.leafHashes(block * b + 1, b);
          if (leaves.length !== b) throw new Error(`stored tree: ${leaves.length} leaves of block ${block}, expected ${b}`);
          hash = rootFromLeafHashes(leaves);
          derived.set(block, hash);
        }
        this.blocks.push(hash);
      }
      if (derived.size) await this.source.storeBlockHashes(derived);
    }
  }
}
