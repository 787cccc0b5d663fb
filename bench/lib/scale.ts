// Owns the idle-swarms scale check: a 3-org federation whose nodes each host N raft swarms with no traffic; reports
// how long the nodes take to become ready (every swarm knows a leader), then CPU % per node while idle and RSS.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { writeLocalFederation } from '../../src/config/local-federation.ts';
import { apiFetch, CONCLAVE_BIN, DEFAULT_POLICY, REPO_ROOT, type ClusterNode } from '../../src/devcluster/cluster.ts';
import { cpuPercent, cpuSample, rssMb } from './proc.ts';

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

export async function idleSwarms(dir: string, count: number, idleSeconds: number, progress: (line: string) => void): Promise<Record<string, unknown>> {
  const orgs = ['acme', 'globex', 'initech'];
  // Fresh objects per swarm: the YAML writer turns objects shared between swarms into anchors and aliases, and the
  // loader refuses a file with ~1,000 aliases as a resource exhaustion attack.
  const swarms = Array.from({ length: count }, (_, i) => ({
    id: `idle-${String(i).padStart(4, '0')}`,
    mode: 'raft' as const,
    members: [...orgs],
    policy: structuredClone(DEFAULT_POLICY),
  }));
  const federation = await writeLocalFederation({ dir, orgs, swarms });
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const nodes = federation.orgs.map((org) => {
    const out = openSync(join(dir, 'logs', `${org.org}.log`), 'a');
    const child = spawn(process.execPath, [CONCLAVE_BIN, 'start', '--config', org.configPath], { cwd: REPO_ROOT, stdio: ['ignore', out, out] });
    closeSync(out);
    child.on('error', () => undefined);
    const node: ClusterNode = { org: org.org, pid: child.pid ?? 0, peerUrl: org.peerUrl, apiUrl: org.apiUrl, dataDir: org.dataDir, orgDir: org.certDir, federationFile: org.configPath };
    return { node, child };
  });
  const started = performance.now();
  const readyTimeout = Math.max(60_000, count * 200);
  const readyAfter: (number | null)[] = nodes.map(() => null);
  const errors: string[] = [];
  try {
    while (performance.now() - started < readyTimeout && readyAfter.some((r) => r === null)) {
      await Promise.all(
        nodes.map(async ({ node, child }, i) => {
          if (readyAfter[i] !== null) return;
          if (child.exitCode !== null) {
            readyAfter[i] = -1;
            errors.push(`${node.org} exited with ${child.exitCode}`);
            return;
          }
          try {
            const r = await apiFetch(node, '/readyz', { timeoutMs: 10_000 });
            await r.arrayBuffer();
            if (r.status === 200) readyAfter[i] = Math.round(performance.now() - started) / 1000;
          } catch {
            // not up yet
          }
        }),
      );
      await sleep(500);
    }
    // settle, then measure idle CPU
    await sleep(2000);
    const before = nodes.map(({ node }) => cpuSample(node.pid));
    await sleep(idleSeconds * 1000);
    const after = nodes.map(({ node }) => cpuSample(node.pid));
    const withLeader = await Promise.all(
      nodes.map(async ({ node }) => {
        try {
          const r = await apiFetch(node, '/v1/status', { timeoutMs: 30_000 });
          const status = (await r.json()) as { swarms: { leader: string | null }[] };
          return { hosted: status.swarms.length, withLeader: status.swarms.filter((s) => s.leader).length };
        } catch {
          return null;
        }
      }),
    );
    const perNode = nodes.map(({ node }, i) => ({
      name: node.org,
      readyAfterSeconds: readyAfter[i],
      swarmsHosted: withLeader[i]?.hosted ?? null,
      swarmsWithLeader: withLeader[i]?.withLeader ?? null,
      cpuPercent: cpuPercent(before[i]!, after[i]!),
      rssMb: rssMb(node.pid),
    }));
    const cpuValues = perNode.map((n) => n.cpuPercent ?? 0);
    return {
      scale: 'idle-swarms',
      swarms: count,
      orgs: nodes.length,
      allReady: readyAfter.every((r) => r !== null && r >= 0),
      idleSeconds,
      maxNodeCpuPercent: Math.max(...cpuValues),
      target: 'under 5% of one core per node',
      nodes: perNode,
      ...(errors.length ? { errors } : {}),
    };
  } finally {
    progress('scale: stopping idle-swarm nodes');
    await Promise.all(
      nodes.map(
        ({ child }) =>
          new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
            child.once('exit', () => {
              clearTimeout(timer);
              done();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
  }
}
