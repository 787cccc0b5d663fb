// RFC 6962 / RFC 9162 Merkle tree hashing: leaf and node hashes, tree heads for any size, inclusion and
// consistency proofs (generation and verification), an in-memory tree and a persistable compact frontier.
import { sha256 } from '../crypto/hash.ts';
import { bytesEqual, fromHex, toHex } from '../crypto/encoding.ts';

const LEAF_PREFIX = new Uint8Array([0x00]);
const NODE_PREFIX = new Uint8Array([0x01]);
const HASH_SIZE = 32;

/** Root of the empty tree: SHA-256 of the empty string. */
export const EMPTY_ROOT: Uint8Array = sha256(new Uint8Array(0));

/** SHA-256(0x00 || leaf). */
export function leafHash(leaf: Uint8Array): Uint8Array {
  return sha256(LEAF_PREFIX, leaf);
}

/** SHA-256(0x01 || left || right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return sha256(NODE_PREFIX, left, right);
}

// Sizes and indexes are plain numbers restricted to safe integers; JavaScript bit operators work on 32 bits only,
// so every "shift" below is an exact division by two.
function assertSize(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative safe integer, got ${value}`);
}

const half = (x: number): number => Math.floor(x / 2);
const isOdd = (x: number): boolean => x % 2 === 1;

/** The largest power of two strictly smaller than n (n >= 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isPowerOfTwo(n: number): boolean {
  if (n < 1) return false;
  while (n % 2 === 0) n /= 2;
  return n === 1;
}

/**
 * Anything that can give the Merkle tree hash of the leaf range [start, end) of one log (MTH(D[start:end])).
 * Proof generation only ever asks for ranges of the RFC 6962 decomposition.
 */
export interface SubtreeHasher {
  subtreeHash(start: number, end: number): Uint8Array;
}

/** A SubtreeHasher over a leaf-hash accessor (0-based), hashing each requested range from its leaves: O(end-start). */
export function hasherFromLeafHashes(leafHashAt: (index: number) => Uint8Array): SubtreeHasher {
  const mth = (start: number, end: number): Uint8Array => {
    const n = end - start;
    if (n === 0) return EMPTY_ROOT;
    if (n === 1) return leafHashAt(start);
    const k = splitPoint(n);
    return nodeHash(mth(start, start + k), mth(start + k, end));
  };
  return { subtreeHash: mth };
}

/** MTH(D[0:n]) of the given leaf hashes. */
export function rootFromLeafHashes(leafHashes: readonly Uint8Array[]): Uint8Array {
  return hasherFromLeafHashes((i) => leafHashes[i]!).subtreeHash(0, leafHashes.length);
}

/** RFC 6962 §2.1.1 PATH(m, D[n]): the audit path of leaf `index` (0-based) in the tree of the first `size` leaves. */
export function inclusionProof(index: number, size: number, hasher: SubtreeHasher): Uint8Array[] {
  assertSize('index', index);
  assertSize('size', size);
  if (index >= size) throw new RangeError(`leaf index ${index} is outside a tree of size ${size}`);
  const path: Uint8Array[] = [];
  let start = 0;
  let end = size;
  let m = index;
  // Walk from the root down; the path lists siblings bottom-up, so collect top-down then reverse.
  while (end - start > 1) {
    const k = splitPoint(end - start);
    if (m < k) {
      path.push(hasher.subtreeHash(start + k, end));
      end = start + k;
    } else {
      path.push(hasher.subtreeHash(start, start + k));
      start += k;
      m -= k;
    }
  }
  return path.reverse();
}

/** RFC 6962 §2.1.2 PROOF(m, D[n]): proves the tree of size1 leaves is a prefix of the tree of size2 leaves. */
export function consistencyProof(size1: number, size2: number, hasher: SubtreeHasher): Uint8Array[] {
  assertSize('size1', size1);
  assertSize('size2', size2);
  if (size1 > size2) throw new RangeError(`size1 ${size1} is larger than size2 ${size2}`);
  if (size1 === 0 || size1 === size2) return [];
  const proof: Uint8Array[] = [];
  let start = 0;
  let end = size2;
  let m = size1;
  let complete = true; // SUBPROOF's b flag: true while m is the whole original tree's left edge
  while (m !== end - start) {
    const n = end - start;
    const k = splitPoint(n);
    if (m <= k) {
      proof.push(hasher.subtreeHash(start + k, end));
      end = start + k;
    } else {
      proof.push(hasher.subtreeHash(start, start + k));
      start += k;
      m -= k;
      complete = false;
    }
  }
  if (!complete) proof.push(hasher.subtreeHash(start, end));
  return proof.reverse();
}

