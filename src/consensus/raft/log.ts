// The node's in-memory log: the snapshot it starts from, the entries after it, and the
// commit / applied / stable marks that tell the driver what to persist and apply next.
import type { Entry, Snapshot } from './types.ts';

export class RaftLog {
  /** Latest snapshot: the base of `entries` (null only before the first compaction / install). */
  snapshot: Snapshot | null;
  /** Snapshot received from the leader and not yet handed to the driver in a Ready. */
  pendingSnapshot: Snapshot | null = null;
  /** Index and term of the entry just before entries[0]. */
  private offset: number;
  private offsetTerm: number;
  private entries: Entry[];
  committed: number;
  applied: number;
  /** Last index known durable; entries after it go into the next Ready. */
  stabled: number;

  constructor(snapshot: Snapshot | null, entries: Entry[], committed: number, applied: number) {
    this.snapshot = snapshot;
    this.offset = snapshot?.index ?? 0;
    this.offsetTerm = snapshot?.term ?? 0;
    entries.forEach((e, i) => {
      if (e.index !== this.offset + 1 + i) {
        throw new Error(`raft log: initial entries not contiguous after ${this.offset}: found index ${e.index} at position ${i}`);
      }
    });
    this.entries = entries.slice();
    this.committed = Math.max(committed, this.offset);
    this.applied = applied;
    this.stabled = this.lastIndex();
    if (this.committed > this.lastIndex()) {
      throw new Error(`raft log: commit ${committed} is beyond the last index ${this.lastIndex()}`);
    }
    if (applied < this.offset || applied > this.committed) {
      throw new Error(`raft log: applied ${applied} outside [snapshot ${this.offset}, commit ${this.committed}]`);
    }
  }

  firstIndex(): number {
    return this.offset + 1;
  }

  snapshotIndex(): number {
    return this.offset;
  }

  lastIndex(): number {
    return this.offset + this.entries.length;
  }

  lastTerm(): number {
    return this.term(this.lastIndex()) ?? 0;
  }

  /** Term at index, or undefined when compacted away or beyond the end. */
  term(index: number): number | undefined {
    if (index === this.offset) return this.offsetTerm;
    if (index < this.offset || index > this.lastIndex()) return undefined;
    return this.entries[index - this.offset - 1]!.term;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** §5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  entryAt(index: number): Entry | undefined {
    if (index <= this.offset || index > this.lastIndex()) return undefined;
    return this.entries[index - this.offset - 1];
  }

  /** Entries in [lo, hi). Throws when lo is compacted: callers check first. */
  slice(lo: number, hi: number): Entry[] {
    if (lo <= this.offset) throw new Error(`raft log: slice from ${lo} but entries up to ${this.offset} are compacted`);
    return this.entries.slice(lo - this.offset - 1, Math.max(0, hi - this.offset - 1));
  }

  /** Entries from lo on, at most maxBytes of payload (at least one entry); null when lo is compacted. */
  entriesFrom(lo: number, maxBytes: number): Entry[] | null {
    if (lo <= this.offset) return null;
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i <= this.lastIndex(); i++) {
      const e = this.entries[i - this.offset - 1]!;
      bytes += e.data.length;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /** Appends after truncating any conflicting suffix. Never truncates a committed entry. */
  append(ents: Entry[]): void {
    if (ents.length === 0) return;
    const first = ents[0]!.index;
    if (first - 1 < this.committed) {
      throw new Error(`raft log invariant: append at ${first} would truncate committed entries (commit ${this.committed})`);
    }
    if (first > this.lastIndex() + 1) {
      throw new Error(`raft log invariant: append at ${first} leaves a gap after ${this.lastIndex()}`);
    }
    this.entries = this.entries.slice(0, first - 1 - this.offset).concat(ents);
    this.stabled = Math.min(this.stabled, first - 1);
  }

  /** First index in ents whose term disagrees with ours (or which we do not have); 0 if all match. */
  findConflict(ents: Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * Fast backtracking: the largest index <= index whose term is <= term, with its term.
   * Every entry above it has a term greater than `term`, so it cannot match an entry of term `term`.
   * Term 0 means unknown (compacted): the caller then probes at the returned index.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    for (;;) {
      const t = this.term(i);
      if (t === undefined) return { index: i, term: 0 };
      if (t <= term) return { index: i, term: t };
      i--;
    }
  }

  /** AppendEntries receiver (§5.3). Returns the last new index, or null when (index, logTerm) does not match. */
  maybeAppend(index: number, logTerm: number, commit: number, ents: Entry[]): number | null {
    if (!this.matchTerm(index, logTerm)) return null;
    const lastNew = index + ents.length;
    const conflict = this.findConflict(ents);
    if (conflict !== 0) {
      if (conflict <= this.committed) {
        throw new Error(`raft log invariant: entry ${conflict} conflicts with a committed entry (commit ${this.committed})`);
      }
      this.append(ents.slice(conflict - index - 1));
    }
    // Only what we verified to match the leader may be committed: never beyond lastNew.
    this.commitTo(Math.min(commit, lastNew));
    return lastNew;
  }

  commitTo(index: number): void {
    if (index <= this.committed) return; // commit never decreases
    if (index > this.lastIndex()) {
      throw new Error(`raft log invariant: commit ${index} beyond last index ${this.lastIndex()}`);
    }
    this.committed = index;
  }

  appliedTo(index: number): void {
    if (index < this.applied || index > this.committed) {
      throw new Error(`raft log invariant: applied ${index} outside [${this.applied}, commit ${this.committed}]`);
    }
    this.applied = index;
  }

  /** Entries not yet handed to the driver for persistence. */
  unstableEntries(): Entry[] {
    return this.stabled >= this.lastIndex() ? [] : this.slice(Math.max(this.stabled, this.offset) + 1, this.lastIndex() + 1);
  }

  /** The driver made entries up to (index, term) durable; ignored when the log changed under it since. */
  stableTo(index: number, term: number): void {
    if (this.matchTerm(index, term) && index > this.stabled) this.stabled = index;
  }

  /** Committed entries not yet applied (those before a pending snapshot are covered by it). */
  nextCommitted(): Entry[] {
    const lo = Math.max(this.applied, this.offset) + 1;
    return lo > this.committed ? [] : this.slice(lo, this.committed + 1);
  }

  hasNextCommitted(): boolean {
    return Math.max(this.applied, this.offset) < this.committed;
  }

  /** Replaces the whole log with a snapshot received from the leader. */
  restore(snap: Snapshot): void {
    if (snap.index <= this.committed) throw new Error(`raft log invariant: restore of snapshot ${snap.index} <= commit ${this.committed}`);
    this.snapshot = snap;
    this.pendingSnapshot = snap;
    this.offset = snap.index;
    this.offsetTerm = snap.term;
    this.entries = [];
    this.committed = snap.index;
    this.stabled = snap.index;
  }

  /** The app snapshotted its state at `snap.index`: drop the prefix it covers. */
  compact(snap: Snapshot): void {
    if (snap.index <= this.offset) return;
    if (snap.index > this.applied) throw new Error(`raft log: compact to ${snap.index} beyond applied ${this.applied}`);
    this.entries = this.entries.slice(snap.index - this.offset);
    this.offset = snap.index;
    this.offsetTerm = snap.term;
    this.snapshot = snap;
  }
}
