// `conclave start` options that are checked before a node exists: a bad --heap-growing-percent is refused with a
// clear message and a non-zero exit; valid values pass on to the config check.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_HEAP_GROWING_PERCENT, parseHeapGrowingPercent } from '../../src/cli/commands/start.ts';
import { REPO_ROOT } from '../../src/devcluster/cluster.ts';

const bin = join(REPO_ROOT, 'bin', 'conclave.js');
const missing = join(REPO_ROOT, 'no-such-dir', 'federation.yaml');

describe('conclave start --heap-growing-percent', () => {
  it('accepts integers 0..1000 and refuses anything else', () => {
    expect(DEFAULT_HEAP_GROWING_PERCENT).toBe(25);
    for (const ok of ['0', '25', '1000']) expect(parseHeapGrowingPercent(ok)).toBe(Number(ok));
    for (const bad of ['-1', '1001', '2.5', 'abc', '']) expect(() => parseHeapGrowingPercent(bad)).toThrow(/integer from 0/);
  });

  it('a bad value stops the command before it reads the federation file; a good one reaches the file check', () => {
    const bad = spawnSync(process.execPath, [bin, 'start', '--config', missing, '--heap-growing-percent', 'lots'], { encoding: 'utf8', timeout: 60_000 });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--heap-growing-percent must be an integer from 0/);
    const good = spawnSync(process.execPath, [bin, 'start', '--config', missing, '--heap-growing-percent', '50'], { encoding: 'utf8', timeout: 60_000 });
    expect(good.status).toBe(2); // the missing federation file: the config error, not an option error
    expect(good.stderr).not.toMatch(/heap-growing-percent/);
  });
});

describe('conclave start --no-relay', () => {
  it('is an option of start (it reaches the file check) and is listed in its help', () => {
    const run = spawnSync(process.execPath, [bin, 'start', '--config', missing, '--no-relay'], { encoding: 'utf8', timeout: 60_000 });
    expect(run.status).toBe(2); // the missing federation file, not an unknown option
    expect(run.stderr).not.toMatch(/unknown option/);
    const help = spawnSync(process.execPath, [bin, 'start', '--help'], { encoding: 'utf8', timeout: 60_000 });
    expect(help.stdout).toMatch(/--no-relay\s+neither relay verdicts to the Raft leader/);
  });
});
