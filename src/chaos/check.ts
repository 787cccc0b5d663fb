// Owns the chaos tool's final checks, run once every fault is healed: the nodes converge (same applied index),
// then on EVERY node each acknowledged verdict is recorded exactly once (one vote with its jwsHash on its subject,
// at the acknowledged index), the committed logs are identical (entry hashes compared page by page), every
// subject's votes and decision are identical, and `conclave audit` verifies a node's export.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiFetch, apiJson, CONCLAVE_BIN, REPO_ROOT, waitFor, type ClusterNode } from '../devcluster/cluster.ts';
import type { Operation } from './workload.ts';

export interface CheckResult {
  acked: number;
  lost: number;
  duplicated: number;
  divergent: number;
  auditOk: boolean;
  converged: boolean;
  appliedIndex: number[];
  /** Acknowledged verdicts recorded at another index than the one acknowledged (counted in divergent). */
  indexMismatches: number;
  /** Refused (4xx) or indeterminate verdicts found committed: allowed for indeterminate, reported for refused. */
  refusedButPresent: number;
  indeterminatePresent: number;
  indeterminateAbsent: number;
  problems: string[];
  auditOutput: string;
}

interface SwarmStatus {
  appliedIndex: number;
  commitIndex: number;
  role: string;
  leader: string | null;
}

interface SubjectView {
  votes: { org: string; jwsHash: string; index: number; verdict: string }[];
  decision: { value: string; index: number; votes: number } | null;
}

async function statusOf(node: ClusterNode, swarm: string): Promise<SwarmStatus> {
  return apiJson<SwarmStatus>(node, `/v1/swarms/${swarm}/status`, { timeoutMs: 10_000 });
}

/** Waits until every node reports the same applied index, twice in a row, at least `minIndex`. */
export async function waitConverged(nodes: ClusterNode[], swarm: string, minIndex: number, timeoutMs: number): Promise<number[]> {
  let previous: string | null = null;
  let last: number[] = [];
  try {
    await waitFor(
      async () => {
        const statuses = await Promise.all(nodes.map((node) => statusOf(node, swarm)));
        last = statuses.map((s) => s.appliedIndex);
        const same = last.every((i) => i === last[0]) && last[0]! >= minIndex && statuses.every((s) => s.commitIndex <= s.appliedIndex);
        const key = JSON.stringify(last);
        const stable = same && previous === key;
        previous = key;
        return stable;
      },
      { timeoutMs, what: `every node to apply the same index (≥ ${minIndex})`, intervalMs: 1000 },
    );
  } catch (error) {
    throw Object.assign(new Error(`${(error as Error).message}; applied indexes: ${nodes.map((n, i) => `${n.org}=${last[i] ?? '?'}`).join(' ')}`), { applied: last });
  }
  return last;
}

/** Fetches a whole committed log's entry hashes, 1000 per page (bounded by `upTo`). */
async function logHashes(node: ClusterNode, swarm: string, upTo: number): Promise<string[]> {
  const hashes: string[] = [];
  for (let from = 1; from <= upTo; ) {
    const page = await apiJson<{ entries: { index: number; hash: string }[] }>(node, `/v1/swarms/${swarm}/log?from=${from}&limit=1000`, { timeoutMs: 60_000 });
    if (page.entries.length === 0) break;
    for (const entry of page.entries) {
      if (entry.index !== hashes.length + 1) throw new Error(`${node.org}'s log skips from ${hashes.length} to ${entry.index}`);
      hashes.push(entry.hash);
    }
    from = hashes.length + 1;
  }
  return hashes;
}

async function subjectOf(node: ClusterNode, swarm: string, subject: string): Promise<SubjectView | null> {
  const response = await apiFetch(node, `/v1/swarms/${swarm}/subjects/${subject}`, { timeoutMs: 30_000 });
  const text = await response.text();
  if (response.status === 404) return null;
  if (response.status !== 200) throw new Error(`GET subject ${subject} on ${node.org} answered ${response.status}: ${text.slice(0, 200)}`);
  return JSON.parse(text) as SubjectView;
}

/** Runs `f` over `items` with at most `limit` at once. */
async function mapLimit<T, R>(items: T[], limit: number, f: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await f(items[i]!);
      }
    }),
  );
  return results;
}

function runAudit(federationFile: string, exportFile: string, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CONCLAVE_BIN, 'audit', '--quiet', '--federation', federationFile, exportFile], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ code: null, output: `${output}\n${error.message}` });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

export interface CheckOptions {
  nodes: ClusterNode[];
  swarm: string;
  ops: Operation[];
  dir: string;
  convergeTimeoutMs?: number;
  log?: (line: string) => void;
}

