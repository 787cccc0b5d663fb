// Quorum arithmetic for PBFT: fault bound, quorum size, primary of a view, and vote counting.
import type { NodeId, SignedPbftMessage } from './types.ts';
import { bytesEqual } from './digest.ts';

/** f = floor((n-1)/3): the most Byzantine replicas n replicas tolerate. */
export function pbftFaults(n: number): number {
  return Math.floor((n - 1) / 3);
}

/** ceil((n+f+1)/2): any two quorums share at least f+1 replicas (2f+1 when n = 3f+1). */
export function pbftQuorum(n: number): number {
  return Math.ceil((n + pbftFaults(n) + 1) / 2);
}

/**
 * Read-index answers (PbftCore.readIndex) a linearizable read needs, its own included: n - quorum + f + 1. A batch
 * any correct replica executed has commit votes from at least quorum - f correct replicas, each of which answers at
 * least its sequence number; any set of this many answers includes one of them. 2f+1 when n = 3f+1.
 */
export function pbftReadQuorum(n: number): number {
  return n - pbftQuorum(n) + pbftFaults(n) + 1;
}

/**
 * The sequence number a read barrier must execute up to, from the read-index answers it has (its own included), or
 * null while it has fewer than pbftReadQuorum(n). The lowest maximum over any pbftReadQuorum(n) of them: safe like
 * every such maximum, and the answers beyond the quorum drop the highest ones — up to f Byzantine replicas answering
 * too high cannot make the read wait for what never comes while enough correct replicas answer.
 */
export function pbftReadTarget(answers: readonly number[], n: number): number | null {
  const needed = pbftReadQuorum(n);
  if (answers.length < needed) return null;
  return [...answers].sort((a, b) => a - b)[needed - 1]!;
}

export function primaryOf(replicas: readonly NodeId[], view: number): NodeId {
  return replicas[view % replicas.length]!;
}

/**
 * The votes in `votes` (one per sender) that match `digest`, ordered by replica position so that a
 * certificate built from them is deterministic.
 */
export function matchingVotes(
  votes: ReadonlyMap<NodeId, SignedPbftMessage & { digest: Uint8Array }>,
  digest: Uint8Array,
  replicas: readonly NodeId[],
): SignedPbftMessage[] {
  const out: SignedPbftMessage[] = [];
  for (const r of replicas) {
    const v = votes.get(r);
    if (v && v.sig.length > 0 && bytesEqual(v.digest, digest)) out.push(v);
  }
  return out;
}
