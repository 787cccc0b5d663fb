// Owns the dev-cluster library tests: three real raft node processes, cluster.json shape, SIGKILL of a follower
// and restart with its data, commits after the restart, and `downCluster` leaving no process behind.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  apiFetch,
  apiJson,
  closeClients,
  currentLeader,
  downCluster,
  findNode,
  isNodeRunning,
  killNode,
  readCluster,
  restartNode,
  stopAll,
  upCluster,
  waitFor,
  type ClusterInfo,
} from '../../src/devcluster/cluster.ts';
import { signVerdict, type AgentPrivateJwk } from '../../src/verdict/agent.ts';

const SUBJECT = 'github.com/acme/widget/pull/7@abc123';

/** Submits `org`'s agent verdict to its own node and waits (retrying while the node catches up) until it commits. */
async function submitUntilCommitted(clusterDir: string, org: string, verdict: string, subject: string): Promise<any> {
  const node = findNode(readCluster(clusterDir), org);
  const jwk = JSON.parse(readFileSync(join(node.orgDir, 'agent.jwk'), 'utf8')) as AgentPrivateJwk;
  const jws = await signVerdict({ privateJwk: jwk, swarm: 'reviews', subject, org, agent: 'test-agent', verdict });
  // A node that just restarted may still be catching up: retry until the verdict commits.
  return waitFor(
    async () => {
      const response = await apiFetch(node, '/v1/swarms/reviews/verdicts', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jws }),
      });
      const body = (await response.json()) as any;
      if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${JSON.stringify(body)}`);
      return body;
    },
    { timeoutMs: 90_000, what: `${org}'s verdict on ${subject} to commit` },
  );
}

