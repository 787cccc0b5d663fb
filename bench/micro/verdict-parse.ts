// Owns the verdict-parsing micro-benchmark: the CPU one node spends per verdict outside Ed25519 — base64url, JWS
// parsing, canonical JSON, command decoding, proposal checks, the decision machine and the audit append — on
// realistic verdicts (512-byte reason, Ed25519-signed compact JWS, as bench/loadgen.ts makes them), in batches of
// BATCH per proposal. Prints ONE JSON line: per case ops/s and µs per op of CPU time, of the best of 7 windows
// (the least disturbed on a shared machine), and the median window's µs per op (one core, this process).
// Run: node --import tsx bench/micro/verdict-parse.ts [secondsPerCase] [batch] [onlyCasesStartingWith]
//
// Cases, and where they run on a node:
//   decodeBase64Url.*      the portable decoder (format.ts) on a payload part and a signature part
//   parseVerdictJws        once per verdict at admission, once per verdict per node at apply
//   jwsHashOf              a verdict's identity: at admission, and per verdict per node at apply
//   verifyVerdict.noSig    admission minus the Ed25519 verify (skipSignature): format + key + swarm + jwsHash
//   canonicalJson.command  one proposal (BATCH verdicts) to canonical JSON
//   proposer.batch         signProposal + encodeCommand: once per proposal on the proposing node
//   decodeCommand          once per entry per node (strict: canonical form re-checked)
//   audit.append           one entry's audit record: hashes, Merkle leaf, and the bytes storage keeps
//   follower.entry         what every node runs per applied raft entry, as SwarmState.apply does it: decodeCommand,
//                          the proposal signature (fresh keyring: a real verify, as on a node seeing the proposal
//                          first), machine.apply, the audit record append and its stored bytes — per entry and per
//                          verdict
// The script runs unchanged against earlier commits (copy it there) for before/after numbers: what a commit lacks
// is looked up optionally (AuditLog.append's bytes; the machine's skip flag is an option it ignores).
import { randomBytes } from 'node:crypto';
import { AuditLog } from '../../src/audit/chain.ts';
import { canonicalBytes, canonicalJson } from '../../src/crypto/canonical.ts';
import { generateSigningKey, signBytes, type SigningKey } from '../../src/crypto/ed25519.ts';
import type { MemberConfig, SwarmConfig } from '../../src/config/types.ts';
import { decodeBase64Url, encodeBase64Url, parseVerdictJws, utf8Bytes, verdictSigningInput, type VerdictPayload } from '../../src/verdict/format.ts';
import { Keyring } from '../../src/verdict/keyring.ts';
import { DecisionMachine } from '../../src/verdict/machine.ts';
import { decodeCommand, encodeCommand, signProposal, verifyProposal } from '../../src/verdict/proposal.ts';
import { jwsHashOf, verifyVerdict } from '../../src/verdict/verify.ts';

const SECONDS = Number(process.argv[2] ?? 1);
const BATCH = Number(process.argv[3] ?? 32);
const ONLY = process.argv[4] ?? '';
const ORGS = ['org-a', 'org-b', 'org-c'];
const REASON = 'x'.repeat(512);

const keys = new Map<string, { agent: SigningKey; node: SigningKey }>();
const members: MemberConfig[] = ORGS.map((org) => {
  const k = { agent: generateSigningKey(), node: generateSigningKey() };
  keys.set(org, k);
  return { org, peerUrl: `https://${org}.example:7000`, apiUrl: null, caPem: '', agentKeys: [k.agent.publicJwk], nodeKeys: [k.node.publicJwk], adminKeys: [] };
});
const swarm: SwarmConfig = {
  id: 'bench-swarm',
  members: [...ORGS],
  mode: 'raft',
  adminPolicy: 'majority',
  policy: { values: ['approve', 'request-changes', 'reject'], quorum: 'majority', rule: { kind: 'majority' }, fallback: null, maxClockSkewSeconds: 300 },
};

let counter = 0;
function signedVerdict(org: string): string {
  counter++;
  const agent = keys.get(org)!.agent;
  const payload: VerdictPayload = {
    v: 1,
    swarm: swarm.id,
    subject: `bench/run-1/${counter}`,
    org,
    agent: 'bench',
    verdict: counter % 5 === 4 ? 'reject' : 'approve',
    reason: REASON,
    iat: 1_760_000_000 + counter,
    nonce: encodeBase64Url(randomBytes(16)),
  };
  const input = verdictSigningInput(agent.kid, payload);
  return `${input}.${encodeBase64Url(signBytes(agent, utf8Bytes(input)))}`;
}

/** This process's CPU time in µs (user + system): unlike the wall clock, it does not count time the OS gave others. */
function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

/**
 * Best of ROUNDS_PER_CASE windows, timed in CPU time: the machine may be shared, and the best window is the least
 * disturbed one (cache and frequency effects of other load remain: compare runs made side by side).
 */
