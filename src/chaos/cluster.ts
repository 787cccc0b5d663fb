// Owns the chaos tool's cluster: a dev cluster (DIR/cluster.json, same layout as `conclave dev-cluster up`, so
// the dev-cluster library kills and restarts its nodes) whose nodes reach each other only through a ProxyMesh:
// each org's federation file is rewritten so that, in org A's file, member B's peerUrl is the A→B proxy.
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { loadFederation } from '../config/load.ts';
import { freePorts, writeLocalFederation, type SwarmSpec } from '../config/local-federation.ts';
import { clusterInfoOf, DEFAULT_ORG_NAMES, restartNode, waitFor, apiFetch, isNodeRunning, logTail, type ClusterInfo, type ClusterMode } from '../devcluster/cluster.ts';
import { ProxyMesh } from './proxy.ts';

export interface ChaosClusterOptions {
  dir: string;
  mode: ClusterMode;
  orgs: number;
  swarm: string;
  policy: SwarmSpec['policy'];
  readyTimeoutMs?: number;
  onProgress?: (line: string) => void;
}

export interface ChaosCluster {
  dir: string;
  info: ClusterInfo;
  mesh: ProxyMesh;
}

const HOST = '127.0.0.1';

/** In `file` (org `self`'s federation file), points every other member's peerUrl at self's proxy to it. */
export function rewritePeerUrls(file: string, self: string, mesh: ProxyMesh): void {
  const doc = parseDocument(readFileSync(file, 'utf8'));
  const members = doc.get('members') as { items: { get(key: string): unknown; set(key: string, value: unknown): void }[] };
  for (const member of members.items) {
    const org = String(member.get('org'));
    if (org === self) continue;
    member.set('peerUrl', `https://${HOST}:${mesh.link(self, org).port}`);
  }
  const temp = `${file}.tmp`;
  writeFileSync(temp, doc.toString({ lineWidth: 0 }));
  renameSync(temp, file);
  loadFederation(file); // still a valid federation file
}

/** Writes the federation, starts the proxies, starts one node per org, waits until every node is ready. */
export async function upChaosCluster(options: ChaosClusterOptions): Promise<ChaosCluster> {
  const dir = resolve(options.dir);
  const progress = options.onProgress ?? (() => undefined);
  if (existsSync(dir) && readdirSync(dir).length > 0) throw new Error(`${options.dir} is not empty: give a new or empty folder`);
  mkdirSync(dir, { recursive: true });
  const orgs = Array.from({ length: options.orgs }, (_, i) => DEFAULT_ORG_NAMES[i] ?? `org-${i + 1}`);

  const free = await freePorts(orgs.length * 2, HOST);
  const ports = Object.fromEntries(orgs.map((org, i) => [org, { peer: free[2 * i]!, api: free[2 * i + 1]! }]));
  const mesh = await ProxyMesh.start(
    orgs,
    Object.fromEntries(orgs.map((org) => [org, ports[org]!.peer])),
    HOST,
  );
  try {
    progress(`writing keys, certificates and federation files for ${orgs.join(', ')}`);
    const federation = await writeLocalFederation({
      dir,
      orgs,
      host: HOST,
      ports,
      swarm: { id: options.swarm, mode: options.mode, policy: options.policy },
    });
    for (const org of federation.orgs) rewritePeerUrls(org.configPath, org.org, mesh);
    progress(`${mesh.all().length} link proxies between ${orgs.length} nodes (every peer connection goes through one)`);

    const info = clusterInfoOf(options.mode, options.swarm, federation);
    writeFileSync(join(dir, 'cluster.json'), JSON.stringify(info, null, 2) + '\n');
    writeFileSync(join(dir, 'launch.json'), '{}\n');
    progress(`starting ${orgs.length} node processes (logs in ${join(dir, 'logs')})`);
    // restartNode starts a node that is not running (pid 0) and records its pid in cluster.json.
    const started = await Promise.all(orgs.map((org) => restartNode(dir, org, { timeoutMs: options.readyTimeoutMs ?? 120_000 })));
    info.nodes = started;
    await Promise.all(started.map((node) => waitReady(dir, node, options.readyTimeoutMs ?? 120_000)));
    return { dir, info, mesh };
  } catch (error) {
    await mesh.close();
    throw error;
  }
}

export async function waitReady(dir: string, node: ClusterInfo['nodes'][number], timeoutMs: number): Promise<void> {
  await waitFor(
    async () => {
      if (!isNodeRunning(node)) throw new Error(`the node of ${node.org} is not running; its log ends:\n${logTail(dir, node.org)}`);
      const response = await apiFetch(node, '/readyz', { timeoutMs: 10_000 });
      await response.arrayBuffer();
      return response.status === 200;
    },
    { timeoutMs, what: `${node.org}'s /readyz`, intervalMs: 300 },
  );
}
