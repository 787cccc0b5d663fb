// Real node processes (default 100 ms tick): an idle swarm quiesces on every node, then SIGKILL of the node leading
// it. Nothing in the quiesced swarm notices by itself; node liveness must report the dead node, the followers elect
// a new leader, and a verdict commits. The killed node, restarted, rejoins and the swarm quiesces again.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { apiFetch, apiJson, findNode, killNode, restartNode, upCluster, waitFor, type ClusterInfo } from '../../src/devcluster/cluster.ts';
import { signVerdict, type AgentPrivateJwk } from '../../src/verdict/agent.ts';
import { clusterDirs } from '../support/cluster-dirs.ts';

const newClusterDir = clusterDirs();

interface SwarmStatus {
  leader: string | null;
  term: number;
  appliedIndex: number;
  detail?: { quiesced?: boolean };
}

async function swarmStatus(info: ClusterInfo, org: string): Promise<SwarmStatus | null> {
  try {
    return await apiJson<SwarmStatus>(findNode(info, org), `/v1/swarms/${info.swarm}/status`, { timeoutMs: 5_000 });
  } catch {
    return null;
  }
}

/** Every listed node reports the same leader (one of them) and a quiesced swarm; returns that leader. */
async function quiescedLeader(info: ClusterInfo, orgs: string[]): Promise<string | null> {
  const views = await Promise.all(orgs.map((org) => swarmStatus(info, org)));
  const leader = views[0]?.leader ?? null;
  if (!leader || !orgs.includes(leader)) return null;
  return views.every((v) => v?.leader === leader && v.detail?.quiesced === true) ? leader : null;
}

describe('raft: a quiesced swarm survives SIGKILL of its leader', () => {
  it('node liveness wakes the followers: a new leader is elected and commits; the restarted node rejoins and all go quiet', async () => {
    const dir = newClusterDir('quiesce-kill');
    const info = await upCluster({ orgs: 3, mode: 'raft', dir, policy: { values: ['approve', 'reject'], quorum: 1, rule: 'majority' }, readyTimeoutMs: 120_000 });
    const orgs = info.nodes.map((n) => n.org);
    const leader = await waitFor(() => quiescedLeader(info, orgs), { timeoutMs: 60_000, what: 'the idle swarm to quiesce on every node' });
    const before = (await swarmStatus(info, leader))!;

    await killNode(dir, leader, 'SIGKILL');
    const survivors = orgs.filter((org) => org !== leader);
    // No request until the survivors agree on a new leader: a proposal would wake a quiesced follower by itself, and
    // this must show that node liveness alone does it.
    await waitFor(
      async () => {
        const views = await Promise.all(survivors.map((org) => swarmStatus(info, org)));
        return views.every((v) => v && survivors.includes(v.leader ?? '') && v.leader === views[0]!.leader && v.term > before.term);
      },
      { timeoutMs: 60_000, what: `the survivors to elect a new leader after SIGKILL of ${leader}` },
    );
    const submitter = survivors[0]!;
    const jws = await signVerdict({
      privateJwk: JSON.parse(readFileSync(join(findNode(info, submitter).orgDir, 'agent.jwk'), 'utf8')) as AgentPrivateJwk,
      swarm: info.swarm,
      subject: 'github.com/acme/widget/pull/1@dead1e',
      org: submitter,
      agent: 'bot',
      verdict: 'approve',
      reason: 'after the leader died',
    });
    // The same JWS is resent until it commits (idempotent), in case the first attempt meets a leader change.
    const committed = await waitFor(
      async () => {
        try {
          const response = await apiFetch(findNode(info, submitter), `/v1/swarms/${info.swarm}/verdicts`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ jws }),
            timeoutMs: 15_000,
          });
          const body = (await response.json()) as { status?: string; index?: number };
          return response.status === 200 && body.status === 'committed' ? body : null;
        } catch {
          return null;
        }
      },
      { timeoutMs: 90_000, what: `a verdict to commit on ${submitter} after SIGKILL of the leader ${leader}` },
    );
    expect(committed.index).toBeGreaterThan(before.appliedIndex);
    const after = await Promise.all(survivors.map((org) => swarmStatus(info, org)));
    for (const view of after) {
      expect(survivors).toContain(view!.leader);
      expect(view!.term).toBeGreaterThan(before.term);
    }

    await restartNode(dir, leader);
    await waitFor(
      async () => {
        const newLeader = await quiescedLeader(info, orgs);
        if (!newLeader) return null;
        const applied = await Promise.all(orgs.map(async (org) => (await swarmStatus(info, org))?.appliedIndex));
        return applied.every((a) => a === applied[0]) ? newLeader : null;
      },
      { timeoutMs: 90_000, what: `${leader} to rejoin and the swarm to quiesce again on every node` },
    );
  }, 300_000);
});
