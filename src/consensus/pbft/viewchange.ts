// View change: validating a view-change message (its checkpoint proof and prepared certificates),
// computing a new-view's O set from a set V of view-changes, and checking a received new-view.
import type {
  NodeId,
  PbftCheckpointProof,
  PbftNewViewEntry,
  PbftNewViewMsg,
  PbftPreparedCert,
  PbftViewChangeMsg,
  SignedPbftMessage,
} from './types.ts';
import { checkProof, type ProofContext } from './checkpoint.ts';
import { batchDigest, bytesEqual } from './digest.ts';

export interface ViewChangeContext extends ProofContext {
  watermarkWindow: number;
  maxBatch: number;
  hash: (b: Uint8Array) => Uint8Array;
  primaryOf: (view: number) => NodeId;
}

export type SignedViewChange = PbftViewChangeMsg & { from: NodeId; sig: Uint8Array };

function checkBatch(requests: PbftPreparedCert['requests'], digest: Uint8Array, ctx: ViewChangeContext): string | null {
  if (requests.length > ctx.maxBatch) return `batch of ${requests.length} exceeds maxBatch`;
  const ids = new Set<string>();
  for (const r of requests) {
    if (ids.has(r.id)) return `request ${r.id} twice in one batch`;
    ids.add(r.id);
    // No judgement of the requests themselves: 2f+1 signed prepares (checked by the caller) mean f+1 correct
    // replicas judged them valid, and a replica whose file lacks a key they used must still follow the new view.
  }
  if (!bytesEqual(batchDigest(ctx.hash, requests), digest)) return 'batch does not match its digest';
  return null;
}

/** null if a prepared certificate is valid for a view-change to `newView` above checkpoint `h`. */
export function checkPreparedCert(c: PbftPreparedCert, newView: number, h: number, ctx: ViewChangeContext): string | null {
  if (c.view >= newView) return `certificate view ${c.view} is not below ${newView}`;
  if (c.seq <= h || c.seq > h + ctx.watermarkWindow) return `certificate seq ${c.seq} outside (${h}, ${h + ctx.watermarkWindow}]`;
  const bad = checkBatch(c.requests, c.digest, ctx);
  if (bad) return `certificate at ${c.seq}: ${bad}`;
  const seen = new Set<NodeId>();
  for (const p of c.prepares) {
    if (p.type !== 'prepare') return `certificate holds a ${p.type}`;
    if (p.view !== c.view || p.seq !== c.seq || !bytesEqual(p.digest, c.digest)) return 'certificate prepares do not match it';
    if (!ctx.replicas.includes(p.from)) return `prepare from non-replica ${p.from}`;
    if (seen.has(p.from)) return `two prepares from ${p.from}`;
    if (!ctx.verify(p)) return `bad signature on prepare from ${p.from}`;
    seen.add(p.from);
  }
  if (seen.size < ctx.quorum) return `certificate at ${c.seq} has ${seen.size} prepares, quorum is ${ctx.quorum}`;
  return null;
}

/** null if a view-change message is well formed and every certificate in it holds. */
export function checkViewChange(vc: PbftViewChangeMsg, ctx: ViewChangeContext): string | null {
  const bad = checkProof(vc.checkpoint, ctx);
  if (bad) return bad;
  const h = vc.checkpoint?.seq ?? 0;
  const seqs = new Set<number>();
  for (const c of vc.prepared) {
    if (seqs.has(c.seq)) return `two certificates for seq ${c.seq}`;
    seqs.add(c.seq);
    const why = checkPreparedCert(c, vc.view, h, ctx);
    if (why) return why;
  }
  return null;
}

export interface NewViewPlan {
  /** The highest stable checkpoint in V (min-s); null = genesis. */
  checkpoint: PbftCheckpointProof | null;
  /** O: one entry per seq in (min-s, max-s]. */
  entries: PbftNewViewEntry[];
}

/**
 * Computes O from V, deterministically (Castro & Liskov, section 4.4): min-s is the highest checkpoint
 * in V; for each seq above it up to the highest prepared seq, the batch of the highest-view certificate
 * (first in V order on a tie), or the null request when no view-change holds a certificate.
 */
