// Deterministic simulation with power losses, n = 4 (f = 1), seeds 1..300: every crash drops what the replica wrote
// lazily since its last synced write (the drivers' rule, persistMustSync; execution state is always lazy). Agreement,
// at-most-once execution and liveness after faults stop must hold on every seed — and the crashes must really lose
// something, or the run proves nothing. (With no persist synced at all, seeds 1..600 give 14 agreement violations.)
import { expect, it } from 'vitest';
import { runPbftSeed } from '../../src/sim/pbft/world.ts';

it('seeds 1-300 with n=4, power losses and a Byzantine replica: no divergence, no double execution, liveness after healing', () => {
  let violations = 0;
  let lostTails = 0;
  let restarts = 0;
  const failing: string[] = [];
  for (let seed = 1; seed <= 300; seed++) {
    const r = runPbftSeed(seed, { n: 4, powerLoss: true });
    violations += r.violations.length;
    lostTails += r.lostTails;
    restarts += r.restarts;
    if (r.violations.length && failing.length < 3) failing.push(`seed ${seed}: ${JSON.stringify(r.violations[0])}`);
  }
  console.log(`power-loss seeds: 300, restarts: ${restarts}, restarts that lost a lazily written tail: ${lostTails}, violations: ${violations}`);
  expect(failing).toEqual([]);
  expect(violations).toBe(0);
  expect(lostTails).toBeGreaterThan(100);
});
