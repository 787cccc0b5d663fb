// Test support: a whole federation of real nodes inside the test process — real TLS, real HTTP/2 peers, real
// RocksDB in a temp dir — and an HTTPS client per org that trusts only that org's CA.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { parse, stringify } from 'yaml';
import { rewritePeerUrls } from '../../src/chaos/cluster.ts';
import { ProxyMesh } from '../../src/chaos/proxy.ts';
import { exportPrivateJwk, generateSigningKey, importPrivateJwk, type PrivateJwk, type SigningKey } from '../../src/crypto/ed25519.ts';
import { writeLocalFederation, type LocalOrg, type SwarmSpec } from '../../src/config/local-federation.ts';
import { createLogger } from '../../src/log/logger.ts';
import { ConclaveNode, type NodeOptions } from '../../src/node/node.ts';
import { PeerClientPool } from '../../src/transport/client.ts';
import { signVerdict, type AgentPrivateJwk } from '../../src/verdict/agent.ts';

import { waitFor } from './wait.ts';

export interface InProcessFederation {
  dir: string;
  orgs: LocalOrg[];
  nodes: Map<string, ConclaveNode>;
  /** With `mesh: true`: the TCP proxies every peer connection goes through (`mesh.link(a, b)` carries a's to b). */
  mesh: ProxyMesh | null;
  /** HTTPS to an org's public API, trusting that org's CA. */
  api(org: string, method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; json: any; text: string }>;
  agentKey(org: string): AgentPrivateJwk;
  sign(org: string, fields: { swarm: string; subject: string; verdict: string; reason?: string; iat?: number; nonce?: string; agent?: string; asOrg?: string }): Promise<string>;
  waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs?: number): Promise<T>;
  close(): Promise<void>;
}

