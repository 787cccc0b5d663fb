// Owns the chaos tool's agents: several concurrent clients per org, each submitting signed verdicts (every verdict
// its own subject) to its own org's node, one at a time, and retrying the SAME JWS after an error or a timeout
// (resubmission is idempotent) until it is acknowledged, definitely refused (4xx), or the drain deadline passes.
// Readers, one or more per org, read from their own org's node subjects whose verdict another org's client already
// saw acknowledged — a plain read, then `?consistent=true` — while the faults go on: the consistent read must hold
// the verdict (or fail: 503, timeout), never answer without it. Every operation goes into the History: invoke, then
// ok / fail / info (indeterminate).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiFetch, type ClusterNode } from '../devcluster/cluster.ts';
import { signVerdict, type AgentPrivateJwk } from '../verdict/agent.ts';
import { jwsHashOf } from '../verdict/verify.ts';
import type { History } from './history.ts';

export interface Operation {
  process: number;
  org: string;
  subject: string;
  jws: string;
  jwsHash: string;
  attempts: number;
  outcome: 'pending' | 'ok' | 'fail' | 'info';
  index?: number;
  status?: string;
  error?: string;
}

export interface WorkloadOptions {
  nodes: ClusterNode[];
  swarm: string;
  runId: string;
  clientsPerOrg: number;
  /** Upper bound on the operations one client issues. */
  maxOpsPerClient: number;
  history: History;
  /** Per-request bound (the node itself answers 504 after its own commit timeout). */
  requestTimeoutMs?: number;
  /** Consistent readers per org (default 0). */
  readersPerOrg?: number;
}

/** What the readers saw. `stale`: a consistent read answered without a verdict acknowledged before it began. */
export interface ReadStats {
  total: number;
  found: number;
  stale: number;
  /** 503, timeouts, connection errors, 409 NOT_A_MEMBER: the read refused to answer, which is allowed. */
  unavailable: number;
  /** Any other answer (a 4xx but 404, a malformed body): a problem. */
  unexpected: number;
  /** Plain reads made just before a consistent one that did not hold the verdict (allowed: they read locally). */
  plainStale: number;
  /** The first few stale or unexpected reads, described. */
  problems: string[];
}

const READ_PAUSE_MS = 25;

interface Acked {
  org: string;
  subject: string;
  jwsHash: string;
}

export class Workload {
  readonly ops: Operation[] = [];
  private issuing = true;
  private drainDeadline = Number.POSITIVE_INFINITY;
  private readonly clients: Promise<void>[] = [];
  readonly errors = new Map<string, number>();
  readonly reads: ReadStats = { total: 0, found: 0, stale: 0, unavailable: 0, unexpected: 0, plainStale: 0, problems: [] };
  /** The most recently acknowledged verdicts, newest last (readers pick from them). */
  private readonly recentAcks: Acked[] = [];
  private readers: Promise<void>[] = [];
  private reading = true;

  constructor(private readonly options: WorkloadOptions) {}

  start(): void {
    let process = 0;
    for (const node of this.options.nodes) {
      const jwk = JSON.parse(readFileSync(join(node.orgDir, 'agent.jwk'), 'utf8')) as AgentPrivateJwk;
      for (let i = 0; i < this.options.clientsPerOrg; i++) this.clients.push(this.client(process++, node, jwk));
    }
    for (const node of this.options.nodes) {
      for (let i = 0; i < (this.options.readersPerOrg ?? 0); i++) this.readers.push(this.reader(process++, node));
    }
  }

  /** Stops the readers (they end after the read in flight) and waits for them. */
  async stopReading(): Promise<void> {
    this.reading = false;
    await Promise.all(this.readers);
  }

  /** No new operations; those in flight keep retrying until `deadline` (epoch ms), then are recorded as info. */
  async finish(deadline: number): Promise<void> {
    this.issuing = false;
    this.drainDeadline = deadline;
    await Promise.all(this.clients);
  }

  stopIssuing(): void {
    this.issuing = false;
  }

  private noteError(key: string): void {
    this.errors.set(key, (this.errors.get(key) ?? 0) + 1);
  }

  private async client(process: number, node: ClusterNode, jwk: AgentPrivateJwk): Promise<void> {
    const { swarm, runId, history } = this.options;
    for (let n = 0; this.issuing && n < this.options.maxOpsPerClient; n++) {
      const subject = `chaos/${runId}/p${process}/${n}`;
      const jws = await signVerdict({ privateJwk: jwk, swarm, subject, org: node.org, agent: `chaos-p${process}`, verdict: n % 3 === 0 ? 'reject' : 'approve', reason: `chaos op ${n} of client ${process}` });
      const op: Operation = { process, org: node.org, subject, jws, jwsHash: jwsHashOf(jws), attempts: 0, outcome: 'pending' };
      this.ops.push(op);
      history.add('invoke', process, { subject, jwsHash: op.jwsHash });
      await this.submit(op, node);
      if (op.outcome === 'ok') {
        this.recentAcks.push({ org: node.org, subject, jwsHash: op.jwsHash });
        if (this.recentAcks.length > 256) this.recentAcks.splice(0, this.recentAcks.length - 256);
      }
      const value = { subject, jwsHash: op.jwsHash, ...(op.index === undefined ? {} : { index: op.index }), ...(op.status ? { status: op.status } : {}), ...(op.error ? { error: op.error } : {}) };
      history.add(op.outcome === 'pending' ? 'info' : op.outcome, process, value);
    }
  }

