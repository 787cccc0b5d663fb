// Deterministic simulation, n = 7 (f = 2, two colluding Byzantine replicas), and the test-only broken
// variant (quorum 2f) that the simulator must catch.
import { expect, it } from 'vitest';
import { runPbftSeeds } from '../../src/sim/pbft/main.ts';

it('seeds with n=7 and up to two colluding Byzantine replicas keep agreement and liveness', () => {
  const s = runPbftSeeds(1, 40, { n: 7 });
  console.log(`seeds: ${s.seeds}, violations: ${s.violations} (n=7, ${(s.seeds / (s.ms / 1000)).toFixed(1)} seeds/s)`);
  for (const r of s.failing.slice(0, 3)) console.log(`seed ${r.seed}: ${JSON.stringify(r.violations[0])} byzantine ${r.behaviours.join(' ')}`);
  expect(s.violations).toBe(0);
});

it('the broken quorum-2f variant is caught: an equivocating primary splits correct replicas', () => {
  // n=7 needs two colluding equivocators and a split of the correct replicas into groups of >= 2:
  // rarer per seed, hence more seeds.
  for (const [n, seeds] of [[4, 40], [7, 80]] as const) {
    const s = runPbftSeeds(1, seeds, { n, brokenQuorum2f: true });
    console.log(`broken quorum-2f, n=${n}: seeds: ${s.seeds}, violations: ${s.violations}`);
    expect(s.violations).toBeGreaterThan(0);
    expect(s.failing.some((r) => r.violations.some((v) => v.invariant === 'agreement'))).toBe(true);
  }
});
