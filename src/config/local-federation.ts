// A whole local federation on disk for tests, the demo and dev clusters: `conclave init` for every org plus one
// federation file per org (same members and swarms, each with its own `node:` section), validated before return.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
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

/** The kernel's range for the local ports of outgoing connections (Linux), or the usual default. */
export function ephemeralPortRange(): [low: number, high: number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high) && low! > 0 && high! >= low!) return [low!, high!];
  } catch {
    // not Linux: the common default
  }
  return [32768, 60999];
}

/** Binds `port` and resolves the server, or null when it is taken (or not allowed). */
function tryListen(port: number, host: string): Promise<Server | null> {
  return new Promise((resolvePromise) => {
    const server = createServer();
    server.once('error', () => resolvePromise(null));
    server.listen(port, host, () => resolvePromise(server));
  });
}

/**
 * Ports that were free a moment ago, all different, for nodes that will bind them shortly. They are drawn at random
 * BELOW the kernel's ephemeral range: a port the kernel handed out for listen(0) comes from the range it also uses
 * for the local side of outgoing connections, so any process's next connect() could take it before the node binds
 * it (seen: a dev-cluster node failing with EADDRINUSE while other tests ran). Each candidate is bound, all are held
 * until `count` are found, then released. Falls back to the kernel's choice when no range is left below it.
 */
export async function freePorts(count: number, host = '127.0.0.1'): Promise<number[]> {
  const low = 10_000;
  const high = ephemeralPortRange()[0] - 1;
  const held: Server[] = [];
  const tried = new Set<number>();
  if (high - low >= count * 8) {
    while (held.length < count && tried.size < 4 * count + 200) {
      const port = low + Math.floor(Math.random() * (high - low + 1));
      if (tried.has(port)) continue;
      tried.add(port);
      const server = await tryListen(port, host);
      if (server) held.push(server);
    }
  }
  while (held.length < count) {
    const server = await tryListen(0, host);
    if (!server) throw new Error(`no free TCP port on ${host}`);
    held.push(server);
  }
  const ports = held.map((server) => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP address');
    return address.port;
  });
  await Promise.all(held.map((server) => new Promise<void>((done) => server.close(() => done()))));
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
