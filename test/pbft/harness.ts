// Scripted in-process PBFT cluster for the scenario tests: every message goes through a queue the test
// controls (deliver, filter, isolate), nodes crash and restart from what they persisted.
import { createHash } from 'node:crypto';
import {
  PbftCore,
  applyPersist,
  emptyPbftState,
  type NodeId,
  type PbftCommitted,
  type PbftConfig,
  type PbftDurableState,
  type PbftMessage,
  type PbftReady,
  type PbftStateTransfer,
  type SignedPbftMessage,
} from '../../src/consensus/pbft/index.ts';

export const sha256 = (b: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(b).digest());
export const SIG = new Uint8Array([9]);

export function signed(m: PbftMessage, from: NodeId): SignedPbftMessage {
  return { ...m, from, sig: SIG } as SignedPbftMessage;
}

export function req(id: string): { id: string; payload: Uint8Array } {
  return { id, payload: new TextEncoder().encode(`payload-${id}`) };
}

interface Node {
  id: NodeId;
  core: PbftCore | null;
  durable: PbftDurableState;
  executed: PbftCommitted[];
  lastExecuted: number;
  ids: string[];
  transfer: PbftStateTransfer | null;
  digests: Map<number, Uint8Array>;
}

export class Cluster {
  readonly ids: NodeId[];
  readonly nodes = new Map<NodeId, Node>();
  queue: Array<{ to: NodeId; msg: SignedPbftMessage }> = [];
  /** Return false to drop a message in flight. */
  filter: (to: NodeId, msg: SignedPbftMessage) => boolean = () => true;
  /** Sees every Ready before its persist is folded into the node's durable state. */
  onReady: (id: NodeId, ready: PbftReady, durable: PbftDurableState) => void = () => undefined;
  readonly config: Omit<PbftConfig, 'id'>;
  /** Each replica's own judgement of a request (its validateRequest); the config's by default, replaceable per test. */
  judge: (id: NodeId, payload: Uint8Array) => boolean = (_id, payload) => this.config.validateRequest(payload);

  constructor(n: number, overrides: Partial<PbftConfig> = {}) {
    this.ids = Array.from({ length: n }, (_, i) => `org${i}`);
    this.config = {
      replicas: this.ids,
      checkpointInterval: 4,
      watermarkWindow: 8,
      maxBatch: 4,
      viewChangeTimeoutTicks: 10,
      hash: sha256,
      validateRequest: (p) => p.length > 0 && p[0] !== 0xff,
      ...overrides,
    };
    for (const id of this.ids) {
      const node: Node = { id, core: null, durable: emptyPbftState(), executed: [], lastExecuted: 0, ids: [], transfer: null, digests: new Map() };
      this.nodes.set(id, node);
      this.start(id);
    }
  }

  node(id: NodeId): Node {
    return this.nodes.get(id)!;
  }

  core(id: NodeId): PbftCore {
    return this.node(id).core!;
  }

  start(id: NodeId): void {
    const n = this.node(id);
    const d = n.durable;
    n.core = new PbftCore({ ...this.config, id, validateRequest: (payload) => this.judge(id, payload) }, { ...d, log: [...d.log], lastExecuted: n.lastExecuted, executedIds: [...n.ids] });
    this.drain(id);
  }

  crash(id: NodeId): void {
    this.node(id).core = null;
    this.queue = this.queue.filter((q) => q.to !== id);
  }

  /** Ready loop of one node: persist, send (self-delivery of 'all' and self messages), execute, checkpoint. */
  drain(id: NodeId): void {
    const n = this.node(id);
    while (n.core && n.core.hasReady()) {
      const core = n.core;
      const rd = core.ready();
      this.onReady(id, rd, n.durable);
      if (rd.persist) applyPersist(n.durable, rd.persist);
      const loop: SignedPbftMessage[] = [];
      for (const m of rd.messages) {
        const s = signed(m, id);
        for (const to of m.to === 'all' ? this.ids : [m.to]) {
          if (to === id) loop.push(s);
          else this.queue.push({ to, msg: s });
        }
      }
      for (const c of rd.committed) {
        if (c.seq !== n.lastExecuted + 1) throw new Error(`${id} executed ${c.seq} after ${n.lastExecuted}`);
        n.executed.push(c);
        n.lastExecuted = c.seq;
        for (const r of c.requests) n.ids.push(r.id);
        n.digests.set(c.seq, sha256(new TextEncoder().encode(n.ids.join(','))));
      }
      if (rd.stateTransfer) n.transfer = rd.stateTransfer;
      core.advance(rd);
      for (const s of rd.checkpointsDue) core.checkpointReady(s, n.digests.get(s)!);
      for (const m of loop) core.step(m);
    }
  }

  /** Delivers queued messages (and whatever they cause) until the queue is empty or `max` deliveries. */
  deliverAll(max = 100_000): number {
    let count = 0;
    while (this.queue.length > 0 && count < max) {
      const { to, msg } = this.queue.shift()!;
      if (!this.node(to).core || !this.filter(to, msg)) continue;
      this.core(to).step(msg);
      this.drain(to);
      count++;
    }
    return count;
  }

  /** Injects a message as if it came from the network. */
  inject(to: NodeId, msg: SignedPbftMessage): void {
    this.core(to).step(msg);
    this.drain(to);
  }

  propose(at: NodeId, id: string): void {
    this.core(at).propose(req(id));
    this.drain(at);
  }

  tick(times = 1): void {
    for (let t = 0; t < times; t++) {
      for (const id of this.ids) {
        if (!this.node(id).core) continue;
        this.core(id).tick();
        this.drain(id);
      }
      this.deliverAll();
    }
  }

  /** State transfer: copy a peer's executed prefix up to the checkpoint (the app's snapshot). */
  transfer(id: NodeId, fromId: NodeId): void {
    const n = this.node(id);
    const t = n.transfer!;
    const src = this.node(fromId);
    const upTo = src.executed.filter((c) => c.seq <= t.seq);
    n.executed = [...upTo];
    n.ids = upTo.flatMap((c) => c.requests.map((r) => r.id));
    n.lastExecuted = t.seq;
    n.digests.set(t.seq, src.digests.get(t.seq)!);
    n.transfer = null;
    this.core(id).installState(t.seq, t.digest, n.ids);
    this.drain(id);
  }

  executedIds(id: NodeId): string[] {
    return this.node(id).ids;
  }
}
