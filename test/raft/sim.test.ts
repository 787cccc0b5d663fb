// Deterministic simulation: thousands of seeded runs with faults must show no violated invariant,
// and the simulator must catch the deliberately broken commit rule.
import { describe, it, expect } from 'vitest';
import { runRaftSeed, type RaftSeedResult } from '../../src/sim/raft/sim.ts';
import { main } from '../../src/sim/raft/main.ts';

// Steps per seed chosen so that this file stays well under 60 s on a slow 2-core machine
// (measured on a loaded 2-core machine: 2500 seeds in ~17 s, ~140 seeds/s).
const STEPS = 400;
const SEEDS_3 = 2000;
const SEEDS_5 = 500;

function runMany(from: number, count: number, nodes: 3 | 5): { failures: RaftSeedResult[]; totals: Record<string, number> } {
  const failures: RaftSeedResult[] = [];
  const totals: Record<string, number> = {};
  for (let seed = from; seed < from + count; seed++) {
    const r = runRaftSeed(seed, { nodes, steps: STEPS });
    if (r.violations.length > 0) failures.push(r);
    for (const [k, v] of Object.entries(r.stats)) totals[k] = (totals[k] ?? 0) + v;
  }
  return { failures, totals };
}

function report(failures: RaftSeedResult[], nodes: number): string {
  return failures
    .slice(0, 3)
    .map((f) => `seed ${f.seed}: ${f.violations[0]}\n  replay: npm run sim -- --core raft --seeds 1 --from ${f.seed} --nodes ${nodes} --steps ${STEPS} --trace`)
    .join('\n');
}

describe('raft simulation', () => {
  it(`${SEEDS_3 + SEEDS_5} seeded runs with drops, duplicates, delays, partitions, crashes, conf changes, transfers and compaction keep every invariant`, () => {
    const started = performance.now();
    const three = runMany(1, SEEDS_3, 3);
    const five = runMany(1, SEEDS_5, 5);
    const seconds = (performance.now() - started) / 1000;
    const violations = three.failures.length + five.failures.length;
    console.log(`seeds: ${SEEDS_3 + SEEDS_5}, violations: ${violations} (${seconds.toFixed(1)} s, ${((SEEDS_3 + SEEDS_5) / seconds).toFixed(0)} seeds/s)`);
    expect(violations, report(three.failures, 3) + report(five.failures, 5)).toBe(0);
    // The runs really exercised the features (a simulator that does nothing proves nothing).
    const t = three.totals;
    expect(t['leadersElected']! / SEEDS_3).toBeGreaterThan(3);
    expect(t['proposalsAcked']!).toBeGreaterThan(SEEDS_3 * 5);
    expect(t['confChanges']!).toBeGreaterThan(SEEDS_3);
    expect(t['transfers']!).toBeGreaterThan(SEEDS_3 / 2);
    expect(t['snapshotsInstalled']!).toBeGreaterThan(SEEDS_3 / 4);
    expect(t['crashes']!).toBeGreaterThan(SEEDS_3);
    expect(t['readsServed']!).toBeGreaterThan(SEEDS_3);
    // About half the seeds quiesce idle groups; each of those ends by crashing a quiesced leader.
    expect(t['quiescences']!).toBeGreaterThan(SEEDS_3);
    expect(t['quiescedLeaderCrashes']!).toBeGreaterThan(SEEDS_3 / 3);
    expect(t['peerDownReports']!).toBeGreaterThan(SEEDS_3);
    expect(five.totals['quiescedLeaderCrashes']!).toBeGreaterThan(SEEDS_5 / 3);
  });

  it('a driver that never reports a dead peer leaves the followers of a crashed quiesced leader quiet for ever: caught', () => {
    const results = Array.from({ length: 20 }, (_, i) => runRaftSeed(i + 1, { nodes: 3, steps: STEPS, broken: 'no-peer-down' }));
    const caught = results.filter((r) => r.violations.some((v) => v.startsWith('liveness') && v.includes('quiesced leader')));
    expect(caught.length, results.map((r) => `seed ${r.seed}: ${r.violations[0] ?? 'clean'}`).join('\n')).toBeGreaterThan(15);
    // And the same seeds are clean with node liveness on.
    for (const r of caught.slice(0, 5)) expect(runRaftSeed(r.seed, { nodes: 3, steps: STEPS, quiesce: true }).violations).toEqual([]);
  });

  it('the broken rule "commit previous-term entries by counting" is caught as a safety violation', () => {
    let caught: RaftSeedResult | null = null;
    for (let seed = 1; seed <= 400 && !caught; seed++) {
      const r = runRaftSeed(seed, { nodes: 3, broken: 'commit-prev-term' });
      if (r.violations.length > 0) caught = r;
    }
    expect(caught, 'no seed in 1..400 exposed the broken commit rule').not.toBeNull();
    expect(caught!.violations[0]).toMatch(/leader completeness|state machine safety|committed entry changed|log matching|acknowledged proposal lost|threw/);
    // And the same seed is clean with the correct rule.
    expect(runRaftSeed(caught!.seed, { nodes: 3 }).violations).toEqual([]);
  });

  it('a seed replays exactly: two runs of one seed produce identical results', () => {
    const a = runRaftSeed(12345, { nodes: 5, steps: STEPS });
    const b = runRaftSeed(12345, { nodes: 5, steps: STEPS });
    expect(b).toEqual(a);
    expect(runRaftSeed(12346, { nodes: 5, steps: STEPS }).stats).not.toEqual(a.stats);
  });

  it('the CLI entry prints the summary line on success and the replay command on failure', async () => {
    const lines: string[] = [];
    const log = console.log;
    const error = console.error;
    console.log = (...args: unknown[]) => void lines.push(args.join(' '));
    console.error = () => {};
    try {
      expect(await main(['--seeds', '3', '--from', '7'])).toBe(0);
      expect(lines).toContain('seeds: 3, violations: 0');
      lines.length = 0;
      expect(await main(['--seeds', '400', '--broken', 'commit-prev-term'])).toBe(1);
      const failing = lines.find((l) => l.startsWith('seed '))!;
      const seed = failing.split(' ')[1];
      expect(lines.some((l) => l.includes(`npm run sim -- --core raft --seeds 1 --from ${seed}`))).toBe(true);
      expect(lines.some((l) => l.includes('violated: '))).toBe(true);
      expect(await main(['--nodes', '4'])).toBe(2);
    } finally {
      console.log = log;
      console.error = error;
    }
  });
});