export async function checkCluster(options: CheckOptions): Promise<CheckResult> {
  const { nodes, swarm, ops, dir } = options;
  const log = options.log ?? (() => undefined);
  const acked = ops.filter((op) => op.outcome === 'ok');
  const result: CheckResult = {
    acked: acked.length,
    lost: 0,
    duplicated: 0,
    divergent: 0,
    auditOk: false,
    converged: false,
    appliedIndex: [],
    indexMismatches: 0,
    refusedButPresent: 0,
    indeterminatePresent: 0,
    indeterminateAbsent: 0,
    problems: [],
    auditOutput: '',
  };
  const minIndex = Math.max(0, ...acked.map((op) => op.index ?? 0));
  try {
    result.appliedIndex = await waitConverged(nodes, swarm, minIndex, options.convergeTimeoutMs ?? 120_000);
    result.converged = true;
    log(`converged: every node applied index ${result.appliedIndex[0]}`);
  } catch (error) {
    result.appliedIndex = ((error as { applied?: number[] }).applied ?? []).slice();
    result.problems.push(`no convergence: ${(error as Error).message}`);
    log(`NOT converged: ${(error as Error).message}`);
  }

  // Logs: identical entry hashes at every index, and the same length.
  const upTo = Math.max(minIndex, ...result.appliedIndex, 0) + 1000;
  const logs = await Promise.all(nodes.map((node) => logHashes(node, swarm, upTo).catch((error: Error) => (result.problems.push(error.message), [] as string[]))));
  const longest = Math.max(...logs.map((l) => l.length));
  let divergentEntries = 0;
  for (let i = 0; i < longest; i++) {
    const hashes = new Set(logs.map((l) => l[i] ?? 'missing'));
    if (hashes.size > 1) {
      divergentEntries++;
      if (divergentEntries <= 5) result.problems.push(`log entry ${i + 1} differs: ${nodes.map((n, k) => `${n.org}=${(logs[k]![i] ?? 'missing').slice(0, 12)}`).join(' ')}`);
    }
  }
  result.divergent += divergentEntries;
  log(`logs: ${logs.map((l, k) => `${nodes[k]!.org} ${l.length} entries`).join(', ')}; ${divergentEntries} indexes differ`);

  // Every subject submitted (acknowledged or not), on every node.
  const bySubject = new Map(ops.map((op) => [op.subject, op]));
  const views = await mapLimit([...bySubject.keys()], 16, async (subject) =>
    Promise.all(nodes.map((node) => subjectOf(node, swarm, subject).catch((error: Error) => ({ error: error.message }) as const))),
  );
  let divergentSubjects = 0;
  for (const [i, subject] of [...bySubject.keys()].entries()) {
    const op = bySubject.get(subject)!;
    const perNode = views[i]!;
    const texts = new Set(perNode.map((view) => JSON.stringify(view)));
    if (texts.size > 1) {
      divergentSubjects++;
      if (divergentSubjects <= 5) result.problems.push(`subject ${subject} differs between nodes: ${[...texts].map((t) => t.slice(0, 300)).join(' vs ')}`);
    }
    const counts = perNode.map((view) => (view && 'votes' in view ? view.votes.filter((v) => v.jwsHash === op.jwsHash) : []));
    if (op.outcome === 'ok') {
      const missing = counts.filter((c) => c.length === 0).length;
      const twice = counts.filter((c) => c.length > 1).length;
      if (missing > 0) {
        result.lost++;
        if (result.lost <= 5) result.problems.push(`acknowledged verdict ${op.jwsHash.slice(0, 16)} (${subject}, index ${op.index}) missing on ${nodes.filter((_, k) => counts[k]!.length === 0).map((n) => n.org).join(', ')}`);
      } else if (twice > 0) {
        result.duplicated++;
        if (result.duplicated <= 5) result.problems.push(`acknowledged verdict ${op.jwsHash.slice(0, 16)} (${subject}) recorded more than once on ${twice} node(s)`);
      } else if (op.index !== undefined && counts.some((c) => c[0]!.index !== op.index)) {
        result.indexMismatches++;
        if (result.indexMismatches <= 5) result.problems.push(`verdict ${op.jwsHash.slice(0, 16)} acknowledged at index ${op.index}, recorded at ${counts.map((c) => c[0]!.index).join('/')}`);
      }
    } else {
      const present = counts.some((c) => c.length > 0);
      if (op.outcome === 'fail' && present) {
        result.refusedButPresent++;
        result.problems.push(`verdict ${op.jwsHash.slice(0, 16)} was refused (${op.error}) but is committed`);
      }
      if (op.outcome === 'info') {
        if (present) result.indeterminatePresent++;
        else result.indeterminateAbsent++;
      }
    }
  }
  result.divergent += divergentSubjects + result.indexMismatches;
  log(`subjects: ${bySubject.size} checked on ${nodes.length} nodes; ${divergentSubjects} differ between nodes`);

  // The audit of one node's export.
  const exporter = nodes[0]!;
  const exportFile = join(dir, `${swarm}-${exporter.org}-export.jsonl`);
  try {
    const response = await apiFetch(exporter, `/v1/swarms/${swarm}/export`, { timeoutMs: 120_000 });
    const text = await response.text();
    if (response.status !== 200) throw new Error(`export from ${exporter.org} answered ${response.status}: ${text.slice(0, 300)}`);
    writeFileSync(exportFile, text);
    const audit = await runAudit(exporter.federationFile, exportFile, 180_000);
    result.auditOutput = audit.output.trim();
    result.auditOk = audit.code === 0;
    if (!result.auditOk) result.problems.push(`conclave audit of ${exportFile} exited with ${audit.code}: ${audit.output.trim().split('\n').slice(-5).join(' | ')}`);
    log(`audit of ${exporter.org}'s export: ${result.auditOk ? 'verifies' : `FAILS (exit ${audit.code})`}`);
  } catch (error) {
    result.problems.push(`audit could not run: ${(error as Error).message}`);
  }
  return result;
}
