// A Raft follower under load relays the verdicts its agents submit to the leader, which proposes them in its own
// batches (one proposer: fewer, bigger entries). Real nodes in one process (TLS, HTTP/2, RocksDB, the peer
// transport): verdicts submitted to a follower while its own proposal awaits commit land in entries the leader signed,
// each committed once and answered on the follower; junk on the relay channel is refused and changes nothing; and
// beside a leader that does not take relayed verdicts (a version before relaying, in a rolling upgrade) the follower
// proposes them itself once the relay window passed — relaying never loses an admitted verdict.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.ts';
import { ConclaveNode } from '../../src/node/node.ts';
import { RELAY_CHANNEL } from '../../src/swarm/verdict-swarm.ts';
import { agreedLeader, appliedOnceEverywhere, metricOf, peerClientAs, startInProcessFederation, type InProcessFederation } from '../support/inproc-federation.ts';

const SWARM = 'relay';
const orgs = ['acme', 'globex', 'initech'];
const policy = { values: ['approve', 'reject'], quorum: 'all' as const, rule: 'majority' as const };
let fed: InProcessFederation;
let leader: string;
let follower: string;

/** The relay counter of `org`'s node in federation `of` (default: the first test's). */
const relayed = (org: string, event: string, of = fed) => metricOf(of, org, 'conclave_relayed_verdicts_total', `swarm="${SWARM}",event="${event}"`);

/** Who signed the proposal of the entry at `index`, as `org`'s node serves its log. */
async function proposerAt(org: string, index: number): Promise<string | null> {
  const answer = await fed.api(org, 'GET', `/v1/swarms/${SWARM}/log?from=${index}&limit=1`);
  expect(answer.status, answer.text).toBe(200);
  const entry = answer.json.entries[0];
  expect(entry.index).toBe(index);
  return entry.proposer;
}

/** `count` verdicts submitted to `org`'s node at once (wait for commit), on fresh subjects; their answers. */
async function burst(org: string, prefix: string, count: number, sign: (subject: string) => Promise<string>): Promise<{ subject: string; status: number; json: any }[]> {
  const subjects = Array.from({ length: count }, (_, i) => `${prefix}/${i}`);
  const signed = await Promise.all(subjects.map(sign));
  const answers = await Promise.all(signed.map((jws) => fed.api(org, 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws })));
  return answers.map((answer, i) => ({ subject: subjects[i]!, status: answer.status, json: answer.json }));
}

beforeAll(async () => {
  fed = await startInProcessFederation({ orgs, swarms: [{ id: SWARM, mode: 'raft', policy }] });
  leader = await agreedLeader(fed, SWARM);
  follower = orgs.find((org) => org !== leader)!;
}, 120_000);

afterAll(async () => {
  await fed?.close();
});

