// Test and bench fixtures for the audit trail: an in-memory federation with real Ed25519 keys, real agent JWS
// verdicts and node-signed proposals, committed into an AuditLog with checkpoints and decisions, exported as JSONL.
import type { ConsensusMode, FederationConfig, SwarmConfig } from '../../src/config/types.ts';
import { canonicalJson } from '../../src/crypto/canonical.ts';
import { generateSigningKey, signBytes, type SigningKey } from '../../src/crypto/ed25519.ts';
import { toBase64Url, utf8 } from '../../src/crypto/encoding.ts';
import { AuditLog, type AuditRecord } from '../../src/audit/chain.ts';
import { mergeCheckpointSignatures, signCheckpoint, type Checkpoint } from '../../src/audit/checkpoint.ts';
import { exportLines, type ExportDecision } from '../../src/audit/export.ts';
import { MerkleTree } from '../../src/audit/merkle.ts';
import { toHex } from '../../src/crypto/encoding.ts';
import { verdictSigningInput, type VerdictPayload } from '../../src/verdict/format.ts';
import { Keyring } from '../../src/verdict/keyring.ts';
import { DecisionMachine } from '../../src/verdict/machine.ts';
import { encodeCommand, signProposal, type LogCommand } from '../../src/verdict/proposal.ts';

export interface TestOrg {
  org: string;
  nodeKey: SigningKey;
  agentKey: SigningKey;
  adminKey: SigningKey;
}

export interface TestFederation {
  config: FederationConfig;
  orgs: TestOrg[];
  swarm: SwarmConfig;
}

export const FEDERATION = 'test-fed';
export const SWARM = 'reviews';

export function makeFederation(orgNames: string[], mode: ConsensusMode): TestFederation {
  const orgs = orgNames.map((org) => ({ org, nodeKey: generateSigningKey(), agentKey: generateSigningKey(), adminKey: generateSigningKey() }));
  const swarm: SwarmConfig = {
    id: SWARM,
    members: [...orgNames],
    mode,
    policy: { values: ['approve', 'request-changes', 'reject'], quorum: 'majority', rule: { kind: 'majority' }, fallback: 'request-changes', maxClockSkewSeconds: 300 },
    adminPolicy: 'majority',
  };
  const config: FederationConfig = {
    version: 1,
    federation: FEDERATION,
    sourcePath: '/nonexistent/federation.yaml',
    node: {
      org: orgNames[0]!,
      peerListen: { host: '127.0.0.1', port: 7001 },
      apiListen: { host: '127.0.0.1', port: 7002 },
      dataDir: '/nonexistent',
      tlsCertFile: '',
      tlsKeyFile: '',
      caFile: '',
      signingKeyFile: '',
    },
    members: orgs.map((o) => ({
      org: o.org,
      peerUrl: `https://${o.org}.example:7001`,
      apiUrl: null,
      caPem: '',
      nodeKeys: [o.nodeKey.publicJwk],
      agentKeys: [o.agentKey.publicJwk],
      adminKeys: [o.adminKey.publicJwk],
    })),
    swarms: [swarm],
  };
  return { config, orgs, swarm };
}

/** A compact JWS verdict signed with node:crypto (byte-identical to verdict/agent.ts, much faster for big logs). */
export function signAgentVerdict(org: TestOrg, fields: { subject: string; verdict: string; reason?: string; iat?: number; nonce: string }): string {
  const payload: VerdictPayload = {
    v: 1,
    swarm: SWARM,
    subject: fields.subject,
    org: org.org,
    agent: `${org.org}-bot`,
    verdict: fields.verdict,
    reason: fields.reason ?? `reviewed by ${org.org}`,
    iat: fields.iat ?? 1_760_000_000,
    nonce: fields.nonce,
  };
  const input = verdictSigningInput(org.agentKey.kid, payload);
  return `${input}.${toBase64Url(signBytes(org.agentKey, utf8(input)))}`;
}

export interface BuiltLog {
  fed: TestFederation;
  mode: ConsensusMode;
  records: AuditRecord[];
  tree: MerkleTree;
  checkpoints: Checkpoint[];
  decisions: Map<number, ExportDecision[]>;
  audit: AuditLog;
}

export interface BuildOptions {
  entries: number;
  checkpointEvery: number;
  /** Orgs (by position) that sign each checkpoint; default all. */
  signers?: number[];
  /** Verdicts per proposal (default 1). */
  batch?: number;
  /** Replace the command of some entries (index → command) before they are committed. */
  override?: (index: number, cmd: LogCommand) => LogCommand;
}

/**
 * Commits `entries` entries: a noop at index 1 (and every 97th), then proposals by rotating orgs carrying verdicts
 * on subjects that each receive one vote per org, mostly "approve", so subjects are decided after a majority.
 */
