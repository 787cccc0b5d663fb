// Crash test with real processes: a child appends to a Raft log (pipelined, group-committed, with truncations,
// snapshots and compaction) and is SIGKILLed at a random moment, many times; after each kill the parent reopens
// the store and checks that it holds exactly the effects of a prefix of the issued requests that includes every
// acknowledged one — so no acknowledged entry is lost or changed, indexes are contiguous and the hard state matches.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeStore } from '../../src/storage/node-store.ts';
import { CRASH_SWARM, toPersist } from './fixtures/crash-writer.ts';
import type { CrashRequest } from './fixtures/crash-writer.ts';
import { payload, tempDir } from './helpers.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/crash-writer.ts', import.meta.url));

/** The parent's model of the durable log: what a prefix of requests must have produced. */
interface Model {
  entries: Map<number, { term: number; salt: number }>;
  hardState: { term: number; vote: string | null; commit: number };
  snap: { index: number; term: number; salt: number } | null;
  compacted: number;
  last: number;
}

function apply(m: Model, r: CrashRequest): Model {
  const entries = new Map(m.entries);
  let compacted = m.compacted;
  for (let i = r.k + r.n; i <= m.last; i++) entries.delete(i);
  for (let i = r.k; i < r.k + r.n; i++) entries.set(i, { term: r.term, salt: r.salt });
  if (r.compactedTo !== null) {
    for (let i = compacted + 1; i <= r.compactedTo; i++) entries.delete(i);
    compacted = r.compactedTo;
  }
  return {
    entries,
    hardState: { term: r.term, vote: r.vote, commit: r.commit },
    snap: r.snap ? { ...r.snap, salt: r.salt } : m.snap,
    compacted,
    last: r.k + r.n - 1,
  };
}

/** Differences between the store and a model, as readable lines (empty when identical). */
async function diff(store: NodeStore, m: Model): Promise<string[]> {
  const log = store.raftLog(CRASH_SWARM);
  const loaded = await log.load();
  const problems: string[] = [];
  const hs = loaded.hardState;
  if (hs.term !== m.hardState.term || hs.vote !== m.hardState.vote || hs.commit !== m.hardState.commit) {
    problems.push(`hard state ${JSON.stringify(hs)} != ${JSON.stringify(m.hardState)}`);
  }
  if (log.firstIndex() !== m.compacted + 1 || log.lastIndex() !== m.last) {
    problems.push(`range [${log.firstIndex()}, ${log.lastIndex()}] != [${m.compacted + 1}, ${m.last}]`);
    return problems;
  }
  const snapIndex = loaded.snapshot?.index ?? 0;
  if (snapIndex !== (m.snap?.index ?? 0)) problems.push(`snapshot at ${snapIndex} != ${m.snap?.index ?? 0}`);
  else if (m.snap && Buffer.compare(loaded.snapshot!.data, payload(m.snap.index, m.snap.term, m.snap.salt)) !== 0) {
    problems.push(`snapshot bytes differ`);
  }
  const all = m.last > m.compacted ? await log.entries(m.compacted + 1, m.last + 1) : [];
  if (all.length !== m.last - m.compacted) problems.push(`read ${all.length} entries, expected ${m.last - m.compacted}`);
  for (const [offset, e] of all.entries()) {
    const want = m.entries.get(e.index);
    if (e.index !== m.compacted + 1 + offset) problems.push(`entry ${e.index} at position ${offset}: not contiguous`);
    else if (!want || e.term !== want.term || Buffer.compare(e.data, payload(e.index, want.term, want.salt)) !== 0) {
      problems.push(`entry ${e.index}: term ${e.term}, expected ${JSON.stringify(want)} (bytes differ or term differs)`);
    }
    if (problems.length > 5) break;
  }
  const after = loaded.entries.map((e) => e.index);
  if (after.length > 0 && after[0] !== snapIndex + 1) problems.push(`load() entries start at ${after[0]}, not after the snapshot ${snapIndex}`);
  return problems;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

interface Round {
  issued: CrashRequest[];
  acked: number;
}

/** Runs the child until it has acknowledged `kills` requests, then SIGKILLs it. */
async function runAndKill(dir: string, mode: string, seed: number, killAfterAcks: number): Promise<Round> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, dir, mode, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const issued: CrashRequest[] = [];
  let acked = 0;
  let killed = false;
  const deadline = setTimeout(() => child.kill('SIGKILL'), 30_000); // a bound, not a wait: the test fails below if it fires
  try {
    for await (const line of createInterface({ input: child.stdout! })) {
      if (line.startsWith('req ')) issued.push(JSON.parse(line.slice(4)) as CrashRequest);
      else if (line.startsWith('ack ')) {
        if (killed) continue; // acks printed after the kill decision still count as issued, not as acked here
        const seq = Number(line.split(' ')[1]);
        // acks arrive in issue order (FIFO group commit)
        expect(seq, 'acks in order').toBe(acked + 1);
        acked = seq;
        if (acked >= killAfterAcks) {
          child.kill('SIGKILL');
          killed = true; // keep reading to EOF: requests printed before death may be on disk
        }
      }
    }
  } finally {
    clearTimeout(deadline);
    child.kill('SIGKILL');
    await exited(child);
  }
  expect(acked, `child stopped early: ${stderr}`).toBeGreaterThanOrEqual(killAfterAcks);
  return { issued, acked };
}

