// Idle Raft swarms quiesce on real nodes (TLS, HTTP/2, RocksDB, in one process), a verdict wakes its swarm, and
// when the node leading quiesced swarms stops, node liveness wakes their followers: each swarm elects a new leader
// and commits again. The stopped node, started again, rejoins every swarm and the federation goes quiet again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.ts';
import { ConclaveNode } from '../../src/node/node.ts';
import { startInProcessFederation, type InProcessFederation } from '../support/inproc-federation.ts';

const orgs = ['acme', 'globex', 'initech'];
const swarmIds = ['q1', 'q2', 'q3', 'q4', 'q5', 'q6'];
const policy = { values: ['approve', 'reject'], quorum: 1, rule: 'majority' as const };
let fed: InProcessFederation;
let subjects = 0;

interface SwarmView {
  leader: string | null;
  term: number;
  commitIndex: number;
  detail?: { quiesced?: boolean };
}

function view(org: string, swarm: string): SwarmView {
  return fed.nodes.get(org)!.swarm(swarm)!.status() as SwarmView;
}

/** Every swarm on every listed node knows the same live leader and is quiesced. */
function allQuiesced(on: string[]): boolean {
  return swarmIds.every((id) => {
    const views = on.map((org) => view(org, id));
    const leader = views[0]!.leader;
    return leader !== null && on.includes(leader) && views.every((v) => v.leader === leader && v.detail?.quiesced === true);
  });
}

function describeSwarms(on: string[]): string {
  return swarmIds.map((id) => `${id}: ${on.map((org) => `${org}=${JSON.stringify(view(org, id))}`).join(' ')}`).join('\n');
}

async function submit(org: string, swarm: string): Promise<{ status: number; json: any; text: string }> {
  const jws = await fed.sign(org, { swarm, subject: `github.com/acme/widget/pull/${++subjects}@9f1c2e`, verdict: 'approve' });
  return fed.api(org, 'POST', `/v1/swarms/${swarm}/verdicts`, { jws });
}

async function waitQuiesced(on: string[], what: string): Promise<void> {
  try {
    await fed.waitFor(what, () => allQuiesced(on), 60_000);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${describeSwarms(on)}`);
  }
}

beforeAll(async () => {
  fed = await startInProcessFederation({ orgs, swarms: swarmIds.map((id) => ({ id, mode: 'raft' as const, policy })) });
}, 120_000);

afterAll(async () => {
  await fed?.close();
});

describe('quiesced raft swarms on real nodes', () => {
  it('every idle swarm quiesces on every node, and a verdict wakes its swarm, commits, and it quiesces again', async () => {
    await waitQuiesced(orgs, 'every swarm to quiesce on every node');
    const answer = await submit('globex', 'q1');
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json.status).toBe('committed');
    await waitQuiesced(orgs, 'q1 to quiesce again after the verdict');
    expect(new Set(orgs.map((org) => view(org, 'q1').commitIndex)).size).toBe(1);
  }, 120_000);

  it('stopping the node that leads quiesced swarms: liveness wakes their followers, new leaders are elected and commit', async () => {
    await waitQuiesced(orgs, 'every swarm to quiesce before the stop');
    // The org leading the most swarms goes down (at least two of six swarms are led by some org).
    const ledBy = (org: string) => swarmIds.filter((id) => view(orgs[0]!, id).leader === org);
    const victim = [...orgs].sort((a, b) => ledBy(b).length - ledBy(a).length)[0]!;
    const orphaned = ledBy(victim);
    const terms = new Map(orphaned.map((id) => [id, view(orgs.find((o) => o !== victim)!, id).term]));
    expect(orphaned.length).toBeGreaterThan(0);
    await fed.nodes.get(victim)!.stop();
    const survivors = orgs.filter((org) => org !== victim);

    for (const id of orphaned) {
      await fed.waitFor(
        `swarm ${id} to elect a leader other than ${victim}`,
        () => survivors.every((org) => survivors.includes(view(org, id).leader ?? '') && view(org, id).term > terms.get(id)!),
        60_000,
      );
      const answer = await submit(survivors[0]!, id);
      expect(answer.status, answer.text).toBe(200);
      expect(answer.json.status).toBe('committed');
    }
    // Swarms the victim did not lead keep their leader, and everything goes quiet again on the survivors.
    await waitQuiesced(survivors, 'the surviving nodes to quiesce again');

    // The stopped node comes back: it rejoins every swarm (its swarms campaign, waking the quiesced groups) and the
    // whole federation goes quiet again with the same leaders.
    const org = fed.orgs.find((o) => o.org === victim)!;
    const restarted = new ConclaveNode({ configPath: org.configPath, logger: createLogger({ level: 'silent' }), tickMs: 20 });
    fed.nodes.set(victim, restarted);
    await restarted.start();
    await waitQuiesced(orgs, `${victim} to rejoin and every swarm to quiesce again`);
    for (const id of orphaned) expect(view(victim, id).leader).not.toBe(victim);
  }, 180_000);
});
