// Proofs over stored records (audit/stored-tree.ts) against a real RocksDB: identical to proofs from a tree holding
// every leaf in memory, for every kind of range; the block-hash cache is derived once, stored, found again after a
// restart, and a damaged one is derived again when the caller knows the root — while damaged records are refused.
// A swarm's state stores each block's hash as it appends the block's last record (not for a block a restart split).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/chain.ts';
import { consistencyProof, inclusionProof, MerkleTree } from '../../src/audit/merkle.ts';
import { appliedTreeSource, BlockHasher, StoredMerkleTree, TreeMismatch, type StoredTreeSource } from '../../src/audit/stored-tree.ts';
import type { FederationConfig } from '../../src/config/types.ts';
import { SwarmState } from '../../src/swarm/swarm-state.ts';
import { encodeCommand } from '../../src/verdict/proposal.ts';
import { makeFederation, makeSwarm } from '../verdict/fixtures.ts';
import { recordLeafHash, type AuditRecord } from '../../src/audit/chain.ts';
import { toHex } from '../../src/crypto/encoding.ts';
import { AppliedStateStore } from '../../src/storage/applied-state.ts';
import { NodeStore } from '../../src/storage/node-store.ts';
import { tempDir } from '../storage/helpers.ts';

const ENTRIES = 1100;
let dir: { path: string; cleanup: () => Promise<void> };
let store: NodeStore;
let applied: AppliedStateStore;
const reference = new MerkleTree();

/** The real store as the node reads it (appliedTreeSource), counting the leaves it reads and the block hashes it derives. */
function sourceOver(target: AppliedStateStore): StoredTreeSource & { leavesRead: number; blocksStored: number } {
  const real = appliedTreeSource(target);
  const source = {
    ...real,
    leavesRead: 0,
    blocksStored: 0,
    async leafHashes(from: number, limit: number) {
      const leaves = await real.leafHashes(from, limit);
      source.leavesRead += leaves.length;
      return leaves;
    },
    async storeBlockHashes(hashes: Map<number, Uint8Array>) {
      source.blocksStored += hashes.size;
      await real.storeBlockHashes(hashes);
    },
  };
  return source;
}

async function inclusion(tree: StoredMerkleTree, index: number, size: number, expectedRoot: string | null = null) {
  const proved = await tree.prove(size, (hasher) => inclusionProof(index, size, hasher).map(toHex), expectedRoot);
  return { root: toHex(proved.root), proof: proved.value };
}

beforeAll(async () => {
  dir = await tempDir('stored-tree');
  store = await NodeStore.open(dir.path);
  applied = new AppliedStateStore(store.kv('s', 'applied'));
  const log = AuditLog.create('fed', 's');
  for (let from = 1; from <= ENTRIES; from += 100) {
    const audit: { index: number; record: Uint8Array }[] = [];
    for (let index = from; index < from + 100; index++) {
      const appended = log.append({ index, mode: 'raft', epoch: 1, data: new TextEncoder().encode(`{"n":${index}}`) });
      reference.appendLeafHash(appended.leafHash);
      audit.push({ index, record: appended.bytes });
    }
    await applied.commit({ appliedIndex: from + 99, audit });
  }
});

afterAll(async () => {
  await store?.close();
  await dir?.cleanup();
});

describe('StoredMerkleTree over a real store', () => {
  it('gives the same roots, inclusion and consistency proofs as a tree of every leaf, at every kind of size', async () => {
    for (const blockSize of [4, 16, 256]) {
      await applied.dropMerkleBlocks();
      const tree = new StoredMerkleTree(sourceOver(applied), blockSize);
      const sizes = [1, 2, 3, blockSize - 1, blockSize, blockSize + 1, 2 * blockSize, 3 * blockSize + 1, 511, 512, 513, 1024, 1099, ENTRIES];
      for (const size of sizes) {
        for (const index of [0, 1, Math.floor(size / 2), blockSize - 1, blockSize, size - 2, size - 1]) {
          if (index < 0 || index >= size) continue;
          const got = await inclusion(tree, index, size);
          expect(got.root, `block ${blockSize} size ${size}`).toBe(toHex(reference.root(size)));
          expect(got.proof, `block ${blockSize} size ${size} index ${index}`).toEqual(reference.inclusionProof(index, size).map(toHex));
        }
        for (const size1 of [0, 1, blockSize - 1, blockSize, blockSize + 3, Math.floor(size / 2), size]) {
          if (size1 > size) continue;
          const { value: proof } = await tree.prove(size, (hasher) => consistencyProof(size1, size, hasher).map(toHex));
          expect(proof, `block ${blockSize} ${size1} -> ${size}`).toEqual(reference.consistencyProof(size1, size).map(toHex));
        }
      }
    }
  });

  it('derives the block hashes once, finds them stored after a restart, and reads at most two blocks of leaves per proof', async () => {
    await applied.dropMerkleBlocks();
    const first = sourceOver(applied);
    const tree = new StoredMerkleTree(first, 256);
    await inclusion(tree, 700, ENTRIES);
    expect(first.blocksStored).toBe(4); // 1100 = 4 x 256 + 76
    first.leavesRead = 0;
    await inclusion(tree, 10, ENTRIES);
    await inclusion(tree, 1090, ENTRIES);
    expect(first.leavesRead).toBeLessThanOrEqual(2 * (256 + 76));

    const restarted = sourceOver(applied); // a new instance: only what the store kept
    const again = new StoredMerkleTree(restarted, 256);
    const proved = await inclusion(again, 300, ENTRIES);
    expect(proved.proof).toEqual(reference.inclusionProof(300, ENTRIES).map(toHex));
    expect(restarted.blocksStored).toBe(0);
    expect(restarted.leavesRead).toBeLessThanOrEqual(256 + 76);
  });

  it('a damaged block hash: the known root exposes it and the cache is derived again; damaged records: TreeMismatch', async () => {
    await applied.dropMerkleBlocks();
    await new StoredMerkleTree(sourceOver(applied), 256).prove(ENTRIES, () => null); // derive and store
    await applied.putMerkleBlocks(new Map([[1, new Uint8Array(32).fill(7)]]));
    await new Promise((settle) => setTimeout(settle, 50));
    const tree = new StoredMerkleTree(sourceOver(applied), 256);
    const unchecked = await inclusion(tree, 5, ENTRIES);
    expect(unchecked.root).not.toBe(toHex(reference.root(ENTRIES))); // without a known root the damage goes unseen
    const known = toHex(reference.root(ENTRIES));
    const checked = await inclusion(tree, 5, ENTRIES, known);
    expect(checked.root).toBe(known);
    expect(checked.proof).toEqual(reference.inclusionProof(5, ENTRIES).map(toHex));
    expect(tree.cacheRepairs).toBe(1);
    expect(toHex((await applied.merkleBlocks(1, 1)).get(1)!)).not.toBe(toHex(new Uint8Array(32).fill(7)));

    await expect(inclusion(tree, 5, ENTRIES, toHex(new Uint8Array(32)))).rejects.toBeInstanceOf(TreeMismatch);
    // The tree keeps working after a refusal.
    expect((await inclusion(tree, 6, ENTRIES, known)).proof).toEqual(reference.inclusionProof(6, ENTRIES).map(toHex));
  });

  it('refuses a size or range its records do not cover', async () => {
    const tree = new StoredMerkleTree(sourceOver(applied), 256);
    await expect(inclusion(tree, 5, ENTRIES + 300)).rejects.toThrow(/does not hold every audit record/);
    expect(() => new StoredMerkleTree(sourceOver(applied), 100)).toThrow(/power of two/);
  });
});

