// Owns one chaos run end to end: a proxied cluster, the agents' workload and the nemesis for `duration` seconds,
// then heal everything, let in-flight verdicts drain, check every node, stop the nodes and the proxies, and
// summarise (faults injected, the check's counts, the final `acked: A, lost: L, duplicated: D, divergent: V` line).
import { randomInt } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { SwarmSpec } from '../config/local-federation.ts';
import { closeClients, downCluster, stopAll, type ClusterMode } from '../devcluster/cluster.ts';
import { checkCluster, type CheckResult } from './check.ts';
import { upChaosCluster, type ChaosCluster } from './cluster.ts';
import { History } from './history.ts';
import { FAULT_KINDS, Nemesis, type FaultKind, type FaultRecord } from './nemesis.ts';
import { Workload, type ReadStats } from './workload.ts';

export interface ChaosOptions {
  durationS: number;
  mode: ClusterMode;
  /** Default: 3 for raft, 4 for pbft. */
  orgs?: number;
  dir?: string;
  seed?: number;
  historyFile?: string;
  clientsPerOrg?: number;
  maxOpsPerClient?: number;
  /** Consistent readers per org (default 1; 0: none). */
  readersPerOrg?: number;
  kinds?: readonly FaultKind[];
  /** Keep the working folder (data, logs, exports) even when the run passes; a failed run always keeps it. */
  keepDir?: boolean;
  log?: (line: string) => void;
}

export interface ChaosResult {
  seed: number;
  dir: string;
  check: CheckResult | null;
  faults: FaultRecord[];
  unexpectedExits: { org: string; at: number; logTail: string }[];
  ops: { total: number; ok: number; fail: number; info: number; attempts: number };
  /** What the consistent readers saw (Workload.reads): `stale` and `unexpected` must be 0. */
  reads: ReadStats;
  errors: Record<string, number>;
  error: string | null;
  ok: boolean;
  finalLine: string;
}

/** Every verdict is its own subject and decides it alone (quorum 1): each acknowledged verdict is a recorded vote. */
export const CHAOS_POLICY: SwarmSpec['policy'] = {
  values: ['approve', 'reject'],
  quorum: 1,
  rule: 'majority',
  // Clients resend the same signed verdict for as long as a fault lasts: its iat must stay acceptable.
  maxClockSkewSeconds: 3600,
};

export const CHAOS_SWARM = 'chaos';

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const log = options.log ?? (() => undefined);
  const seed = options.seed ?? randomInt(1, 2 ** 31);
  const orgs = options.orgs ?? (options.mode === 'pbft' ? 4 : 3);
  // With live mode switches the swarm may run pbft at any time: at most f faulty then.
  const pbftAtSomePoint = options.mode === 'pbft' || (options.kinds ?? []).includes('switch-mode');
  const maxFaulty = pbftAtSomePoint ? Math.floor((orgs - 1) / 3) : Math.floor((orgs - 1) / 2);
  if (pbftAtSomePoint && orgs < 4) throw new Error(`pbft needs at least 4 orgs (switch-mode switches to it); got ${orgs}`);
  const ownDir = options.dir === undefined;
  const dir = resolve(options.dir ?? join(mkdtempSync(join(tmpdir(), 'conclave-chaos-')), 'cluster'));
  const started = performance.now();
  const result: ChaosResult = {
    seed,
    dir,
    check: null,
    faults: [],
    unexpectedExits: [],
    ops: { total: 0, ok: 0, fail: 0, info: 0, attempts: 0 },
    reads: { total: 0, found: 0, stale: 0, unavailable: 0, unexpected: 0, plainStale: 0, problems: [] },
    errors: {},
    error: null,
    ok: false,
    finalLine: '',
  };
  let cluster: ChaosCluster | null = null;
  const history = new History(started, options.historyFile ? resolve(options.historyFile) : null);
  try {
    log(`chaos: mode ${options.mode}, ${orgs} orgs, at most ${maxFaulty} faulty at once, ${options.durationS} s of faults, seed ${seed}, in ${dir}`);
    cluster = await upChaosCluster({ dir, mode: options.mode, orgs, swarm: CHAOS_SWARM, policy: CHAOS_POLICY, onProgress: log });
    const nodes = cluster.info.nodes;
    log(`all ${nodes.length} nodes ready; starting ${options.clientsPerOrg ?? 2} clients per org and the nemesis`);

    const workload = new Workload({
      nodes,
      swarm: CHAOS_SWARM,
      runId: `s${seed}`,
      clientsPerOrg: options.clientsPerOrg ?? 2,
      maxOpsPerClient: options.maxOpsPerClient ?? 5000,
      readersPerOrg: options.readersPerOrg ?? 1,
      history,
    });
    const until = Date.now() + options.durationS * 1000;
    const nemesis = new Nemesis({
      dir,
      mesh: cluster.mesh,
      orgs: nodes.map((n) => n.org),
      maxFaulty,
      seed,
      until,
      started,
      kinds: options.kinds ?? FAULT_KINDS,
      log,
    });
    workload.start();
    // Bounded: the nemesis stops starting faults at `until`; healing a fault (a restart) is bounded too.
    await nemesis.run();
    workload.stopIssuing();
    result.faults = nemesis.faults;
    result.unexpectedExits = nemesis.unexpectedExits;
    log(`faults over; everything healed at ${((performance.now() - started) / 1000).toFixed(1)} s; letting verdicts in flight finish`);
    await workload.finish(Date.now() + 90_000);
    await workload.stopReading();
    result.reads = workload.reads;
    history.flush();
    // One more look for nodes that died on their own during the drain.
    await nemesis.healAll();
    result.unexpectedExits = nemesis.unexpectedExits;

    const ops = workload.ops;
    result.ops = {
      total: ops.length,
      ok: ops.filter((op) => op.outcome === 'ok').length,
      fail: ops.filter((op) => op.outcome === 'fail').length,
      info: ops.filter((op) => op.outcome === 'info').length,
      attempts: ops.reduce((sum, op) => sum + op.attempts, 0),
    };
    result.errors = Object.fromEntries(workload.errors);
    log(`operations: ${result.ops.total} submitted, ${result.ops.ok} acknowledged, ${result.ops.fail} refused, ${result.ops.info} indeterminate, ${result.ops.attempts} requests`);
    result.check = await checkCluster({ nodes, swarm: CHAOS_SWARM, ops, dir, log });
  } catch (error) {
    result.error = (error as Error).stack ?? String(error);
  } finally {
    history.flush();
    if (cluster) {
      await downCluster(dir).catch(() => stopAll());
      await cluster.mesh.close();
    }
    await closeClients();
  }
  const c = result.check;
  result.finalLine = c ? `acked: ${c.acked}, lost: ${c.lost}, duplicated: ${c.duplicated}, divergent: ${c.divergent}` : 'acked: 0, lost: ?, duplicated: ?, divergent: ?';
  result.ok =
    result.error === null &&
    c !== null &&
    c.converged &&
    c.auditOk &&
    c.acked > 0 &&
    c.lost === 0 &&
    c.duplicated === 0 &&
    c.divergent === 0 &&
    c.refusedButPresent === 0 &&
    result.reads.stale === 0 &&
    result.reads.unexpected === 0 &&
    result.unexpectedExits.length === 0;
  if (ownDir && result.ok && !options.keepDir) rmSync(resolve(dir, '..'), { recursive: true, force: true });
  return result;
}