/** RFC 9162 §2.1.3.2: recomputes the root from a leaf hash and its audit path; throws when anything is off. */
export function rootFromInclusionProof(index: number, size: number, leaf: Uint8Array, proof: readonly Uint8Array[]): Uint8Array {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || size < 0) {
    throw new RangeError(`index ${index} / size ${size} are not valid tree coordinates`);
  }
  if (index >= size) throw new RangeError(`leaf index ${index} is outside a tree of size ${size}`);
  if (leaf.length !== HASH_SIZE) throw new RangeError(`leaf hash has ${leaf.length} bytes, want ${HASH_SIZE}`);
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (p.length !== HASH_SIZE) throw new RangeError(`proof hash has ${p.length} bytes, want ${HASH_SIZE}`);
    if (sn === 0) throw new RangeError('inclusion proof is longer than the tree is deep');
    if (isOdd(fn) || fn === sn) {
      r = nodeHash(p, r);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new RangeError('inclusion proof is shorter than the tree is deep');
  return r;
}

/** True when `proof` proves leaf hash `leaf` at `index` in the tree of `size` leaves with root `root`. */
export function verifyInclusion(index: number, size: number, leaf: Uint8Array, proof: readonly Uint8Array[], root: Uint8Array): boolean {
  try {
    return bytesEqual(rootFromInclusionProof(index, size, leaf, proof), root);
  } catch {
    return false;
  }
}

/**
 * RFC 9162 §2.1.4.2: checks that `root1` (size1 leaves) is a prefix of `root2` (size2 leaves); throws with the reason
 * when it is not. Equal sizes need an empty proof and equal roots (and the empty-tree root when the size is 0).
 */
export function checkConsistency(
  size1: number,
  size2: number,
  root1: Uint8Array,
  root2: Uint8Array,
  proof: readonly Uint8Array[],
): void {
  if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 < 0 || size2 < 0) {
    throw new RangeError(`sizes ${size1} / ${size2} are not valid tree sizes`);
  }
  if (size1 > size2) throw new RangeError(`size1 ${size1} is larger than size2 ${size2}`);
  if (size1 === size2) {
    if (proof.length !== 0) throw new RangeError('equal sizes need an empty proof');
    if (!bytesEqual(root1, root2)) throw new RangeError('equal sizes but different roots');
    if (size1 === 0 && !bytesEqual(root1, EMPTY_ROOT)) throw new RangeError('a tree of size 0 has the empty root');
    return;
  }
  if (size1 === 0) throw new RangeError('a consistency proof from the empty tree proves nothing');
  if (proof.length === 0) throw new RangeError('empty consistency proof');
  for (const p of proof) if (p.length !== HASH_SIZE) throw new RangeError(`proof hash has ${p.length} bytes, want ${HASH_SIZE}`);
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    if (sn === 0) throw new RangeError('consistency proof is too long');
    if (isOdd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new RangeError('consistency proof is too short');
  if (!bytesEqual(fr, root1)) throw new RangeError('consistency proof does not rebuild root1');
  if (!bytesEqual(sr, root2)) throw new RangeError('consistency proof does not rebuild root2');
}

export function verifyConsistency(
  size1: number,
  size2: number,
  root1: Uint8Array,
  root2: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  try {
    checkConsistency(size1, size2, root1, root2, proof);
    return true;
  } catch {
    return false;
  }
}

/** Append-only array of 32-byte hashes in one growable buffer (millions of Uint8Array objects would cost ~100 B each). */
class HashArray {
  private buf = new Uint8Array(HASH_SIZE * 64);
  length = 0;

  push(hash: Uint8Array): void {
    if ((this.length + 1) * HASH_SIZE > this.buf.length) {
      const grown = new Uint8Array(this.buf.length * 2);
      grown.set(this.buf);
      this.buf = grown;
    }
    this.buf.set(hash, this.length * HASH_SIZE);
    this.length++;
  }

  at(i: number): Uint8Array {
    return this.buf.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE);
  }
}

/**
 * In-memory Merkle tree that keeps every complete (perfect, aligned) subtree hash: append is amortized O(1), the
 * root of any earlier size and every proof cost O(log² n) hash operations at most. ~64 bytes per leaf.
 */
export class MerkleTree implements SubtreeHasher {
  /** levels[h][i] = hash of the perfect subtree over leaves [i·2^h, (i+1)·2^h). */
  private readonly levels: HashArray[] = [new HashArray()];

  get size(): number {
    return this.levels[0]!.length;
  }

  appendLeaf(leaf: Uint8Array): void {
    this.appendLeafHash(leafHash(leaf));
  }

