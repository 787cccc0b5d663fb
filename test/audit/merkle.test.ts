// Tests of src/audit/merkle.ts: RFC 6962 known-answer vectors (transparency-dev/merkle) and property tests
// against a literal recursive reference tree.
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sha256 } from '../../src/crypto/hash.ts';
import { concatBytes, toHex } from '../../src/crypto/encoding.ts';
import {
  EMPTY_ROOT,
  MerkleFrontier,
  MerkleTree,
  consistencyProof,
  hasherFromLeafHashes,
  inclusionProof,
  leafHash,
  nodeHash,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
} from '../../src/audit/merkle.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const vectorsDir = resolve(repoRoot, '..', 'shared', 'vectors', 'rfc6962');

function listJson(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...listJson(path));
    else if (name.endsWith('.json')) out.push(path);
  }
  return out;
}

const b64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'base64'));
const proofOf = (proof: string[] | null): Uint8Array[] => (proof ?? []).map(b64);

describe('RFC 6962 known-answer vectors (transparency-dev/merkle testdata)', () => {
  it('the vectors folder exists (a missing folder is a failure, not a skip)', () => {
    expect(existsSync(vectorsDir), `missing ${vectorsDir}`).toBe(true);
  });
  const inclusionFiles = existsSync(vectorsDir) ? listJson(join(vectorsDir, 'inclusion')) : [];
  const consistencyFiles = existsSync(vectorsDir) ? listJson(join(vectorsDir, 'consistency')) : [];

  it('finds both kinds of vectors, with accepting and refusing files', () => {
    expect(inclusionFiles.length).toBeGreaterThan(50);
    expect(consistencyFiles.length).toBeGreaterThan(50);
  });

  it('accepts exactly the inclusion vectors with wantErr false', () => {
    let accepted = 0;
    for (const file of inclusionFiles) {
      const v = JSON.parse(readFileSync(file, 'utf8')) as {
        leafIdx: number; treeSize: number; root: string; leafHash: string; proof: string[] | null; wantErr: boolean;
      };
      const ok = verifyInclusion(v.leafIdx, v.treeSize, b64(v.leafHash), proofOf(v.proof), b64(v.root));
      expect(ok, `${relative(vectorsDir, file)}: wantErr ${v.wantErr} but verifier said ${ok ? 'valid' : 'invalid'}`).toBe(!v.wantErr);
      if (ok) accepted++;
    }
    expect(accepted).toBeGreaterThanOrEqual(6);
  });

  it('accepts exactly the consistency vectors with wantErr false', () => {
    let accepted = 0;
    for (const file of consistencyFiles) {
      const v = JSON.parse(readFileSync(file, 'utf8')) as {
        size1: number; size2: number; root1: string; root2: string; proof: string[] | null; wantErr: boolean;
      };
      const ok = verifyConsistency(v.size1, v.size2, b64(v.root1), b64(v.root2), proofOf(v.proof));
      expect(ok, `${relative(vectorsDir, file)}: wantErr ${v.wantErr} but verifier said ${ok ? 'valid' : 'invalid'}`).toBe(!v.wantErr);
      if (ok) accepted++;
    }
    expect(accepted).toBeGreaterThanOrEqual(6);
  });

  it('generates the happy-path proofs of the vectors from the tree of leaves they were made from', () => {
    // transparency-dev's reference leaves: "", 0x00, 0x10, 0x2021, 0x3031, 0x40414243, 0x5051525354555657, 0x606162...6f.
    const leaves = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(
      (h) => new Uint8Array(Buffer.from(h, 'hex')),
    );
    const tree = new MerkleTree();
    for (const leaf of leaves) tree.appendLeaf(leaf);
    for (const file of [...inclusionFiles, ...consistencyFiles].filter((f) => f.endsWith('happy-path.json'))) {
      const v = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      if ('leafIdx' in v) {
        expect(toHex(tree.root(v.treeSize as number))).toBe(toHex(b64(v.root as string)));
        expect(tree.inclusionProof(v.leafIdx as number, v.treeSize as number).map(toHex)).toEqual(proofOf(v.proof as string[]).map(toHex));
      } else {
        expect(toHex(tree.root(v.size2 as number))).toBe(toHex(b64(v.root2 as string)));
        expect(tree.consistencyProof(v.size1 as number, v.size2 as number).map(toHex)).toEqual(proofOf(v.proof as string[]).map(toHex));
      }
    }
  });
});

