// Owns the benchmark smoke test: `npm run bench -- --quick --only micro`, `--only reads` and `--only floor` with tiny durations, as
// real processes. Checks only that they exit 0 and print valid JSON lines covering every micro-benchmark and every
// read case, the admission floor's run (and results.jsonl); never a timing assertion (benchmarks are not tests).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const repo = resolve(import.meta.dirname, '..', '..');
const out = mkdtempSync(join(tmpdir(), 'conclave-bench-smoke-'));

afterAll(() => rmSync(out, { recursive: true, force: true }));

/** Runs `npm run bench -- ARGS --out OUT` as a real process; asserts it exits 0; its stdout lines, parsed. */
function runBench(args: string[], outDir: string, timeoutMs: number): Record<string, unknown>[] {
  const run = spawnSync('npm', ['run', '--silent', 'bench', '--', ...args, '--out', outDir], { cwd: repo, encoding: 'utf8', timeout: timeoutMs });
  expect(run.error, String(run.error)).toBeUndefined();
  expect(run.status, run.stderr.slice(-2000)).toBe(0);
  return run.stdout.split('\n').filter((l) => l.trim().length > 0).map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('npm run bench (smoke)', () => {
  it('runs the micro-benchmarks and prints valid JSON lines', () => {
    // ~40 s on this machine under load; generous so a busy CI box does not flake
    const parsed = runBench(['--quick', '--only', 'micro', '--micro-seconds', '0.1', '--audit-entries', '300'], out, 170_000);
    expect(parsed[0]).toMatchObject({ bench: 'start' });
    expect(parsed.at(-1)).toMatchObject({ bench: 'end' });
    const micro = parsed.filter((p) => p.group === 'micro');
    expect(micro.filter((p) => 'error' in p), JSON.stringify(micro.filter((p) => 'error' in p))).toEqual([]);
    expect(new Set(micro.map((p) => p.bench))).toEqual(new Set(['raft-core', 'pbft-core', 'ed25519', 'transport', 'storage', 'audit', 'proofs']));
    const saved = readFileSync(join(out, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as unknown);
    expect(saved).toHaveLength(parsed.length);
  }, 180_000);

  it('runs the read benchmark (plain and consistent reads, raft and pbft) and prints valid JSON lines', () => {
    const readsOut = join(out, 'reads');
    const parsed = runBench(['--quick', '--only', 'reads', '--concurrency', '2', '--duration', '1', '--warmup', '0.5'], readsOut, 230_000);
    expect(parsed.filter((p) => 'error' in p), JSON.stringify(parsed.filter((p) => 'error' in p))).toEqual([]);
    const reads = parsed.filter((p) => typeof p.op === 'string');
    expect(reads.map((p) => `${String(p.scenario)} ${String(p.op)}`).sort()).toEqual(['pbft-4 read', 'pbft-4 read-consistent', 'raft-3 read', 'raft-3 read-consistent']);
    for (const line of reads) expect(line.committed, JSON.stringify(line)).toBeGreaterThan(0);
  }, 240_000);

  it('runs the admission floor (the API and admission alone, one process) and prints valid JSON lines', () => {
    const floorOut = join(out, 'floor');
    const parsed = runBench(['--quick', '--only', 'floor', '--concurrency', '2', '--duration', '1', '--warmup', '0.5'], floorOut, 110_000);
    expect(parsed.filter((p) => 'error' in p), JSON.stringify(parsed.filter((p) => 'error' in p))).toEqual([]);
    const floor = parsed.filter((p) => p.scenario === 'admission-1' && typeof p.concurrency === 'number');
    expect(floor).toHaveLength(1);
    // every posted verdict admitted (signature checked) and answered: the floor refuses nothing the real node accepts
    expect(floor[0]!.committed, JSON.stringify(floor[0])).toBeGreaterThan(0);
    expect(floor[0]!.errors, JSON.stringify(floor[0])).toBe(0);
  }, 120_000);
});