describe('crash recovery with SIGKILL at random moments', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir('crash');
  });
  afterAll(async () => {
    await dir.cleanup();
  });

  it('every acknowledged write survives; the store is exactly a prefix of the issued requests', async () => {
    let rng = 0x9e3779b9;
    const rand = (): number => {
      rng = (Math.imul(rng ^ (rng >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
      return rng / 4294967296;
    };
    let model: Model = { entries: new Map(), hardState: { term: 0, vote: null, commit: 0 }, snap: null, compacted: 0, last: 0 };
    const plan = [...Array<string>(11).fill('append'), ...Array<string>(5).fill('truncate')];
    const stats = { rounds: 0, acked: 0, unackedVisible: 0, truncations: 0 };

    for (const [round, mode] of plan.entries()) {
      const killAfter = 1 + Math.floor(rand() * 40);
      const { issued, acked } = await runAndKill(dir.path, mode, 1000 + round, killAfter);
      stats.truncations += issued.filter((r, i) => i > 0 && r.k <= issued[i - 1]!.k + issued[i - 1]!.n - 1).length;

      // candidates: the state after requests [0, j) for every j from the acked count to the issued count
      const candidates: Model[] = [];
      let m = model;
      for (let j = 0; j < issued.length; j++) {
        m = apply(m, issued[j]!);
        if (j + 1 >= acked) candidates.push(m);
      }
      if (acked === 0) candidates.unshift(model);

      const store = await NodeStore.open(dir.path);
      let matched: Model | null = null;
      let firstProblems: string[] = [];
      try {
        for (const [c, candidate] of candidates.entries()) {
          const problems = await diff(store, candidate);
          if (problems.length === 0) {
            matched = candidate;
            stats.unackedVisible += c;
            break;
          }
          if (c === 0) firstProblems = problems;
        }
        // the request-by-request check must agree with toPersist (same entries the child wrote)
        expect(toPersist(issued[0]!).entries[0]!.index).toBe(issued[0]!.k);
      } finally {
        await store.close();
      }
      expect(matched, `round ${round} (${mode}, killed after ${acked} acks of ${issued.length} issued): ${firstProblems.join('; ')}`).not.toBeNull();
      model = matched!;
      stats.rounds++;
      stats.acked += acked;
    }
    console.log(`crash test: ${JSON.stringify({ ...stats, finalLastIndex: model.last, finalTerm: model.hardState.term })}`);
    expect(stats.truncations).toBeGreaterThan(0);
  });
});
