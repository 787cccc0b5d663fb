// Owns `conclave chaos` (`npm run chaos -- --duration S --mode raft|pbft`): fault injection on real node processes
// through per-link TCP proxies (src/chaos/), the operation history as JSON Lines, the summary of faults injected,
// and exactly one final line `acked: A, lost: L, duplicated: D, divergent: V`; exits non-zero when anything fails.
import type { Command } from 'commander';

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`expected a whole number, got ${value}`);
  return n;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`expected a positive whole number, got ${value}`);
  return n;
}

interface ChaosCliOptions {
  duration: number;
  mode: string;
  orgs?: number;
  dir?: string;
  seed?: number;
  history?: string;
  clients: number;
  readers: number;
  maxOps: number;
  faults?: string;
  keepDir?: boolean;
}

export function register(program: Command): void {
  program
    .command('chaos')
    .description(
      'fault injection on real processes: a cluster whose peer links all go through fault-injecting TCP proxies, agents submitting verdicts ' +
        'continuously, a seeded nemesis (SIGKILL + restart, SIGSTOP/SIGCONT, partitions, one-way cuts, delays), then every node checked',
    )
    .option('--duration <seconds>', 'how long the nemesis injects faults', positiveInt, 30)
    .option('--mode <mode>', 'raft (3 orgs) or pbft (4 orgs)', 'raft')
    .option('--orgs <n>', 'how many orgs (default 3 for raft, 4 for pbft)', positiveInt)
    .option('--dir <dir>', 'a new or empty folder to work in (default: a temporary folder, removed when the run passes)')
    .option('--seed <n>', 'seed of the nemesis schedule (default: random, printed)', positiveInt)
    .option('--history <file>', 'write the operation history (invoke/ok/fail/info) as JSON Lines')
    .option('--clients <n>', 'concurrent clients per org', positiveInt, 2)
    .option('--readers <n>', 'consistent readers per org: each reads verdicts other orgs saw acknowledged, which must be there (0: none)', nonNegativeInt, 1)
    .option('--max-ops <n>', 'upper bound on the verdicts one client submits', positiveInt, 5000)
    .option('--faults <kinds>', 'comma-separated fault kinds (default: all but switch-mode): kill,kill-leader,pause,isolate,blackhole,bridge,one-way-out,one-way-in,delay; switch-mode: a live raft ↔ pbft switch approved by every admin (needs --orgs 4 or more); leave-join: a member removed, its data deleted, admitted again and started empty (pbft at some point: needs --orgs 5 or more)')
    .option('--keep-dir', 'keep the working folder even when the run passes')
    .addHelpText(
      'after',
      `
The last line is always: acked: A, lost: L, duplicated: D, divergent: V
Exit status 0 only when lost, duplicated and divergent are 0, at least one verdict was acknowledged, no consistent
read missed a verdict acknowledged before it began, every node converged, no node died on its own, and
\`conclave audit\` verifies the export; 1 otherwise; 2 on bad usage.`,
    )
    .action(async (options: ChaosCliOptions) => {
      process.exitCode = await runChaosCli(options);
    });
}