  /**
   * One reader: picks a verdict of another org acknowledged before this read begins (newest first), reads its subject
   * from this org's node — plainly, then with consistent=true — and records what it found. Bounded: it stops when
   * told (stopReading), and each request has its own timeout.
   */
  private async reader(process: number, node: ClusterNode): Promise<void> {
    const { swarm, history } = this.options;
    const timeoutMs = this.options.requestTimeoutMs ?? 15_000;
    let turn = 0;
    while (this.reading) {
      const others = this.recentAcks.filter((a) => a.org !== node.org);
      const pick = others.length ? others[others.length - 1 - (turn++ % Math.min(others.length, 8))] : undefined;
      if (!pick) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      const path = `/v1/swarms/${swarm}/subjects/${encodeURIComponent(pick.subject)}`;
      const value = { subject: pick.subject, jwsHash: pick.jwsHash };
      history.add('invoke', process, value, 'read');
      this.reads.total++;
      const holds = (body: { votes?: { jwsHash?: string }[] }) => Array.isArray(body.votes) && body.votes.some((v) => v.jwsHash === pick.jwsHash);
      let plainFound: boolean | undefined;
      try {
        const plain = await apiFetch(node, path, { timeoutMs });
        plainFound = plain.status === 200 ? holds((await plain.json()) as { votes?: { jwsHash?: string }[] }) : (await plain.text(), false);
        if (!plainFound) this.reads.plainStale++;
        const response = await apiFetch(node, `${path}?consistent=true`, { timeoutMs });
        const text = await response.text();
        let body: { votes?: { jwsHash?: string }[]; code?: string } = {};
        try {
          body = JSON.parse(text) as typeof body;
        } catch {
          // judged by status below
        }
        if (response.status === 200 && holds(body)) {
          this.reads.found++;
          history.add('ok', process, { ...value, found: true, plainFound }, 'read');
        } else if ((response.status === 200 && Array.isArray(body.votes)) || (response.status === 404 && body.code === 'UNKNOWN_SUBJECT')) {
          this.reads.stale++;
          if (this.reads.problems.length < 5) this.reads.problems.push(`consistent read of ${pick.subject} on ${node.org} answered ${response.status} without the verdict acknowledged before it (${text.slice(0, 160)})`);
          history.add('ok', process, { ...value, found: false, plainFound }, 'read');
        } else if (response.status >= 500 || (response.status === 409 && body.code === 'NOT_A_MEMBER')) {
          // Refused to answer: a node cut off, catching up, or (a leave-join) out of the swarm — none of them lies.
          this.reads.unavailable++;
          history.add('info', process, { ...value, error: `HTTP ${response.status} ${body.code ?? ''}`.trim(), plainFound }, 'read');
        } else {
          this.reads.unexpected++;
          if (this.reads.problems.length < 5) this.reads.problems.push(`consistent read of ${pick.subject} on ${node.org}: unexpected HTTP ${response.status} ${text.slice(0, 160)}`);
          history.add('fail', process, { ...value, error: `HTTP ${response.status} ${body.code ?? ''}`.trim(), plainFound }, 'read');
        }
        // A reader is an observer, not load: a short pause between reads leaves the nodes to the writers.
        await new Promise((resolve) => setTimeout(resolve, READ_PAUSE_MS));
      } catch (error) {
        const err = error as Error & { cause?: { code?: string } };
        this.reads.unavailable++;
        history.add('info', process, { ...value, error: err.name === 'TimeoutError' || err.name === 'AbortError' ? 'timeout' : (err.cause?.code ?? err.name), ...(plainFound === undefined ? {} : { plainFound }) }, 'read');
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }

  private async submit(op: Operation, node: ClusterNode): Promise<void> {
    const timeoutMs = this.options.requestTimeoutMs ?? 15_000;
    let backoff = 200;
    // Bounded: every attempt takes at most timeoutMs, and the loop ends at the drain deadline.
    while (Date.now() < this.drainDeadline) {
      op.attempts++;
      try {
        const response = await apiFetch(node, `/v1/swarms/${this.options.swarm}/verdicts`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ jws: op.jws }),
          timeoutMs: Math.max(1000, Math.min(timeoutMs, this.drainDeadline - Date.now())),
        });
        const text = await response.text();
        let answer: { status?: string; index?: number | null; code?: string; message?: string } = {};
        try {
          answer = JSON.parse(text) as typeof answer;
        } catch {
          // not JSON: handled below by status
        }
        if (response.status === 200 && (answer.status === 'committed' || answer.status === 'duplicate' || answer.status === 'decided-already')) {
          op.outcome = 'ok';
          op.status = answer.status;
          if (typeof answer.index === 'number') op.index = answer.index;
          return;
        }
        if (response.status >= 400 && response.status < 500) {
          op.outcome = 'fail';
          op.error = `HTTP ${response.status} ${answer.code ?? ''}: ${answer.message ?? text.slice(0, 200)}`;
          this.noteError(`HTTP ${response.status} ${answer.code ?? ''}`);
          return;
        }
        op.error = `HTTP ${response.status} ${answer.code ?? ''}`;
        this.noteError(op.error);
      } catch (error) {
        const err = error as Error & { cause?: { code?: string } };
        op.error = err.name === 'TimeoutError' || err.name === 'AbortError' ? 'timeout' : (err.cause?.code ?? err.name);
        this.noteError(op.error);
      }
      const pause = Math.min(backoff, Math.max(0, this.drainDeadline - Date.now()));
      await new Promise((resolve) => setTimeout(resolve, pause));
      backoff = Math.min(2000, backoff * 2);
    }
    op.outcome = 'info';
    op.error = `not acknowledged before the drain deadline (${op.attempts} attempts, last: ${op.error ?? 'none'})`;
  }
}
