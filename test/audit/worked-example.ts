// The worked example of docs/audit-format.md: a tiny deterministic log (fixed keys, Ed25519 is deterministic) whose
// every intermediate value is printed by `npx tsx test/audit/worked-example.ts` and checked against the doc by a test.
import { createPrivateKey, createPublicKey } from 'node:crypto';
import type { FederationConfig } from '../../src/config/types.ts';
import { AuditLog, recordHash, recordLeaf, recordLeafHash, type AuditRecord } from '../../src/audit/chain.ts';
import { checkpointSigningBytes, mergeCheckpointSignatures, signCheckpoint, type Checkpoint } from '../../src/audit/checkpoint.ts';
import { exportLines } from '../../src/audit/export.ts';
import { MerkleTree } from '../../src/audit/merkle.ts';
import { importPrivateJwk, signBytes, type SigningKey } from '../../src/crypto/ed25519.ts';
import { concatBytes, toBase64Url, toHex, utf8 } from '../../src/crypto/encoding.ts';
import { envelopeSigningBytes } from '../../src/crypto/envelope.ts';
import { sha256 } from '../../src/crypto/hash.ts';
import { verdictSigningInput } from '../../src/verdict/format.ts';
import { DecisionMachine } from '../../src/verdict/machine.ts';
import { Keyring } from '../../src/verdict/keyring.ts';
import { encodeCommand, signProposal, type LogCommand } from '../../src/verdict/proposal.ts';

/** An Ed25519 key from a fixed 32-byte seed: SHA-256 of the label. */
export function seededKey(label: string): SigningKey {
  const seed = sha256(utf8(label));
  const der = concatBytes(new Uint8Array(Buffer.from('302e020100300506032b657004220420', 'hex')), seed);
  const privateKey = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
  const jwk = privateKey.export({ format: 'jwk' }) as { x: string; d: string };
  createPublicKey(privateKey);
  return importPrivateJwk({ kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d });
}

export interface WorkedExample {
  federation: FederationConfig;
  keys: Record<string, SigningKey>;
  jws: string[];
  commands: Uint8Array[];
  records: AuditRecord[];
  recordHashes: string[];
  leafHashes: string[];
  roots: string[];
  checkpoints: Checkpoint[];
  checkpointSigningBytes: string;
  consistency: string[];
  inclusion: string[];
  lines: string[];
}

export async function buildWorkedExample(): Promise<WorkedExample> {
  const orgs = ['acme', 'globex'];
  const keys: Record<string, SigningKey> = {};
  for (const org of orgs) for (const role of ['node', 'agent', 'admin']) keys[`${org}-${role}`] = seededKey(`conclave worked example ${org} ${role}`);
  const swarm = {
    id: 'reviews',
    members: orgs,
    mode: 'raft' as const,
    policy: { values: ['approve', 'reject'], quorum: 'all' as const, rule: { kind: 'majority' as const }, fallback: 'reject', maxClockSkewSeconds: 300 },
    adminPolicy: 'majority' as const,
  };
  const federation: FederationConfig = {
    version: 1,
    federation: 'example',
    sourcePath: '/example/federation.yaml',
    node: { org: 'acme', peerListen: { host: '127.0.0.1', port: 7001 }, apiListen: { host: '127.0.0.1', port: 7002 }, dataDir: '', tlsCertFile: '', tlsKeyFile: '', caFile: '', signingKeyFile: '' },
    members: orgs.map((org) => ({
      org,
      peerUrl: `https://${org}.example:7001`,
      apiUrl: null,
      caPem: '',
      nodeKeys: [keys[`${org}-node`]!.publicJwk],
      agentKeys: [keys[`${org}-agent`]!.publicJwk],
      adminKeys: [keys[`${org}-admin`]!.publicJwk],
    })),
    swarms: [swarm],
  };
  const jws = orgs.map((org, i) => {
    const input = verdictSigningInput(keys[`${org}-agent`]!.kid, {
      v: 1,
      swarm: 'reviews',
      subject: 'github.com/acme/widget/pull/42@9f1c2e',
      org,
      agent: `${org}-reviewer`,
      verdict: 'approve',
      reason: 'tests pass',
      iat: 1760000000 + i,
      nonce: `worked-example-nonce-${i}`,
    });
    return `${input}.${toBase64Url(signBytes(keys[`${org}-agent`]!, utf8(input)))}`;
  });
  const cmds: LogCommand[] = [
    { v: 1, type: 'noop' },
    signProposal('reviews', 'acme', [jws[0]!], keys['acme-node']!),
    signProposal('reviews', 'globex', [jws[1]!], keys['globex-node']!),
  ];
  const commands = cmds.map(encodeCommand);
  const log = AuditLog.create('example', 'reviews');
  const tree = new MerkleTree();
  const machine = new DecisionMachine(swarm, Keyring.fromMembers(federation.members));
  const records: AuditRecord[] = [];
  const roots: string[] = [];
  const decisions = new Map<number, { subject: string; value: string }[]>();
  commands.forEach((data, i) => {
    const appended = log.append({ index: i + 1, mode: 'raft', epoch: 2, data });
    records.push(appended.record);
    tree.appendLeafHash(appended.leafHash);
    roots.push(toHex(appended.root));
    const decided = machine.apply(i + 1, cmds[i]!, { verifyAgentSignatures: false }).filter((o) => o.status === 'decision');
    if (decided.length > 0) decisions.set(i + 1, decided.map((o) => ({ subject: o.subject!, value: o.decision!.value })));
  });
  const checkpoints = [2, 3].map((size) => {
    const body = { v: 1 as const, federation: 'example', swarm: 'reviews', size, root: roots[size - 1]!, time: 1760000100 + size, mode: 'raft' as const };
    return mergeCheckpointSignatures(...orgs.map((org) => signCheckpoint(body, org, keys[`${org}-node`]!)));
  });
  const lines: string[] = [];
  for await (const line of exportLines({
    federation: 'example',
    swarm: 'reviews',
    from: 1,
    to: 3,
    exportedAt: 1760000200,
    records,
    checkpoints,
    decisionsAt: (i) => decisions.get(i) ?? [],
    consistencyProof: (a, b) => tree.consistencyProof(a, b),
  })) lines.push(line);
  return {
    federation,
    keys,
    jws,
    commands,
    records,
    recordHashes: records.map(recordHash),
    leafHashes: records.map((r) => toHex(recordLeafHash(r))),
    roots,
    checkpoints,
    checkpointSigningBytes: Buffer.from(checkpointSigningBytes(checkpoints[1]!)).toString('utf8'),
    consistency: tree.consistencyProof(2, 3).map(toHex),
    inclusion: tree.inclusionProof(1, 3).map(toHex),
    lines,
  };
}

