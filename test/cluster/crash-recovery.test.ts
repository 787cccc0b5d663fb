// Real node processes over loopback mutual TLS: SIGKILL of the Raft leader and of a follower (each restarted from
// its RocksDB), and SIGKILL of the PBFT primary (view change), all under a stream of verdicts. Afterwards every
// acknowledged verdict is on every node exactly once and the logs are identical.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { apiFetch, apiJson, currentLeader, findNode, killNode, restartNode, upCluster, waitFor, type ClusterInfo } from '../../src/devcluster/cluster.ts';
import { signVerdict, type AgentPrivateJwk } from '../../src/verdict/agent.ts';
import { clusterDirs } from '../support/cluster-dirs.ts';

const newClusterDir = clusterDirs();

/** Agents of every org submit one verdict per subject, each to its own org's node, retrying the same JWS. */
function startStream(info: ClusterInfo, down: Set<string>) {
  const acked: { subject: string; jwsHash: string }[] = [];
  let running = true;
  let n = 0;
  const keys = new Map(info.nodes.map((node) => [node.org, JSON.parse(readFileSync(join(node.orgDir, 'agent.jwk'), 'utf8')) as AgentPrivateJwk]));
  const clients = info.nodes.map(async (node) => {
    while (running && n < 2000) {
      if (down.has(node.org)) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      const subject = `github.com/acme/widget/pull/${++n}@feed`;
      const jws = await signVerdict({ privateJwk: keys.get(node.org)!, swarm: info.swarm, subject, org: node.org, agent: 'bot', verdict: 'approve', reason: 'ok' });
      for (let attempt = 0; attempt < 20 && running; attempt++) {
        if (down.has(node.org)) {
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
        try {
          const response = await apiFetch(findNode(info, node.org), `/v1/swarms/${info.swarm}/verdicts`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ jws }),
          });
          const body = (await response.json()) as { jwsHash?: string };
          if (response.status === 200 && body.jwsHash) {
            acked.push({ subject, jwsHash: body.jwsHash });
            break;
          }
        } catch {
          // the node was killed under us: retry the same JWS (idempotent)
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  });
  return {
    acked,
    async stop() {
      running = false;
      await Promise.all(clients);
    },
  };
}

async function expectConverged(info: ClusterInfo, acked: { subject: string; jwsHash: string }[]): Promise<void> {
  const path = `/v1/swarms/${info.swarm}/status`;
  await waitFor(
    async () => {
      const applied = await Promise.all(info.nodes.map(async (node) => (await apiJson(node, path)).appliedIndex as number));
      return applied.every((a) => a === applied[0]) && applied[0]! > 0;
    },
    { timeoutMs: 120_000, what: 'every node to apply the same index' },
  );
  const logs: string[] = [];
  for (const node of info.nodes) {
    const hashes: string[] = [];
    for (let from = 1; ; from += 1000) {
      const page = (await apiJson(node, `/v1/swarms/${info.swarm}/log?from=${from}&limit=1000`)).entries as { hash: string }[];
      hashes.push(...page.map((e) => e.hash));
      if (page.length < 1000) break;
    }
    logs.push(hashes.join(','));
  }
  for (const log of logs) expect(log).toBe(logs[0]);
  for (const { subject, jwsHash } of acked) {
    for (const node of info.nodes) {
      const view = await apiJson(node, `/v1/swarms/${info.swarm}/subjects/${subject}`);
      expect(view.votes.filter((v: { jwsHash: string }) => v.jwsHash === jwsHash), `${subject} on ${node.org}`).toHaveLength(1);
    }
  }
}

describe('raft: real processes survive SIGKILL', () => {
  it('SIGKILL of the leader and of a follower, each restarted, loses no acknowledged verdict', async () => {
    const dir = newClusterDir('raft-crash');
    const info = await upCluster({ orgs: 3, mode: 'raft', dir, policy: { values: ['approve', 'reject'], quorum: 1, rule: 'majority' }, readyTimeoutMs: 120_000 });
    const down = new Set<string>();
    const stream = startStream(info, down);
    const progress = async (more: number, what: string) => {
      const target = stream.acked.length + more;
      await waitFor(() => stream.acked.length >= target, { timeoutMs: 120_000, what });
    };
    await progress(10, 'first verdicts');

    const leader = await waitFor(() => currentLeader(dir), { timeoutMs: 60_000, what: 'a leader' });
    down.add(leader);
    await killNode(dir, leader, 'SIGKILL');
    await progress(10, 'commits after the leader was killed');
    const newLeader = await waitFor(async () => {
      const l = await currentLeader(dir);
      return l && l !== leader ? l : null;
    }, { timeoutMs: 60_000, what: 'a new leader' });
    expect(newLeader).not.toBe(leader);
    await restartNode(dir, leader);
    down.delete(leader);
    await progress(10, 'commits after the old leader came back');

    const follower = info.nodes.map((n) => n.org).find((org) => org !== newLeader && org !== leader) ?? leader;
    down.add(follower);
    await killNode(dir, follower, 'SIGKILL');
    await progress(10, 'commits with a follower down');
    await restartNode(dir, follower);
    down.delete(follower);
    await progress(10, 'commits after the follower came back');
    await stream.stop();
    expect(stream.acked.length).toBeGreaterThan(40);
    await expectConverged(info, stream.acked);
  }, 600_000);
});

describe('pbft: real processes survive SIGKILL of the primary', () => {
  it('the primary is killed, a view change follows, commits continue and the replicas agree', async () => {
    const dir = newClusterDir('pbft-crash');
    const info = await upCluster({ orgs: 4, mode: 'pbft', dir, policy: { values: ['approve', 'reject'], quorum: 1, rule: 'majority' }, readyTimeoutMs: 120_000 });
    const down = new Set<string>();
    const stream = startStream(info, down);
    const progress = async (more: number, what: string) => {
      const target = stream.acked.length + more;
      await waitFor(() => stream.acked.length >= target, { timeoutMs: 180_000, what });
    };
    await progress(10, 'first verdicts');
    const primary = (await apiJson(info.nodes[0]!, `/v1/swarms/${info.swarm}/status`)).leader as string;
    const viewBefore = (await apiJson(info.nodes[0]!, `/v1/swarms/${info.swarm}/status`)).term as number;
    down.add(primary);
    await killNode(dir, primary, 'SIGKILL');
    await progress(10, 'commits after the primary was killed');
    const survivor = info.nodes.find((n) => n.org !== primary)!;
    expect((await apiJson(survivor, `/v1/swarms/${info.swarm}/status`)).term).toBeGreaterThan(viewBefore);
    await restartNode(dir, primary);
    down.delete(primary);
    await progress(10, 'commits after the old primary came back');
    await stream.stop();
    await expectConverged(info, stream.acked);
  }, 600_000);
});

describe('pbft: a Byzantine primary', () => {
  it('an equivocating primary (different pre-prepares to different replicas) does not break agreement', async () => {
    const dir = newClusterDir('pbft-byzantine');
    // acme is the primary of view 0 (replicas in sorted order); only its node runs the equivocating test mode.
    process.env.CONCLAVE_TEST_BYZANTINE = 'equivocate:acme';
    let info: ClusterInfo;
    try {
      info = await upCluster({ orgs: ['acme', 'globex', 'initech', 'umbrella'], mode: 'pbft', dir, policy: { values: ['approve', 'reject'], quorum: 1, rule: 'majority' }, readyTimeoutMs: 120_000 });
    } finally {
      delete process.env.CONCLAVE_TEST_BYZANTINE;
    }
    const down = new Set<string>();
    const stream = startStream(info, down);
    const target = 30;
    await waitFor(() => stream.acked.length >= target, { timeoutMs: 240_000, what: `${target} verdicts committed despite the equivocating primary` });
    await stream.stop();
    // initech was sent forged pre-prepares (the odd position among acme's peers): it still agrees with everyone.
    const initech = await apiJson(findNode(info, 'initech'), `/v1/swarms/${info.swarm}/status`);
    expect(initech.mode).toBe('pbft');
    await expectConverged(info, stream.acked);
  }, 600_000);
});
