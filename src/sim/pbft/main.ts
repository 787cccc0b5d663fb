// `npm run sim -- --core pbft --seeds N [--from S] [--n 4|7] [--power-loss] [--broken quorum-2f]`: runs PBFT seeds and
// prints `seeds: N, violations: V`, with the replay command of each failing seed.
import { runPbftSeed, type PbftSimOptions, type PbftSimResult } from './world.ts';

export { runPbftSeed };
export type { PbftSimOptions, PbftSimResult };

const USAGE = `usage: npm run sim -- --core pbft --seeds N [--from S] [--n 4|7] [--power-loss] [--broken quorum-2f]
  --seeds N      number of seeds to run (default 100)
  --from S       first seed (default 1)
  --n 4|7        replicas (f = 1 or 2; default 4)
  --power-loss   crashes lose what a replica wrote lazily since its last synced write
  --broken quorum-2f   TEST ONLY: cores use a quorum of 2f; the run is expected to report violations`;

export interface PbftSimSummary {
  seeds: number;
  violations: number;
  failing: PbftSimResult[];
  ms: number;
}

export function runPbftSeeds(from: number, count: number, opts: PbftSimOptions): PbftSimSummary {
  const t0 = performance.now();
  const failing: PbftSimResult[] = [];
  let violations = 0;
  for (let s = from; s < from + count; s++) {
    const r = runPbftSeed(s, opts);
    if (r.violations.length > 0) {
      violations += r.violations.length;
      failing.push(r);
    }
  }
  return { seeds: count, violations, failing, ms: performance.now() - t0 };
}

export async function main(argv: string[]): Promise<number> {
  let seeds = 100;
  let from = 1;
  let n = 4;
  let broken = false;
  let powerLoss = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    const num = (): number => {
      const x = Number(v);
      if (!Number.isSafeInteger(x) || x < 0) throw new Error(`${a} needs a non-negative integer, got ${String(v)}`);
      i++;
      return x;
    };
    try {
      if (a === '--seeds') seeds = num();
      else if (a === '--from') from = num();
      else if (a === '--n') {
        n = num();
        if (n !== 4 && n !== 7) throw new Error(`--n must be 4 or 7, got ${n}`);
      } else if (a === '--power-loss') powerLoss = true;
      else if (a === '--broken') {
        if (v !== 'quorum-2f') throw new Error(`--broken supports only quorum-2f, got ${String(v)}`);
        broken = true;
        i++;
      } else if (a === '--help' || a === '-h') {
        console.log(USAGE);
        return 0;
      } else throw new Error(`unknown argument ${String(a)}`);
    } catch (e) {
      console.error(`${(e as Error).message}\n${USAGE}`);
      return 2;
    }
  }
  const summary = runPbftSeeds(from, seeds, { n, brokenQuorum2f: broken, powerLoss });
  for (const r of summary.failing.slice(0, 10)) {
    const v = r.violations[0]!;
    console.log(`seed ${r.seed}: ${v.invariant} at tick ${v.tick}: ${v.detail}`);
    console.log(`  byzantine: ${r.behaviours.join(' ') || 'none'}`);
    console.log(`  replay: npm run sim -- --core pbft --seeds 1 --from ${r.seed} --n ${n}${powerLoss ? ' --power-loss' : ''}${broken ? ' --broken quorum-2f' : ''}`);
  }
  const rate = summary.seeds / (summary.ms / 1000);
  console.log(`seeds: ${summary.seeds}, violations: ${summary.violations}`);
  console.error(`pbft sim: n=${n}${powerLoss ? ' (power loss)' : ''}${broken ? ' (broken quorum-2f)' : ''}, ${summary.ms.toFixed(0)} ms, ${rate.toFixed(1)} seeds/s`);
  return summary.violations === 0 ? 0 : 1;
}
