// Owns the memory-at-scale benchmark (`npm run bench -- --only memory --verdicts N`): a raft-3 dev cluster driven
// by bench/loadgen.ts (own process) to N acknowledged verdicts — half on unique subjects, half three per subject
// (a decision at the second, a late verdict at the third) — sampling each node's RSS and V8 heap at every tenth
// of N, then once more after the cluster has applied everything. One JSON line per sample, plus a summary with
// the slope (MB per 100k verdicts) over the second half, where start-up costs no longer count.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiFetch, type ClusterNode } from '../../src/devcluster/cluster.ts';
import type { LoadConfig } from '../loadgen.ts';
import { runScript } from './child.ts';
import { commitIndex, startConclave, stopConclave } from './conclave.ts';
import { rssMb } from './proc.ts';

export interface MemorySample {
  scale: 'memory-at-verdicts';
  verdicts: number;
  seconds: number;
  commitIndex: number | null;
  nodes: { org: string; rssMb: number | null; heapUsedMb: number | null; externalMb: number | null; mallocHeapMb: number | null }[];
}

/**
 * RSS (MB) of the process's `[heap]` mapping: glibc's main malloc arena (the JS thread's native allocations, Buffer
 * backing stores, RocksDB memtables and batches written from it). Where native growth shows first.
 */
function mallocHeapMb(pid: number): number | null {
  try {
    const smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8');
    const at = smaps.search(/ \[heap\]\n/);
    if (at < 0) return 0;
    const match = /\nRss:\s+(\d+) kB/.exec(smaps.slice(at));
    return match ? Math.round(Number(match[1]) / 102.4) / 10 : null;
  } catch {
    return null;
  }
}

/** heap used and external memory (MB) from the node's Prometheus default metrics. */
async function heapOf(node: ClusterNode): Promise<{ heapUsedMb: number | null; externalMb: number | null }> {
  try {
    const response = await apiFetch(node, '/metrics', { signal: AbortSignal.timeout(10_000) });
    const text = await response.text();
    const read = (name: string): number | null => {
      const match = new RegExp(`^conclave_process_${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text);
      return match ? Math.round(Number(match[1]) / 1024 / 102.4) / 10 : null;
    };
    return { heapUsedMb: read('nodejs_heap_size_used_bytes'), externalMb: read('nodejs_external_memory_bytes') };
  } catch {
    return { heapUsedMb: null, externalMb: null };
  }
}

export async function memoryAtScale(
  dir: string,
  verdicts: number,
  emit: (line: Record<string, unknown>) => void,
  progress: (text: string) => void,
): Promise<void> {
  progress(`memory: raft-3 cluster to ${verdicts} verdicts`);
  const cluster = await startConclave(dir, 3, 'raft', progress);
  const { nodes } = cluster.info;
  const t0 = performance.now();
  const samples: MemorySample[] = [];
  const sample = async (count: number): Promise<void> => {
    const rss = nodes.map((n) => rssMb(n.pid));
    const mallocHeap = nodes.map((n) => mallocHeapMb(n.pid));
    const heaps = await Promise.all(nodes.map((n) => heapOf(n)));
    const line: MemorySample = {
      scale: 'memory-at-verdicts',
      verdicts: count,
      seconds: Math.round((performance.now() - t0) / 1000),
      commitIndex: await commitIndex(nodes[0]!, cluster.info.swarm),
      nodes: nodes.map((n, i) => ({ org: n.org, rssMb: rss[i] ?? null, ...heaps[i]!, mallocHeapMb: mallocHeap[i] ?? null })),
    };
    samples.push(line);
    emit({ ...line });
  };
  try {
    await sample(0);
    const config: LoadConfig = {
      kind: 'conclave',
      targets: cluster.targets,
      swarm: cluster.info.swarm,
      concurrency: 64,
      warmupSeconds: 0,
      // generous: the run ends at `verdicts` acknowledged, this only bounds a stuck cluster (>= 50 verdicts/s)
      durationSeconds: Math.ceil(verdicts / 50) + 60,
      tailSeconds: 0,
      valueBytes: 512,
      subjects: 'mixed',
      runId: `mem-${process.pid}`,
      maxRequests: verdicts,
    };
    const file = join(dir, '..', `load-memory-${verdicts}.json`);
    writeFileSync(file, JSON.stringify(config));
    const pending: Promise<void>[] = [];
    const result = await runScript('bench/loadgen.ts', [file], {
      timeoutMs: (config.durationSeconds + 120) * 1000,
      onEvent: (event) => {
        const match = /^acked (\d+)$/.exec(event);
        if (match) pending.push(sample(Number(match[1])));
      },
    });
    await Promise.all(pending);
    // Let the followers apply everything and the leader's periodic work settle, then the last sample.
    await new Promise((done) => setTimeout(done, 10_000));
    await sample(verdicts);
    const half = samples.filter((s) => s.verdicts >= verdicts / 2 && s.verdicts > 0);
    const first = half[0];
    const last = samples.at(-1)!;
    const slope = first && last.verdicts > first.verdicts
      ? nodes.map((n, i) => {
          const a = first.nodes[i]!.rssMb;
          const b = last.nodes[i]!.rssMb;
          return { org: n.org, rssMbPer100k: a !== null && b !== null ? Math.round(((b - a) / (last.verdicts - first.verdicts)) * 100_000 * 10) / 10 : null };
        })
      : null;
    emit({
      scale: 'memory-at-verdicts-summary',
      verdicts,
      seconds: last.seconds,
      verdictsPerSec: Math.round(verdicts / Math.max(1, last.seconds)),
      loadgen: result.lines[0] ?? { error: `exit ${result.code}`, stderr: result.stderr.slice(-600) },
      finalRssMb: last.nodes.map((n) => ({ org: n.org, rssMb: n.rssMb, heapUsedMb: n.heapUsedMb })),
      maxRssMb: Math.max(...samples.flatMap((s) => s.nodes.map((n) => n.rssMb ?? 0))),
      slopeSecondHalf: slope,
      targetRssMb: 300,
    });
  } finally {
    await stopConclave(cluster);
  }
}
