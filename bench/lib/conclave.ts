// Owns the Conclave side of the end-to-end benchmark: a dev cluster (src/devcluster upCluster) as load targets,
// whether the node wires pbft swarms yet, and each node's view of its swarm (commit index) from /v1/status.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiJson, closeClients, downCluster, REPO_ROOT, upCluster, type ClusterInfo, type ClusterNode } from '../../src/devcluster/cluster.ts';
import type { LoadTarget } from '../loadgen.ts';

export interface ConclaveCluster {
  dir: string;
  info: ClusterInfo;
  targets: LoadTarget[];
}

export async function startConclave(dir: string, orgs: number, mode: 'raft' | 'pbft', onProgress?: (line: string) => void): Promise<ConclaveCluster> {
  const info = await upCluster({ orgs, mode, dir, ...(onProgress ? { onProgress } : {}) });
  const targets = info.nodes.map((node) => ({
    url: node.apiUrl,
    caFile: join(node.orgDir, 'ca.crt'),
    org: node.org,
    agentJwkFile: join(node.orgDir, 'agent.jwk'),
  }));
  return { dir, info, targets };
}

export async function stopConclave(cluster: ConclaveCluster): Promise<void> {
  await downCluster(cluster.dir, { timeoutMs: 20_000 }).catch(() => undefined);
  await closeClients();
}

/** The commit index this node reports for the cluster's swarm (null when it does not answer). */
export async function commitIndex(node: ClusterNode, swarm: string): Promise<number | null> {
  try {
    const status = await apiJson<{ swarms: { swarm: string; commit?: number; commitIndex?: number }[] }>(node, '/v1/status', { timeoutMs: 10_000 });
    const s = status.swarms.find((w) => w.swarm === swarm);
    return s ? (s.commit ?? s.commitIndex ?? null) : null;
  } catch {
    return null;
  }
}

/** The leader (raft) or primary (pbft) the first answering node reports for the swarm, or null. */
export async function leaderOf(cluster: ConclaveCluster): Promise<string | null> {
  for (const node of cluster.info.nodes) {
    try {
      const status = await apiJson<{ swarms: { swarm: string; leader?: string | null; primary?: string | null }[] }>(node, '/v1/status', { timeoutMs: 5_000 });
      const s = status.swarms.find((w) => w.swarm === cluster.info.swarm);
      if (s) return s.leader ?? s.primary ?? null;
    } catch {
      // try the next node
    }
  }
  return null;
}

/**
 * Whether `conclave start` runs pbft swarms: node.ts no longer logs "pbft mode is not wired" and src/swarm holds a
 * pbft driver. Checked at run time, since another engineer is wiring it while this benchmark is written.
 */
export function pbftWired(): boolean {
  try {
    const node = readFileSync(join(REPO_ROOT, 'src', 'node', 'node.ts'), 'utf8');
    if (/pbft mode is not wired/i.test(node)) return false;
    const swarmDir = join(REPO_ROOT, 'src', 'swarm');
    return existsSync(swarmDir) && readdirSync(swarmDir).some((f) => /pbft/i.test(f) && readFileSync(join(swarmDir, f), 'utf8').includes('PbftCore'));
  } catch {
    return false;
  }
}