  appendLeafHash(hash: Uint8Array): void {
    if (hash.length !== HASH_SIZE) throw new RangeError(`leaf hash has ${hash.length} bytes, want ${HASH_SIZE}`);
    let level = 0;
    let current = hash;
    for (;;) {
      const row = this.levels[level]!;
      row.push(current);
      if (row.length % 2 !== 0) return;
      current = nodeHash(row.at(row.length - 2), row.at(row.length - 1));
      level++;
      if (this.levels.length === level) this.levels.push(new HashArray());
    }
  }

  leafHash(index: number): Uint8Array {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.size) throw new RangeError(`no leaf ${index} in a tree of size ${this.size}`);
    return this.levels[0]!.at(index).slice();
  }

  subtreeHash(start: number, end: number): Uint8Array {
    if (!(start >= 0 && start <= end && end <= this.size)) throw new RangeError(`range [${start}, ${end}) is outside a tree of size ${this.size}`);
    const n = end - start;
    if (n === 0) return EMPTY_ROOT;
    if (isPowerOfTwo(n) && start % n === 0) {
      let level = 0;
      for (let w = n; w > 1; w /= 2) level++;
      return this.levels[level]!.at(start / n).slice();
    }
    const k = splitPoint(n);
    return nodeHash(this.subtreeHash(start, start + k), this.subtreeHash(start + k, end));
  }

  /** MTH of the first `size` leaves (default: all). */
  root(size: number = this.size): Uint8Array {
    return this.subtreeHash(0, size);
  }

  inclusionProof(index: number, size: number = this.size): Uint8Array[] {
    if (size > this.size) throw new RangeError(`size ${size} is beyond the tree's ${this.size} leaves`);
    return inclusionProof(index, size, this);
  }

  consistencyProof(size1: number, size2: number = this.size): Uint8Array[] {
    if (size2 > this.size) throw new RangeError(`size ${size2} is beyond the tree's ${this.size} leaves`);
    return consistencyProof(size1, size2, this);
  }
}

/** The serialised form of a MerkleFrontier: hashes are lowercase hex, largest (leftmost) subtree first. */
export interface FrontierState {
  size: number;
  hashes: string[];
}

/**
 * The compact range [0, size): the roots of the perfect subtrees of the binary decomposition of `size`, leftmost
 * (largest) first — popcount(size) hashes. Appending a leaf is O(log n); root() folds them right to left. This is
 * what a node persists (with the hash of the last audit record) to continue the tree after a restart or snapshot.
 */
export class MerkleFrontier {
  private sizeValue: number;
  private readonly hashes: Uint8Array[];

  constructor(state?: FrontierState) {
    if (state === undefined) {
      this.sizeValue = 0;
      this.hashes = [];
      return;
    }
    assertSize('frontier size', state.size);
    if (!Array.isArray(state.hashes) || state.hashes.length !== popcount(state.size)) {
      throw new RangeError(`a frontier of size ${state.size} holds ${popcount(state.size)} hashes`);
    }
    this.sizeValue = state.size;
    this.hashes = state.hashes.map((h) => {
      const bytes = fromHex(h);
      if (bytes.length !== HASH_SIZE) throw new RangeError('frontier hash must be 32 bytes of lowercase hex');
      return bytes;
    });
  }

  get size(): number {
    return this.sizeValue;
  }

  appendLeaf(leaf: Uint8Array): void {
    this.appendLeafHash(leafHash(leaf));
  }

  appendLeafHash(hash: Uint8Array): void {
    if (hash.length !== HASH_SIZE) throw new RangeError(`leaf hash has ${hash.length} bytes, want ${HASH_SIZE}`);
    let current = hash;
    // Each trailing 1-bit of the old size is a perfect subtree that the new leaf completes into a larger one.
    for (let s = this.sizeValue; isOdd(s); s = half(s)) current = nodeHash(this.hashes.pop()!, current);
    this.hashes.push(current);
    this.sizeValue++;
  }

  root(): Uint8Array {
    if (this.hashes.length === 0) return EMPTY_ROOT;
    let r = this.hashes[this.hashes.length - 1]!;
    for (let i = this.hashes.length - 2; i >= 0; i--) r = nodeHash(this.hashes[i]!, r);
    return r;
  }

  toJSON(): FrontierState {
    return { size: this.sizeValue, hashes: this.hashes.map(toHex) };
  }

  clone(): MerkleFrontier {
    return new MerkleFrontier(this.toJSON());
  }
}

function popcount(n: number): number {
  let count = 0;
  for (let x = n; x > 0; x = half(x)) if (isOdd(x)) count++;
  return count;
}