// ---- reference: the RFC 6962 §2.1 definitions, literally ----
function refMth(d: Uint8Array[]): Uint8Array {
  if (d.length === 0) return sha256(new Uint8Array(0));
  if (d.length === 1) return sha256(concatBytes(new Uint8Array([0]), d[0]!));
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return sha256(concatBytes(new Uint8Array([1]), refMth(d.slice(0, k)), refMth(d.slice(k))));
}
function refPath(m: number, d: Uint8Array[]): Uint8Array[] {
  if (d.length === 1) return [];
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return m < k ? [...refPath(m, d.slice(0, k)), refMth(d.slice(k))] : [...refPath(m - k, d.slice(k)), refMth(d.slice(0, k))];
}
function refSubproof(m: number, d: Uint8Array[], b: boolean): Uint8Array[] {
  if (m === d.length) return b ? [] : [refMth(d)];
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return m <= k
    ? [...refSubproof(m, d.slice(0, k), b), refMth(d.slice(k))]
    : [...refSubproof(m - k, d.slice(k), false), refMth(d.slice(0, k))];
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('Merkle tree against a literal recursive reference', () => {
  const maxSize = 200;
  const leaves = Array.from({ length: maxSize }, (_, i) => new Uint8Array(Buffer.from(`leaf-${i}-${'x'.repeat(i % 7)}`)));
  const tree = new MerkleTree();
  const frontier = new MerkleFrontier();
  const refRoots: Uint8Array[] = [refMth([])];
  for (let n = 1; n <= maxSize; n++) {
    tree.appendLeaf(leaves[n - 1]!);
    refRoots.push(refMth(leaves.slice(0, n)));
  }

  it('the empty tree has root SHA-256("")', () => {
    expect(toHex(EMPTY_ROOT)).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(toHex(new MerkleFrontier().root())).toBe(toHex(EMPTY_ROOT));
    expect(toHex(new MerkleTree().root())).toBe(toHex(EMPTY_ROOT));
  });

  it('tree, frontier and leaf-accessor roots equal the reference for every size 0..200', () => {
    const hashes = leaves.map(leafHash);
    for (let n = 0; n <= maxSize; n++) {
      if (n > 0) frontier.appendLeaf(leaves[n - 1]!);
      const want = toHex(refRoots[n]!);
      expect(toHex(tree.root(n)), `tree root at ${n}`).toBe(want);
      expect(toHex(frontier.root()), `frontier root at ${n}`).toBe(want);
      expect(toHex(rootFromLeafHashes(hashes.slice(0, n))), `leaf-hash root at ${n}`).toBe(want);
      // The frontier survives serialisation at every size.
      expect(toHex(new MerkleFrontier(JSON.parse(JSON.stringify(frontier.toJSON()))).root())).toBe(want);
    }
  });

  it('every inclusion proof for sizes 1..64 equals the reference and verifies; a wrong index or root does not', () => {
    for (let n = 1; n <= 64; n++) {
      for (let m = 0; m < n; m++) {
        const proof = tree.inclusionProof(m, n);
        expect(proof.map(toHex), `PATH(${m}, ${n})`).toEqual(refPath(m, leaves.slice(0, n)).map(toHex));
        expect(verifyInclusion(m, n, leafHash(leaves[m]!), proof, refRoots[n]!)).toBe(true);
        if (n > 1) expect(verifyInclusion((m + 1) % n, n, leafHash(leaves[m]!), proof, refRoots[n]!)).toBe(false);
        expect(verifyInclusion(m, n, leafHash(leaves[m]!), proof, refRoots[n === 1 ? 2 : n - 1]!)).toBe(false);
      }
    }
  });

  it('every consistency proof for sizes 1..60 equals the reference and verifies; wrong sizes do not', () => {
    for (let n = 1; n <= 60; n++) {
      for (let m = 1; m <= n; m++) {
        const proof = tree.consistencyProof(m, n);
        const want = m === n ? [] : refSubproof(m, leaves.slice(0, n), true);
        expect(proof.map(toHex), `PROOF(${m}, ${n})`).toEqual(want.map(toHex));
        expect(verifyConsistency(m, n, refRoots[m]!, refRoots[n]!, proof), `verify ${m}->${n}`).toBe(true);
        if (m < n) {
          expect(verifyConsistency(m, n, refRoots[m === 1 ? 2 : m - 1]!, refRoots[n]!, proof)).toBe(false);
          expect(verifyConsistency(m, n + 1, refRoots[m]!, refRoots[n + 1]!, proof)).toBe(false);
        }
      }
    }
  });

  it('random pairs up to 200: proofs from the leaf accessor and from the tree agree and verify', () => {
    const rand = seeded(6962);
    const hasher = hasherFromLeafHashes((i) => leafHash(leaves[i]!));
    for (let trial = 0; trial < 400; trial++) {
      const n = 1 + Math.floor(rand() * maxSize);
      const m = Math.floor(rand() * n);
      const size1 = 1 + Math.floor(rand() * n);
      const incl = inclusionProof(m, n, hasher);
      expect(incl.map(toHex)).toEqual(tree.inclusionProof(m, n).map(toHex));
      expect(verifyInclusion(m, n, leafHash(leaves[m]!), incl, refRoots[n]!)).toBe(true);
      const cons = consistencyProof(size1, n, hasher);
      expect(cons.map(toHex)).toEqual(tree.consistencyProof(size1, n).map(toHex));
      expect(verifyConsistency(size1, n, refRoots[size1]!, refRoots[n]!, cons)).toBe(true);
      if (cons.length > 0) {
        const bad = cons.map((h) => h.slice());
        const at = Math.floor(rand() * bad.length);
        bad[at]![Math.floor(rand() * 32)]! ^= 1 << Math.floor(rand() * 8);
        expect(verifyConsistency(size1, n, refRoots[size1]!, refRoots[n]!, bad), `flipped bit in PROOF(${size1}, ${n})`).toBe(false);
      }
    }
  });

  it('a leaf hash can never pass as a node hash (domain separation)', () => {
    const a = leafHash(leaves[0]!);
    const b = leafHash(leaves[1]!);
    expect(toHex(nodeHash(a, b))).not.toBe(toHex(leafHash(concatBytes(a, b))));
  });

  it('a frontier refuses a serialised state whose hash count does not match its size', () => {
    expect(() => new MerkleFrontier({ size: 3, hashes: [toHex(EMPTY_ROOT)] })).toThrow(/holds 2 hashes/);
  });
});