async function runChaosCli(options: ChaosCliOptions): Promise<number> {
  const { runChaos } = await import('../../chaos/run.ts');
  const { ALL_FAULT_KINDS } = await import('../../chaos/nemesis.ts');
  const { stopAll } = await import('../../devcluster/cluster.ts');
  if (options.mode !== 'raft' && options.mode !== 'pbft') {
    console.error(`conclave chaos: --mode must be raft or pbft, got ${options.mode}`);
    return 2;
  }
  let kinds: (typeof ALL_FAULT_KINDS)[number][] | undefined;
  if (options.faults) {
    const names = options.faults.split(',').map((k) => k.trim()).filter(Boolean);
    const unknown = names.filter((k) => !(ALL_FAULT_KINDS as readonly string[]).includes(k));
    if (unknown.length || names.length === 0) {
      console.error(`conclave chaos: unknown fault kind(s) ${unknown.join(', ')}; known: ${ALL_FAULT_KINDS.join(', ')}`);
      return 2;
    }
    kinds = names as (typeof ALL_FAULT_KINDS)[number][];
    const orgs = options.orgs ?? (options.mode === 'pbft' ? 4 : 3);
    if (kinds.includes('switch-mode') && orgs < 4) {
      console.error(`conclave chaos: switch-mode switches to pbft, which needs at least 4 orgs: add --orgs 4`);
      return 2;
    }
    const pbftAtSomePoint = options.mode === 'pbft' || kinds.includes('switch-mode');
    if (kinds.includes('leave-join') && orgs < (pbftAtSomePoint ? 5 : 3)) {
      console.error(`conclave chaos: leave-join removes a member${pbftAtSomePoint ? ', and pbft needs at least 4 that remain: add --orgs 5' : ': add --orgs 3'}`);
      return 2;
    }
  }
  const onSignal = () => {
    stopAll();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const started = performance.now();
  const say = (line: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`);
  const result = await runChaos({
    durationS: options.duration,
    mode: options.mode,
    ...(options.orgs === undefined ? {} : { orgs: options.orgs }),
    ...(options.dir === undefined ? {} : { dir: options.dir }),
    ...(options.seed === undefined ? {} : { seed: options.seed }),
    ...(options.history === undefined ? {} : { historyFile: options.history }),
    clientsPerOrg: options.clients,
    readersPerOrg: options.readers,
    maxOpsPerClient: options.maxOps,
    ...(kinds ? { kinds } : {}),
    keepDir: options.keepDir ?? false,
    log: say,
  });

  console.log('');
  console.log(`faults injected (seed ${result.seed}, replay the schedule with --seed ${result.seed}):`);
  const byKind = new Map<string, number>();
  for (const fault of result.faults) byKind.set(fault.kind, (byKind.get(fault.kind) ?? 0) + 1);
  console.log(`  ${result.faults.length} in all: ${[...byKind].map(([kind, n]) => `${kind} ×${n}`).join(', ') || 'none'}`);
  for (const fault of result.faults) {
    const span = `${(fault.at / 1000).toFixed(1)}–${fault.healedAt === null ? '?' : (fault.healedAt / 1000).toFixed(1)} s`;
    console.log(`  ${span.padEnd(14)} ${fault.kind.padEnd(12)} ${fault.nodes.join(',').padEnd(18)} ${fault.detail}${fault.error ? ` — FAILED: ${fault.error}` : ''}`);
  }
  console.log(
    `operations: ${result.ops.total} submitted, ${result.ops.ok} acknowledged, ${result.ops.fail} refused, ${result.ops.info} indeterminate, ` +
      `${result.ops.attempts} requests`,
  );
  const r = result.reads;
  if (r.total > 0) {
    console.log(
      `consistent reads: ${r.total} in all, ${r.found} held the acknowledged verdict, ${r.stale} stale, ${r.unavailable} unavailable (503, timeout, or 409 NOT_A_MEMBER), ` +
        `${r.unexpected} unexpected; the plain reads just before them: ${r.plainStale} without it`,
    );
  }
  for (const problem of r.problems) console.log(`PROBLEM: ${problem}`);
  const errors = Object.entries(result.errors);
  if (errors.length) console.log(`client errors (retried): ${errors.map(([k, n]) => `${k} ×${n}`).join(', ')}`);
  const c = result.check;
  if (c) {
    console.log(`applied index per node: ${c.appliedIndex.join(', ') || '?'}; converged: ${c.converged ? 'yes' : 'NO'}; audit: ${c.auditOk ? 'verifies' : 'FAILS'}`);
    if (c.indeterminatePresent + c.indeterminateAbsent > 0) {
      console.log(`indeterminate verdicts: ${c.indeterminatePresent} committed, ${c.indeterminateAbsent} not committed (both allowed)`);
    }
    for (const problem of c.problems) console.log(`PROBLEM: ${problem}`);
  }
  for (const exit of result.unexpectedExits) {
    console.log(`PROBLEM: the node of ${exit.org} died on its own (found at ${(exit.at / 1000).toFixed(1)} s); its log ended:`);
    for (const line of exit.logTail.split('\n')) console.log(`    ${line}`);
  }
  if (result.error) console.log(`PROBLEM: the run failed: ${result.error}`);
  if (!result.ok) console.log(`working folder kept for inspection: ${result.dir} (node logs in ${result.dir}/logs)`);
  console.log(result.finalLine);
  return result.ok ? 0 : 1;
}
