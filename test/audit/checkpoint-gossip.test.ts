// Checkpoint gossip (nextCheckpoint in src/audit/checkpoint.ts, used by SwarmState.receiveCheckpoint): nodes that
// stamped one tree size with different clocks must settle on one checkpoint carrying every signature, and the
// re-broadcasting must stop. Simulated over seeded random delivery orders, with real Ed25519 signatures; the rule
// it replaced ("keep whichever has at least as many signatures") is run too, and must be caught never settling.
import { describe, expect, it } from 'vitest';
import { nextCheckpoint, signCheckpoint, verifyCheckpoint, type Checkpoint } from '../../src/audit/checkpoint.ts';
import { Prng } from '../../src/sim/prng.ts';
import { makeFederation } from './fixtures.ts';

type Rule = typeof nextCheckpoint;

/** The rule before: a received body replaced ours whenever, co-signed, it had at least as many signatures. */
const previousRule: Rule = (existing, incoming, cosign) => {
  const candidate = cosign(existing && existing.time === incoming.time ? { ...incoming, signatures: [...new Map([...existing.signatures, ...incoming.signatures].map((s) => [s.sig, s])).values()] } : incoming);
  if (existing && existing.time !== incoming.time && existing.signatures.length >= incoming.signatures.length + 1) return null;
  if (existing && existing.signatures.length === candidate.signatures.length && existing.time === candidate.time) return null;
  return candidate;
};

function gossip(orgCount: number, seed: number, rule: Rule, maxDeliveries: number): { deliveries: number; settled: boolean; kept: Checkpoint[] } {
  const fed = makeFederation(['a', 'b', 'c', 'd', 'e', 'f', 'g'].slice(0, orgCount), 'raft');
  const prng = new Prng(seed);
  const body = { v: 1 as const, federation: fed.config.federation, swarm: fed.swarm.id, size: 1000, root: 'ab'.repeat(32), mode: 'raft' as const };
  const kept = new Map<string, Checkpoint>();
  const queue: { to: string; checkpoint: Checkpoint }[] = [];
  const broadcast = (from: string, checkpoint: Checkpoint) => {
    for (const o of fed.orgs) if (o.org !== from) queue.push({ to: o.org, checkpoint });
  };
  // Every node checkpoints the size itself, each with its own clock (two or three distinct seconds).
  for (const o of fed.orgs) {
    const own = signCheckpoint({ ...body, time: 1_800_000_000 + prng.int(3) }, o.org, o.nodeKey);
    kept.set(o.org, own);
    broadcast(o.org, own);
  }
  let deliveries = 0;
  while (queue.length > 0 && deliveries < maxDeliveries) {
    const [{ to, checkpoint }] = queue.splice(prng.int(queue.length), 1);
    deliveries++;
    const self = fed.orgs.find((o) => o.org === to)!;
    expect(verifyCheckpoint(checkpoint, fed.config).problems).toEqual([]);
    const next = rule(kept.get(to), checkpoint, (c) => (c.signatures.some((s) => s.org === to) ? c : signCheckpoint(c, to, self.nodeKey)));
    if (next) {
      kept.set(to, next);
      broadcast(to, next);
    }
  }
  return { deliveries, settled: queue.length === 0, kept: [...kept.values()] };
}

describe('checkpoint gossip', () => {
  it('settles on one checkpoint with every signature, for 3, 4 and 7 nodes over 60 delivery orders', () => {
    for (const orgs of [3, 4, 7]) {
      for (let seed = 1; seed <= 20; seed++) {
        const run = gossip(orgs, seed, nextCheckpoint, 5000);
        expect(run.settled, `orgs ${orgs} seed ${seed}`).toBe(true);
        const [first] = run.kept;
        for (const k of run.kept) expect(k).toEqual(first);
        expect(first!.signatures).toHaveLength(orgs);
        // The earliest of the stamped times wins.
        expect(first!.time).toBe(Math.min(...run.kept.map((k) => k.time)));
      }
    }
  });

  it('the rule it replaced re-broadcasts for ever in some orders: the check above is meaningful', () => {
    const endless = [];
    for (let seed = 1; seed <= 20; seed++) if (!gossip(3, seed, previousRule, 3000).settled) endless.push(seed);
    expect(endless.length).toBeGreaterThan(0);
  });
});
