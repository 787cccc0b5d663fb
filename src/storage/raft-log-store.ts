// RaftLogStore: the durable Raft state of one swarm — hard state, log entries, snapshot, conf — on the node's
// database. Each persistReady() is one atomic unit of one group-committed synced batch (see group-commit.ts).
//
// Semantics (etcd-io/raft's Storage, with the Raft paper's §7 snapshot rule):
// - entries: entries[0].index may be <= lastIndex: the stored suffix from there is replaced (conflict truncation).
//   Entries at or below the durable commit index may be re-sent only with the same term (never changed).
// - snapshot: if the log holds snapshot.index with snapshot.term (a local snapshot, or a leader's snapshot the
//   follower already matches), the log is kept; otherwise the whole log is discarded and restarts after
//   snapshot.index. The snapshot's conf becomes the stored conf. Applied in a call before its entries.
// - compactedTo: deletes entries <= compactedTo; only entries covered by a stored snapshot (compactedTo <=
//   snapshot.index), so that a restart never finds a gap between snapshot and log.
// - A call whose only change is the hard state's commit index is written in order but not synced by itself
//   (etcd's MustSync); everything else resolves once synced.
// - Invariants checked on every call (violations throw STORAGE_INVARIANT and write nothing): contiguous
//   indexes, non-decreasing terms, term and commit never decrease, one vote per term, commit <= lastIndex,
//   no entry term above the hard state term.
// Reads (entries, term, firstIndex, lastIndex, hardState) reflect what is durable: a call's effects become
// visible when its promise resolves. A failed write is fatal for this store (STORAGE_FAILED).
import type { ConfState, Entry, HardState, Snapshot } from '../consensus/raft/types.ts';
import { StorageError, corrupt, require_ } from './errors.ts';
import type { WriteOp } from './group-commit.ts';
import type { LogMeta } from './codec.ts';
import {
  decodeConf,
  decodeEntry,
  decodeHardState,
  decodeLogMeta,
  decodeSnapshot,
  encodeConf,
  encodeEntry,
  encodeHardState,
  encodeLogMeta,
  encodeSnapshot,
  entryTerm,
} from './codec.ts';
import { prefixEnd, raftKeys, readU64 } from './keys.ts';
import type { RaftKeys } from './keys.ts';
import type { NodeStore } from './node-store.ts';

export interface RaftLoadResult {
  hardState: HardState;
  snapshot: Snapshot | null;
  /** durable entries after the snapshot (after index 0 without one), contiguous */
  entries: Entry[];
  /** the stored conf (the latest snapshot's, or the last one persisted with `conf`); empty when never set */
  conf: ConfState;
}

export interface PersistRequest {
  hardState: HardState | null;
  entries: Entry[];
  snapshot: Snapshot | null;
  compactedTo: number | null;
  /** optional: the membership now in force, persisted in the same batch */
  conf?: ConfState | null;
}

/** Terms of the log as runs: run i covers [start_i, start_{i+1}) and the last one up to lastIndex. */
interface TermRun {
  start: number;
  term: number;
}

/** Metadata of the log after some sequence of calls; immutable, replaced on every call. */
interface LogState {
  hardState: HardState;
  meta: LogMeta;
  lastIndex: number;
  snapshot: { index: number; term: number } | null;
  runs: TermRun[];
}

const EMPTY_HARD_STATE: HardState = { term: 0, vote: null, commit: 0 };

function termAt(s: LogState, index: number): number | undefined {
  if (s.snapshot && index === s.snapshot.index) return s.snapshot.term;
  if (index < s.meta.compactedIndex || index > s.lastIndex) return undefined;
  let lo = 0;
  let hi = s.runs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (s.runs[mid]!.start <= index) lo = mid;
    else hi = mid - 1;
  }
  return s.runs[lo]!.term;
}

/** Runs covering only [from, ...) of `runs`, the first one starting exactly at `from`. */
function runsFrom(runs: TermRun[], from: number, termOfFrom: number): TermRun[] {
  return [{ start: from, term: termOfFrom }, ...runs.filter((r) => r.start > from)];
}

export class RaftLogStore {
  private readonly keys: RaftKeys;
  private loaded = false;
  private failure: Error | null = null;
  private lastWrite: Promise<void> = Promise.resolve();
  /** state including every call queued so far: the base for computing the next call's ops */
  private accepted: LogState;
  /** state as of the last call whose batch is synced */
  private durable: LogState;

