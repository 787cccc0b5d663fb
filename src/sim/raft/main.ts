// `npm run sim -- --core raft --seeds N [--from S] [--nodes 3|5] [--steps K] [--quiesce on|off|random]
//    [--broken commit-prev-term|no-peer-down] [--trace]`
// Runs seeds [S, S+N) of the Raft simulation and prints a summary, or the first failing seed with its replay command.
import { runRaftSeed, type RaftSimOptions } from './sim.ts';

interface Args {
  seeds: number;
  from: number;
  nodes: 3 | 5;
  steps: number;
  broken: 'commit-prev-term' | 'no-peer-down' | null;
  quiesce: boolean | 'random';
  trace: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { seeds: 100, from: 1, nodes: 3, steps: 600, broken: null, quiesce: 'random', trace: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    const int = (min: number) => {
      const v = Number(value());
      if (!Number.isInteger(v) || v < min) throw new Error(`${flag} must be an integer >= ${min}`);
      return v;
    };
    switch (flag) {
      case '--seeds':
        args.seeds = int(1);
        break;
      case '--from':
        args.from = int(0);
        break;
      case '--steps':
        args.steps = int(0);
        break;
      case '--nodes': {
        const n = int(3);
        if (n !== 3 && n !== 5) throw new Error('--nodes must be 3 or 5');
        args.nodes = n;
        break;
      }
      case '--broken': {
        const v = value();
        if (v !== 'commit-prev-term' && v !== 'no-peer-down') throw new Error(`unknown --broken variant ${v} (known: commit-prev-term, no-peer-down)`);
        args.broken = v;
        break;
      }
      case '--quiesce': {
        const v = value();
        if (v !== 'on' && v !== 'off' && v !== 'random') throw new Error(`--quiesce must be on, off or random, not ${v}`);
        args.quiesce = v === 'random' ? 'random' : v === 'on';
        break;
      }
      case '--trace':
        args.trace = true;
        break;
      default:
        throw new Error(`unknown argument ${String(flag)}`);
    }
  }
  return args;
}

export async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (err) {
    console.error(`raft sim: ${(err as Error).message}`);
    console.error('usage: --seeds N [--from S] [--nodes 3|5] [--steps K] [--quiesce on|off|random] [--broken commit-prev-term|no-peer-down] [--trace]');
    return 2;
  }
  const started = performance.now();
  const quiesceFlag = args.quiesce === 'random' ? '' : ` --quiesce ${args.quiesce ? 'on' : 'off'}`;
  const extra = `${args.nodes !== 3 ? ` --nodes ${args.nodes}` : ''}${args.steps !== 600 ? ` --steps ${args.steps}` : ''}${quiesceFlag}${args.broken ? ` --broken ${args.broken}` : ''}`;
  for (let seed = args.from; seed < args.from + args.seeds; seed++) {
    const options: RaftSimOptions = { nodes: args.nodes, steps: args.steps, broken: args.broken, quiesce: args.quiesce };
    if (args.trace) options.trace = (line) => console.log(line);
    const result = runRaftSeed(seed, options);
    if (result.violations.length > 0) {
      console.log(`seed ${seed} FAILED`);
      for (const v of result.violations) console.log(`  violated: ${v}`);
      console.log(`  replay: npm run sim -- --core raft --seeds 1 --from ${seed}${extra} --trace`);
      console.log(`seeds: ${seed - args.from + 1}, violations: ${result.violations.length}`);
      return 1;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  console.error(`raft sim: ${args.seeds} seeds in ${seconds.toFixed(1)} s (${(args.seeds / seconds).toFixed(0)} seeds/s)`);
  console.log(`seeds: ${args.seeds}, violations: 0`);
  return 0;
}
