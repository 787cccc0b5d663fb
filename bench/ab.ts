// Owns the same-minute A/B comparison of two revisions: a fresh Conclave cluster of revision A, then one of B, and
// again, N pairs, each loaded by this tree's load generator for the same window; prints one JSON line per run
// (verdicts/s, latency, node CPU milliseconds per committed verdict) and a summary of medians. Why: this machine
// drifts 20-30 % within minutes (the same code measured 560 and 835 verdicts/s ten minutes apart), so a change is
// judged by alternating runs, and by CPU per verdict, which drifts less than throughput.
//   npm run bench:ab -- <revA> [revB = working tree] [--pairs N] [--mode raft|pbft] [--concurrency C]
//                       [--duration S] [--warmup S] [--leader-only]
// A revision other than the working tree is checked out with `git worktree add` (node_modules linked) and removed
// at the end. --leader-only sends every verdict to the leader (one proposer instead of one per org).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../src/devcluster/cluster.ts';
import { cpuSample } from './lib/proc.ts';
import type { ConclaveCluster } from './lib/conclave.ts';
import type { LoadConfig } from './loadgen.ts';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    pairs: { type: 'string' },
    mode: { type: 'string' },
    concurrency: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    'leader-only': { type: 'boolean', default: false },
  },
});
if (positionals.length < 1 || positionals.length > 2) {
  console.error('usage: npm run bench:ab -- <revA> [revB] [--pairs N] [--mode raft|pbft] [--concurrency C] [--duration S] [--warmup S] [--leader-only]');
  process.exit(2);
}
const pairs = Number(args.pairs ?? 3);
const mode: 'raft' | 'pbft' = args.mode === 'pbft' ? 'pbft' : 'raft';
const concurrency = Number(args.concurrency ?? 64);
const duration = Number(args.duration ?? 10);
const warmup = Number(args.warmup ?? 10);
const work = mkdtempSync(join(tmpdir(), 'conclave-ab-'));
const worktrees: string[] = [];

/** A directory holding revision `rev` ("working" or absent: this tree). */
function checkout(rev: string | undefined): { label: string; root: string } {
  if (rev === undefined || rev === 'working') return { label: 'working', root: REPO_ROOT };
  const root = join(work, `tree-${worktrees.length}`);
  const added = spawnSync('git', ['-C', REPO_ROOT, 'worktree', 'add', '--detach', root, rev], { encoding: 'utf8' });
  if (added.status !== 0) throw new Error(`git worktree add ${rev}: ${added.stderr.trim()}`);
  worktrees.push(root);
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'));
  return { label: rev, root };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

interface Run {
  rev: string;
  perSec: number;
  p50: number;
  p99: number;
  /** Node CPU (all threads) in the measured window per committed verdict, per node, ms. */
  cpuMsPerVerdict: number[];
  loadgenCpuPercent: number;
}

async function runOnce(tree: { label: string; root: string }, n: number): Promise<Run> {
  const lib = (await import(join(tree.root, 'bench', 'lib', 'conclave.ts'))) as typeof import('./lib/conclave.ts');
  const cluster: ConclaveCluster = await lib.startConclave(join(work, `run-${n}`), mode === 'raft' ? 3 : 4, mode);
  try {
    const leader = await lib.leaderOf(cluster);
    const config: LoadConfig = {
      kind: 'conclave',
      targets: args['leader-only'] ? cluster.targets.filter((t) => t.org === leader) : cluster.targets,
      swarm: cluster.info.swarm,
      concurrency,
      warmupSeconds: warmup,
      durationSeconds: duration,
      tailSeconds: 0,
      valueBytes: 512,
      subjects: 'unique',
      runId: `ab-${process.pid}-${n}`,
    };
    const file = join(work, `load-${n}.json`);
    writeFileSync(file, JSON.stringify(config));
    const pids = cluster.info.nodes.map((node) => node.pid);
    let before: (ReturnType<typeof cpuSample>)[] = [];
    let after: (ReturnType<typeof cpuSample>)[] = [];
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench', 'loadgen.ts'), file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => {
      const text = String(d);
      if (text.includes('"measure-start"')) before = pids.map(cpuSample);
      if (text.includes('"measure-end"')) after = pids.map(cpuSample);
    });
    const code = await new Promise<number | null>((done) => child.once('exit', done));
    if (code !== 0) throw new Error(`load generator exited ${code}`);
    const result = JSON.parse(out.trim().split('\n').at(-1)!) as { committedPerSec: number; latencyMs: { p50: number; p99: number }; loadgenCpuPercent: number };
    const verdicts = result.committedPerSec * duration;
    return {
      rev: tree.label,
      perSec: result.committedPerSec,
      p50: result.latencyMs.p50,
      p99: result.latencyMs.p99,
      cpuMsPerVerdict: pids.map((_, i) => Math.round((((after[i]?.cpuSeconds ?? NaN) - (before[i]?.cpuSeconds ?? NaN)) * 1e6) / verdicts) / 1000),
      loadgenCpuPercent: result.loadgenCpuPercent,
    };
  } finally {
    await lib.stopConclave(cluster);
  }
}

try {
  const a = checkout(positionals[0]);
  const b = checkout(positionals[1]);
  const runs: Run[] = [];
  for (let pair = 0; pair < pairs; pair++) {
    for (const tree of [a, b]) {
      const run = await runOnce(tree, runs.length);
      runs.push(run);
      console.log(JSON.stringify({ ab: 'run', pair: pair + 1, mode, concurrency, ...run }));
    }
  }
  const summary = (label: string) => {
    const mine = runs.filter((r) => r.rev === label);
    return {
      rev: label,
      runs: mine.length,
      perSec: median(mine.map((r) => r.perSec)),
      p99: median(mine.map((r) => r.p99)),
      cpuMsPerVerdictAllNodes: Math.round(median(mine.map((r) => r.cpuMsPerVerdict.reduce((x, y) => x + y, 0))) * 1000) / 1000,
    };
  };
  const sa = summary(a.label);
  const sb = summary(b.label);
  console.log(JSON.stringify({ ab: 'summary', mode, concurrency, duration, warmup, leaderOnly: args['leader-only'], a: sa, b: sb, throughputRatioBA: Math.round((sb.perSec / sa.perSec) * 100) / 100 }));
} finally {
  for (const root of worktrees) spawnSync('git', ['-C', REPO_ROOT, 'worktree', 'remove', '--force', root]);
  if (existsSync(work)) rmSync(work, { recursive: true, force: true });
}
