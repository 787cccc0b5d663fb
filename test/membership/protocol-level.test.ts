// Rolling upgrades (owned by the membership feature): every node announces its protocol level in its liveness
// messages, and an admin change — whose entry names its approvers, which nodes of earlier versions refuse when they
// apply it while the others apply the change — is proposed only while every other node of the swarm announced level 2 (or later).
// An earlier version's node (played here by the test: cato's certificate sending the one-byte liveness message of
// those versions) holds admin changes back with 409 MEMBERS_NOT_UPGRADED; once cato's node runs this version they
// go through; a member whose node is never heard holds them back too, except its own removal. Real nodes in one
// process (mutual TLS, HTTP/2, RocksDB).
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFederation } from '../../src/config/load.ts';
import { LIVENESS_CHANNEL, LIVENESS_SWARM, PROTOCOL_LEVEL } from '../../src/transport/liveness.ts';
import { PeerClientPool } from '../../src/transport/client.ts';
import { membershipFixture, SWARM, waitFor, type MembershipFixture } from './support.ts';

const ID_ADD = 'level-add-dora-0123456789ab';
const ID_POLICY = 'level-policy-0123456789abcd';
const ID_REMOVE = 'level-remove-dora-012345678';
const ID_POLICY_AFTER_RESTART = 'level-policy-restart-0123456';

/** cato's node as an earlier version would run it, as far as its peers can tell: the one-byte liveness message. */
function earlierVersionOf(fx: MembershipFixture, org: string): { stop: () => Promise<void> } {
  const config = loadFederation(fx.orgs.get(org)!.configPath);
  const pool = new PeerClientPool({
    self: org,
    tls: { certPem: readFileSync(config.node.tlsCertFile, 'utf8'), keyPem: readFileSync(config.node.tlsKeyFile, 'utf8') },
    members: config.members.map((m) => ({ org: m.org, peerUrl: m.peerUrl, caPem: m.caPem })),
  });
  const beat = () => {
    for (const peer of ['acme', 'bolt']) pool.send(peer, LIVENESS_SWARM, LIVENESS_CHANNEL, [new Uint8Array([1])]);
  };
  beat();
  const timer = setInterval(beat, 100);
  return {
    async stop() {
      clearInterval(timer);
      await pool.close();
    },
  };
}

