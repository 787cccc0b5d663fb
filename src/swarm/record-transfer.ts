// Verified record transfer: copies a swarm's audit records (from, to] from peers that may lie, accepting only
// records that hash-chain down from a head this node already trusts (a PBFT checkpoint certificate, or an era
// head vouched for by f+1 members) to the head this node already has. Records are checked newest first — each
// record's hash must equal the `prev` its successor names — so nothing unverified is ever applied; verified
// chunks wait in a staging namespace on disk (memory stays bounded however far behind the node is), then are
// handed out oldest first.
import { recordHash, type AuditRecord } from '../audit/chain.ts';
import { fromUtf8 } from '../crypto/encoding.ts';
import { indexKey, type KvStore } from '../storage/kv-store.ts';

/** A point of the hash chain: the record at `size` has hash `hash` (size 0: GENESIS_PREV). */
export interface ChainHead {
  size: number;
  hash: string;
}

export interface RecordTransferOptions {
  /** The head this node has (records after it are wanted). */
  from: ChainHead;
  /** The trusted head to reach. */
  to: ChainHead;
  /** Peers to ask, in order of preference; a peer whose records do not verify is skipped for the rest. */
  peers: readonly string[];
  /** One peer's stored records [from, from + limit). */
  fetch: (peer: string, from: number, limit: number) => Promise<AuditRecord[]>;
  /** Empty scratch space for verified records (cleared before and after). */
  staging: KvStore;
  /** Records per request. */
  chunk?: number;
  onProblem?: (peer: string, problem: string) => void;
}

const STAGED = 'rec/';

export class RecordTransferError extends Error {
  constructor(
    readonly code: 'NO_VERIFIED_SOURCE' | 'DIVERGED',
    message: string,
  ) {
    super(message);
  }
}

/**
 * Yields the records (from.size, to.size] in index order, in chunks, once all of them verified against `to.hash`
 * and the last one links to `from.hash`. Throws RecordTransferError when no peer serves a verifying chain, or when
 * the trusted chain does not extend this node's head (this node diverged: nothing is applied).
 */
export async function* verifiedRecords(options: RecordTransferOptions): AsyncGenerator<AuditRecord[]> {
  const { from, to } = options;
  if (to.size < from.size) throw new RecordTransferError('DIVERGED', `the trusted head ${to.size} is behind this node's head ${from.size}`);
  if (to.size === from.size) {
    if (to.hash !== from.hash) throw new RecordTransferError('DIVERGED', `this node's record ${from.size} hashes to ${from.hash}, the trusted head says ${to.hash}`);
    return;
  }
  const chunk = Math.max(1, Math.min(options.chunk ?? 512, 2048));
  await clearStaging(options.staging);
  const usable = [...options.peers];
  let expected = to.hash;
  let cursor = to.size;
  while (cursor > from.size) {
    const low = Math.max(from.size + 1, cursor - chunk + 1);
    let verified: AuditRecord[] | null = null;
    for (const peer of [...usable]) {
      try {
        const records = await options.fetch(peer, low, cursor - low + 1);
        const problem = checkChunk(records, low, cursor, expected);
        if (problem) {
          options.onProblem?.(peer, problem);
          usable.splice(usable.indexOf(peer), 1); // a peer that served a bad chain is not asked again
          continue;
        }
        verified = records;
        break;
      } catch (error) {
        options.onProblem?.(peer, (error as Error).message); // unreachable or lacking the records: try the next
      }
    }
    if (!verified) {
      await clearStaging(options.staging);
      throw new RecordTransferError('NO_VERIFIED_SOURCE', `no peer served verifying audit records ${low}..${cursor} (asked ${options.peers.join(', ') || 'nobody'})`);
    }
    await options.staging.putSynced(verified.map((record) => ({ key: indexKey(STAGED, record.index), value: Buffer.from(JSON.stringify(record)) })));
    expected = verified[0]!.prev;
    cursor = low - 1;
  }
  if (expected !== from.hash) {
    await clearStaging(options.staging);
    throw new RecordTransferError('DIVERGED', `the trusted chain names ${expected} as record ${from.size}; this node has ${from.hash}`);
  }
  try {
    for (let next = from.size + 1; next <= to.size; ) {
      const rows = await options.staging.scan(STAGED, { from: indexKey(STAGED, next), limit: chunk });
      const records = rows.map((row) => JSON.parse(fromUtf8(row.value)) as AuditRecord).filter((r) => r.index <= to.size);
      if (records.length === 0 || records[0]!.index !== next) throw new Error(`staged record ${next} is missing`);
      yield records;
      next += records.length;
    }
  } finally {
    await clearStaging(options.staging);
  }
}

/** Null when `records` are exactly low..high and chain down from `expectedTopHash`; else what is wrong. */
function checkChunk(records: AuditRecord[], low: number, high: number, expectedTopHash: string): string | null {
  if (!Array.isArray(records) || records.length !== high - low + 1) return `asked for records ${low}..${high}, got ${Array.isArray(records) ? records.length : 'no list'}`;
  let expected = expectedTopHash;
  for (let i = records.length - 1; i >= 0; i--) {
    const record = records[i]!;
    if (record?.index !== low + i) return `record ${low + i} is missing or out of order`;
    let hash: string;
    try {
      hash = recordHash(record);
    } catch {
      return `record ${record.index} is malformed`;
    }
    if (hash !== expected) return `record ${record.index} hashes to ${hash}, its successor (or the trusted head) names ${expected}`;
    expected = record.prev;
  }
  return null;
}

async function clearStaging(staging: KvStore): Promise<void> {
  for (;;) {
    const rows = await staging.scan(STAGED, { limit: 4096 });
    if (rows.length === 0) return;
    await staging.putSynced(rows.map((row) => ({ key: row.key, value: null })));
  }
}
