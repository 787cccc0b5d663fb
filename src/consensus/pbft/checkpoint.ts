// Checkpoints: collecting signed checkpoint votes until a quorum matches (stable), bounding what a
// sender can make us hold, and validating a checkpoint proof carried by someone else.
import type { NodeId, PbftCheckpointProof, SignedPbftMessage } from './types.ts';
import { bytesEqual } from './digest.ts';

export type CheckpointVote = SignedPbftMessage & { type: 'checkpoint'; seq: number; digest: Uint8Array };

export type RecordResult = 'accepted' | 'duplicate' | 'conflicting';

export class CheckpointVotes {
  private readonly bySeq = new Map<number, Map<NodeId, CheckpointVote>>();

  constructor(
    private readonly replicas: readonly NodeId[],
    private readonly quorum: number,
  ) {}

  /**
   * Records one vote. Votes above `high` are kept only as each sender's latest (a replica far ahead
   * tells us we are behind, but cannot make us store unbounded votes).
   */
  record(vote: CheckpointVote, high: number): RecordResult {
    let votes = this.bySeq.get(vote.seq);
    const prev = votes?.get(vote.from);
    if (prev) {
      if (!bytesEqual(prev.digest, vote.digest)) return 'conflicting';
      if (prev.sig.length === 0 && vote.sig.length > 0) votes!.set(vote.from, vote);
      return 'duplicate';
    }
    if (vote.seq > high) {
      for (const [seq, vs] of this.bySeq) if (seq > high && seq !== vote.seq) vs.delete(vote.from);
    }
    if (!votes) {
      votes = new Map();
      this.bySeq.set(vote.seq, votes);
    }
    votes.set(vote.from, vote);
    return 'accepted';
  }

  /** The proof for (seq, digest of `sample`) if a quorum of signed votes matches it. */
  proofFor(seq: number, digest: Uint8Array): PbftCheckpointProof | null {
    const votes = this.bySeq.get(seq);
    if (!votes) return null;
    const proof: SignedPbftMessage[] = [];
    for (const r of this.replicas) {
      const v = votes.get(r);
      if (v && v.sig.length > 0 && bytesEqual(v.digest, digest)) proof.push(v);
    }
    return proof.length >= this.quorum ? { seq, digest, proof: proof.slice(0, this.quorum) } : null;
  }

  /** The highest checkpoint above `h` that a quorum of recorded votes proves (after a restart). */
  highestProof(h: number): PbftCheckpointProof | null {
    let best: PbftCheckpointProof | null = null;
    for (const [seq, votes] of this.bySeq) {
      if (seq <= h || (best && seq <= best.seq)) continue;
      for (const v of votes.values()) {
        const p = this.proofFor(seq, v.digest);
        if (p) {
          best = p;
          break;
        }
      }
    }
    return best;
  }

  has(seq: number, from: NodeId): boolean {
    return this.bySeq.get(seq)?.has(from) ?? false;
  }

  gc(seq: number): void {
    for (const s of [...this.bySeq.keys()]) if (s <= seq) this.bySeq.delete(s);
  }
}

export interface ProofContext {
  replicas: readonly NodeId[];
  quorum: number;
  checkpointInterval: number;
  verify: (m: SignedPbftMessage) => boolean;
}

/** null if `p` proves a stable checkpoint, else why not. A null proof stands for genesis (seq 0). */
export function checkProof(p: PbftCheckpointProof | null, ctx: ProofContext): string | null {
  if (p === null) return null;
  if (p.seq <= 0 || p.seq % ctx.checkpointInterval !== 0) return `checkpoint seq ${p.seq} is not a positive multiple of K`;
  const seen = new Set<NodeId>();
  for (const m of p.proof) {
    if (m.type !== 'checkpoint') return `proof holds a ${m.type}`;
    if (m.seq !== p.seq || !bytesEqual(m.digest, p.digest)) return 'proof votes do not match the checkpoint';
    if (!ctx.replicas.includes(m.from)) return `proof vote from non-replica ${m.from}`;
    if (seen.has(m.from)) return `two proof votes from ${m.from}`;
    if (!ctx.verify(m)) return `bad signature on proof vote from ${m.from}`;
    seen.add(m.from);
  }
  if (seen.size < ctx.quorum) return `proof has ${seen.size} votes, quorum is ${ctx.quorum}`;
  return null;
}
