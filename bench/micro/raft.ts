// Owns the Raft core micro-benchmark: 3 RaftCore replicas in one process, no I/O, no timers. Each round the leader
// takes B proposals of 512 bytes, then Ready/advance loops deliver every message until the leader has applied them.
// With `codec` the messages go through encodeMessages/decodeMessages as on the wire. One JSON line per case.
// Run: node --import tsx bench/micro/raft.ts [secondsPerCase]
import { decodeMessages, encodeMessages, RaftCore } from '../../src/consensus/raft/index.ts';
import type { Message } from '../../src/consensus/raft/index.ts';

const SECONDS = Number(process.argv[2] ?? 2);
const IDS = ['acme', 'globex', 'initech'];
const payload = new Uint8Array(512).fill(1);

function makeCluster(): Map<string, RaftCore> {
  let seed = 1;
  const rand = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
  const cores = new Map<string, RaftCore>();
  for (const id of IDS) {
    cores.set(
      id,
      new RaftCore(
        { id, electionTick: 10, heartbeatTick: 1, rand, maxInflightMsgs: 256 },
        { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [], conf: { voters: IDS, learners: [] }, applied: 0 },
      ),
    );
  }
  return cores;
}

/** Drains every core's Ready (persist = no-op) and delivers the messages until no core has work. */
function pump(cores: Map<string, RaftCore>, codec: boolean): number {
  let delivered = 0;
  for (;;) {
    const outbox: Message[] = [];
    for (const core of cores.values()) {
      while (core.hasReady()) {
        const ready = core.ready();
        for (const m of ready.messages) outbox.push(m);
        core.advance(ready);
      }
    }
    if (outbox.length === 0) return delivered;
    const byTo = new Map<string, Message[]>();
    for (const m of outbox) {
      const list = byTo.get(m.to) ?? [];
      list.push(m);
      byTo.set(m.to, list);
    }
    for (const [to, list] of byTo) {
      const msgs = codec ? decodeMessages(encodeMessages(list)) : list;
      for (const m of msgs) cores.get(to)!.step(m);
      delivered += msgs.length;
    }
  }
}

function run(batch: number, codec: boolean): Record<string, unknown> {
  const cores = makeCluster();
  const leader = cores.get('acme')!;
  leader.campaign();
  pump(cores, codec);
  if (leader.status().role !== 'leader') throw new Error('acme did not become leader');
  let entries = 0;
  let rounds = 0;
  let messages = 0;
  const started = performance.now();
  const stopAt = started + SECONDS * 1000;
  while (performance.now() < stopAt) {
    for (let i = 0; i < batch; i++) {
      const r = leader.propose(payload);
      if (!r.ok) throw new Error(`propose refused: ${r.code}`);
    }
    messages += pump(cores, codec);
    entries += batch;
    rounds++;
    if (rounds % 64 === 0) {
      // keep memory flat: every replica snapshots what it applied (as the node's log compaction would)
      for (const core of cores.values()) {
        const applied = core.status().applied;
        if (applied > 1024) core.compact(applied - 512, new Uint8Array(0));
      }
      messages += pump(cores, codec);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const status = leader.status();
  if (status.commit < entries) throw new Error(`only ${status.commit} of ${entries} committed`);
  return {
    bench: 'raft-core',
    nodes: 3,
    batch,
    codec,
    entryBytes: payload.length,
    seconds: Math.round(seconds * 1000) / 1000,
    entriesPerSec: Math.round(entries / seconds),
    roundsPerSec: Math.round(rounds / seconds),
    messagesPerEntry: Math.round((messages / entries) * 100) / 100,
  };
}

for (const codec of [false, true]) {
  for (const batch of [1, 64]) console.log(JSON.stringify(run(batch, codec)));
}
