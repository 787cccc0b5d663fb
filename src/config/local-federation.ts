// A whole local federation on disk for tests, the demo and dev clusters: `conclave init` for every org plus one
// federation file per org (same members and swarms, each with its own `node:` section), validated before return.
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { initOrg, ORG_FILES, type InitOrgResult } from '../pki/init.ts';
import { loadFederation } from './load.ts';
import type { AdminPolicy, ConsensusMode, QuorumSpec } from './types.ts';

/** A swarm as written in the federation file (the YAML shape, not the loaded one). */
export interface SwarmSpec {
  id: string;
  mode: ConsensusMode;
  /** Defaults to every org of the federation. */
  members?: string[];
  policy: {
    values: string[];
    quorum: QuorumSpec;
    rule: 'majority' | 'unanimity' | { threshold: number; value: string };
    fallback?: string | null;
    maxClockSkewSeconds?: number;
  };
  adminPolicy?: AdminPolicy;
}

export interface LocalFederationOptions {
  /** Folder to fill; created when missing. Each org's certs go to `<dir>/certs/<org>/` (must not exist yet). */
  dir: string;
  orgs: string[];
  /** Federation id (default `local`). */
  federation?: string;
  /** Address nodes listen on and peers dial (default 127.0.0.1). */
  host?: string;
  /** Fixed ports: org i gets peer basePort + 2i and API basePort + 2i + 1. */
  basePort?: number;
  /** Fixed ports per org (wins over basePort). */
  ports?: Record<string, { peer: number; api: number }>;
  /** One swarm, or several with `swarms`. */
  swarm?: SwarmSpec;
  swarms?: SwarmSpec[];
  /** Node certificate validity in days (default 365). */
  days?: number;
}

export interface LocalOrg {
  org: string;
  node: string;
  /** The org's federation file: pass it to `conclave start --config`. */
  configPath: string;
  certDir: string;
  dataDir: string;
  peerPort: number;
  apiPort: number;
  peerUrl: string;
  apiUrl: string;
  files: InitOrgResult['files'];
}

export interface LocalFederation {
  dir: string;
  orgs: LocalOrg[];
  /** org → its federation file. */
  configPaths: Record<string, string>;
}

/**
 * Ports that were free a moment ago: all are bound to port 0 at once (so they differ), then released. Another
 * process could take one before the node binds it; the window is short and tests retry on EADDRINUSE if they care.
 */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () =>
      new Promise<import('node:net').Server>((resolvePromise, reject) => {
        const server = createServer();
        server.once('error', reject);
        server.listen(0, host, () => resolvePromise(server));
      }),
    ),
  );
  const ports = servers.map((server) => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP address');
    return address.port;
  });
  await Promise.all(servers.map((server) => new Promise<void>((done) => server.close(() => done()))));
  return ports;
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export async function writeLocalFederation(options: LocalFederationOptions): Promise<LocalFederation> {
  const dir = resolve(options.dir);
  const host = options.host ?? '127.0.0.1';
  const { orgs } = options;
  if (orgs.length === 0) throw new Error('writeLocalFederation: give at least one org');
  if (new Set(orgs).size !== orgs.length) throw new Error('writeLocalFederation: org ids must be distinct');
  const swarms = options.swarms ?? (options.swarm ? [options.swarm] : []);

  let ports: { peer: number; api: number }[];
  if (options.ports) {
    ports = orgs.map((org) => {
      const given = options.ports![org];
      if (!given) throw new Error(`writeLocalFederation: ports has no entry for org ${org}`);
      return given;
    });
  } else if (options.basePort !== undefined) {
    ports = orgs.map((_, i) => ({ peer: options.basePort! + 2 * i, api: options.basePort! + 2 * i + 1 }));
  } else {
    const free = await freePorts(orgs.length * 2, host);
    ports = orgs.map((_, i) => ({ peer: free[2 * i]!, api: free[2 * i + 1]! }));
  }

  mkdirSync(join(dir, 'certs'), { recursive: true });
  const locals: LocalOrg[] = [];
  const cards: InitOrgResult['card'][] = [];
  for (const [i, org] of orgs.entries()) {
    const peerUrl = `https://${hostForUrl(host)}:${ports[i]!.peer}`;
    const apiUrl = `https://${hostForUrl(host)}:${ports[i]!.api}`; // the public API is HTTPS (the org CA issued node.crt)
    const result = await initOrg({
      org,
      outDir: join(dir, 'certs', org),
      ...(options.days === undefined ? {} : { days: options.days }),
      hosts: [host],
      peerUrl,
      apiUrl,
    });
    const orgDir = join(dir, org);
    locals.push({
      org,
      node: result.node,
      configPath: join(orgDir, 'federation.yaml'),
      certDir: result.dir,
      dataDir: join(orgDir, 'data'),
      peerPort: ports[i]!.peer,
      apiPort: ports[i]!.api,
      peerUrl,
      apiUrl,
      files: result.files,
    });
    cards.push(result.card);
  }

  // The members carry exactly the public keys of each org's member card, as an operator would paste them.
  const members = locals.map((local, i) => {
    const card = cards[i]!;
    return {
      org: local.org,
      peerUrl: local.peerUrl,
      apiUrl: local.apiUrl,
      ca: `../certs/${local.org}/${ORG_FILES.caCert}`,
      nodeKeys: card.nodeKeys,
      agentKeys: card.agentKeys,
      adminKeys: card.adminKeys,
    };
  });
  const swarmDocs = swarms.map((swarm) => ({
    id: swarm.id,
    members: swarm.members ?? orgs,
    mode: swarm.mode,
    policy: swarm.policy,
    ...(swarm.adminPolicy === undefined ? {} : { adminPolicy: swarm.adminPolicy }),
  }));

  for (const local of locals) {
    const doc = {
      version: 1,
      federation: options.federation ?? 'local',
      node: {
        org: local.org,
        peer: { listen: `${hostForUrl(host)}:${local.peerPort}` },
        api: { listen: `${hostForUrl(host)}:${local.apiPort}` },
        dataDir: './data',
        tls: {
          cert: `../certs/${local.org}/${ORG_FILES.nodeCert}`,
          key: `../certs/${local.org}/${ORG_FILES.nodeKey}`,
          ca: `../certs/${local.org}/${ORG_FILES.caCert}`,
        },
        signingKey: `../certs/${local.org}/${ORG_FILES.nodeSigningKey}`,
      },
      members,
      swarms: swarmDocs,
    };
    mkdirSync(join(dir, local.org), { recursive: true });
    writeFileSync(local.configPath, `# Federation file of org ${local.org} (written by writeLocalFederation)\n` + stringify(doc, { lineWidth: 0 }), {
      flag: 'wx',
    });
    loadFederation(local.configPath); // a helper that writes an invalid file would only move the failure elsewhere
  }
  return { dir, orgs: locals, configPaths: Object.fromEntries(locals.map((local) => [local.org, local.configPath])) };
}
