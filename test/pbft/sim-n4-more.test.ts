// Deterministic simulation, n = 4 (f = 1), seeds 501..1000: faulty network, crashes and up to one Byzantine
// replica; agreement, at-most-once execution and liveness after faults stop must hold on every seed.
// (Seeds 1..500 run in sim-n4.test.ts.)
import { expect, it } from 'vitest';
import { runPbftSeeds } from '../../src/sim/pbft/main.ts';

it('seeds 501-1000 with n=4 and a Byzantine replica: no divergence, no double execution, requests commit after healing', () => {
  const s = runPbftSeeds(501, 500, { n: 4 });
  console.log(`seeds: ${s.seeds}, violations: ${s.violations} (n=4, seeds 501-1000, ${(s.seeds / (s.ms / 1000)).toFixed(1)} seeds/s)`);
  for (const r of s.failing.slice(0, 3)) console.log(`seed ${r.seed}: ${JSON.stringify(r.violations[0])} byzantine ${r.behaviours.join(' ')}`);
  expect(s.violations).toBe(0);
});