export function planNewView(vcs: readonly PbftViewChangeMsg[], ctx: ViewChangeContext): NewViewPlan {
  let checkpoint: PbftCheckpointProof | null = null;
  for (const vc of vcs) if (vc.checkpoint && vc.checkpoint.seq > (checkpoint?.seq ?? 0)) checkpoint = vc.checkpoint;
  const minS = checkpoint?.seq ?? 0;
  const best = new Map<number, PbftPreparedCert>();
  for (const vc of vcs) {
    for (const c of vc.prepared) {
      if (c.seq <= minS) continue;
      const cur = best.get(c.seq);
      if (!cur || c.view > cur.view) best.set(c.seq, c);
    }
  }
  let maxS = minS;
  for (const seq of best.keys()) if (seq > maxS) maxS = seq;
  const entries: PbftNewViewEntry[] = [];
  for (let seq = minS + 1; seq <= maxS; seq++) {
    const c = best.get(seq);
    entries.push(c ? { seq, digest: c.digest, requests: c.requests } : { seq, digest: batchDigest(ctx.hash, []), requests: [] });
  }
  return { checkpoint, entries };
}

/** Picks a quorum of view-changes for `view` in replica order (what the new primary puts in V). */
export function chooseViewChanges(stored: ReadonlyMap<NodeId, SignedViewChange>, ctx: ViewChangeContext): SignedViewChange[] | null {
  const out: SignedViewChange[] = [];
  for (const r of ctx.replicas) {
    const vc = stored.get(r);
    if (vc && vc.sig.length > 0) out.push(vc);
    if (out.length === ctx.quorum) return out;
  }
  return null;
}

/**
 * Validates a new-view as every replica must: sent by the primary of its view, V a quorum of valid
 * view-changes for that view from distinct replicas, and O exactly what planNewView recomputes.
 */
export function checkNewView(nv: PbftNewViewMsg & { from: NodeId }, ctx: ViewChangeContext): { plan: NewViewPlan } | { reason: string } {
  if (nv.from !== ctx.primaryOf(nv.view)) return { reason: `new-view for ${nv.view} from ${nv.from}, not its primary` };
  const seen = new Set<NodeId>();
  const vcs: PbftViewChangeMsg[] = [];
  for (const m of nv.viewChanges as SignedPbftMessage[]) {
    if (m.type !== 'view-change' || m.view !== nv.view) return { reason: 'V holds a message that is not a view-change for this view' };
    if (!ctx.replicas.includes(m.from)) return { reason: `V holds a view-change from non-replica ${m.from}` };
    if (seen.has(m.from)) return { reason: `V holds two view-changes from ${m.from}` };
    if (!ctx.verify(m)) return { reason: `bad signature on the view-change from ${m.from}` };
    const bad = checkViewChange(m, ctx);
    if (bad) return { reason: `view-change from ${m.from}: ${bad}` };
    seen.add(m.from);
    vcs.push(m);
  }
  if (seen.size < ctx.quorum) return { reason: `V has ${seen.size} view-changes, quorum is ${ctx.quorum}` };
  const plan = planNewView(vcs, ctx);
  if (plan.entries.length !== nv.prePrepares.length) return { reason: `O has ${nv.prePrepares.length} entries, V implies ${plan.entries.length}` };
  for (let i = 0; i < plan.entries.length; i++) {
    const want = plan.entries[i]!;
    const got = nv.prePrepares[i]!;
    if (got.seq !== want.seq || !bytesEqual(got.digest, want.digest)) return { reason: `O entry ${i} (seq ${got.seq}) differs from V's` };
    if (!bytesEqual(batchDigest(ctx.hash, got.requests), got.digest)) return { reason: `O entry at seq ${got.seq} does not match its digest` };
  }
  // O's batches are the ones received (digest-equal to the certified ones).
  return { plan: { checkpoint: plan.checkpoint, entries: nv.prePrepares } };
}
