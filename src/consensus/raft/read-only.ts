// The leader's ReadIndex requests waiting for a heartbeat round to confirm that it is still leader.
import type { NodeId } from './types.ts';

export interface PendingRead {
  index: number;
  ctx: Uint8Array;
  from: NodeId;
  acks: Set<NodeId>;
}

function keyOf(ctx: Uint8Array): string {
  let hex = '';
  for (const b of ctx) hex += b.toString(16).padStart(2, '0');
  return hex;
}

export class ReadOnlyQueue {
  private readonly pending = new Map<string, PendingRead>();
  private readonly order: string[] = [];

  /** Queues a request; false when the same ctx is already waiting (the caller then drops the duplicate). */
  add(index: number, ctx: Uint8Array, from: NodeId): boolean {
    const key = keyOf(ctx);
    if (this.pending.has(key)) return false;
    this.pending.set(key, { index, ctx, from, acks: new Set() });
    this.order.push(key);
    return true;
  }

  /** Records that `from` answered the heartbeat carrying ctx; returns the request, if still waiting. */
  ack(ctx: Uint8Array, from: NodeId): PendingRead | null {
    const req = this.pending.get(keyOf(ctx));
    if (!req) return null;
    req.acks.add(from);
    return req;
  }

  /** Releases the request with ctx and every request queued before it (a later confirmation covers earlier ones). */
  releaseThrough(ctx: Uint8Array): PendingRead[] {
    const key = keyOf(ctx);
    const at = this.order.indexOf(key);
    if (at < 0) return [];
    const released = this.order.splice(0, at + 1).map((k) => this.pending.get(k)!);
    for (const k of released.map((r) => keyOf(r.ctx))) this.pending.delete(k);
    return released;
  }

  lastPendingCtx(): Uint8Array | null {
    const last = this.order[this.order.length - 1];
    return last === undefined ? null : this.pending.get(last)!.ctx;
  }

  reset(): void {
    this.pending.clear();
    this.order.length = 0;
  }
}
