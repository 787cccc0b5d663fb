// Test support for membership tests (owned by the membership feature): a local federation of N orgs whose swarm
// starts with only some of them, nodes started and stopped one at a time in this process (real TLS, HTTP/2,
// RocksDB), an HTTPS API client per org, verdict signing, admin approvals, and a steady verdict stream.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { parse, stringify } from 'yaml';
import { writeLocalFederation, type LocalOrg, type SwarmSpec } from '../../src/config/local-federation.ts';
import { createLogger } from '../../src/log/logger.ts';
import { ConclaveNode, type NodeOptions } from '../../src/node/node.ts';
import { signVerdict, type AgentPrivateJwk } from '../../src/verdict/agent.ts';
import { adminCommand } from '../../src/verdict/admin.ts';
import { PeerClientPool } from '../../src/transport/client.ts';
import { waitFor } from '../support/wait.ts';
import { importPrivateJwk, type PrivateJwk } from '../../src/crypto/ed25519.ts';
import type { AdminAction } from '../../src/verdict/proposal.ts';

export const SWARM = 'reviews';

export interface MembershipFixture {
  dir: string;
  orgs: Map<string, LocalOrg>;
  nodes: Map<string, ConclaveNode>;
  /** `nodeOptions`: test-only node options (e.g. a slow era start). */
  start(org: string, nodeOptions?: Partial<NodeOptions>): Promise<ConclaveNode>;
  stop(org: string): Promise<void>;
  api(org: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }>;
  sign(org: string, subject: string, verdict: string): Promise<string>;
  /** One admin's approval of `action` (the first one proposes it), submitted to `via`'s node. */
  approve(adminOrg: string, via: string, id: string, action: AdminAction): Promise<{ status: number; json: any }>;
  /** Rewrites an org's federation file (parsed YAML in, YAML out). */
  editFile(org: string, edit: (doc: any) => void): void;
  close(): Promise<void>;
}

export { waitFor };

/** orgs: every org of the federation (each gets a card in every file); swarmMembers: who the swarm starts with. */
export async function membershipFixture(options: {
  orgs: string[];
  swarmMembers: string[];
  mode?: 'raft' | 'pbft';
  policy?: SwarmSpec['policy'];
  snapshotEvery?: number;
  snapshotBytes?: number;
  tickMs?: number;
}): Promise<MembershipFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'conclave-membership-'));
  const federation = await writeLocalFederation({
    dir,
    orgs: options.orgs,
    swarm: { id: SWARM, mode: options.mode ?? 'raft', members: options.swarmMembers, policy: options.policy ?? { values: ['approve', 'reject'], quorum: 'majority', rule: 'majority' } },
  });
  const orgs = new Map(federation.orgs.map((o) => [o.org, o]));
  const nodes = new Map<string, ConclaveNode>();
  const agents = new Map<string, Agent>();
  for (const org of federation.orgs) agents.set(org.org, new Agent({ connect: { ca: readFileSync(join(org.certDir, 'ca.crt'), 'utf8') }, allowH2: true }));
  const logger = createLogger({ level: process.env.CONCLAVE_TEST_LOG ? 'info' : 'silent' });

  const fixture: MembershipFixture = {
    dir,
    orgs,
    nodes,
    async start(org, nodeOptions = {}) {
      const node = new ConclaveNode({
        configPath: orgs.get(org)!.configPath,
        logger: logger.child({ org }),
        tickMs: options.tickMs ?? 20,
        snapshotEvery: options.snapshotEvery ?? 40,
        ...(options.snapshotBytes ? { snapshotBytes: options.snapshotBytes } : {}),
        ...nodeOptions,
      });
      nodes.set(org, node);
      await node.start();
      return node;
    },
    async stop(org) {
      await nodes.get(org)?.stop();
      nodes.delete(org);
    },
    async api(org, method, path, body) {
      const local = orgs.get(org)!;
      const response = await request(`https://127.0.0.1:${local.apiPort}${path}`, {
        method: method as 'GET',
        dispatcher: agents.get(org)!,
        ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
      });
      const text = await response.body.text();
      let json: any = null;
      try {
        json = JSON.parse(text);
      } catch {
        json = text;
      }
      return { status: response.statusCode, json };
    },
    sign(org, subject, verdict) {
      const key = JSON.parse(readFileSync(join(orgs.get(org)!.certDir, 'agent.jwk'), 'utf8')) as AgentPrivateJwk;
      return signVerdict({ privateJwk: key, swarm: SWARM, subject, org, agent: `${org}-bot`, verdict, reason: 'reviewed' });
    },
    async approve(adminOrg, via, id, action) {
      const key = importPrivateJwk(JSON.parse(readFileSync(join(orgs.get(adminOrg)!.certDir, 'admin.jwk'), 'utf8')) as PrivateJwk);
      return fixture.api(via, 'POST', `/v1/swarms/${SWARM}/admin`, adminCommand(key, SWARM, id, action));
    },
    editFile(org, edit) {
      const path = orgs.get(org)!.configPath;
      const doc = parse(readFileSync(path, 'utf8'));
      edit(doc);
      writeFileSync(path, stringify(doc, { lineWidth: 0 }));
    },
    async close() {
      await Promise.all([...nodes.values()].map((n) => n.stop().catch(() => undefined)));
      await Promise.all([...agents.values()].map((a) => a.close()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return fixture;
}

/** Submits verdicts in a loop (each org in turn votes on its own fresh subject) until stopped; counts commits. */
export function verdictStream(fixture: MembershipFixture, orgs: () => string[]): { stop: () => Promise<{ committed: number; failed: number; errors: string[] }>; committed: () => number } {
  let running = true;
  let committed = 0;
  let failed = 0;
  const errors: string[] = [];
  let n = 0;
  const loop = (async () => {
    while (running) {
      const list = orgs();
      await Promise.all(
        list.map(async (org) => {
          const subject = `github.com/acme/widget/pull/${n++}@${org}`;
          try {
            const jws = await fixture.sign(org, subject, 'approve');
            const answer = await fixture.api(org, 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws });
            if (answer.status === 200) committed++;
            else {
              failed++;
              if (errors.length < 20) errors.push(`${org}: ${answer.status} ${JSON.stringify(answer.json)}`);
            }
          } catch (error) {
            failed++;
            if (errors.length < 20) errors.push(`${org}: ${String(error)}`);
          }
        }),
      );
    }
  })();
  return {
    committed: () => committed,
    async stop() {
      running = false;
      await loop;
      return { committed, failed, errors };
    },
  };
}

/** Whether `from`'s node certificate still gets a mutual-TLS answer from `to`'s peer port (a whoami round trip). */
export async function peerAccepts(fixture: MembershipFixture, from: string, to: string): Promise<boolean> {
  const mine = fixture.orgs.get(from)!;
  const theirs = fixture.orgs.get(to)!;
  const pool = new PeerClientPool({
    self: from,
    tls: { certPem: readFileSync(join(mine.certDir, 'node.crt'), 'utf8'), keyPem: readFileSync(join(mine.certDir, 'node.key'), 'utf8') },
    members: [{ org: to, peerUrl: theirs.peerUrl, caPem: readFileSync(join(theirs.certDir, 'ca.crt'), 'utf8') }],
  });
  try {
    await pool.whoami(to, { timeoutMs: 5000 });
    return true;
  } catch {
    return false;
  } finally {
    await pool.close();
  }
}
