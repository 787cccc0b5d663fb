// Test support: a whole federation of real nodes inside the test process — real TLS, real HTTP/2 peers, real
// RocksDB in a temp dir — and an HTTPS client per org that trusts only that org's CA.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { writeLocalFederation, type LocalOrg, type SwarmSpec } from '../../src/config/local-federation.ts';
import { createLogger } from '../../src/log/logger.ts';
import { ConclaveNode, type NodeOptions } from '../../src/node/node.ts';
import { signVerdict, type AgentPrivateJwk } from '../../src/verdict/agent.ts';

import { waitFor } from './wait.ts';

export interface InProcessFederation {
  dir: string;
  orgs: LocalOrg[];
  nodes: Map<string, ConclaveNode>;
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
}): Promise<InProcessFederation> {
  const dir = mkdtempSync(join(tmpdir(), 'conclave-fed-'));
  const federation = await writeLocalFederation({ dir, orgs: options.orgs, swarms: options.swarms });
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
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return fed;
}
