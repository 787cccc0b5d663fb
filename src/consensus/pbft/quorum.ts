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
