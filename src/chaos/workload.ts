// Owns the chaos tool's agents: several concurrent clients per org, each submitting signed verdicts (every verdict
// its own subject) to its own org's node, one at a time, and retrying the SAME JWS after an error or a timeout
// (resubmission is idempotent) until it is acknowledged, definitely refused (4xx), or the drain deadline passes.
// Every operation goes into the History: invoke, then ok / fail / info (indeterminate).
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
}

export class Workload {
  readonly ops: Operation[] = [];
  private issuing = true;
  private drainDeadline = Number.POSITIVE_INFINITY;
  private readonly clients: Promise<void>[] = [];
  readonly errors = new Map<string, number>();

  constructor(private readonly options: WorkloadOptions) {}

  start(): void {
    let process = 0;
    for (const node of this.options.nodes) {
      const jwk = JSON.parse(readFileSync(join(node.orgDir, 'agent.jwk'), 'utf8')) as AgentPrivateJwk;
      for (let i = 0; i < this.options.clientsPerOrg; i++) this.clients.push(this.client(process++, node, jwk));
    }
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
      const value = { subject, jwsHash: op.jwsHash, ...(op.index === undefined ? {} : { index: op.index }), ...(op.status ? { status: op.status } : {}), ...(op.error ? { error: op.error } : {}) };
      history.add(op.outcome === 'pending' ? 'info' : op.outcome, process, value);
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