describe('block hashes written as the log grows', () => {
  it('BlockHasher yields each block seen whole, with the hash a tree of every leaf has, and nothing for a block entered midway', () => {
    const hasher = new BlockHasher(16);
    const yielded: [number, string][] = [];
    for (let i = 0; i < 70; i++) {
      if (i >= 20 && i < 40) continue; // a gap: block 1 (16..31) and block 2 (32..47) are not seen whole
      const block = hasher.append(i, reference.leafHash(i));
      if (block) yielded.push([block[0], toHex(block[1])]);
    }
    expect(yielded).toEqual([0, 3].map((b) => [b, toHex(reference.subtreeHash(b * 16, b * 16 + 16))]));
  });

  it('a swarm state stores the hash of every block it appended whole, in the batch of its records; a restart splits none into a wrong one', async () => {
    const fed = makeFederation(['acme', 'globex', 'initech']);
    const swarm = makeSwarm('s1', ['acme', 'globex', 'initech']);
    const federation = { version: 1, federation: 'fed-test', sourcePath: '/dev/null', node: { org: 'acme' }, members: fed.members, swarms: [swarm] } as unknown as FederationConfig;
    const where = await tempDir('block-hashes');
    const open = async () => {
      const nodeStore = await NodeStore.open(where.path);
      const appliedState = new AppliedStateStore(nodeStore.kv('s1', 'applied'));
      const state = new SwarmState({ federation, swarm, self: 'acme', keyring: fed.keyring, signingKey: fed.keys.acme!.node, applied: appliedState, onOutcomes: () => undefined, onCheckpoint: () => undefined });
      await state.loadCheckpoints();
      await state.rebuild();
      return { nodeStore, appliedState, state };
    };
    const grow = async (state: SwarmState, to: number) => {
      const noop = encodeCommand({ v: 1, type: 'noop' });
      while (state.size < to) {
        state.apply({ index: state.size + 1, epoch: 1, kind: 'command', data: noop });
        if (state.size % 50 === 0) await state.flush();
      }
      await state.flush();
    };
    try {
      let { nodeStore, appliedState, state } = await open();
      await grow(state, 300); // block 0 whole; block 1 (256..511) entered
      await nodeStore.close();
      ({ nodeStore, appliedState, state } = await open());
      await grow(state, 800); // block 1 finishes after the restart: not stored; blocks 2 (512..767) whole
      const stored = await appliedState.merkleBlocks(0, 10);
      expect([...stored.keys()]).toEqual([0, 2]);
      // Each stored hash is the block's hash over its records, and proofs use them (only block 1 is derived).
      const records = (await appliedState.audit(1, 800)).map((row) => recordLeafHash(JSON.parse(Buffer.from(row.record).toString('utf8')) as AuditRecord));
      const tree = new MerkleTree();
      for (const leaf of records) tree.appendLeafHash(leaf);
      for (const [block, hash] of stored) expect(toHex(hash)).toBe(toHex(tree.subtreeHash(block * 256, block * 256 + 256)));
      const source = sourceOver(appliedState);
      const { value: proved } = await new StoredMerkleTree(source).prove(800, (hasher) => inclusionProof(600, 800, hasher).map(toHex), toHex(tree.root(800)));
      expect(proved).toEqual(tree.inclusionProof(600, 800).map(toHex));
      expect(source.blocksStored).toBe(1);
      await nodeStore.close();
    } finally {
      await where.cleanup();
    }
  });
});
