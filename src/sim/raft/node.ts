// One simulated Raft node: a core, what its driver made durable (lost nothing, kept nothing else on crash),
// and a toy state machine whose state is the hash chain of the entries it applied.
import { RaftCore } from '../../consensus/raft/raft.ts';
import type { ConfState, Entry, HardState, Message, RaftConfig, Ready, Snapshot } from '../../consensus/raft/types.ts';

/** Hash of (previous chain, entry): equal chains at an index mean equal logs up to it. 53-bit, not cryptographic. */
export function chainHash(prev: number, e: Entry): number {
  let h1 = 0x811c9dc5 ^ (prev >>> 0);
  let h2 = 0x01000193 ^ Math.floor(prev / 0x100000000);
  const mix = (v: number) => {
    h1 = Math.imul(h1 ^ v, 0x01000193);
    h2 = Math.imul(h2 ^ v, 0x5bd1e995);
    h2 ^= h2 >>> 15;
  };
  mix(e.index | 0);
  mix(Math.floor(e.index / 0x100000000));
  mix(e.term | 0);
  mix(e.type === 'conf' ? 1 : 2);
  mix(e.data.length);
  for (const b of e.data) mix(b);
  return (h1 >>> 0) * 0x200000 + ((h2 >>> 0) & 0x1fffff);
}

/** The sim app's snapshot: its state is just (index, chain). */
export function encodeAppSnapshot(index: number, chain: number): Uint8Array {
  const out = new Uint8Array(16);
  const v = new DataView(out.buffer);
  v.setFloat64(0, index);
  v.setFloat64(8, chain);
  return out;
}

export function decodeAppSnapshot(data: Uint8Array): { index: number; chain: number } {
  if (data.length !== 16) return { index: 0, chain: 0 };
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return { index: v.getFloat64(0), chain: v.getFloat64(8) };
}

export interface DurableState {
  hardState: HardState;
  snapshot: Snapshot | null;
  /** Entries after `entriesOffset`, with the chain hash of each. */
  entriesOffset: number;
  entries: Entry[];
  chains: number[];
}

export interface ApplyHooks {
  onApply?(node: SimNode, e: Entry, chain: number): void;
  onInstall?(node: SimNode, snap: Snapshot, chain: number): void;
  onPersist?(node: SimNode, e: Entry, chain: number): void;
  onReadState?(node: SimNode, index: number, ctx: Uint8Array): void;
}

export class SimNode {
  core: RaftCore | null = null;
  readonly durable: DurableState = {
    hardState: { term: 0, vote: null, commit: 0 },
    snapshot: null,
    entriesOffset: 0,
    entries: [],
    chains: [],
  };
  applied = 0;
  appChain = 0;

  constructor(
    readonly id: string,
    readonly bootstrap: ConfState,
    private readonly makeConfig: (id: string) => RaftConfig,
  ) {}

  get up(): boolean {
    return this.core !== null;
  }

  /** Starts (or restarts) the core from durable state only. */
  start(): void {
    const snap = this.durable.snapshot;
    const snapIndex = snap?.index ?? 0;
    this.applied = snapIndex;
    this.appChain = snap ? decodeAppSnapshot(snap.data).chain : 0;
    const entries = this.durable.entries.filter((e) => e.index > snapIndex);
    this.core = new RaftCore(this.makeConfig(this.id), {
      hardState: { ...this.durable.hardState },
      snapshot: snap,
      entries,
      conf: this.bootstrap,
      applied: snapIndex,
    });
  }

  crash(): void {
    this.core = null;
  }

  /** Durable chain hash at index, or undefined when not stored. */
  chainAt(index: number): number | undefined {
    const d = this.durable;
    if (d.snapshot && index === d.snapshot.index) return decodeAppSnapshot(d.snapshot.data).chain;
    if (index === 0) return 0;
    const i = index - d.entriesOffset - 1;
    return i >= 0 && i < d.chains.length ? d.chains[i] : undefined;
  }

  entryAt(index: number): Entry | undefined {
    const i = index - this.durable.entriesOffset - 1;
    return i >= 0 ? this.durable.entries[i] : undefined;
  }

  durableLastIndex(): number {
    return Math.max(this.durable.entriesOffset + this.durable.entries.length, this.durable.snapshot?.index ?? 0);
  }

  /** What a driver does with a Ready, in order: persist, then (caller) send, then apply, then advance. */
  persist(rd: Ready, hooks: ApplyHooks): void {
    const d = this.durable;
    if (rd.snapshot) {
      d.snapshot = rd.snapshot;
      d.entriesOffset = rd.snapshot.index;
      d.entries = [];
      d.chains = [];
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0]!.index;
      const keep = first - 1 - d.entriesOffset;
      if (keep < 0 || keep > d.entries.length) {
        throw new Error(`storage: ${this.id} asked to append at ${first} but holds (${d.entriesOffset}, ${d.entriesOffset + d.entries.length}]`);
      }
      d.entries.length = keep;
      d.chains.length = keep;
      let prev = this.chainAt(first - 1);
      if (prev === undefined) throw new Error(`storage: ${this.id} has no chain at ${first - 1}`);
      for (const e of rd.entries) {
        prev = chainHash(prev, e);
        d.entries.push(e);
        d.chains.push(prev);
        hooks.onPersist?.(this, e, prev);
      }
    }
    if (rd.hardState) d.hardState = { ...rd.hardState };
    if (rd.compactedTo !== null && rd.compactedTo > d.entriesOffset) {
      const drop = Math.min(rd.compactedTo - d.entriesOffset, d.entries.length);
      d.entries.splice(0, drop);
      d.chains.splice(0, drop);
      d.entriesOffset += drop;
    }
  }

  apply(rd: Ready, hooks: ApplyHooks): void {
    if (rd.snapshot) {
      this.applied = rd.snapshot.index;
      this.appChain = decodeAppSnapshot(rd.snapshot.data).chain;
      hooks.onInstall?.(this, rd.snapshot, this.appChain);
    }
    for (const e of rd.committed) {
      if (e.index !== this.applied + 1) throw new Error(`apply: ${this.id} got entry ${e.index} after applying ${this.applied}`);
      this.appChain = chainHash(this.appChain, e);
      this.applied = e.index;
      hooks.onApply?.(this, e, this.appChain);
    }
    for (const r of rd.readStates) hooks.onReadState?.(this, r.index, r.ctx);
  }

  /** The app snapshots its state at its applied index, hands it to the core, and makes the snapshot durable. */
  compactNow(): boolean {
    if (!this.core) return false;
    const snapshot = this.core.compact(this.applied, encodeAppSnapshot(this.applied, this.appChain));
    if (snapshot === null) return false;
    this.durable.snapshot = snapshot;
    return true;
  }

  /** Runs ready/persist/send/apply/advance until the core has nothing more. Returns the messages to send. */
  drain(hooks: ApplyHooks, maxRounds = 50): Message[] {
    const out: Message[] = [];
    for (let i = 0; i < maxRounds && this.core?.hasReady(); i++) {
      const rd = this.core.ready();
      this.persist(rd, hooks);
      out.push(...rd.messages);
      this.apply(rd, hooks);
      this.core.advance(rd);
    }
    return out;
  }
}