export function buildLog(fed: TestFederation, opts: BuildOptions): BuiltLog {
  const mode = fed.swarm.mode;
  const keyring = Keyring.fromMembers(fed.config.members);
  const machine = new DecisionMachine(fed.swarm, keyring);
  const audit = AuditLog.create(FEDERATION, SWARM);
  const tree = new MerkleTree();
  const records: AuditRecord[] = [];
  const checkpoints: Checkpoint[] = [];
  const decisions = new Map<number, ExportDecision[]>();
  const n = fed.orgs.length;
  let vote = 0;
  const batchSize = opts.batch ?? 1;
  for (let index = 1; index <= opts.entries; index++) {
    let cmd: LogCommand;
    if (index === 1 || index % 97 === 0) {
      cmd = { v: 1, type: 'noop' };
    } else {
      const proposer = fed.orgs[index % n]!;
      const batch: string[] = [];
      for (let b = 0; b < batchSize; b++, vote++) {
        const org = fed.orgs[vote % n]!;
        const subject = `github.com/acme/widget/pull/${Math.floor(vote / n)}@c0ffee`;
        const verdict = vote % 11 === 3 ? 'reject' : 'approve';
        batch.push(signAgentVerdict(org, { subject, verdict, nonce: `nonce-${String(vote).padStart(10, '0')}` }));
      }
      cmd = signProposal(SWARM, proposer.org, batch, proposer.nodeKey);
    }
    if (opts.override) cmd = opts.override(index, cmd);
    const epoch = 1 + Math.floor(index / 50);
    const appended = audit.append({ index, mode, epoch, data: encodeCommand(cmd) });
    records.push(appended.record);
    tree.appendLeafHash(appended.leafHash);
    const outcomes = machine.apply(index, cmd, { verifyAgentSignatures: mode === 'pbft' });
    const decided = outcomes.filter((o) => o.status === 'decision').map((o) => ({ subject: o.subject!, value: o.decision!.value }));
    if (decided.length > 0) decisions.set(index, decided);
    if (index % opts.checkpointEvery === 0) checkpoints.push(makeCheckpoint(fed, mode, index, toHex(appended.root), opts.signers));
  }
  return { fed, mode, records, tree, checkpoints, decisions, audit };
}

export function makeCheckpoint(fed: TestFederation, mode: ConsensusMode, size: number, root: string, signers?: number[]): Checkpoint {
  const body = { v: 1 as const, federation: FEDERATION, swarm: SWARM, size, root, time: 1_760_000_000 + size, mode };
  const signed = (signers ?? fed.orgs.map((_, i) => i)).map((i) => signCheckpoint(body, fed.orgs[i]!.org, fed.orgs[i]!.nodeKey));
  return mergeCheckpointSignatures(...signed);
}

export interface ExportOptions {
  from?: number;
  /** The swarm's membership and mode at index 1, carried in the header (see ExportHeader.genesis). */
  genesis?: { members: string[]; mode: ConsensusMode };
  withDecisions?: boolean;
  withProofs?: boolean;
  checkpoints?: Checkpoint[];
  records?: AuditRecord[];
}

export async function exportText(built: BuiltLog, opts: ExportOptions = {}): Promise<string[]> {
  const from = opts.from ?? 1;
  const records = opts.records ?? built.records;
  const to = records.length;
  const out: string[] = [];
  let anchor: { prev: string; frontier: { size: number; hashes: string[] } } | undefined;
  if (from > 1) {
    const prefix = AuditLog.create(FEDERATION, SWARM);
    for (const r of records.slice(0, from - 1)) {
      prefix.append({ index: r.index, mode: r.mode, epoch: (r.term ?? r.view)!, data: Buffer.from(r.data, 'base64url') });
    }
    const state = prefix.state();
    anchor = { prev: state.lastHash, frontier: state.frontier };
  }
  const withDecisions = opts.withDecisions ?? true;
  for await (const line of exportLines({
    federation: FEDERATION,
    swarm: SWARM,
    from,
    to,
    exportedAt: 1_760_000_999,
    ...(anchor ? { anchor } : {}),
    ...(opts.genesis ? { genesis: opts.genesis } : {}),
    records: records.slice(from - 1),
    checkpoints: opts.checkpoints ?? built.checkpoints,
    ...(withDecisions ? { decisionsAt: (i: number) => built.decisions.get(i) ?? [] } : {}),
    ...(opts.withProofs ? { consistencyProof: (a: number, b: number) => built.tree.consistencyProof(a, b) } : {}),
  })) {
    out.push(line);
  }
  return out;
}

/** Re-serialises a modified line the way the exporter does. */
export function lineOf(value: unknown): string {
  return canonicalJson(value);
}

export async function* streamOf(lines: string[], chunkSize = 4096): AsyncGenerator<Uint8Array> {
  const bytes = Buffer.from(lines.map((l) => `${l}\n`).join(''), 'utf8');
  for (let i = 0; i < bytes.length; i += chunkSize) yield new Uint8Array(bytes.subarray(i, i + chunkSize));
}
