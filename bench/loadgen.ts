// Owns the benchmark load generator: a separate process that keeps N requests in flight over HTTPS HTTP/2 (undici
// with allowH2, pinned CA, client certs for etcd) against Conclave nodes (signed verdicts, each agent to its own org's
// node) or etcd members (v3 JSON gateway puts) — or, with `op`, reads of subjects/keys it wrote first (plain or
// consistent / serializable or linearizable). Warm-up, then a measured window, then a short tail (the orchestrator
// probes fsyncs then); prints ONE JSON line on stdout. Markers {"event":"measure-start"|"measure-end"} go to stderr.
// Run: node --import tsx bench/loadgen.ts <config.json>
import { createPrivateKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Client } from 'undici';
import { encodeBase64Url, utf8Bytes, verdictSigningInput, type VerdictPayload } from '../src/verdict/format.ts';
import { Histogram } from './lib/hdr.ts';

export interface LoadTarget {
  /** Base URL: a node's public API or an etcd member's client URL. */
  url: string;
  caFile: string;
  /** Client certificate (etcd requires one; Conclave's public API does not). */
  certFile?: string;
  keyFile?: string;
  /** Conclave: the org whose agent signs what goes to this node, and that agent's private JWK file. */
  org?: string;
  agentJwkFile?: string;
}

export interface LoadConfig {
  kind: 'conclave' | 'etcd';
  targets: LoadTarget[];
  /** Conclave swarm id. */
  swarm?: string;
  concurrency: number;
  warmupSeconds: number;
  durationSeconds: number;
  /** Keep the load on this long after the measured window (fsync probe); not counted. */
  tailSeconds: number;
  /** Reason (Conclave) or value (etcd) size in bytes. */
  valueBytes: number;
  /**
   * unique: every request on its own subject/key; shared: one subject/key per round of targets (one per org);
   * mixed: even requests unique, odd requests shared (several verdicts per subject: decisions and late verdicts).
   */
  subjects: 'unique' | 'shared' | 'mixed';
  /** Distinguishes subjects/keys between runs. */
  runId: string;
  /** HTTP/2 connections per target (default 1). */
  connections?: number;
  /**
   * What each request does (default write). read: a subject (Conclave) or key (etcd) as the node has it — Conclave's
   * plain read, etcd's serializable range; read-consistent: Conclave's `?consistent=true`, etcd's default
   * (linearizable) range. Reads go to READ_SUBJECTS subjects/keys the generator writes first, round-robin over the
   * targets; `committedPerSec` then counts answered reads.
   */
  op?: 'write' | 'read' | 'read-consistent';
  /**
   * Stop once this many requests were acknowledged (the measured window then ends early); progress markers
   * {"event":"acked N"} go to stderr at every tenth of it.
   */
  maxRequests?: number;
}

interface Agent {
  org: string;
  kid: string;
  key: KeyObject;
}

interface Window {
  ok: number;
  errors: number;
  histogram: Histogram;
}

const config = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as LoadConfig;
const T = config.targets.length;
const filler = 'x'.repeat(config.valueBytes);

const clients: Client[][] = config.targets.map((t) => {
  const connect = {
    ca: readFileSync(t.caFile, 'utf8'),
    ...(t.certFile ? { cert: readFileSync(t.certFile, 'utf8') } : {}),
    ...(t.keyFile ? { key: readFileSync(t.keyFile, 'utf8') } : {}),
  };
  const n = Math.max(1, config.connections ?? 1);
  return Array.from({ length: n }, () => new Client(t.url, { allowH2: true, connect, pipelining: Math.max(1, config.concurrency), keepAliveTimeout: 60_000, bodyTimeout: 120_000, headersTimeout: 120_000 }));
});

const agents: (Agent | null)[] = config.targets.map((t) => {
  if (config.kind !== 'conclave') return null;
  const jwk = JSON.parse(readFileSync(t.agentJwkFile!, 'utf8')) as { kty: string; crv: string; x: string; d: string; kid: string };
  const key = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d }, format: 'jwk' });
  return { org: t.org!, kid: jwk.kid, key };
});

