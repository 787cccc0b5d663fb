// A scripted in-process Raft cluster for scenario tests: nodes with simulated durable storage, one
// message queue, partitions; tests deliver, tick, crash and inspect step by step.
import { Prng } from '../../src/sim/prng.ts';
import { SimNode, chainHash } from '../../src/sim/raft/node.ts';
import type { RaftCore } from '../../src/consensus/raft/raft.ts';
import type { ConfChange, Entry, Message, ProposeResult, RaftConfig, RaftStatus, ReadState } from '../../src/consensus/raft/types.ts';

export interface ClusterOptions {
  /** Bootstrap voters, e.g. ['n1','n2','n3']. */
  voters: string[];
  /** Extra nodes that exist as processes but are not members yet (started with the bootstrap conf). */
  spares?: string[];
  preVote?: boolean;
  checkQuorum?: boolean;
  electionTick?: number;
  maxSizePerMsg?: number;
  maxInflightMsgs?: number;
  maxUncommittedBytes?: number;
  unsafeCommitPreviousTermByCounting?: boolean;
  /** Idle groups quiesce (RaftConfig.quiesce); default false, as in etcd. */
  quiesce?: boolean;
  /** Preset durable logs: the term of each entry from index 1 (entries carry data `i@t`). */
  logs?: Record<string, number[]>;
  /** Preset durable current term per node (default: the last term of its preset log). */
  terms?: Record<string, number>;
  /** Preset durable commit index for every node (default 0). */
  commit?: number;
  /** Fixed randomness for the election timeout; default a seeded PRNG. */
  rand?: () => number;
}

const TEXT = new TextEncoder();
const UTF8 = new TextDecoder();

export class Cluster {
  readonly nodes = new Map<string, SimNode>();
  /** Messages sent and not yet delivered or dropped, in send order. */
  queue: Message[] = [];
  private readonly cut = new Set<string>();
  readonly applied = new Map<string, Entry[]>();
  readonly readStates = new Map<string, ReadState[]>();
  private readonly hooks = {
    onApply: (node: SimNode, e: Entry) => this.applied.get(node.id)!.push(e),
    onReadState: (node: SimNode, index: number, ctx: Uint8Array) => this.readStates.get(node.id)!.push({ index, ctx }),
  };

  constructor(readonly options: ClusterOptions) {
    const rng = new Prng(7);
    const makeConfig = (id: string): RaftConfig => ({
      id,
      electionTick: options.electionTick ?? 10,
      heartbeatTick: 1,
      rand: options.rand ?? (() => rng.next()),
      preVote: options.preVote ?? true,
      checkQuorum: options.checkQuorum ?? true,
      maxSizePerMsg: options.maxSizePerMsg ?? 1 << 20,
      maxInflightMsgs: options.maxInflightMsgs ?? 256,
      maxUncommittedBytes: options.maxUncommittedBytes ?? 0,
      unsafeCommitPreviousTermByCounting: options.unsafeCommitPreviousTermByCounting ?? false,
      quiesce: options.quiesce ?? false,
    });
    const bootstrap = { voters: options.voters, learners: [] };
    for (const id of [...options.voters, ...(options.spares ?? [])]) {
      const node = new SimNode(id, bootstrap, makeConfig);
      const terms = options.logs?.[id] ?? [];
      let chain = 0;
      terms.forEach((term, i) => {
        const e: Entry = { index: i + 1, term, type: 'normal', data: TEXT.encode(`${i + 1}@${term}`) };
        chain = chainHash(chain, e);
        node.durable.entries.push(e);
        node.durable.chains.push(chain);
      });
      node.durable.hardState = {
        term: options.terms?.[id] ?? terms[terms.length - 1] ?? 0,
        vote: null,
        commit: Math.min(options.commit ?? 0, terms.length),
      };
      this.nodes.set(id, node);
      this.applied.set(id, []);
      this.readStates.set(id, []);
      node.start();
    }
  }

  core(id: string): RaftCore {
    const core = this.nodes.get(id)?.core;
    if (!core) throw new Error(`${id} is not running`);
    return core;
  }

  status(id: string): RaftStatus {
    return this.core(id).status();
  }

  /** Terms of the node's log from index 1 (a compacted prefix shows as 0). */
  logTerms(id: string): number[] {
    const st = this.status(id);
    const node = this.nodes.get(id)!;
    return Array.from({ length: st.lastIndex }, (_, i) => node.entryAt(i + 1)?.term ?? 0);
  }