export async function startInProcessFederation(options: {
  orgs: string[];
  swarms: SwarmSpec[];
  tickMs?: number;
  proposalHoldMs?: number;
  /** More node options, per org. */
  nodeOptions?: (org: string) => Partial<NodeOptions>;
  /** Route every peer connection through a ProxyMesh (the chaos tool's), so a test can cut links one way. */
  mesh?: boolean;
}): Promise<InProcessFederation> {
  const dir = mkdtempSync(join(tmpdir(), 'conclave-fed-'));
  const federation = await writeLocalFederation({ dir, orgs: options.orgs, swarms: options.swarms });
  let mesh: ProxyMesh | null = null;
  if (options.mesh) {
    mesh = await ProxyMesh.start(options.orgs, Object.fromEntries(federation.orgs.map((org) => [org.org, org.peerPort])));
    for (const org of federation.orgs) rewritePeerUrls(org.configPath, org.org, mesh);
  }
  const nodes = new Map<string, ConclaveNode>();
  const agents = new Map<string, Agent>();
  const logger = createLogger({ level: (process.env.TEST_LOG_LEVEL as 'warn' | undefined) ?? 'silent' });
  for (const org of federation.orgs) {
    agents.set(org.org, new Agent({ connect: { ca: readFileSync(join(org.certDir, 'ca.crt'), 'utf8') }, allowH2: true }));
  }
  await Promise.all(
    federation.orgs.map(async (org) => {
      const node = new ConclaveNode({
        configPath: org.configPath,
        logger,
        tickMs: options.tickMs ?? 20,
        ...(options.proposalHoldMs ? { proposalHoldMs: options.proposalHoldMs } : {}),
        ...options.nodeOptions?.(org.org),
      });
      nodes.set(org.org, node);
      await node.start();
    }),
  );

  const byOrg = new Map(federation.orgs.map((org) => [org.org, org]));
  const fed: InProcessFederation = {
    dir,
    orgs: federation.orgs,
    nodes,
    mesh,
    async api(org, method, path, body, headers = {}) {
      const local = byOrg.get(org)!;
      const url = `https://127.0.0.1:${local.apiPort}${path}`;
      const hasBody = body !== undefined;
      const response = await request(url, {
        method: method as 'GET',
        dispatcher: agents.get(org)!,
        headers: hasBody ? { 'content-type': 'application/json', ...headers } : headers,
        ...(hasBody ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
      });
      const text = await response.body.text();
      let json: any = null;
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
      return { status: response.statusCode, json, text };
    },
    agentKey(org) {
      return JSON.parse(readFileSync(join(byOrg.get(org)!.certDir, 'agent.jwk'), 'utf8')) as AgentPrivateJwk;
    },
    sign(org, fields) {
      return signVerdict({
        privateJwk: fed.agentKey(org),
        swarm: fields.swarm,
        subject: fields.subject,
        org: fields.asOrg ?? org,
        agent: fields.agent ?? `${org}-reviewer`,
        verdict: fields.verdict,
        reason: fields.reason ?? 'reviewed',
        ...(fields.iat === undefined ? {} : { iat: fields.iat }),
        ...(fields.nonce === undefined ? {} : { nonce: fields.nonce }),
      });
    },
    waitFor(what, probe, timeoutMs = 60_000) {
      return waitFor(what, probe, timeoutMs);
    },
    async close() {
      await Promise.all([...nodes.values()].map((node) => node.stop().catch(() => undefined)));
      await Promise.all([...agents.values()].map((agent) => agent.close()));
      await mesh?.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return fed;
}

/** One sample of a metric of `org`'s node, read over its public /metrics endpoint (0 when absent). */
export async function metricOf(fed: InProcessFederation, org: string, name: string, labels: string): Promise<number> {
  const text = (await fed.api(org, 'GET', '/metrics')).text;
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((label) => l.includes(label)));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/** Waits until every node of the federation answers /readyz with 200. */
export function everyNodeReady(fed: InProcessFederation): Promise<boolean> {
  return fed.waitFor('every node to be ready', async () => {
    for (const { org } of fed.orgs) if ((await fed.api(org, 'GET', '/readyz')).status !== 200) return false;
    return true;
  });
}

/** Waits until every node names the same leader of `swarm`; returns it. */
export function agreedLeader(fed: InProcessFederation, swarm: string): Promise<string> {
  return fed.waitFor(`a leader of ${swarm} all nodes agree on`, async () => {
    const views = await Promise.all(fed.orgs.map((org) => fed.api(org.org, 'GET', `/v1/swarms/${swarm}/status`)));
    const leaders = new Set(views.map((v) => (v.status === 200 ? v.json.leader : null)));
    const [only] = [...leaders];
    return leaders.size === 1 && only ? (only as string) : null;
  });
}

/** Waits until every node holds each subject with exactly one vote (each verdict applied once, everywhere). */
export async function appliedOnceEverywhere(fed: InProcessFederation, swarm: string, subjects: string[]): Promise<void> {
  for (const { org } of fed.orgs) {
    await fed.waitFor(`${org} to apply ${subjects.length} subjects`, async () => {
      for (const subject of subjects) {
        const view = await fed.api(org, 'GET', `/v1/swarms/${swarm}/subjects/${encodeURIComponent(subject)}`);
        if (view.status !== 200) return false;
        if (view.json.votes.length !== 1) throw new Error(`${org} holds ${view.json.votes.length} votes on ${subject}`);
      }
      return true;
    });
  }
}

/** A peer client that presents `from`'s node certificate to `to`'s peer port (to speak as a member node). */
export function peerClientAs(fed: InProcessFederation, from: string, to: string): PeerClientPool {
  const self = fed.orgs.find((o) => o.org === from)!;
  const target = fed.orgs.find((o) => o.org === to)!;
  return new PeerClientPool({
    self: from,
    tls: { certPem: readFileSync(join(self.certDir, 'node.crt'), 'utf8'), keyPem: readFileSync(join(self.certDir, 'node.key'), 'utf8') },
    members: [{ org: to, peerUrl: target.peerUrl, caPem: readFileSync(join(target.certDir, 'ca.crt'), 'utf8') }],
  });
}

/**
 * Three orgs (acme, globex, initech) in one raft swarm with a majority policy, started and settled: every node names
 * the same leader. Returns the federation, the leader and one follower.
 */
export async function startRaftTrio(
  swarm: string,
  nodeOptions?: (org: string) => Partial<NodeOptions>,
  federationOptions: { mesh?: boolean } = {},
): Promise<{ fed: InProcessFederation; leader: string; follower: string }> {
  const orgs = ['acme', 'globex', 'initech'];
  const policy = { values: ['approve', 'reject'], quorum: 'all' as const, rule: 'majority' as const };
  const fed = await startInProcessFederation({ orgs, swarms: [{ id: swarm, mode: 'raft', policy }], ...(nodeOptions ? { nodeOptions } : {}), ...federationOptions });
  const leader = await agreedLeader(fed, swarm);
  return { fed, leader, follower: orgs.find((org) => org !== leader)! };
}

/**
 * Four orgs running `swarm` in pbft mode (f = 1; one vote decides a subject), once every node is ready and names a
 * primary; `backup` is the first org that is not the primary.
 */
export async function startPbftFour(
  swarm: string,
  nodeOptions?: (org: string) => Partial<NodeOptions>,
  federationOptions: { mesh?: boolean } = {},
): Promise<{ fed: InProcessFederation; primary: string; backup: string }> {
  const orgs = ['acme', 'globex', 'initech', 'umbrella'];
  const policy = { values: ['approve', 'reject'], quorum: 1, rule: 'majority' as const };
  const fed = await startInProcessFederation({ orgs, swarms: [{ id: swarm, mode: 'pbft', policy }], ...(nodeOptions ? { nodeOptions } : {}), ...federationOptions });
  await fed.waitFor('every node ready with a primary', async () => {
    for (const org of orgs) {
      if ((await fed.api(org, 'GET', '/readyz')).status !== 200) return false;
      if (!(await fed.api(org, 'GET', `/v1/swarms/${swarm}/status`)).json?.leader) return false;
    }
    return true;
  });
  const primary = await agreedLeader(fed, swarm);
  return { fed, primary, backup: orgs.find((org) => org !== primary)! };
}

/**
 * A new key of `keyOrg` (an agent or admin key) added to the federation files of `holders` only, each reloaded
 * live: a key rolled out one node at a time.
 */
export function rollOutKey(fed: InProcessFederation, keyOrg: string, holders: string[], role: 'agentKeys' | 'adminKeys'): SigningKey {
  const newKey = generateSigningKey();
  for (const holder of holders) {
    const local = fed.orgs.find((o) => o.org === holder)!;
    const document = parse(readFileSync(local.configPath, 'utf8'));
    document.members.find((m: { org: string }) => m.org === keyOrg)[role].push(newKey.publicJwk);
    writeFileSync(local.configPath, stringify(document));
    const report = fed.nodes.get(holder)!.reload();
    if (!report.ok) throw new Error(`${holder} did not reload: ${report.error}`);
  }
  return newKey;
}

/** rollOutKey of an agent key; returns a signer of approve verdicts by agent `${keyOrg}-new-bot` with it. */
export function rollOutAgentKey(fed: InProcessFederation, swarm: string, keyOrg: string, holders: string[]): (subject: string) => Promise<string> {
  const privateJwk = exportPrivateJwk(rollOutKey(fed, keyOrg, holders, 'agentKeys')) as AgentPrivateJwk;
  return (subject) => signVerdict({ privateJwk, swarm, subject, org: keyOrg, agent: `${keyOrg}-new-bot`, verdict: 'approve', reason: 'reviewed' });
}

/** `org`'s admin signing key (admin.jwk, as `conclave init` wrote it). */
export function adminKeyOf(fed: InProcessFederation, org: string): SigningKey {
  return importPrivateJwk(JSON.parse(readFileSync(join(fed.orgs.find((o) => o.org === org)!.certDir, 'admin.jwk'), 'utf8')) as PrivateJwk);
}