describe('dev cluster: three raft node processes', () => {
  let dir: string;
  let info: ClusterInfo;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'conclave-devcluster-'));
    info = await upCluster({ orgs: 3, mode: 'raft', dir: join(dir, 'cluster'), readyTimeoutMs: 120_000 });
  }, 180_000);

  afterAll(async () => {
    if (dir) {
      await downCluster(join(dir, 'cluster')).catch(() => undefined);
      stopAll();
      await closeClients();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('writes cluster.json with the documented shape and every node is ready over HTTPS', async () => {
    const onDisk = JSON.parse(readFileSync(join(dir, 'cluster', 'cluster.json'), 'utf8'));
    expect(Object.keys(onDisk).sort()).toEqual(['mode', 'nodes', 'swarm']);
    expect(onDisk.mode).toBe('raft');
    expect(onDisk.swarm).toBe('reviews');
    expect(onDisk.nodes.map((n: any) => n.org)).toEqual(['acme', 'globex', 'initech']);
    for (const node of onDisk.nodes) {
      expect(Object.keys(node).sort()).toEqual(['apiUrl', 'dataDir', 'federationFile', 'org', 'orgDir', 'peerUrl', 'pid']);
      expect(node.apiUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(node.peerUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(existsSync(join(node.orgDir, 'ca.crt'))).toBe(true);
      expect(existsSync(join(node.orgDir, 'agent.jwk'))).toBe(true);
      expect(existsSync(node.federationFile)).toBe(true);
      expect(isNodeRunning(node)).toBe(true);
    }
    expect(onDisk).toEqual(info);
    for (const node of info.nodes) {
      const ready = await apiFetch(node, '/readyz');
      expect(ready.status).toBe(200);
    }
  });

  it('survives SIGKILL of a follower: the others commit, the restarted node catches up from its data', async () => {
    const clusterDir = join(dir, 'cluster');
    const leader = await waitFor(() => currentLeader(clusterDir), { timeoutMs: 90_000, what: 'a leader a majority agrees on' });
    const follower = info.nodes.find((n) => n.org !== leader)!.org;
    const survivor = info.nodes.find((n) => n.org !== follower)!.org;

    await killNode(clusterDir, follower);
    const killed = findNode(readCluster(clusterDir), follower);
    expect(isNodeRunning(killed)).toBe(false);

    // Two of three still commit.
    const first = await submitUntilCommitted(join(dir, 'cluster'), survivor, 'approve', SUBJECT);
    expect(first.status).toBe('committed');

    const restarted = await restartNode(clusterDir, follower, { waitReady: true });
    expect(restarted.pid).not.toBe(killed.pid);
    expect(readCluster(clusterDir).nodes.find((n) => n.org === follower)!.pid).toBe(restarted.pid);
    expect(isNodeRunning(restarted)).toBe(true);

    // The restarted node sees the verdict committed while it was down, and can submit its own.
    await waitFor(
      async () => {
        const response = await apiFetch(restarted, `/v1/swarms/reviews/subjects/${SUBJECT}`);
        return response.status === 200 && ((await response.json()) as any).votes.length === 1;
      },
      { timeoutMs: 90_000, what: `${follower} to catch up on ${SUBJECT}` },
    );
    const second = await submitUntilCommitted(join(dir, 'cluster'), follower, 'approve', SUBJECT);
    expect(['committed', 'decided-already']).toContain(second.status);

    // Every node reports the same decision.
    const decisions = await waitFor(
      async () => {
        const views = await Promise.all(readCluster(clusterDir).nodes.map((n) => apiJson(n, `/v1/swarms/reviews/subjects/${SUBJECT}`)));
        return views.every((v) => v.decision) ? views.map((v) => v.decision) : null;
      },
      { timeoutMs: 90_000, what: 'every node to report the decision' },
    );
    expect(new Set(decisions.map((d: any) => JSON.stringify(d))).size).toBe(1);
    expect(decisions[0].value).toBe('approve');
  });

  it('down stops every node and leaves no process', async () => {
    const clusterDir = join(dir, 'cluster');
    const nodes = readCluster(clusterDir).nodes;
    const { killed } = await downCluster(clusterDir);
    expect(killed).toEqual([]); // all exited on SIGTERM
    for (const node of nodes) expect(isNodeRunning(node)).toBe(false);
    // Reaping the exited children is asynchronous: each pid disappears from the process table shortly.
    const gone = (pid: number) => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    };
    await waitFor(() => nodes.every((node) => gone(node.pid)), { timeoutMs: 30_000, what: 'every node pid to leave the process table' });
  });
});

describe('dev cluster: four pbft node processes', () => {
  let dir: string;

  afterAll(async () => {
    if (dir) {
      await downCluster(dir).catch(() => undefined);
      stopAll();
      await closeClients();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('refuses fewer than 4 orgs, then runs 4, commits a verdict and agrees on the primary', async () => {
    dir = mkdtempSync(join(tmpdir(), 'conclave-devcluster-pbft-'));
    await expect(upCluster({ orgs: 3, mode: 'pbft', dir: join(dir, 'three') })).rejects.toThrow(/at least 4/);
    const clusterDir = join(dir, 'four');
    const info = await upCluster({ orgs: 4, mode: 'pbft', dir: clusterDir, readyTimeoutMs: 120_000 });
    expect(info.mode).toBe('pbft');
    expect(info.nodes.map((n) => n.org)).toEqual(['acme', 'globex', 'initech', 'umbrella']);
    expect(await waitFor(() => currentLeader(clusterDir), { timeoutMs: 90_000, what: 'a primary a majority agrees on' })).toBeTruthy();

    const answer = await submitUntilCommitted(clusterDir, 'umbrella', 'reject', SUBJECT);
    expect(['committed', 'duplicate']).toContain(answer.status);
    await waitFor(
      async () => {
        const views = await Promise.all(info.nodes.map((n) => apiFetch(n, `/v1/swarms/reviews/subjects/${SUBJECT}`)));
        return views.every((v) => v.status === 200);
      },
      { timeoutMs: 90_000, what: 'every pbft replica to apply the verdict' },
    );
    await downCluster(clusterDir);
    for (const n of info.nodes) expect(isNodeRunning(n)).toBe(false);
  });
});