  /** Payloads of the normal, non-empty entries the node applied, in order. */
  appliedData(id: string): string[] {
    return this.applied
      .get(id)!
      .filter((e) => e.type === 'normal' && e.data.length > 0)
      .map((e) => UTF8.decode(e.data));
  }

  /** Runs every node's Ready cycle (persist, queue messages, apply, advance). */
  flush(): void {
    for (const node of this.nodes.values()) {
      if (node.up) this.queue.push(...node.drain(this.hooks));
    }
  }

  /** Delivers queued messages matching `which` (and not cut) until none is left; others stay queued. Returns how many were delivered. */
  deliver(which: (m: Message) => boolean = () => true, maxRounds = 1000): number {
    let delivered = 0;
    for (let round = 0; round < maxRounds; round++) {
      const n = this.deliverOnce(which);
      if (n === 0) return delivered;
      delivered += n;
    }
    throw new Error(`cluster did not quiesce within ${maxRounds} rounds`);
  }

  /** One round: delivers the matching messages queued right now, then flushes. */
  deliverOnce(which: (m: Message) => boolean = () => true): number {
    this.flush();
    const now = this.queue;
    this.queue = [];
    let delivered = 0;
    for (const m of now) {
      if (!which(m)) {
        this.queue.push(m);
        continue;
      }
      if (this.cut.has(`${m.from}>${m.to}`)) continue; // lost in the partition
      const node = this.nodes.get(m.to);
      if (!node?.up) continue;
      node.core!.step(m);
      delivered++;
    }
    this.flush();
    return delivered;
  }

  /** Removes queued messages matching `which` (lost). */
  drop(which: (m: Message) => boolean = () => true): Message[] {
    this.flush();
    const dropped = this.queue.filter(which);
    this.queue = this.queue.filter((m) => !which(m));
    return dropped;
  }

  /** Queued messages (after a flush), optionally of one type. */
  pending(type?: Message['type']): Message[] {
    this.flush();
    return this.queue.filter((m) => type === undefined || m.type === type);
  }

  tick(ids: string | string[], times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const id of typeof ids === 'string' ? [ids] : ids) this.nodes.get(id)?.core?.tick();
    }
    this.flush();
  }

  /** Ticks every running node, delivering after each tick. */
  tickAll(times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const node of this.nodes.values()) node.core?.tick();
      this.deliver();
    }
  }

  isolate(id: string): void {
    for (const other of this.nodes.keys()) if (other !== id) this.cutBoth(id, other);
  }

  cutBoth(a: string, b: string): void {
    this.cut.add(`${a}>${b}`);
    this.cut.add(`${b}>${a}`);
  }

  cutOneWay(from: string, to: string): void {
    this.cut.add(`${from}>${to}`);
  }

  heal(): void {
    this.cut.clear();
  }

  crash(id: string): void {
    this.nodes.get(id)!.crash();
    this.queue = this.queue.filter((m) => m.from !== id);
  }

  restart(id: string): void {
    this.nodes.get(id)!.start();
  }

  /** Starts an election on id now (as if its election timeout fired). */
  campaign(id: string): void {
    this.core(id).campaign();
    this.flush();
  }

  /** Makes id the leader: campaigns (up to 3 times, for nodes behind in term) and delivers everything. */
  elect(id: string): void {
    for (let attempt = 0; attempt < 3; attempt++) {
      this.campaign(id);
      this.deliver();
      if (this.status(id).role === 'leader') return;
    }
    throw new Error(`${id} could not be elected: ${JSON.stringify(this.status(id))}`);
  }

  propose(id: string, text: string): ProposeResult {
    const res = this.core(id).propose(TEXT.encode(text));
    this.flush();
    return res;
  }

  proposeConfChange(id: string, cc: ConfChange): ProposeResult {
    const res = this.core(id).proposeConfChange(cc);
    this.flush();
    return res;
  }

  /** The unique leader among running nodes at the highest term, or null. */
  leader(): string | null {
    const leaders = [...this.nodes.values()].filter((n) => n.core?.status().role === 'leader');
    if (leaders.length === 0) return null;
    const top = Math.max(...leaders.map((n) => n.core!.status().term));
    const atTop = leaders.filter((n) => n.core!.status().term === top);
    if (atTop.length > 1) throw new Error(`two leaders in term ${top}`);
    return atTop[0]!.id;
  }
}

export function text(data: Uint8Array): string {
  return UTF8.decode(data);
}

export function bytes(s: string): Uint8Array {
  return TEXT.encode(s);
}
