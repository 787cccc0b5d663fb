// Binary key layout of the node database and the fixed-width encodings that keep index range scans in order.
//
// Layout (all keys are bytes; `<swarm>` is the UTF-8 swarm id, never containing '/'):
//   s/<swarm>/r/h               Raft hard state
//   s/<swarm>/r/m               Raft log meta: index and term of the last compacted entry
//   s/<swarm>/r/s               Raft snapshot (meta + state bytes)
//   s/<swarm>/r/c               Raft conf state persisted by the driver (latest applied membership)
//   s/<swarm>/r/e/<u64be idx>   Raft log entry at idx
//   s/<swarm>/k/<ns>/<key>      generic synced key-value space `ns` of the swarm (applied state, audit, pbft, ...)
//   n/k/<ns>/<key>              node-wide key-value space `ns`
// Indexes are 8-byte big-endian, so byte order equals numeric order and a range [lo, hi) is one iterator.

const enc = new TextEncoder();

const SWARM_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const NAMESPACE = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export function checkSwarmId(swarm: string): void {
  if (!SWARM_ID.test(swarm)) {
    throw new TypeError(`invalid swarm id for storage: ${JSON.stringify(swarm)} (expected ${SWARM_ID.source})`);
  }
}

export function checkNamespace(ns: string): void {
  if (!NAMESPACE.test(ns)) {
    throw new TypeError(`invalid storage namespace: ${JSON.stringify(ns)} (expected ${NAMESPACE.source})`);
  }
}

export function concat(...parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts);
}

export function ascii(text: string): Buffer {
  return Buffer.from(enc.encode(text));
}

/** 8-byte big-endian encoding of a non-negative safe integer. */
export function u64(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a non-negative safe integer: ${n}`);
  const b = Buffer.allocUnsafe(8);
  b.writeUInt32BE(Math.floor(n / 0x1_0000_0000), 0);
  b.writeUInt32BE(n % 0x1_0000_0000, 4);
  return b;
}

export function readU64(b: Uint8Array, offset = 0): number {
  const view = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const hi = view.readUInt32BE(offset);
  const lo = view.readUInt32BE(offset + 4);
  const n = hi * 0x1_0000_0000 + lo;
  if (!Number.isSafeInteger(n)) throw new RangeError('u64 beyond the safe integer range');
  return n;
}

/** The smallest key greater than every key that starts with `prefix` (prefix must not be all 0xff). */
export function prefixEnd(prefix: Uint8Array): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  throw new RangeError('prefix has no upper bound');
}

export function swarmPrefix(swarm: string): Buffer {
  checkSwarmId(swarm);
  return ascii(`s/${swarm}/`);
}

export interface RaftKeys {
  hardState: Buffer;
  logMeta: Buffer;
  snapshot: Buffer;
  conf: Buffer;
  entryPrefix: Buffer;
  entry(index: number): Buffer;
}

export function raftKeys(swarm: string): RaftKeys {
  const base = concat(swarmPrefix(swarm), ascii('r/'));
  const entryPrefix = concat(base, ascii('e/'));
  return {
    hardState: concat(base, ascii('h')),
    logMeta: concat(base, ascii('m')),
    snapshot: concat(base, ascii('s')),
    conf: concat(base, ascii('c')),
    entryPrefix,
    entry: (index) => concat(entryPrefix, u64(index)),
  };
}

/** Prefix of a key-value namespace: per swarm when `swarm` is given, node-wide otherwise. */
export function kvPrefix(swarm: string | null, ns: string): Buffer {
  checkNamespace(ns);
  return swarm === null ? ascii(`n/k/${ns}/`) : concat(swarmPrefix(swarm), ascii(`k/${ns}/`));
}