/** The values the doc quotes, as markdown. */
export function describeWorkedExample(ex: WorkedExample): string {
  const out: string[] = [];
  const p = (s = ''): number => out.push(s);
  p('Keys (seed = SHA-256 of "conclave worked example <org> <role>"):');
  p('```');
  for (const [name, key] of Object.entries(ex.keys)) p(`${name.padEnd(13)} x=${key.publicJwk.x} kid=${key.kid}`);
  p('```');
  p('Command bytes of entry 2 (canonical JSON, UTF-8):');
  p('```');
  p(Buffer.from(ex.commands[1]!).toString('utf8'));
  p('```');
  p('Proposal signing bytes of entry 2 ("conclave/proposal/v1\\n" + canonical JSON), shown as text:');
  p('```');
  const cmd = JSON.parse(Buffer.from(ex.commands[1]!).toString('utf8')) as Record<string, unknown>;
  p(Buffer.from(envelopeSigningBytes('proposal', { v: 1, type: 'verdicts', swarm: cmd.swarm, proposer: cmd.proposer, batch: cmd.batch })).toString('utf8'));
  p('```');
  ex.records.forEach((record, i) => {
    p(`Record ${i + 1}: canonical JSON (= Merkle leaf bytes):`);
    p('```');
    p(Buffer.from(recordLeaf(record)).toString('utf8'));
    p('```');
    p(`- record hash = SHA-256("conclave/audit-record/v1\\n" || leaf) = \`${ex.recordHashes[i]}\``);
    p(`- leaf hash = SHA-256(0x00 || leaf) = \`${ex.leafHashes[i]}\``);
    p(`- root of the tree of size ${i + 1} = \`${ex.roots[i]}\``);
    p();
  });
  p(`Check: root(2) = SHA-256(0x01 || leaf1 || leaf2) and root(3) = SHA-256(0x01 || root(2) || leaf3).`);
  p();
  p('Checkpoint signing bytes (size 3), as text:');
  p('```');
  p(ex.checkpointSigningBytes);
  p('```');
  p(`Inclusion proof of record 2 (leaf index 1) in the tree of size 3: \`${JSON.stringify(ex.inclusion)}\``);
  p();
  p(`Consistency proof from size 2 to size 3: \`${JSON.stringify(ex.consistency)}\``);
  p();
  p('The whole export (one line each):');
  p('```');
  for (const line of ex.lines) p(line);
  p('```');
  return out.join('\n');
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  console.log(describeWorkedExample(await buildWorkedExample()));
}
