// The message log: per (seq, view) slot holding the accepted pre-prepare, prepares and commits,
// the prepared / committed-local predicates, certificates, and garbage collection below h.
import type { NodeId, PbftPreparedCert, PbftRequest, SignedPbftMessage } from './types.ts';
import { matchingVotes } from './quorum.ts';

export type Vote = SignedPbftMessage & { type: 'prepare' | 'commit'; view: number; seq: number; digest: Uint8Array };

export class Slot {
  /** The batch this replica accepted for (view, seq), from the primary's pre-prepare or a new-view's O set. */
  batch: { digest: Uint8Array; requests: PbftRequest[] } | null = null;
  readonly prepares = new Map<NodeId, Vote>();
  readonly commits = new Map<NodeId, Vote>();
  /** Digest this replica has (durably) decided to prepare / commit: it never votes for another one. */
  myPrepare: Uint8Array | null = null;
  myCommit: Uint8Array | null = null;
  committed = false;

  constructor(
    readonly view: number,
    readonly seq: number,
  ) {}

  preparedVotes(replicas: readonly NodeId[]): SignedPbftMessage[] {
    return this.batch ? matchingVotes(this.prepares, this.batch.digest, replicas) : [];
  }

  commitVotes(replicas: readonly NodeId[]): SignedPbftMessage[] {
    return this.batch ? matchingVotes(this.commits, this.batch.digest, replicas) : [];
  }

  isPrepared(replicas: readonly NodeId[], quorum: number): boolean {
    return this.preparedVotes(replicas).length >= quorum;
  }

  /**
   * A quorum of signed commits for the accepted batch: at least f+1 correct replicas prepared it, so it
   * is committed in any view (this replica's own prepared state is not needed to execute it).
   */
  isCommittedLocal(replicas: readonly NodeId[], quorum: number): boolean {
    return this.commitVotes(replicas).length >= quorum;
  }
}

export class MessageLog {
  private readonly bySeq = new Map<number, Map<number, Slot>>();

  get(view: number, seq: number): Slot | undefined {
    return this.bySeq.get(seq)?.get(view);
  }

  slot(view: number, seq: number): Slot {
    let views = this.bySeq.get(seq);
    if (!views) {
      views = new Map();
      this.bySeq.set(seq, views);
    }
    let s = views.get(view);
    if (!s) {
      s = new Slot(view, seq);
      views.set(view, s);
    }
    return s;
  }

  /** The committed slot for seq (highest view if several), if any. */
  committedAt(seq: number): Slot | undefined {
    let best: Slot | undefined;
    for (const s of this.bySeq.get(seq)?.values() ?? []) if (s.committed && (!best || s.view > best.view)) best = s;
    return best;
  }

  /** Slots of one view, in seq order. */
  slotsOfView(view: number): Slot[] {
    const out: Slot[] = [];
    for (const views of this.bySeq.values()) {
      const s = views.get(view);
      if (s) out.push(s);
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  maxSeqWithBatch(view: number): number {
    let max = 0;
    for (const [seq, views] of this.bySeq) if (seq > max && views.get(view)?.batch) max = seq;
    return max;
  }

  /** The highest seq of any view for which this replica decided to commit (sent its commit vote); 0 if none. */
  maxOwnCommitSeq(): number {
    let max = 0;
    for (const [seq, views] of this.bySeq) {
      if (seq <= max) continue;
      for (const s of views.values()) {
        if (s.myCommit) {
          max = seq;
          break;
        }
      }
    }
    return max;
  }

  /** P set: per seq above h, the prepared certificate of the highest view below `beforeView`. */
  preparedCerts(h: number, beforeView: number, replicas: readonly NodeId[], quorum: number): PbftPreparedCert[] {
    const out: PbftPreparedCert[] = [];
    for (const [seq, views] of this.bySeq) {
      if (seq <= h) continue;
      let best: Slot | undefined;
      for (const s of views.values()) {
        if (s.view < beforeView && (!best || s.view > best.view) && s.isPrepared(replicas, quorum)) best = s;
      }
      if (best && best.batch) {
        out.push({
          view: best.view,
          seq,
          digest: best.batch.digest,
          requests: best.batch.requests,
          prepares: best.preparedVotes(replicas).slice(0, quorum),
        });
      }
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  /** Forget every slot at or below seq (covered by a stable checkpoint). */
  gc(seq: number): void {
    for (const s of [...this.bySeq.keys()]) if (s <= seq) this.bySeq.delete(s);
  }

  get size(): number {
    return this.bySeq.size;
  }
}
