// Owns the PBFT core micro-benchmark: 4 PbftCore replicas in one process, no I/O, no timers. Each round the primary
// takes B requests of 512 bytes; Ready/advance loops deliver every message (own 'all' messages looped back, as the
// driver must) until every replica executed them. `sig`: none (a constant placeholder) or ed25519 (node:crypto sign
// of signingBytes per message sent, verify per message received, as the node will). One JSON line per case.
// Run: node --import tsx bench/micro/pbft.ts [secondsPerCase]
import { createHash, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { applyPersist, emptyPbftState, PbftCore, PBFT_DEFAULTS, signingBytes } from '../../src/consensus/pbft/index.ts';
import type { PbftDurableState, PbftMessage, SignedPbftMessage } from '../../src/consensus/pbft/index.ts';

const SECONDS = Number(process.argv[2] ?? 2);
const IDS = ['acme', 'globex', 'initech', 'umbrella'];
const SWARM = 'bench';
const payload = new Uint8Array(512).fill(2);
const PLACEHOLDER = new Uint8Array(64).fill(9);
const sha256 = (b: Uint8Array) => new Uint8Array(createHash('sha256').update(b).digest());

interface Replica {
  id: string;
  core: PbftCore;
  durable: PbftDurableState;
  executed: number;
  state: Uint8Array;
  digests: Map<number, Uint8Array>;
}

function run(batch: number, sig: 'none' | 'ed25519'): Record<string, unknown> {
  const keys = new Map<string, { priv: KeyObject; pub: KeyObject }>();
  for (const id of IDS) {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    keys.set(id, { priv: privateKey, pub: publicKey });
  }
  const replicas = new Map<string, Replica>();
  for (const id of IDS) {
    const core = new PbftCore(
      { id, replicas: IDS, ...PBFT_DEFAULTS, hash: sha256, validateRequest: () => true },
      emptyPbftState(),
    );
    replicas.set(id, { id, core, durable: { view: 0, inViewChange: false, stableCheckpoint: null, log: [] }, executed: 0, state: new Uint8Array(32), digests: new Map() });
  }
  let signatures = 0;
  let verifications = 0;
  const signMsg = (m: PbftMessage, from: string): SignedPbftMessage => {
    const signed = { ...m, from, sig: PLACEHOLDER } as SignedPbftMessage;
    if (sig === 'ed25519') {
      signed.sig = new Uint8Array(sign(null, signingBytes(signed, SWARM), keys.get(from)!.priv));
      signatures++;
    }
    return signed;
  };
  const check = (m: SignedPbftMessage): boolean => {
    if (sig === 'none') return true;
    verifications++;
    return verify(null, signingBytes(m, SWARM), keys.get(m.from)!.pub, m.sig);
  };

  let delivered = 0;
  const pump = () => {
    for (let busy = true; busy; ) {
      busy = false;
      const inbox: [string, SignedPbftMessage][] = [];
      for (const r of replicas.values()) {
        while (r.core.hasReady()) {
          busy = true;
          const rd = r.core.ready();
          if (rd.persist) applyPersist(r.durable, rd.persist);
          const loopback: SignedPbftMessage[] = [];
          for (const m of rd.messages) {
            const signed = signMsg(m, r.id);
            if (m.to === 'all') {
              loopback.push(signed);
              for (const to of IDS) if (to !== r.id) inbox.push([to, signed]);
            } else if (m.to !== r.id) inbox.push([m.to, signed]);
          }
          for (const c of rd.committed) {
            r.executed = c.seq;
            r.state = sha256(new Uint8Array([...r.state, ...c.digest]));
            r.digests.set(c.seq, r.state);
          }
          r.core.advance(rd);
          for (const s of rd.checkpointsDue) r.core.checkpointReady(s, r.digests.get(s)!);
          if (rd.stableCheckpoint) for (const s of r.digests.keys()) if (s < rd.stableCheckpoint.seq) r.digests.delete(s);
          for (const m of loopback) r.core.step(m);
        }
      }
      for (const [to, m] of inbox) {
        if (!check(m)) throw new Error('signature did not verify');
        replicas.get(to)!.core.step(m);
        delivered++;
      }
    }
  };

  const primary = replicas.get(IDS[0]!)!;
  let requests = 0;
  let rounds = 0;
  const started = performance.now();
  const stopAt = started + SECONDS * 1000;
  while (performance.now() < stopAt) {
    for (let i = 0; i < batch; i++) primary.core.propose({ id: `r${requests++}`, payload });
    pump();
    rounds++;
  }
  const seconds = (performance.now() - started) / 1000;
  const statuses = [...replicas.values()].map((r) => r.core.status());
  const executed = Math.min(...statuses.map((s) => s.lastExecuted));
  if (statuses.some((s) => s.view !== 0)) throw new Error('a view change happened');
  return {
    bench: 'pbft-core',
    nodes: 4,
    batch,
    sig,
    requestBytes: payload.length,
    seconds: Math.round(seconds * 1000) / 1000,
    requestsPerSec: Math.round(requests / seconds),
    roundsPerSec: Math.round(rounds / seconds),
    batchesExecuted: executed,
    messagesPerRequest: Math.round((delivered / requests) * 100) / 100,
    ...(sig === 'ed25519' ? { signaturesPerRequest: Math.round((signatures / requests) * 100) / 100, verificationsPerRequest: Math.round((verifications / requests) * 100) / 100 } : {}),
  };
}

for (const sig of ['none', 'ed25519'] as const) {
  for (const batch of [1, 64]) console.log(JSON.stringify(run(batch, sig)));
}
