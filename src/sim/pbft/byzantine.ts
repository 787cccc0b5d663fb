// Byzantine replicas for the PBFT simulator: they run a real core but rewrite what it sends
// (equivocation, conflicting votes, silence, bad new-views, garbage) and add traffic of their own
// (needless view changes, replays of recorded messages, forged or corrupted signatures).
import type { NodeId, PbftMessage, PbftRequest, SignedPbftMessage, PbftStatus } from '../../consensus/pbft/index.ts';
import { batchDigest } from '../../consensus/pbft/index.ts';
import type { Prng } from '../prng.ts';

export type Behaviour =
  | 'equivocate'
  | 'conflicting-votes'
  | 'silent-primary'
  | 'needless-view-change'
  | 'replay'
  | 'forge'
  | 'bad-new-view'
  | 'garbage';

export const BEHAVIOURS: Behaviour[] = [
  'equivocate',
  'conflicting-votes',
  'silent-primary',
  'needless-view-change',
  'replay',
  'forge',
  'bad-new-view',
  'garbage',
];

/** What the colluding Byzantine replicas share: which correct replicas see the "other" batch. */
export interface Collusion {
  byzantine: Set<NodeId>;
  equivocators: Set<NodeId>;
  /** Correct replicas that are shown the alternative batch when a Byzantine primary equivocates. */
  groupB: Set<NodeId>;
  replicas: NodeId[];
  hash: (b: Uint8Array) => Uint8Array;
}

export interface Outgoing {
  to: NodeId;
  msg: SignedPbftMessage;
}

export interface Signer {
  /** Signs `m` as `as` with the key of `signer` (a forgery when they differ: verification fails). */
  sign(m: PbftMessage, as: NodeId, signer: NodeId): SignedPbftMessage;
}

const VALID = new Uint8Array([1, 2, 3]);

/** The batch a colluding primary shows group B at (view, seq): same for every Byzantine replica. */
export function alternativeBatch(view: number, seq: number): PbftRequest[] {
  return [{ id: `byz-${view}-${seq}`, payload: VALID }];
}

export class ByzantineReplica {
  private readonly recorded: SignedPbftMessage[] = [];

  constructor(
    readonly id: NodeId,
    readonly behaviours: ReadonlySet<Behaviour>,
    private readonly rng: Prng,
    private readonly collusion: Collusion,
    private readonly signer: Signer,
  ) {}

  has(b: Behaviour): boolean {
    return this.behaviours.has(b);
  }

  /** Remembers messages it receives, to replay them later. */
  observe(m: SignedPbftMessage): void {
    if (!this.has('replay')) return;
    if (this.recorded.length < 256) this.recorded.push(m);
    else this.recorded[this.rng.int(256)] = m;
  }

  private primaryOf(view: number): NodeId {
    const rs = this.collusion.replicas;
    return rs[view % rs.length]!;
  }

  private altDigest(view: number, seq: number): Uint8Array {
    return batchDigest(this.collusion.hash, alternativeBatch(view, seq));
  }

  /** Rewrites one message its honest core wants to send to `to` (a peer, never itself). */
  rewrite(m: PbftMessage, to: NodeId): Outgoing[] {
    const sign = (x: PbftMessage): Outgoing => ({ to, msg: this.signer.sign({ ...x, to } as PbftMessage, this.id, this.id) });
    const c = this.collusion;
    switch (m.type) {
      case 'pre-prepare': {
        if (this.has('silent-primary')) return [];
        if (this.has('equivocate') && c.groupB.has(to)) {
          const requests = alternativeBatch(m.view, m.seq);
          return [sign({ ...m, requests, digest: batchDigest(c.hash, requests) })];
        }
        if (this.has('garbage') && this.rng.chance(0.2)) {
          const bad = this.rng.int(3);
          if (bad === 0) return [sign({ ...m, digest: new Uint8Array(32).fill(7) })];
          if (bad === 1) return [sign({ ...m, seq: m.seq + 1000 })];
          return [sign({ ...m, requests: [{ id: 'bad', payload: new Uint8Array([0xff]) }] })];
        }
        return [sign(m)];
      }
      case 'prepare':
      case 'commit': {
        if (c.equivocators.has(this.primaryOf(m.view)) && c.groupB.has(to)) {
          return [sign({ ...m, digest: this.altDigest(m.view, m.seq) })];
        }
        if (this.has('conflicting-votes') && this.rng.chance(0.3)) {
          const out = [sign({ ...m, digest: this.altDigest(m.view, m.seq) })];
          if (this.rng.chance(0.5)) out.push(sign(m));
          return out;
        }
        if (this.has('garbage') && this.rng.chance(0.1)) return [sign({ ...m, view: m.view + 7 })];
        return [sign(m)];
      }
      case 'new-view': {
        if (this.has('silent-primary')) return [];
        if (this.has('bad-new-view')) {
          const kind = this.rng.int(3);
          if (kind === 0 && m.prePrepares.length > 0) return [sign({ ...m, prePrepares: m.prePrepares.slice(0, -1) })];
          if (kind === 1) {
            const seq = (m.prePrepares.at(-1)?.seq ?? 0) + 1;
            const requests = alternativeBatch(m.view, seq);
            return [sign({ ...m, prePrepares: [...m.prePrepares, { seq, digest: batchDigest(c.hash, requests), requests }] })];
          }
          return [sign({ ...m, viewChanges: m.viewChanges.slice(1) })];
        }
        return [sign(m)];
      }
      default:
        return [sign(m)];
    }
  }

  /** Traffic of its own, once per tick. */
  spontaneous(status: PbftStatus): Outgoing[] {
    const out: Outgoing[] = [];
    const peers = this.collusion.replicas.filter((r) => r !== this.id);
    if (this.has('needless-view-change') && this.rng.chance(0.05)) {
      const m: PbftMessage = { type: 'view-change', to: 'all', view: status.view + 1, checkpoint: null, prepared: [] };
      for (const to of peers) out.push({ to, msg: this.signer.sign({ ...m, to }, this.id, this.id) });
    }
    if (this.has('replay') && this.recorded.length > 0 && this.rng.chance(0.3)) {
      out.push({ to: this.rng.pick(peers), msg: this.rng.pick(this.recorded) });
    }
    if (this.has('forge') && this.rng.chance(0.2)) {
      const victim = this.rng.pick(peers);
      const to = this.rng.pick(peers);
      const fake: PbftMessage = { type: 'commit', to, view: status.view, seq: status.lastExecuted + 1, digest: new Uint8Array(32) };
      if (this.rng.chance(0.5)) out.push({ to, msg: this.signer.sign(fake, victim, this.id) });
      else {
        const own = this.signer.sign(fake, this.id, this.id);
        const sig = own.sig.slice();
        sig[0]! ^= 1;
        out.push({ to, msg: { ...own, sig } });
      }
    }
    return out;
  }
}
