// Benchmark of the proofs a node serves (GET .../proofs/inclusion): a real RocksDB store of N audit records of ~1 KB
// (PROOF_BENCH_ENTRIES, default 200,000), then the milliseconds per inclusion proof read over every record (how
// proofs were served before audit/stored-tree.ts), the first proof of a StoredMerkleTree (derives and stores the
// block hashes of a log written without them), warm proofs (p50, p99 of 50), and the first proof after a restart
// (block hashes loaded). Prints one JSON line; no assertion.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../src/audit/chain.ts';
import { inclusionProof, MerkleTree } from '../src/audit/merkle.ts';
import { appliedTreeSource, StoredMerkleTree } from '../src/audit/stored-tree.ts';
import { AppliedStateStore } from '../src/storage/applied-state.ts';
import { NodeStore } from '../src/storage/node-store.ts';

const entries = Number(process.env.PROOF_BENCH_ENTRIES ?? 200_000);
const dir = mkdtempSync(join(tmpdir(), 'conclave-proof-bench-'));
try {
  const store = await NodeStore.open(dir);
  const applied = new AppliedStateStore(store.kv('bench', 'applied'));
  const log = AuditLog.create('bench-fed', 'bench');
  const data = new TextEncoder().encode('x'.repeat(900)); // about the size of a one-verdict entry's data
  for (let from = 1; from <= entries; from += 1000) {
    const audit: { index: number; record: Uint8Array }[] = [];
    for (let index = from; index < Math.min(from + 1000, entries + 1); index++) audit.push({ index, record: log.append({ index, mode: 'raft', epoch: 1, data }).bytes });
    await applied.commit({ appliedIndex: audit.at(-1)!.index, audit });
  }
  const source = appliedTreeSource(applied);
  const leafHashes = (from: number, limit: number) => source.leafHashes(from, limit);
  const timed = async (run: () => Promise<unknown>) => {
    const started = performance.now();
    await run();
    return performance.now() - started;
  };
  const index = Math.floor(entries / 3);
  const fullScanMs = await timed(async () => {
    const tree = new MerkleTree();
    for (let next = 1; next <= entries; next += 4096) for (const leaf of await leafHashes(next, Math.min(4096, entries - next + 1))) tree.appendLeafHash(leaf);
    tree.inclusionProof(index, entries);
  });
  const tree = new StoredMerkleTree(source);
  const firstMs = await timed(() => tree.prove(entries, (hasher) => inclusionProof(index, entries, hasher)));
  const warm: number[] = [];
  for (let k = 0; k < 50; k++) warm.push(await timed(() => tree.prove(entries, (hasher) => inclusionProof((k * 7919) % entries, entries, hasher))));
  warm.sort((a, b) => a - b);
  const restarted = new StoredMerkleTree(source);
  const afterRestartMs = await timed(() => restarted.prove(entries, (hasher) => inclusionProof(index, entries, hasher)));
  await store.close();
  const ms = (value: number) => Number(value.toFixed(2));
  console.log(
    JSON.stringify({
      bench: 'proofs',
      entries,
      fullScanMsPerProof: ms(fullScanMs),
      firstProofMs: ms(firstMs),
      warmProofMs: { p50: ms(warm[Math.floor(warm.length / 2)]!), p99: ms(warm[warm.length - 1]!) },
      afterRestartFirstProofMs: ms(afterRestartMs),
    }),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