  /** @internal use NodeStore.raftLog(swarm) */
  constructor(
    private readonly node: NodeStore,
    readonly swarm: string,
  ) {
    this.keys = raftKeys(swarm);
    const empty: LogState = {
      hardState: EMPTY_HARD_STATE,
      meta: { compactedIndex: 0, compactedTerm: 0 },
      lastIndex: 0,
      snapshot: null,
      runs: [{ start: 0, term: 0 }],
    };
    this.accepted = empty;
    this.durable = empty;
  }

  /** Reads everything durable and checks it; must be called (once) before persistReady. */
  async load(): Promise<RaftLoadResult> {
    const db = this.node.db;
    const [hsRaw, metaRaw, snapRaw, confRaw] = await db.getMany([
      this.keys.hardState,
      this.keys.logMeta,
      this.keys.snapshot,
      this.keys.conf,
    ]);
    const hardState = hsRaw ? decodeHardState(hsRaw) : { ...EMPTY_HARD_STATE };
    const meta = metaRaw ? decodeLogMeta(metaRaw) : { compactedIndex: 0, compactedTerm: 0 };
    const snapshot = snapRaw ? decodeSnapshot(snapRaw) : null;
    const conf = confRaw ? decodeConf(confRaw) : snapshot ? snapshot.conf : { voters: [], learners: [] };

    const where = `swarm ${this.swarm}`;
    corrupt(
      snapshot === null ? meta.compactedIndex === 0 : meta.compactedIndex <= snapshot.index,
      () => `${where}: log compacted to ${meta.compactedIndex} beyond the snapshot (${snapshot?.index ?? 'none'})`,
    );

    const runs: TermRun[] = [{ start: meta.compactedIndex, term: meta.compactedTerm }];
    const entries: Entry[] = [];
    const after = snapshot ? snapshot.index : 0;
    const prefixLen = this.keys.entryPrefix.byteLength;
    let last = meta.compactedIndex;
    const it = db.iterator({ gte: this.keys.entryPrefix, lt: prefixEnd(this.keys.entryPrefix) });
    try {
      for await (const [key, value] of it) {
        corrupt(key.byteLength === prefixLen + 8, () => `${where}: malformed entry key`);
        const index = readU64(key, prefixLen);
        corrupt(index === last + 1, () => `${where}: log not contiguous: entry ${index} follows ${last}`);
        const term = entryTerm(value);
        const prevTerm = runs[runs.length - 1]!.term;
        corrupt(term >= prevTerm, () => `${where}: term decreases at entry ${index} (${prevTerm} -> ${term})`);
        if (term !== prevTerm) runs.push({ start: index, term });
        if (index > after) entries.push(decodeEntry(index, value));
        last = index;
      }
    } finally {
      await it.close();
    }

    const state: LogState = {
      hardState,
      meta,
      lastIndex: last,
      snapshot: snapshot ? { index: snapshot.index, term: snapshot.term } : null,
      runs,
    };
    const logTermAtSnapshot = snapshot ? termAt({ ...state, snapshot: null }, snapshot.index) : undefined;
    corrupt(
      snapshot === null || logTermAtSnapshot === snapshot.term,
      () => `${where}: the log has term ${logTermAtSnapshot} at the snapshot index ${snapshot!.index}, the snapshot ${snapshot!.term}`,
    );
    corrupt(!snapshot || last >= snapshot.index, () => `${where}: log ends at ${last} before the snapshot ${snapshot!.index}`);
    corrupt(hardState.commit <= last, () => `${where}: commit ${hardState.commit} beyond the last entry ${last}`);
    corrupt(runs[runs.length - 1]!.term <= hardState.term, () => `${where}: an entry has a term above the hard state term`);

    this.accepted = state;
    this.durable = state;
    this.loaded = true;
    return { hardState: { ...hardState }, snapshot, entries, conf };
  }