describe('admin changes wait for every member node to speak protocol level 2 or later', () => {
  let fx: MembershipFixture;

  beforeAll(async () => {
    fx = await membershipFixture({ orgs: ['acme', 'bolt', 'cato', 'dora'], swarmMembers: ['acme', 'bolt', 'cato'] });
    await Promise.all(['acme', 'bolt'].map((org) => fx.start(org)));
    await waitFor('a leader', async () => (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/status`)).json?.leader);
  }, 120_000);

  afterAll(async () => {
    await fx?.close();
  });

  const levelSeenBy = async (org: string, peer: string) =>
    ((await fx.api(org, 'GET', '/v1/status')).json.peers as { org: string; protocolLevel: number | null }[]).find((p) => p.org === peer)?.protocolLevel;

  it('refuses while a member node runs an earlier version, and changes nothing', async () => {
    const old = earlierVersionOf(fx, 'cato');
    try {
      await waitFor('acme and bolt hear cato announce level 1', async () => (await levelSeenBy('acme', 'cato')) === 1 && (await levelSeenBy('bolt', 'cato')) === 1);
      expect(await levelSeenBy('acme', 'bolt')).toBe(PROTOCOL_LEVEL);
      for (const via of ['acme', 'bolt']) {
        const answer = await fx.approve('acme', via, ID_ADD, { kind: 'add-member', org: 'dora' });
        expect(answer.status, JSON.stringify(answer.json)).toBe(409);
        expect(answer.json.code).toBe('MEMBERS_NOT_UPGRADED');
        expect(answer.json.message).toMatch(/cato's node announces level 1 \(an earlier version\)/);
      }
      expect((await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/admin/${ID_ADD}`)).status).toBe(404);
      expect((await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/status`)).json.members).toEqual(['acme', 'bolt', 'cato']);
      // Verdicts are not held back: they carry nothing an earlier version reads differently.
      const verdict = await fx.api('acme', 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws: await fx.sign('acme', 'github.com/acme/widget/pull/1', 'approve') });
      expect(verdict.status, JSON.stringify(verdict.json)).toBe(200);
    } finally {
      await old.stop();
    }
  }, 120_000);

  it('goes through once that node runs this version', async () => {
    await fx.start('cato');
    await waitFor('acme hears cato announce this version\'s level', async () => (await levelSeenBy('acme', 'cato')) === PROTOCOL_LEVEL);
    await fx.approve('acme', 'acme', ID_ADD, { kind: 'add-member', org: 'dora' });
    const approved = await fx.approve('bolt', 'bolt', ID_ADD, { kind: 'add-member', org: 'dora' });
    expect(approved.status, JSON.stringify(approved.json)).toBe(200);
    expect(approved.json.status).toBe('applied');
  }, 120_000);

  it('a member whose node is never heard holds admin changes back, except its own removal', async () => {
    // dora is a member now (a learner until its node catches up), and its node never started.
    await waitFor('dora a learner or voter at acme', async () => {
      const { membership } = (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/status`)).json;
      return [...membership.voters, ...membership.learners].includes('dora');
    });
    const policy = { values: ['approve', 'reject'], quorum: 'majority' as const, rule: { kind: 'majority' as const }, fallback: null, maxClockSkewSeconds: 300 };
    const refused = await fx.approve('acme', 'acme', ID_POLICY, { kind: 'set-policy', policy, adminPolicy: 'majority' });
    expect(refused.status, JSON.stringify(refused.json)).toBe(409);
    expect(refused.json.code).toBe('MEMBERS_NOT_UPGRADED');
    expect(refused.json.message).toMatch(/dora's node has never announced its protocol level to this node/);
    // With dora admitted the swarm counts four members: a majority of admins is three.
    await fx.approve('acme', 'acme', ID_REMOVE, { kind: 'remove-member', org: 'dora' });
    await fx.approve('bolt', 'bolt', ID_REMOVE, { kind: 'remove-member', org: 'dora' });
    const removed = await fx.approve('cato', 'cato', ID_REMOVE, { kind: 'remove-member', org: 'dora' });
    expect(removed.status, JSON.stringify(removed.json)).toBe(200);
    expect(removed.json.status, JSON.stringify(removed.json)).toBe('applied');
  }, 120_000);

  it('a restarted node remembers the levels its peers announced: with a member node down, admin changes go through', async () => {
    await waitFor('dora out of the swarm at acme', async () => {
      const { membership } = (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/status`)).json;
      return ![...membership.voters, ...membership.learners].includes('dora');
    });
    // cato's node goes down; acme's restarts while it is down, so it cannot hear cato announce anything.
    await fx.stop('cato');
    await fx.stop('acme');
    await fx.start('acme');
    await waitFor('a leader after acme restarted', async () => (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/status`)).json?.leader);
    // Remembered, not heard: cato's node is stopped (its liveness status starts optimistic, so it is not asked here).
    expect(await levelSeenBy('acme', 'cato')).toBe(PROTOCOL_LEVEL);
    const policy = { values: ['approve', 'reject'], quorum: 1, rule: { kind: 'majority' as const }, fallback: null, maxClockSkewSeconds: 300 };
    const first = await fx.approve('acme', 'acme', ID_POLICY_AFTER_RESTART, { kind: 'set-policy', policy, adminPolicy: 'majority' });
    expect(first.status, JSON.stringify(first.json)).toBe(200);
    const applied = await fx.approve('bolt', 'bolt', ID_POLICY_AFTER_RESTART, { kind: 'set-policy', policy, adminPolicy: 'majority' });
    expect(applied.status, JSON.stringify(applied.json)).toBe(200);
    expect(applied.json.status, JSON.stringify(applied.json)).toBe('applied');
  }, 120_000);
});