/** Signs a verdict with node:crypto (byte-identical to verdict/agent.ts signVerdict, ~10x faster than noble). */
function signedVerdict(agent: Agent, subject: string, verdict: string): string {
  const payload: VerdictPayload = {
    v: 1,
    swarm: config.swarm!,
    subject,
    org: agent.org,
    agent: 'bench',
    verdict,
    reason: filler,
    iat: Math.floor(Date.now() / 1000),
    nonce: encodeBase64Url(randomBytes(16)),
  };
  const input = verdictSigningInput(agent.kid, payload);
  return `${input}.${encodeBase64Url(new Uint8Array(sign(null, utf8Bytes(input), agent.key)))}`;
}

/** Subjects (keys) a read run writes first and then reads, round-robin. */
const READ_SUBJECTS = 256;
const op = config.op ?? 'write';

function readRequest(g: number): { target: number; method: 'GET' | 'POST'; path: string; body: string | null } {
  const target = g % T;
  const subject = `bench/${config.runId}/r${g % READ_SUBJECTS}`;
  if (config.kind === 'conclave') {
    const query = op === 'read-consistent' ? '?consistent=true' : '';
    return { target, method: 'GET', path: `/v1/swarms/${encodeURIComponent(config.swarm!)}/subjects/${encodeURIComponent(subject)}${query}`, body: null };
  }
  return { target, method: 'POST', path: '/v3/kv/range', body: JSON.stringify({ key: Buffer.from(subject).toString('base64'), serializable: op === 'read' }) };
}

