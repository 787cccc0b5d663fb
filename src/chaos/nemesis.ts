// Owns the chaos tool's nemesis: a seeded schedule of faults on real node processes and on the ProxyMesh —
// SIGKILL + restart (a random node or the leader), SIGSTOP / SIGCONT pauses, partitions (isolate a node, bridge,
// one-way in or out, black-holed links) and link delays — one fault at a time touching at most `maxFaulty` nodes
// (a minority for raft, f for pbft), each healed after a few seconds, all within the run's duration. Opt-in, a live
// mode switch (raft ↔ pbft, approved by every org's admin) between the faults, so that the next faults hit the other
// protocol and nodes killed or cut off in one era come back in the next. Opt-in too, a member leaving and joining
// again (remove-member approved by every admin, the node killed and its data folder deleted; when healed,
// add-member and the node started empty: it must catch up from the others and take part again).
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { importPrivateJwk, type PrivateJwk } from '../crypto/ed25519.ts';
import { currentLeader, killNode, restartNode, isNodeRunning, readCluster, findNode, logTail, apiFetch, apiJson } from '../devcluster/cluster.ts';
import { Prng } from '../sim/prng.ts';
import { signAdminApproval } from '../verdict/admin.ts';
import type { AdminAction } from '../verdict/proposal.ts';
import type { ProxyMesh } from './proxy.ts';

export type FaultKind = 'kill' | 'kill-leader' | 'pause' | 'isolate' | 'blackhole' | 'bridge' | 'one-way-out' | 'one-way-in' | 'delay' | 'switch-mode' | 'leave-join';

/** The faults a run injects by default. */
export const FAULT_KINDS: readonly FaultKind[] = ['kill', 'kill-leader', 'pause', 'isolate', 'blackhole', 'bridge', 'one-way-out', 'one-way-in', 'delay'];
/**
 * Every kind `--faults` accepts: the defaults, the opt-in live mode switch (needs at least 4 orgs) and a member
 * leaving and joining again with an empty data folder (pbft: needs 5 orgs, as 4 must remain).
 */
export const ALL_FAULT_KINDS: readonly FaultKind[] = [...FAULT_KINDS, 'switch-mode', 'leave-join'];

/** What the admin route answers (an AdminChangeView, or an error body). */
interface AdminAnswer {
  status?: string;
  index?: number;
  code?: string;
  message?: string;
  reason?: string;
}

/** How long a leave-join waits for the configuration to follow an approved change. */
const MEMBERSHIP_WAIT_MS = 60_000;

function describeAnswer(httpStatus: number, answer: AdminAnswer | null): string {
  return httpStatus === 200 ? `${answer?.status} at index ${answer?.index}` : `${httpStatus} ${answer?.code ?? ''}`.trim();
}

export interface FaultRecord {
  kind: FaultKind;
  nodes: string[];
  /** ms since the run started. */
  at: number;
  healedAt: number | null;
  detail: string;
  error?: string;
}

export interface NemesisOptions {
  dir: string;
  mesh: ProxyMesh;
  orgs: string[];
  maxFaulty: number;
  seed: number;
  /** Epoch ms: no fault starts after this, and the last one is healed by about then. */
  until: number;
  started: number;
  kinds?: readonly FaultKind[];
  /** How long a fault lasts (ms, default 2000..5000) and the quiet gap after it (default 500..2500). */
  holdMs?: [number, number];
  gapMs?: [number, number];
  log?: (line: string) => void;
}

export class Nemesis {
  readonly faults: FaultRecord[] = [];
  private readonly prng: Prng;
  private stopped = false;
  private wake: (() => void) | null = null;
  private readonly paused = new Set<string>();
  private readonly killed = new Set<string>();
  /** Orgs removed from the swarm by a leave-join (node down, data deleted) and not admitted again yet. */
  private readonly out = new Set<string>();
  /** Nodes found dead that the nemesis had not killed (a crash: reported, then restarted). */
  readonly unexpectedExits: { org: string; at: number; logTail: string }[] = [];

  constructor(private readonly options: NemesisOptions) {
    this.prng = new Prng(options.seed);
  }

  private now(): number {
    return Math.round(performance.now() - this.options.started);
  }