const ROUNDS_PER_CASE = 7;
function rate(fn: () => void): { opsPerSec: number; usPerOp: number; usMedian: number } {
  // warm-up: until the optimizing JIT has surely compiled the path (at least 2000 calls and 200 ms)
  const warmUntil = performance.now() + 200;
  for (let i = 0; i < 2000 || performance.now() < warmUntil; i++) fn();
  const perOp: number[] = [];
  for (let round = 0; round < ROUNDS_PER_CASE; round++) {
    let n = 0;
    const started = cpuMicros();
    const stopAt = performance.now() + (SECONDS * 1000) / ROUNDS_PER_CASE;
    while (performance.now() < stopAt) {
      for (let i = 0; i < 10; i++) fn();
      n += 10;
    }
    perOp.push((cpuMicros() - started) / n);
  }
  perOp.sort((a, b) => a - b);
  const best = perOp[0]!;
  return { opsPerSec: Math.round(1e6 / best), usPerOp: Math.round(best * 100) / 100, usMedian: Math.round(perOp[ROUNDS_PER_CASE >> 1]! * 100) / 100 };
}

const jws = signedVerdict('org-a');
const [, payloadPart, signaturePart] = jws.split('.') as [string, string, string];
const keyring = Keyring.fromMembers(members);

// Proposals of BATCH verdicts by org-a's node, each verdict from a rotating org (fresh subjects and nonces).
const ROUNDS = 64;
const proposals = Array.from({ length: ROUNDS }, () => {
  const batch = Array.from({ length: BATCH }, (_, i) => signedVerdict(ORGS[i % ORGS.length]!));
  return encodeCommand(signProposal(swarm.id, 'org-a', batch, keys.get('org-a')!.node));
});
const oneCommand = decodeCommand(proposals[0]!);
if (oneCommand.type !== 'verdicts') throw new Error('not a verdicts command');

// follower.entry: round-robin over the proposals; a fresh machine, audit log and keyring after each pass.
let machine: DecisionMachine;
let audit: AuditLog;
let followerKeyring: Keyring;
let next = 0;
function resetFollower(): void {
  followerKeyring = Keyring.fromMembers(members);
  machine = new DecisionMachine(swarm, followerKeyring);
  audit = AuditLog.create('bench-fed', swarm.id);
  next = 0;
}
resetFollower();
let sink = 0;
/** The record bytes SwarmState stores: AuditLog.append returns them (before: SwarmState encoded the record again). */
function storedBytes(appended: ReturnType<AuditLog['append']>): Uint8Array {
  return (appended as { bytes?: Uint8Array }).bytes ?? canonicalBytes(appended.record);
}
let auditOnly = AuditLog.create('bench-fed', swarm.id);
function auditAppend(): void {
  if (auditOnly.size === 100_000) auditOnly = AuditLog.create('bench-fed', swarm.id);
  sink += storedBytes(auditOnly.append({ index: auditOnly.size + 1, mode: 'raft', epoch: 1, data: proposals[auditOnly.size % ROUNDS]! })).length;
}

function followerEntry(): void {
  if (next === ROUNDS) resetFollower();
  const data = proposals[next++]!;
  const index = next;
  const command = decodeCommand(data);
  if (command.type !== 'verdicts' || !verifyProposal(command, followerKeyring)) throw new Error('proposal refused');
  // SwarmState verified the proposal signature just above and says so (before: the machine verified it again)
  const outcomes = machine.apply(index, command, { verifyAgentSignatures: false, proposalSignatureVerified: true });
  if (outcomes[0]!.status === 'rejected') throw new Error(`rejected: ${outcomes[0]!.reason}`);
  const appended = audit.append({ index, mode: 'raft', epoch: 1, data });
  sink += storedBytes(appended).length;
}

const cases: [string, () => void][] = [
  ['decodeBase64Url.payload', () => void (sink += decodeBase64Url(payloadPart).length)],
  ['decodeBase64Url.signature', () => void (sink += decodeBase64Url(signaturePart).length)],
  ['parseVerdictJws', () => void (sink += parseVerdictJws(jws).signature.length)],
  ['jwsHashOf', () => void (sink += jwsHashOf(jws).length)],
  ['verifyVerdict.noSig', () => void (sink += verifyVerdict(jws, { keyring, swarms: [swarm], expectedSwarm: swarm.id, skipSignature: true }).jwsHash.length)],
  ['canonicalJson.command', () => void (sink += canonicalJson(oneCommand).length)],
  ['proposer.batch', () => void (sink += encodeCommand(signProposal(swarm.id, 'org-a', oneCommand.batch, keys.get('org-a')!.node)).length)],
  ['decodeCommand', () => void (sink += decodeCommand(proposals[0]!).type.length)],
  ['audit.append', auditAppend],
  ['follower.entry', followerEntry],
];
const results: Record<string, ReturnType<typeof rate>> = {};
for (const [name, fn] of cases) if (name.startsWith(ONLY)) results[name] = rate(fn);
const entry = results['follower.entry'] ?? { usPerOp: 0 };
console.log(
  JSON.stringify({
    bench: 'verdict-parse',
    node: process.version,
    batch: BATCH,
    jwsBytes: jws.length,
    commandBytes: proposals[0]!.length,
    ...results,
    'follower.perVerdictUs': Math.round((entry.usPerOp / BATCH) * 100) / 100,
    sink: sink > 0,
  }),
);
