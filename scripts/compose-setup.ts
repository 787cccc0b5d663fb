// Owns the docker-compose setup: creates, for each of the four orgs of docker-compose.yml, its keys and
// certificates (`conclave init`, node certs valid for the service's DNS name) and the federation file its service
// mounts, then validates every federation file as the node will read it.
//
//   npx tsx scripts/compose-setup.ts            # writes certs/compose/ (git-ignored), then: docker compose up
//   npx tsx scripts/compose-setup.ts --out DIR  # elsewhere (the compose file expects certs/compose/)
//
// Layout, per org (acme, globex, initech, umbrella):
//   <out>/<org>/init/             the org's full `conclave init` output: CA key, agent and admin keys. Stays on the host.
//   <out>/<org>/node/             what the node needs, mounted read-only at /etc/conclave/certs:
//                                 ca.crt, node.crt, node.key, node-signing.jwk
//   <out>/<org>/federation.yaml   mounted read-only at /etc/conclave/federation.yaml; every member's CA is inline.
import { copyFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { loadFederation } from '../src/config/load.ts';
import { initOrg, ORG_FILES, type InitOrgResult } from '../src/pki/init.ts';

export const COMPOSE_ORGS = ['acme', 'globex', 'initech', 'umbrella'] as const;
/** Inside the compose network every node listens on the same ports; the service name is the host name. */
export const PEER_PORT = 7000;
export const API_PORT = 8443;
/** Host ports the API of each org is published on (docker-compose.yml): acme 8441, globex 8442, ... */
export const HOST_API_PORTS: Record<string, number> = { acme: 8441, globex: 8442, initech: 8443, umbrella: 8444 };
/** Where the container finds its files (docker-compose.yml mounts them there). */
export const CONTAINER = {
  federation: '/etc/conclave/federation.yaml',
  certs: '/etc/conclave/certs',
  data: '/var/lib/conclave',
} as const;
/** Files of `conclave init` the node needs; the rest (CA key, agent and admin keys) never enter a container. */
export const NODE_FILES = [ORG_FILES.caCert, ORG_FILES.nodeCert, ORG_FILES.nodeKey, ORG_FILES.nodeSigningKey] as const;

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_OUT = join(REPO_ROOT, 'certs', 'compose');

export interface ComposeSetupResult {
  out: string;
  orgs: { org: string; initDir: string; nodeDir: string; federationFile: string; peerUrl: string; apiUrl: string }[];
}

export async function composeSetup(options: { out?: string; log?: (line: string) => void } = {}): Promise<ComposeSetupResult> {
  const out = resolve(options.out ?? DEFAULT_OUT);
  const log = options.log ?? (() => undefined);
  if (existsSync(out) && readdirSync(out).length > 0) {
    throw new Error(`${out} exists and is not empty: setup never overwrites keys — remove it yourself to start over`);
  }
  mkdirSync(out, { recursive: true });

  const results: { org: string; init: InitOrgResult; nodeDir: string; peerUrl: string; apiUrl: string }[] = [];
  for (const org of COMPOSE_ORGS) {
    const peerUrl = `https://${org}:${PEER_PORT}`;
    const apiUrl = `https://${org}:${API_PORT}`;
    // The service name is the node's DNS name inside the compose network (initOrg always adds the org id,
    // localhost and 127.0.0.1; the org id is the service name here).
    const init = await initOrg({ org, outDir: join(out, org, 'init'), hosts: [org], peerUrl, apiUrl });
    const nodeDir = join(out, org, 'node');
    mkdirSync(nodeDir, { recursive: true });
    for (const name of NODE_FILES) {
      copyFileSync(join(init.dir, name), join(nodeDir, name));
      chmodSync(join(nodeDir, name), name === ORG_FILES.caCert || name === ORG_FILES.nodeCert ? 0o644 : 0o600);
    }
    results.push({ org, init, nodeDir, peerUrl, apiUrl });
    log(`${org}: keys and certificates in ${join(out, org)} (node certificate for DNS ${org}, localhost)`);
  }

  const members = results.map((r) => ({
    org: r.org,
    peerUrl: r.peerUrl,
    apiUrl: r.apiUrl,
    ca: r.init.card.ca, // inline PEM: the container needs no other org's files
    nodeKeys: r.init.card.nodeKeys,
    agentKeys: r.init.card.agentKeys,
    adminKeys: r.init.card.adminKeys,
  }));
  const swarms = [
    {
      id: 'reviews',
      members: [...COMPOSE_ORGS],
      mode: 'raft',
      policy: { values: ['approve', 'request-changes', 'reject'], quorum: 'majority', rule: 'majority' },
    },
  ];

  const orgs: ComposeSetupResult['orgs'] = [];
  for (const r of results) {
    const doc = {
      version: 1,
      federation: 'compose',
      node: {
        org: r.org,
        peer: { listen: `0.0.0.0:${PEER_PORT}` },
        api: { listen: `0.0.0.0:${API_PORT}` },
        dataDir: CONTAINER.data,
        tls: {
          cert: `${CONTAINER.certs}/${ORG_FILES.nodeCert}`,
          key: `${CONTAINER.certs}/${ORG_FILES.nodeKey}`,
          ca: `${CONTAINER.certs}/${ORG_FILES.caCert}`,
        },
        signingKey: `${CONTAINER.certs}/${ORG_FILES.nodeSigningKey}`,
      },
      members,
      swarms,
    };
    const text =
      `# Federation file of org ${r.org} for docker-compose.yml (written by scripts/compose-setup.ts).\n` +
      `# Mounted at ${CONTAINER.federation}; paths are the container's.\n` +
      stringify(doc, { lineWidth: 0 });
    const federationFile = join(out, r.org, 'federation.yaml');
    writeFileSync(federationFile, text, { flag: 'wx' });
    validateAsContainerSees(text, r.nodeDir);
    orgs.push({ org: r.org, initDir: r.init.dir, nodeDir: r.nodeDir, federationFile, peerUrl: r.peerUrl, apiUrl: r.apiUrl });
    log(`${r.org}: ${federationFile} (validated)`);
  }
  return { out, orgs };
}

/** Loads the federation file with the container's paths mapped onto the host's files: every check the node does. */
function validateAsContainerSees(text: string, nodeDir: string): void {
  const scratch = mkdtempSync(join(tmpdir(), 'conclave-compose-check-'));
  try {
    const hostText = text.replaceAll(`${CONTAINER.certs}/`, `${nodeDir}/`).replace(`dataDir: ${CONTAINER.data}`, `dataDir: ${join(scratch, 'data')}`);
    writeFileSync(join(scratch, 'federation.yaml'), hostText);
    loadFederation(join(scratch, 'federation.yaml'));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function usage(): never {
  console.error('usage: npx tsx scripts/compose-setup.ts [--out DIR]   (default certs/compose, which docker-compose.yml mounts)');
  process.exit(2);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const args = process.argv.slice(2);
  let out: string | undefined;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--out' && args[i + 1]) out = args[++i];
    else usage();
  }
  try {
    const result = await composeSetup({ out, log: (line) => console.log(line) });
    console.log(`done: ${result.orgs.length} orgs in ${result.out}`);
    if (result.out === DEFAULT_OUT) console.log('next: docker compose up --build   (see docs/running.md)');
  } catch (error) {
    console.error(`compose-setup: ${(error as Error).message}`);
    process.exit(1);
  }
}
