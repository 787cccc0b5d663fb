// Owns the end-to-end demo test: `node bin/conclave.js demo` as a real process (three node processes, verdicts,
// the decision on every node, export and offline audit), its output, exit code, and that no node outlives it.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { processesMentioning, runConclave } from '../support/processes.ts';

describe('npm run demo', () => {
  it('runs three nodes, commits one decision every node reports, and the audit of the export verifies', async () => {
    const started = Date.now();
    const { code, stdout, stderr } = await runConclave(['demo'], 110_000);
    const seconds = (Date.now() - started) / 1000;
    const transcript = `exit ${code} after ${seconds.toFixed(1)} s\n--- stdout\n${stdout}\n--- stderr\n${stderr}`;
    expect(code, transcript).toBe(0);

    // Every org's verdict was committed by its own node.
    expect(stdout).toMatch(/acme\s+approve\s+→ acme's node: committed at index \d+/);
    expect(stdout).toMatch(/globex\s+request-changes\s+→ globex's node: committed at index \d+/);
    expect(stdout).toMatch(/initech\s+approve\s+→ initech's node: committed at index \d+/);
    // The decision table: one row per node, all approve at the same index.
    const rows = [...stdout.matchAll(/^\s+(acme|globex|initech)\s+(\S+)\s+(\d+)\s+acme=approve globex=request-changes initech=approve$/gm)];
    expect(rows.map((r) => r[1])).toEqual(['acme', 'globex', 'initech']);
    expect(new Set(rows.map((r) => `${r[2]}@${r[3]}`))).toEqual(new Set([`approve@${rows[0]![3]}`]));
    expect(stdout).toContain('all 3 nodes agree: approve');
    // The auditor's summary.
    expect(stdout).toMatch(/entries verified\s+\d+ \(3 verdicts/);
    expect(stdout).toContain('OK: everything verifies');
    expect(stdout).toMatch(/done in [\d.]+ s/);

    // The temp folder is gone and no node of it is left running.
    const dir = /working in (\S+)/.exec(stdout)![1]!;
    expect(existsSync(dir)).toBe(false);
    expect(processesMentioning(dir)).toEqual([]);
  });
});
