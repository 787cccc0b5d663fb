// Owns the end-to-end demo test: `node bin/conclave.js demo` as a real process (three node processes, verdicts,
// the decision on every node, export and offline audit), its output, exit code, and that no node outlives it.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..', '..');

function run(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'conclave.js'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGINT'); // the demo stops its nodes on SIGINT
      fail(new Error(`demo did not finish within ${timeoutMs / 1000} s\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

/** Pids of live processes whose command line mentions `text` (Linux /proc). */
function processesMentioning(text: string): number[] {
  if (process.platform !== 'linux') return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

describe('npm run demo', () => {
  it('runs three nodes, commits one decision every node reports, and the audit of the export verifies', async () => {
    const started = Date.now();
    const { code, stdout, stderr } = await run(['demo'], 110_000);
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