  /**
   * Makes one Ready durable: snapshot, then entries (truncating a conflicting suffix), hard state, conf and
   * compaction — all in one atomic synced batch, group-committed with concurrent writers. Resolves once synced.
   */
  persistReady(ready: PersistRequest): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (!this.loaded) return Promise.reject(new StorageError('STORAGE_INVARIANT', `swarm ${this.swarm}: load() before persistReady()`));
    let next: LogState;
    let ops: WriteOp[];
    try {
      [next, ops] = this.plan(ready);
    } catch (err) {
      return Promise.reject(err);
    }
    // nothing to write: still resolve only after this store's earlier calls are durable
    if (ops.length === 0) return this.lastWrite;
    // A hard state whose only change is the commit index need not be synced (etcd's MustSync): the commit index
    // may be lost in a crash — a restarted node learns it again from the leader — while term and vote may not.
    // Written in order, it is durable with the next synced write.
    const before = this.accepted.hardState;
    const commitOnly =
      ready.entries.length === 0 && !ready.snapshot && (ready.compactedTo ?? null) === null && ready.hardState !== null &&
      ready.hardState.term === before.term && ready.hardState.vote === before.vote;
    this.accepted = next;
    this.lastWrite = (commitOnly ? this.node.writeLazy(ops) : this.node.writeSynced(ops)).then(
      () => {
        // batches resolve in queue order, so the last resolved call is the newest durable state
        this.durable = next;
      },
      (err: Error) => {
        this.failure ??= err;
        throw err;
      },
    );
    return this.lastWrite;
  }

  /** Entries in [lo, hi), at most maxBytes of data (but at least one entry when lo < hi). */
  async entries(lo: number, hi: number, maxBytes = Infinity): Promise<Entry[]> {
    const s = this.durable;
    const first = s.meta.compactedIndex + 1;
    if (lo < first) throw new StorageError('STORAGE_COMPACTED', `swarm ${this.swarm}: entries before ${first} are compacted (asked from ${lo})`);
    if (hi > s.lastIndex + 1) throw new StorageError('STORAGE_UNAVAILABLE', `swarm ${this.swarm}: asked up to ${hi - 1}, last index is ${s.lastIndex}`);
    require_(lo <= hi, () => `entries(${lo}, ${hi}): empty range reversed`);
    if (lo === hi) return [];
    const out: Entry[] = [];
    let size = 0;
    const prefixLen = this.keys.entryPrefix.byteLength;
    const it = this.node.db.iterator({ gte: this.keys.entry(lo), lt: this.keys.entry(hi) });
    try {
      for await (const [key, value] of it) {
        const entry = decodeEntry(readU64(key, prefixLen), value);
        if (entry.index !== lo + out.length) break;
        size += entry.data.byteLength;
        if (out.length > 0 && size > maxBytes) break;
        out.push(entry);
        if (size >= maxBytes) break;
      }
    } finally {
      await it.close();
    }
    if (out.length === 0 || (out[0]!.index !== lo)) {
      // a compaction or snapshot install became durable between the bounds check and the read
      throw new StorageError('STORAGE_COMPACTED', `swarm ${this.swarm}: entry ${lo} was compacted during the read`);
    }
    return out;
  }

  /** Term of the entry at index (also the compacted boundary and the snapshot index); undefined outside. */
  term(index: number): number | undefined {
    return termAt(this.durable, index);
  }

  firstIndex(): number {
    return this.durable.meta.compactedIndex + 1;
  }

  lastIndex(): number {
    return this.durable.lastIndex;
  }

  hardState(): HardState {
    return { ...this.durable.hardState };
  }

  /** The stored snapshot (read from disk), or null. */
  async snapshot(): Promise<Snapshot | null> {
    const [raw] = await this.node.db.getMany([this.keys.snapshot]);
    return raw ? decodeSnapshot(raw) : null;
  }

  /** Computes the next state and the ops of one call; throws (writing nothing) on an invariant violation. */
  private plan(ready: PersistRequest): [LogState, WriteOp[]] {
    const prev = this.accepted;
    const where = `swarm ${this.swarm}`;
    const ops: WriteOp[] = [];
    let s: LogState = prev;
    const hsTerm = ready.hardState ? ready.hardState.term : prev.hardState.term;
    const conf = ready.conf ?? null;

    const snap = ready.snapshot;
    if (snap) {
      const prevSnap = prev.snapshot?.index ?? 0;
      require_(snap.index >= prevSnap, () => `${where}: snapshot at ${snap.index} is older than the stored one at ${prevSnap}`);
      require_(snap.index >= prev.meta.compactedIndex, () => `${where}: snapshot at ${snap.index} is below the compacted index ${prev.meta.compactedIndex}`);
      require_(snap.term <= hsTerm, () => `${where}: snapshot term ${snap.term} above the hard state term ${hsTerm}`);
      const keepLog = termAt({ ...prev, snapshot: null }, snap.index) === snap.term;
      if (keepLog) {
        s = { ...s, snapshot: { index: snap.index, term: snap.term } };
      } else {
        for (let i = prev.meta.compactedIndex + 1; i <= prev.lastIndex; i++) ops.push({ key: this.keys.entry(i), value: null });
        const meta = { compactedIndex: snap.index, compactedTerm: snap.term };
        ops.push({ key: this.keys.logMeta, value: encodeLogMeta(meta) });
        s = { ...s, meta, lastIndex: snap.index, snapshot: { index: snap.index, term: snap.term }, runs: [{ start: snap.index, term: snap.term }] };
      }
      ops.push({ key: this.keys.snapshot, value: encodeSnapshot(snap) });
      if (!conf) ops.push({ key: this.keys.conf, value: encodeConf(snap.conf) });
    }

    const entries = ready.entries;
    if (entries.length > 0) {
      const k = entries[0]!.index;
      require_(k > s.meta.compactedIndex, () => `${where}: append at ${k} but entries up to ${s.meta.compactedIndex} are compacted`);
      require_(k <= s.lastIndex + 1, () => `${where}: append at ${k} leaves a gap after the last index ${s.lastIndex}`);
      const before = termAt(s, k - 1)!;
      require_(entries[0]!.term >= before, () => `${where}: entry ${k} has term ${entries[0]!.term} below the term ${before} of entry ${k - 1}`);
      for (let j = 0; j < entries.length; j++) {
        const e = entries[j]!;
        require_(e.index === k + j, () => `${where}: entries not contiguous at position ${j} (index ${e.index}, expected ${k + j})`);
        require_(j === 0 || e.term >= entries[j - 1]!.term, () => `${where}: entry terms decrease at ${e.index}`);
        if (e.index <= Math.max(prev.hardState.commit, s.snapshot?.index ?? 0)) {
          const had = termAt(s, e.index);
          require_(had === e.term, () => `${where}: entry ${e.index} is committed with term ${had}; refusing to replace it with term ${e.term}`);
        }
      }
      const newLast = k + entries.length - 1;
      for (let i = newLast + 1; i <= s.lastIndex; i++) ops.push({ key: this.keys.entry(i), value: null });
      for (const e of entries) ops.push({ key: this.keys.entry(e.index), value: encodeEntry(e) });
      const runs = s.runs.filter((r) => r.start < k);
      for (const e of entries) if (runs[runs.length - 1]!.term !== e.term) runs.push({ start: e.index, term: e.term });
      s = { ...s, lastIndex: newLast, runs };
      require_(entries[entries.length - 1]!.term <= hsTerm, () => `${where}: entry term ${entries[entries.length - 1]!.term} above the hard state term ${hsTerm}`);
    }

    const hs = ready.hardState;
    if (hs) {
      const old = prev.hardState;
      require_(hs.term >= old.term, () => `${where}: term decreases ${old.term} -> ${hs.term}`);
      require_(hs.commit >= old.commit, () => `${where}: commit decreases ${old.commit} -> ${hs.commit}`);
      require_(
        hs.term > old.term || old.vote === null || hs.vote === old.vote,
        () => `${where}: vote changed within term ${hs.term} (${old.vote} -> ${hs.vote})`,
      );
      s = { ...s, hardState: { term: hs.term, vote: hs.vote, commit: hs.commit } };
      ops.push({ key: this.keys.hardState, value: encodeHardState(s.hardState) });
    }
    require_(s.hardState.commit <= s.lastIndex, () => `${where}: commit ${s.hardState.commit} beyond the last index ${s.lastIndex}`);

    if (conf) ops.push({ key: this.keys.conf, value: encodeConf(conf) });

    const to = ready.compactedTo;
    if (to !== null && to > s.meta.compactedIndex) {
      const snapIndex = s.snapshot?.index ?? 0;
      require_(to <= snapIndex, () => `${where}: compaction to ${to} beyond the stored snapshot (${snapIndex}); persist the snapshot first or in the same call`);
      require_(to <= s.lastIndex, () => `${where}: compaction to ${to} beyond the last index ${s.lastIndex}`);
      for (let i = s.meta.compactedIndex + 1; i <= to; i++) ops.push({ key: this.keys.entry(i), value: null });
      const meta = { compactedIndex: to, compactedTerm: termAt(s, to)! };
      ops.push({ key: this.keys.logMeta, value: encodeLogMeta(meta) });
      s = { ...s, meta, runs: runsFrom(s.runs, to, meta.compactedTerm) };
    }

    return [s, ops];
  }
}
