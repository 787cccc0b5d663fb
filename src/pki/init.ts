// Org bootstrap (`conclave init`): the org CA, the node's TLS cert, the node/agent/admin Ed25519 keys, and the
// member card (public parts only) that other orgs paste under `members:` in their federation file.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { exportPrivateJwk, generateSigningKey, type PublicJwk } from '../crypto/ed25519.ts';
import { createOrgCa, ID_PATTERN, issueNodeCert } from './certs.ts';

/** The exact file names `conclave init` writes; scripts and docs rely on them. */
export const ORG_FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  nodeCert: 'node.crt',
  nodeKey: 'node.key',
  nodeSigningKey: 'node-signing.jwk',
  agentKey: 'agent.jwk',
  adminKey: 'admin.jwk',
  memberCard: 'member-card.yaml',
} as const;

const PRIVATE_FILES = new Set<string>([ORG_FILES.caKey, ORG_FILES.nodeKey, ORG_FILES.nodeSigningKey, ORG_FILES.agentKey, ORG_FILES.adminKey]);

export interface InitOrgOptions {
  org: string;
  /** Folder to create; it must not exist or be empty. */
  outDir: string;
  /** Node name in the certificate SAN (default `node1`). */
  node?: string;
  /** Node certificate validity in days (default 365; the CA gets max(days, 3650)). */
  days?: number;
  /** Extra DNS names / IP addresses for the node certificate (localhost, 127.0.0.1 and ::1 are always there). */
  hosts?: string[];
  /** Written into the member card; placeholders when absent. */
  peerUrl?: string;
  apiUrl?: string;
}

export interface MemberCard {
  org: string;
  peerUrl: string;
  apiUrl: string;
  ca: string;
  nodeKeys: PublicJwk[];
  agentKeys: PublicJwk[];
  adminKeys: PublicJwk[];
}

export interface InitOrgResult {
  org: string;
  node: string;
  /** Absolute path of the folder written. */
  dir: string;
  files: { [K in keyof typeof ORG_FILES]: string };
  card: MemberCard;
  /** The member card as written to member-card.yaml (a one-item YAML list with a comment header). */
  cardYaml: string;
}

export class InitError extends Error {
  override readonly name = 'InitError';
}

export function memberCardYaml(card: MemberCard): string {
  const header =
    `# Member card of org ${card.org}: public parts only. Paste the item below under \`members:\` in federation.yaml\n` +
    `# and replace peerUrl / apiUrl with the addresses where this org's node is reachable.\n`;
  return header + stringify([card], { lineWidth: 0 });
}

/** Creates an org's keys and certificates in a new folder, atomically: either every file is there or none. */
export async function initOrg(options: InitOrgOptions): Promise<InitOrgResult> {
  const { org } = options;
  const node = options.node ?? 'node1';
  if (!ID_PATTERN.test(org)) throw new InitError(`org id ${JSON.stringify(org)} must match ${ID_PATTERN.source} (lowercase letters, digits, dashes)`);
  if (!ID_PATTERN.test(node)) throw new InitError(`node name ${JSON.stringify(node)} must match ${ID_PATTERN.source}`);
  const days = options.days ?? 365;
  if (!Number.isInteger(days) || days < 1) throw new InitError(`--days must be a positive whole number, got ${days}`);
  const dir = resolve(options.outDir);
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new InitError(`${options.outDir} already exists and is not empty: init never overwrites keys — choose another --out or remove it yourself`);
  }
  mkdirSync(dirname(dir), { recursive: true });

  const ca = await createOrgCa({ org, days: Math.max(days, 3650) });
  const nodeTls = await issueNodeCert({ ca, org, node, days, hosts: [org, ...(options.hosts ?? [])] });
  const nodeSigning = generateSigningKey();
  const agent = generateSigningKey();
  const admin = generateSigningKey();
  const card: MemberCard = {
    org,
    peerUrl: options.peerUrl ?? 'https://127.0.0.1:7001',
    apiUrl: options.apiUrl ?? 'http://127.0.0.1:8001',
    ca: ca.certPem,
    nodeKeys: [nodeSigning.publicJwk],
    agentKeys: [agent.publicJwk],
    adminKeys: [admin.publicJwk],
  };
  const cardYaml = memberCardYaml(card);
  const contents: Record<string, string> = {
    [ORG_FILES.caCert]: ca.certPem,
    [ORG_FILES.caKey]: ca.keyPem,
    [ORG_FILES.nodeCert]: nodeTls.certPem,
    [ORG_FILES.nodeKey]: nodeTls.keyPem,
    [ORG_FILES.nodeSigningKey]: JSON.stringify(exportPrivateJwk(nodeSigning), null, 2) + '\n',
    [ORG_FILES.agentKey]: JSON.stringify(exportPrivateJwk(agent), null, 2) + '\n',
    [ORG_FILES.adminKey]: JSON.stringify(exportPrivateJwk(admin), null, 2) + '\n',
    [ORG_FILES.memberCard]: cardYaml,
  };

  // Write into a sibling temp folder, then rename: a crash never leaves half an org behind, and rename refuses
  // to replace a folder someone filled in the meantime.
  const staging = mkdtempSync(join(dirname(dir), `.${basename(dir)}.init-`));
  try {
    chmodSync(staging, 0o700);
    for (const [name, text] of Object.entries(contents)) {
      const mode = PRIVATE_FILES.has(name) ? 0o600 : 0o644;
      writeFileSync(join(staging, name), text, { mode, flag: 'wx' });
      chmodSync(join(staging, name), mode); // the umask may have narrowed the mode given to open()
    }
    renameSync(staging, dir);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') {
      throw new InitError(`${options.outDir} was filled while init ran: init never overwrites keys — choose another --out`);
    }
    throw error;
  }
  const files = Object.fromEntries(Object.entries(ORG_FILES).map(([key, name]) => [key, join(dir, name)])) as InitOrgResult['files'];
  return { org, node, dir, files, card, cardYaml };
}