/** The subjects (keys) a read run reads: written before the warm-up, 16 at a time; throws unless every one is. */
async function writeReadSubjects(): Promise<void> {
  let nextSubject = 0;
  const writer = async () => {
    while (nextSubject < READ_SUBJECTS) {
      const i = nextSubject++;
      const target = i % T;
      const subject = `bench/${config.runId}/r${i}`;
      const body =
        config.kind === 'conclave'
          ? JSON.stringify({ jws: signedVerdict(agents[target]!, subject, 'approve') })
          : JSON.stringify({ key: Buffer.from(subject).toString('base64'), value: Buffer.from(filler).toString('base64') });
      const path = config.kind === 'conclave' ? `/v1/swarms/${encodeURIComponent(config.swarm!)}/verdicts` : '/v3/kv/put';
      for (let attempt = 1; ; attempt++) {
        const response = await clients[target]![0]!.request({ method: 'POST', path, body, headers: { 'content-type': 'application/json' } });
        const text = await response.body.text();
        if (response.statusCode === 200) break;
        if (attempt >= 5) throw new Error(`could not write ${subject} for the read run: HTTP ${response.statusCode} ${text.slice(0, 200)}`);
        await new Promise((done) => setTimeout(done, 200));
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, writer));
}

function request(g: number): { target: number; method: 'GET' | 'POST'; path: string; body: string | null } {
  if (op !== 'write') return readRequest(g);
  const target = g % T;
  // mixed: odd g go round-robin over the targets too (T odd or even, consecutive odd g reach distinct orgs when T is odd)
  const subject = config.subjects === 'unique' ? `${g}` : config.subjects === 'shared' ? `${Math.floor(g / T)}` : g % 2 === 0 ? `u${g}` : `s${Math.floor((g - 1) / 2 / T)}`;
  if (config.kind === 'conclave') {
    const jws = signedVerdict(agents[target]!, `bench/${config.runId}/${subject}`, g % 5 === 4 ? 'reject' : 'approve');
    return { target, method: 'POST', path: `/v1/swarms/${encodeURIComponent(config.swarm!)}/verdicts`, body: JSON.stringify({ jws }) };
  }
  const key = Buffer.from(`bench/${config.runId}/${subject}`).toString('base64');
  const value = Buffer.from(filler).toString('base64');
  return { target, method: 'POST', path: '/v3/kv/put', body: JSON.stringify({ key, value }) };
}

const ACCEPTED = new Set(['committed', 'duplicate', 'decided-already']);

let phase: 'warmup' | 'measure' | 'tail' | 'stopping' = 'warmup';
let next = 0;
const measured: Window = { ok: 0, errors: 0, histogram: new Histogram() };
/** Latency per target (per org's node, or per etcd member): shows what the leader / followers add. */
const perTarget = config.targets.map(() => new Histogram());
const tail = { ok: 0, errors: 0 };
const warm = { ok: 0, errors: 0 };
const errorCodes: Record<string, number> = {};
let sampleError: string | null = null;
const maxRequests = config.maxRequests ?? Infinity;
let acked = 0;
let nextMark = Number.isFinite(maxRequests) ? Math.ceil(maxRequests / 10) : Infinity;
let reachedMax: () => void = () => undefined;
const reached = new Promise<void>((done) => (reachedMax = done));

function countAck(): void {
  acked++;
  while (acked >= nextMark) {
    process.stderr.write(JSON.stringify({ event: `acked ${nextMark}` }) + '\n');
    nextMark += Math.ceil(maxRequests / 10);
  }
  if (acked >= maxRequests) reachedMax();
}

function countError(code: string, detail: string): void {
  if (phase === 'measure') {
    measured.errors++;
    errorCodes[code] = (errorCodes[code] ?? 0) + 1;
    sampleError ??= detail.slice(0, 300);
  } else if (phase === 'tail') tail.errors++;
  else warm.errors++;
}

async function worker(): Promise<void> {
  // with a bound, requests go on until that many were acknowledged (a refused one is replaced)
  while (phase !== 'stopping' && acked < maxRequests) {
    const g = next++;
    const { target, method, path, body } = request(g);
    const pool = clients[target]!;
    const client = pool[g % pool.length]!;
    const started = performance.now();
    const startPhase = phase;
    try {
      const response = await client.request({
        method,
        path,
        ...(body === null ? {} : { body, headers: { 'content-type': 'application/json' } }),
        idempotent: true,
      } as Parameters<Client['request']>[0]);
      const text = await response.body.text();
      let ok = response.statusCode >= 200 && response.statusCode < 300;
      let code = `HTTP_${response.statusCode}`;
      if (ok && config.kind === 'conclave' && op === 'write') {
        const status = (JSON.parse(text) as { status?: string }).status ?? '';
        ok = ACCEPTED.has(status);
        code = `STATUS_${status}`;
      } else if (!ok) {
        try {
          code = (JSON.parse(text) as { code?: string }).code ?? code;
        } catch {
          // not JSON
        }
      }
      const micros = (performance.now() - started) * 1000;
      if (ok) countAck();
      if (!ok) countError(code, text);
      else if (phase === 'measure' && startPhase === 'measure') {
        measured.ok++;
        measured.histogram.record(micros);
        perTarget[target]!.record(micros);
      } else if (phase === 'measure') measured.ok++; // started in warm-up, completed in the window: counts for throughput
      else if (phase === 'tail') tail.ok++;
      else warm.ok++;
    } catch (error) {
      countError((error as { code?: string }).code ?? 'EXCEPTION', (error as Error).message);
      await new Promise((done) => setTimeout(done, 10)); // a refused connection must not spin
    }
  }
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));
if (op !== 'write') await writeReadSubjects();
const workers = Array.from({ length: config.concurrency }, () => worker());
await sleep(config.warmupSeconds * 1000);
phase = 'measure';
process.stderr.write(JSON.stringify({ event: 'measure-start' }) + '\n');
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await Promise.race([sleep(config.durationSeconds * 1000), reached]);
phase = 'tail';
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
process.stderr.write(JSON.stringify({ event: 'measure-end' }) + '\n');
const tailStart = performance.now();
await sleep(config.tailSeconds * 1000);
const tailSeconds = (performance.now() - tailStart) / 1000;
phase = 'stopping';
await Promise.race([Promise.all(workers), sleep(30_000)]);
await Promise.all(clients.flat().map((c) => c.close().catch(() => undefined)));

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
console.log(
  JSON.stringify({
    kind: config.kind,
    ...(op === 'write' ? {} : { op }),
    subjects: config.subjects,
    concurrency: config.concurrency,
    seconds: round(seconds, 2),
    committed: measured.ok,
    committedPerSec: round(measured.ok / seconds),
    latencyMs: measured.histogram.summaryMs(),
    latencySamples: measured.histogram.count,
    perTarget: config.targets.map((t, i) => ({ target: t.org ?? t.url, samples: perTarget[i]!.count, p50: perTarget[i]!.summaryMs().p50, p99: perTarget[i]!.summaryMs().p99 })),
    errors: measured.errors,
    errorCodes,
    ...(sampleError ? { sampleError } : {}),
    loadgenCpuPercent: round(((cpu.user + cpu.system) / 1e6 / seconds) * 100),
    warmup: warm,
    tail: { ...tail, seconds: round(tailSeconds, 2) },
  }),
);
process.exit(0);