  private between([lo, hi]: [number, number]): number {
    return lo + this.prng.int(hi - lo + 1);
  }

  /** Sleeps `ms`, or less when stopped. */
  private async sleep(ms: number): Promise<void> {
    if (this.stopped || ms <= 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }

  /** Ends the schedule early; run() then heals what is broken and returns. */
  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  private pickNodes(count: number): string[] {
    const pool = [...this.options.orgs];
    const chosen: string[] = [];
    for (let i = 0; i < count && pool.length; i++) chosen.push(pool.splice(this.prng.int(pool.length), 1)[0]!);
    return chosen;
  }

  async run(): Promise<void> {
    const kinds = this.options.kinds ?? FAULT_KINDS;
    const log = this.options.log ?? (() => undefined);
    // A quiet start: the clients get some verdicts in before the first fault.
    await this.sleep(this.between([1000, 2000]));
    while (!this.stopped && Date.now() < this.options.until) {
      const kind = this.prng.pick(kinds);
      const hold = this.between(this.options.holdMs ?? [2000, 5000]);
      const count = kind === 'bridge' ? 1 : 1 + this.prng.int(Math.max(1, this.options.maxFaulty));
      const record: FaultRecord = { kind, nodes: [], at: this.now(), healedAt: null, detail: '' };
      this.faults.push(record);
      try {
        const heal = await this.inject(record, count);
        log(`fault ${kind} ${record.nodes.join(',')}${record.detail ? ` (${record.detail})` : ''} for ${hold} ms`);
        await this.sleep(Math.min(hold, Math.max(500, this.options.until - Date.now())));
        await heal();
        record.healedAt = this.now();
        log(`healed ${kind} ${record.nodes.join(',')}`);
      } catch (error) {
        record.error = (error as Error).message;
        record.healedAt = this.now();
        log(`fault ${kind} failed: ${record.error}`);
        await this.healAll();
      }
      await this.sleep(this.between(this.options.gapMs ?? [500, 2500]));
    }
    await this.healAll();
  }

  /** Applies one fault and returns how to heal it. */
  private async inject(record: FaultRecord, count: number): Promise<() => Promise<void>> {
    const { mesh, dir } = this.options;
    switch (record.kind) {
      case 'kill':
      case 'kill-leader': {
        let nodes = this.pickNodes(count);
        if (record.kind === 'kill-leader') {
          const leader = await currentLeader(dir).catch(() => null);
          if (leader) nodes = [leader, ...nodes.filter((n) => n !== leader)].slice(0, count);
          record.detail = leader ? `leader ${leader}` : 'no leader known: random node';
        }
        record.nodes = nodes;
        for (const org of nodes) {
          await killNode(dir, org, 'SIGKILL');
          this.killed.add(org);
        }
        return async () => {
          for (const org of nodes) {
            await restartNode(dir, org, { timeoutMs: 120_000 });
            this.killed.delete(org);
          }
        };
      }
      case 'pause': {
        const nodes = this.pickNodes(count);
        record.nodes = nodes;
        for (const org of nodes) {
          await killNode(dir, org, 'SIGSTOP');
          this.paused.add(org);
        }
        return async () => {
          for (const org of nodes) {
            await killNode(dir, org, 'SIGCONT');
            this.paused.delete(org);
          }
        };
      }
      case 'isolate':
      case 'blackhole':
      case 'one-way-out':
      case 'one-way-in': {
        const nodes = this.pickNodes(count);
        record.nodes = nodes;
        const links = mesh.isolate(nodes, {
          mode: record.kind === 'blackhole' ? 'blackhole' : 'reset',
          inbound: record.kind !== 'one-way-out',
          outbound: record.kind !== 'one-way-in',
        });
        record.detail = `${links.length} links cut${record.kind === 'blackhole' ? ' (black-holed)' : ''}`;
        return async () => {
          for (const link of links) link.heal();
        };
      }
      case 'bridge': {
        // Two nodes lose each other (both directions); everyone still reaches a majority through the others.
        const [a, b] = this.pickNodes(2);
        record.nodes = [a!, b!];
        const links = [mesh.link(a!, b!), mesh.link(b!, a!)];
        for (const link of links) link.cut('reset');
        record.detail = `${a}↮${b}`;
        return async () => {
          for (const link of links) link.heal();
        };
      }
      case 'switch-mode': {
        // Half of the switches happen while one other node is down: it comes back into the next era and must catch
        // up with it (copying the records it missed, then starting that era's engine).
        const down = this.prng.int(2) === 1 ? this.pickNodes(1) : [];
        for (const org of down) {
          await killNode(dir, org, 'SIGKILL');
          this.killed.add(org);
        }
        await this.switchMode(record, down);
        return async () => {
          for (const org of down) {
            await restartNode(dir, org, { timeoutMs: 120_000 });
            this.killed.delete(org);
          }
        };
      }
      case 'leave-join': {
        const [org] = this.pickNodes(1);
        record.nodes = [org!];
        await this.leave(record, org!);
        return () => this.join(record, org!);
      }
      case 'delay': {
        const nodes = this.pickNodes(count);
        record.nodes = nodes;
        const ms = 20 + this.prng.int(280);
        const inSide = new Set(nodes);
        const links = mesh.all().filter((link) => inSide.has(link.from) !== inSide.has(link.to));
        for (const link of links) link.delay(ms);
        record.detail = `${ms} ms per chunk on ${links.length} links`;
        return async () => {
          for (const link of links) link.heal();
        };
      }
    }
  }

  /**
   * leave-join, first half: `org` is removed from the swarm (every admin approves, through another running node).
   * Once it is out of the swarm's configuration — in raft that is the conf change after the approval, not the
   * approval itself: a voter wiped before it left would come back empty and vote, the disk loss Raft cannot survive —
   * its node is killed and its data folder deleted. A refused removal (the swarm too small, say) is the fault's error
   * and changes nothing.
   */
  private async leave(record: FaultRecord, org: string): Promise<void> {
    const { answer, via, httpStatus } = await this.proposeAdmin({ kind: 'remove-member', org }, [org]);
    record.detail = `${org} removed through ${via}: ${describeAnswer(httpStatus, answer)}`;
    if (httpStatus !== 200 || answer?.status !== 'applied') throw new Error(`${record.detail} ${answer?.message ?? answer?.reason ?? ''}`.trim());
    const info = readCluster(this.options.dir);
    const left = await this.membershipOf(via, (m) => !m.voters.includes(org) && !m.learners.includes(org));
    if (!left) {
      // Still in the configuration: its data stays (the org is admitted again, or its removal completes, later).
      record.detail += `; still in the configuration after ${MEMBERSHIP_WAIT_MS} ms: its node stays`;
      throw new Error(record.detail);
    }
    await killNode(this.options.dir, org, 'SIGKILL');
    this.killed.add(org);
    this.out.add(org);
    rmSync(findNode(info, org).dataDir, { recursive: true, force: true });
  }

  /**
   * leave-join, second half: `org` is admitted again and its node started with an empty data folder; waits (bounded)
   * until it is a voter again, so that the next fault meets a whole swarm.
   */
  private async join(record: FaultRecord, org: string): Promise<void> {
    const { answer, via, httpStatus } = await this.proposeAdmin({ kind: 'add-member', org }, [org]);
    record.detail += `; admitted again through ${via}: ${describeAnswer(httpStatus, answer)}`;
    if (httpStatus !== 200 || answer?.status !== 'applied') throw new Error(`${record.detail} ${answer?.message ?? answer?.reason ?? ''}`.trim());
    this.out.delete(org);
    if (!isNodeRunning(findNode(readCluster(this.options.dir), org))) await restartNode(this.options.dir, org, { timeoutMs: 120_000 });
    this.killed.delete(org);
    if (!(await this.membershipOf(via, (m) => m.voters.includes(org)))) record.detail += `; not a voter yet after ${MEMBERSHIP_WAIT_MS} ms`;
  }

  /** Polls `org`'s node's view of the swarm's membership until `done` holds (true), or MEMBERSHIP_WAIT_MS passed (false). */
  private async membershipOf(org: string, done: (membership: { voters: string[]; learners: string[] }) => boolean): Promise<boolean> {
    const info = readCluster(this.options.dir);
    const node = findNode(info, org);
    const deadline = Date.now() + MEMBERSHIP_WAIT_MS;
    while (Date.now() < deadline) {
      const status = await apiJson<{ membership: { voters: string[]; learners: string[] } }>(node, `/v1/swarms/${info.swarm}/status`, { timeoutMs: 10_000 }).catch(() => null);
      if (status && done(status.membership)) return true;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return false;
  }

  /**
   * Submits an admin change approved by every org's admin in one command through a random running node (not one of
   * `avoid`, nor an org left out of the swarm) and waits for the answer.
   */
  private async proposeAdmin(action: AdminAction | ((status: { mode: string }) => AdminAction), avoid: string[]): Promise<{ via: string; httpStatus: number; answer: AdminAnswer | null; action: AdminAction; before: { mode: string } }> {
    const info = readCluster(this.options.dir);
    const running = info.nodes.filter((node) => !avoid.includes(node.org) && !this.out.has(node.org) && isNodeRunning(node) && !this.paused.has(node.org));
    if (running.length === 0) throw new Error('no running node to propose the admin change through');
    const via = running[this.prng.int(running.length)]!;
    const before = await apiJson<{ mode: string }>(via, `/v1/swarms/${info.swarm}/status`, { timeoutMs: 10_000 });
    const chosen = typeof action === 'function' ? action(before) : action;
    const id = `chaos-${chosen.kind}-${this.options.seed}-${this.faults.length}`;
    const approvals = info.nodes.map((node) => {
      const key = importPrivateJwk(JSON.parse(readFileSync(join(node.orgDir, 'admin.jwk'), 'utf8')) as PrivateJwk);
      return signAdminApproval(key, { v: 1, swarm: info.swarm, id, action: chosen });
    });
    const command = { v: 1, type: 'admin', swarm: info.swarm, id, action: chosen, approvals };
    const response = await apiFetch(via, `/v1/swarms/${info.swarm}/admin`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(command),
      timeoutMs: 60_000,
    });
    const answer = (await response.json().catch(() => null)) as AdminAnswer | null;
    return { via: via.org, httpStatus: response.status, answer, action: chosen, before };
  }

  /**
   * Proposes switching the swarm to the other protocol through a random running node (not one of `down`, the nodes
   * killed for the switch), approved by every org's admin in one command, and waits for the answer. A switch that is
   * refused or times out is recorded (`error`), not retried: the run is judged by what happened to the verdicts.
   */
  private async switchMode(record: FaultRecord, down: string[]): Promise<void> {
    const { via, httpStatus, answer, action, before } = await this.proposeAdmin((status) => ({ kind: 'set-mode', mode: status.mode === 'raft' ? 'pbft' : 'raft' }), down);
    record.nodes = [via, ...down];
    const mode = action.kind === 'set-mode' ? action.mode : '?';
    record.detail = `${before.mode} → ${mode}${down.length ? ` with ${down.join(',')} down` : ''}: ${describeAnswer(httpStatus, answer)}`;
    if (httpStatus !== 200 || answer?.status !== 'applied') record.error = `${record.detail} ${answer?.message ?? ''}`.trim();
  }

  /** Heals everything: every link, every paused node resumed, every dead node restarted. */
  async healAll(): Promise<void> {
    const { mesh, dir } = this.options;
    mesh.healAll();
    // An org a failed leave-join left out of the swarm is admitted again before its node starts (empty).
    for (const org of [...this.out]) {
      const record: FaultRecord = { kind: 'leave-join', nodes: [org], at: this.now(), healedAt: null, detail: `${org} admitted again after a failed leave-join` };
      this.faults.push(record);
      try {
        await this.join(record, org);
      } catch (error) {
        record.error = (error as Error).message;
      }
      record.healedAt = this.now();
    }
    const info = readCluster(dir);
    for (const org of this.options.orgs) {
      const node = findNode(info, org);
      if (isNodeRunning(node)) {
        await killNode(dir, org, 'SIGCONT');
        this.paused.delete(org);
      } else {
        if (!this.killed.has(org)) this.unexpectedExits.push({ org, at: this.now(), logTail: logTail(dir, org, 30) });
        await restartNode(dir, org, { timeoutMs: 120_000 });
        this.killed.delete(org);
      }
    }
  }
}