describe('a Raft follower relays verdicts to the leader', () => {
  it('verdicts admitted while its proposal awaits commit go into the leader’s proposals, each committed once', async () => {
    // Whether a verdict arrives while the follower's proposal is in flight is up to timing: bursts until one did
    // (the first burst nearly always suffices; the bound keeps the test finite).
    const subjects: string[] = [];
    let byLeader = 0;
    let byFollower = 0;
    for (let round = 0; round < 30 && (byLeader === 0 || byFollower === 0); round++) {
      const answers = await burst(follower, `happy/${round}`, 24, (subject) => fed.sign(follower, { swarm: SWARM, subject, verdict: 'approve' }));
      for (const answer of answers) {
        expect(answer.status, JSON.stringify(answer.json)).toBe(200);
        expect(answer.json.status).toBe('committed');
        subjects.push(answer.subject);
        const proposer = await proposerAt(follower, answer.json.index);
        if (proposer === leader) byLeader++;
        else if (proposer === follower) byFollower++;
        else throw new Error(`verdict ${answer.subject} was proposed by ${proposer}`);
      }
    }
    expect(byFollower, 'the first verdicts of a burst leave in the follower’s own proposal').toBeGreaterThan(0);
    expect(byLeader, 'verdicts held behind it went to the leader').toBeGreaterThan(0);
    expect(await relayed(follower, 'sent')).toBeGreaterThanOrEqual(byLeader);
    expect(await relayed(leader, 'received')).toBeGreaterThanOrEqual(byLeader);
    expect(await relayed(follower, 'expired')).toBe(0);
    await appliedOnceEverywhere(fed, SWARM, subjects);
  }, 240_000);

  it('junk on the relay channel is refused by the leader, changes nothing, and the node stays up', async () => {
    const pool = peerClientAs(fed, follower, leader);
    try {
      const refusedBefore = await relayed(leader, 'refused');
      const status = await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/status`);
      const commitBefore = status.json.commitIndex;
      const good = await fed.sign(follower, { swarm: SWARM, subject: 'junk/forged', verdict: 'approve' });
      const [header, payload, signature] = good.split('.');
      const forged = `${header}.${payload}.${signature!.startsWith('A') ? 'B' : 'A'}${signature!.slice(1)}`;
      const otherSwarm = await fed.sign(follower, { swarm: 'no-such-swarm', subject: 'junk/other', verdict: 'approve' });
      const badValue = await fed.sign(follower, { swarm: SWARM, subject: 'junk/value', verdict: 'maybe' });
      const junk = ['not a jws', '{"v":1}', forged, otherSwarm, badValue, ''].map((text) => Buffer.from(text));
      pool.send(leader, SWARM, RELAY_CHANNEL, junk);
      await pool.flush();
      await fed.waitFor('the leader to refuse all six', async () => (await relayed(leader, 'refused')) === refusedBefore + junk.length);
      const after = await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/status`);
      expect(after.json.commitIndex).toBe(commitBefore);
      for (const subject of ['junk/forged', 'junk/other', 'junk/value']) {
        expect((await fed.api(leader, 'GET', `/v1/swarms/${SWARM}/subjects/${encodeURIComponent(subject)}`)).status).toBe(404);
      }
      // Still serving: a good verdict commits.
      const ok = await fed.api(leader, 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws: await fed.sign(leader, { swarm: SWARM, subject: 'junk/after', verdict: 'approve' }) });
      expect(ok.status, ok.text).toBe(200);
    } finally {
      await pool.close();
    }
  }, 120_000);

});

describe('relaying beside nodes that do not take relayed verdicts (a rolling upgrade)', () => {
  let old: InProcessFederation;
  afterAll(async () => {
    await old?.close();
  });

  it('a verdict the leader never proposes is proposed by the follower itself after the relay window', async () => {
    // Every node starts as a version without relaying (relayVerdicts: false: the relay channel is not served, its
    // messages are dropped unrouted); then one follower restarts with relaying on and relays to such a leader.
    old = await startInProcessFederation({ orgs, swarms: [{ id: SWARM, mode: 'raft', policy }], nodeOptions: () => ({ relayVerdicts: false }) });
    const oldLeader = await agreedLeader(old, SWARM);
    const upgraded = orgs.find((org) => org !== oldLeader)!;
    await old.nodes.get(upgraded)!.stop();
    const node = new ConclaveNode({ configPath: old.orgs.find((o) => o.org === upgraded)!.configPath, logger: createLogger({ level: 'silent' }), tickMs: 20 });
    old.nodes.set(upgraded, node);
    await node.start();
    await old.waitFor(`${upgraded} to follow ${oldLeader}`, async () => {
      const view = await old.api(upgraded, 'GET', `/v1/swarms/${SWARM}/status`);
      return view.status === 200 && view.json.leader === oldLeader;
    });

    const subjects: string[] = [];
    for (let round = 0; round < 30 && (await relayed(upgraded, 'expired', old)) === 0; round++) {
      const signed = await Promise.all(Array.from({ length: 24 }, (_, i) => old.sign(upgraded, { swarm: SWARM, subject: `upgrade/${round}/${i}`, verdict: 'approve' })));
      const answers = await Promise.all(signed.map((jws) => old.api(upgraded, 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws })));
      for (const [i, answer] of answers.entries()) {
        expect(answer.status, answer.text).toBe(200);
        expect(answer.json.status).toBe('committed');
        const entry = (await old.api(upgraded, 'GET', `/v1/swarms/${SWARM}/log?from=${answer.json.index}&limit=1`)).json.entries[0];
        expect(entry.proposer, 'the old leader never took a relayed verdict').toBe(upgraded);
        subjects.push(`upgrade/${round}/${i}`);
      }
    }
    expect(await relayed(upgraded, 'sent', old)).toBeGreaterThan(0);
    expect(await relayed(upgraded, 'expired', old), 'relayed verdicts dropped by the old leader were proposed by the follower').toBeGreaterThan(0);
    expect(await relayed(oldLeader, 'received', old)).toBe(0);
    await appliedOnceEverywhere(old, SWARM, subjects);
  }, 300_000);
});
