// The PBFT simulation world: n replicas (up to f Byzantine), a faulty virtual network, crashing nodes
// that restart from what they made durable, clients, the app state machine, and the invariant checks
// run after every step. One seed reproduces a whole run.
import { createHash } from 'node:crypto';
import {
  PbftCore,
  applyPersist,
  persistMustSync,
  bytesEqual,
  emptyPbftState,
  pbftFaults,
  pbftQuorum,
  signingBytes,
  toHex,
  type NodeId,
  type PbftConfig,
  type PbftDurableState,
  type PbftMessage,
  type PbftReady,
  type PbftStateTransfer,
  type SignedPbftMessage,
} from '../../consensus/pbft/index.ts';
import { Prng } from '../prng.ts';
import { BEHAVIOURS, ByzantineReplica, type Behaviour, type Collusion, type Outgoing, type Signer } from './byzantine.ts';

const SWARM = 'sim-swarm';
const NO_SIG = new Uint8Array(0);

export interface PbftSimOptions {
  n?: number;
  /** TEST ONLY: run the cores with a quorum of 2f (unsafe) to prove the simulator catches it. */
  brokenQuorum2f?: boolean;
  /** Ticks with network faults, crashes and client traffic (default 200). */
  faultTicks?: number;
  /** After faults stop, every request must be executed by every correct replica within this many ticks. */
  livenessTicks?: number;
  /** Client requests (default 20). */
  requests?: number;
  /**
   * Crashes are power losses: a crashed replica loses what it wrote lazily since its last synced write (the drivers'
   * rule, persistMustSync: only Readies that state something new of the replica are synced; execution state is
   * written lazily; a state transfer is synced). Default false: a crash keeps everything written (a process crash).
   */
  powerLoss?: boolean;
}

export type PbftInvariant = 'agreement' | 'executed-twice' | 'order' | 'liveness' | 'core-error' | 'read-index';

export interface PbftSimViolation {
  invariant: PbftInvariant;
  tick: number;
  detail: string;
}

export interface PbftSimResult {
  seed: number;
  n: number;
  byzantine: string[];
  behaviours: string[];
  violations: PbftSimViolation[];
  ticks: number;
  highestSeq: number;
  highestView: number;
  delivered: number;
  signatureRejects: number;
  stateTransfers: number;
  restarts: number;
  /** Power-loss crashes that lost protocol messages or executions the replica had written lazily. */
  lostTails: number;
}

interface Snapshot {
  seq: number;
  digest: Uint8Array;
  ids: string[];
}

interface App {
  lastExecuted: number;
  ids: string[];
  idSet: Set<string>;
  digest: Uint8Array;
  snapshots: Map<number, Snapshot>;
}

interface SimNode {
  id: NodeId;
  byz: ByzantineReplica | null;
  core: PbftCore | null;
  durable: PbftDurableState;
  app: App;
  transfer: PbftStateTransfer | null;
  /**
   * A state transfer being copied, as the driver runs it: its Ready loop waits (the core still takes messages, and
   * may move to a newer stable checkpoint meanwhile), and at `doneAt` the snapshot it asked for is installed.
   */
  copying: { t: PbftStateTransfer; doneAt: number } | null;
  downUntil: number;
}

interface InFlight {
  to: NodeId;
  msg: SignedPbftMessage;
}

function sha256(b: Uint8Array): Uint8Array {
  return createHash('sha256').update(b).digest();
}

/** A cheap keyed 64-bit hash standing in for an Ed25519 signature (only the sim knows the keys). */
function mac(key: number, bytes: Uint8Array): Uint8Array {
  let h1 = 0x811c9dc5 ^ key;
  let h2 = 0x9747b28c ^ Math.imul(key, 0x5bd1e995);
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    h1 = Math.imul(h1 ^ b, 0x01000193);
    h2 = Math.imul(h2 ^ b, 0x5bd1e995) ^ (h2 >>> 15);
  }
  const out = new Uint8Array(8);
  const v = new DataView(out.buffer);
  v.setUint32(0, h1 >>> 0);
  v.setUint32(4, h2 >>> 0);
  return out;
}

function cloneDurable(d: PbftDurableState): PbftDurableState {
  return { view: d.view, inViewChange: d.inViewChange, stableCheckpoint: d.stableCheckpoint, log: [...d.log] };
}

function cloneApp(a: App): App {
  return { lastExecuted: a.lastExecuted, ids: [...a.ids], idSet: new Set(a.ids), digest: a.digest, snapshots: new Map(a.snapshots) };
}

function chainDigest(prev: Uint8Array, seq: number, ids: readonly string[]): Uint8Array {
  return sha256(new TextEncoder().encode(`${toHex(prev)}|${seq}|${ids.join(',')}`));
}

export class PbftWorld implements Signer {
  readonly rng: Prng;
  readonly n: number;
  readonly f: number;
  readonly ids: NodeId[];
  readonly nodes = new Map<NodeId, SimNode>();
  readonly violations: PbftSimViolation[] = [];
  tick = 0;

  private readonly keys = new Map<NodeId, number>();
  private readonly verified = new WeakMap<object, boolean>();
  private readonly queue = new Map<number, InFlight[]>();
  private readonly agreed = new Map<number, string>();
  /** The highest sequence number a correct replica executed. */
  private highestAgreed = 0;
  private readonly tracked = new Set<string>();
  private readonly home = new Map<string, { at: NodeId; payload: Uint8Array }>();
  private partition: Set<NodeId> | null = null;
  private faults = true;
  private dropP: number;
  private dupP: number;
  private maxDelay: number;
  private readonly config: Omit<PbftConfig, 'id'>;
  readonly collusion: Collusion;
  stats = { delivered: 0, signatureRejects: 0, stateTransfers: 0, restarts: 0, lostTails: 0 };
  /** powerLoss: what each replica had made durable at its last synced write. */
  private readonly lastSynced = new Map<NodeId, { durable: PbftDurableState; app: App }>();

  constructor(
    readonly seed: number,
    readonly opts: PbftSimOptions,
  ) {
    this.rng = new Prng(seed);
    this.n = opts.n ?? 4;
    this.f = pbftFaults(this.n);
    this.ids = Array.from({ length: this.n }, (_, i) => `org${i}`);
    for (const id of this.ids) this.keys.set(id, this.rng.nextU32());
    this.dropP = this.rng.next() * 0.2;
    this.dupP = this.rng.next() * 0.1;
    this.maxDelay = this.rng.range(1, 6);
    this.config = {
      replicas: this.ids,
      checkpointInterval: 4,
      watermarkWindow: 8,
      maxBatch: 3,
      viewChangeTimeoutTicks: 10,
      maxViewChangeTimeoutTicks: 80,
      retransmitTicks: 4,
      hash: sha256,
      validateRequest: (p) => p.length > 0 && p[0] !== 0xff,
      verify: (m) => this.verify(m),
      ...(opts.brokenQuorum2f ? { testOnlyQuorum: 2 * this.f } : {}),
    };

    const byzCount = this.rng.int(this.f + 1);
    const byzantine = new Set(this.rng.shuffle([...this.ids]).slice(0, byzCount));
    const correct = this.ids.filter((id) => !byzantine.has(id));
    const groupB = new Set(correct.filter(() => this.rng.chance(0.5)));
    this.collusion = { byzantine, equivocators: new Set(), groupB, replicas: this.ids, hash: sha256 };
    for (const id of this.ids) {
      let byz: ByzantineReplica | null = null;
      if (byzantine.has(id)) {
        const bs = new Set<Behaviour>(BEHAVIOURS.filter((b) => this.rng.chance(b === 'equivocate' ? 0.7 : 0.35)));
        if (bs.has('equivocate')) bs.delete('silent-primary');
        if (bs.has('equivocate')) this.collusion.equivocators.add(id);
        byz = new ByzantineReplica(id, bs, this.rng, this.collusion, this);
      }
      const app: App = { lastExecuted: 0, ids: [], idSet: new Set(), digest: new Uint8Array(32), snapshots: new Map() };
      const node: SimNode = { id, byz, core: null, durable: emptyPbftState(), app, transfer: null, copying: null, downUntil: -1 };
      this.nodes.set(id, node);
      this.start(node);
    }
  }

  // ------------------------------------------------------------ signatures (the driver's check, modelled)

  sign(m: PbftMessage, as: NodeId, signer: NodeId): SignedPbftMessage {
    const signed = { ...m, from: as, sig: NO_SIG } as SignedPbftMessage;
    signed.sig = mac(this.keys.get(signer)!, signingBytes(signed, SWARM));
    this.verified.set(signed, as === signer);
    return signed;
  }

  verify(m: SignedPbftMessage): boolean {
    const cached = this.verified.get(m);
    if (cached !== undefined) return cached;
    const key = this.keys.get(m.from);
    const ok = key !== undefined && bytesEqual(m.sig, mac(key, signingBytes(m, SWARM)));
    this.verified.set(m, ok);
    return ok;
  }

  // ------------------------------------------------------------ nodes

  private start(node: SimNode): void {
    const d = node.durable;
    node.core = new PbftCore(
      { ...this.config, id: node.id },
      {
        view: d.view,
        inViewChange: d.inViewChange,
        stableCheckpoint: d.stableCheckpoint,
        log: [...d.log],
        lastExecuted: node.app.lastExecuted,
        executedIds: [...node.app.ids],
      },
    );
    node.downUntil = -1;
    this.drain(node);
  }

  private crash(node: SimNode, until: number): void {
    if (this.opts.powerLoss) {
      const synced = this.lastSynced.get(node.id);
      const durable = synced ? cloneDurable(synced.durable) : emptyPbftState();
      const app = synced ? cloneApp(synced.app) : { lastExecuted: 0, ids: [], idSet: new Set<string>(), digest: new Uint8Array(32), snapshots: new Map() };
      if (durable.log.length < node.durable.log.length || app.lastExecuted < node.app.lastExecuted) this.stats.lostTails++;
      node.durable = durable;
      node.app = app;
    }
    node.core = null;
    node.transfer = null;
    node.copying = null;
    node.downUntil = until;
  }

  /**
   * The pbft read barrier's premise (PbftCore.readIndex): whatever 2f+1 replicas answer — the Byzantine ones anything
   * — their highest answer reaches the highest sequence number any correct replica executed. That holds when at most f
   * correct replicas answer below it; a read that collected the answers of the others, plus f Byzantine ones, would
   * otherwise miss a result a client was already told.
   */
  private checkReadIndex(): void {
    if (this.highestAgreed === 0) return;
    const below: string[] = [];
    for (const node of this.nodes.values()) {
      if (!node.core || !this.isCorrect(node)) continue;
      const answer = node.core.readIndex();
      if (answer < this.highestAgreed) below.push(`${node.id}=${answer}`);
    }
    // A correct replica that executed it had quorum commit votes, at most f of them Byzantine: the other correct
    // replicas number at most n - quorum, and pbftReadQuorum(n) answers always include one beyond them.
    const mayLag = this.n - pbftQuorum(this.n);
    if (below.length > mayLag) this.violate('read-index', `seq ${this.highestAgreed} executed, but ${below.length} correct replicas answer a read index below it (${below.join(', ')}); at most ${mayLag} may`);
  }

  isCorrect(node: SimNode): boolean {
    return node.byz === null;
  }

  private violate(invariant: PbftInvariant, detail: string): void {
    this.violations.push({ invariant, tick: this.tick, detail });
  }

  /** Runs a core input, turning an exception (an assertion in the core) into a violation. */
  private guard(node: SimNode, fn: (core: PbftCore) => void): void {
    if (!node.core) return;
    try {
      fn(node.core);
      this.drain(node);
    } catch (e) {
      if (!this.isCorrect(node)) {
        this.crash(node, Number.MAX_SAFE_INTEGER);
        return;
      }
      this.violate('core-error', `${node.id}: ${(e as Error).stack ?? String(e)}`);
    }
  }

  /** Handles every Ready of a node: persist, send (loopback included), execute, checkpoints, state transfer. */
  private drain(node: SimNode): void {
    for (let guard = 0; node.core && !node.copying && node.core.hasReady(); guard++) {
      if (guard > 10_000) throw new Error(`${node.id}: Ready loop does not converge`);
      const core = node.core;
      const rd: PbftReady = core.ready();
      const synced = this.opts.powerLoss === true && persistMustSync(rd, node.durable, node.id);
      if (rd.persist) applyPersist(node.durable, rd.persist);
      // A synced write makes everything written before it durable too (WAL order); this Ready's executions follow it.
      if (synced) this.markSynced(node);
      const loopback: SignedPbftMessage[] = [];
      for (const m of rd.messages) this.emit(node, m, loopback);
      for (const c of rd.committed) this.apply(node, c.seq, c.digest, c.requests.map((r) => r.id));
      if (rd.stableCheckpoint) {
        // Older states stay available a while (the real store keeps every record): a peer still copying up to an
        // older stable checkpoint finishes that copy.
        const keepFrom = rd.stableCheckpoint.seq - 4 * this.config.checkpointInterval;
        for (const s of [...node.app.snapshots.keys()]) if (s < keepFrom) node.app.snapshots.delete(s);
      }
      if (rd.stateTransfer) node.transfer = rd.stateTransfer;
      core.advance(rd);
      for (const s of rd.checkpointsDue) core.checkpointReady(s, node.app.snapshots.get(s)!.digest);
      for (const m of loopback) core.step(m);
      this.tryTransfer(node);
    }
  }

  private emit(node: SimNode, m: PbftMessage, loopback: SignedPbftMessage[]): void {
    const targets = m.to === 'all' ? this.ids : [m.to];
    let honest: SignedPbftMessage | null = null;
    for (const to of targets) {
      if (to === node.id) {
        loopback.push((honest ??= this.sign(m, node.id, node.id)));
        continue;
      }
      if (node.byz) {
        for (const o of node.byz.rewrite(m, to)) this.send(node.id, o);
      } else {
        this.send(node.id, { to, msg: (honest ??= this.sign(m, node.id, node.id)) });
      }
    }
  }

  private apply(node: SimNode, seq: number, digest: Uint8Array, ids: string[]): void {
    const app = node.app;
    if (this.isCorrect(node)) {
      if (seq !== app.lastExecuted + 1) this.violate('order', `${node.id} executed ${seq} after ${app.lastExecuted}`);
      const hex = toHex(digest);
      const prev = this.agreed.get(seq);
      if (prev === undefined) {
        this.agreed.set(seq, hex);
        this.highestAgreed = Math.max(this.highestAgreed, seq);
      }
      else if (prev !== hex) this.violate('agreement', `${node.id} committed batch ${hex.slice(0, 12)} at seq ${seq}, another correct replica ${prev.slice(0, 12)}`);
      for (const id of ids) if (app.idSet.has(id)) this.violate('executed-twice', `${node.id} executed request ${id} twice (again at seq ${seq})`);
    }
    for (const id of ids) {
      app.idSet.add(id);
      app.ids.push(id);
    }
    app.lastExecuted = seq;
    app.digest = chainDigest(app.digest, seq, ids);
    if (seq % this.config.checkpointInterval === 0) app.snapshots.set(seq, { seq, digest: app.digest, ids: [...app.ids] });
  }

  private markSynced(node: SimNode): void {
    if (this.opts.powerLoss) this.lastSynced.set(node.id, { durable: cloneDurable(node.durable), app: cloneApp(node.app) });
  }

  /**
   * State transfer as the driver runs it: the copy of the snapshot the core asked for takes a few ticks, during which
   * the node's Ready loop waits while its core keeps taking messages (it may make a newer checkpoint stable); then
   * the copied snapshot — of the sequence number asked for, possibly older than the stable one by now — is installed
   * from any replica that has it. A copy that finds none is given up; the core's latest request is tried next.
   */
  private tryTransfer(node: SimNode): void {
    if (!node.core) return;
    if (node.copying) {
      if (this.tick < node.copying.doneAt) return;
      const { t } = node.copying;
      node.copying = null;
      if (node.app.lastExecuted < t.seq) {
        for (const from of t.from) {
          const peer = this.nodes.get(from)!;
          if (peer === node || !peer.core) continue;
          const snap = peer.app.snapshots.get(t.seq);
          if (!snap || !bytesEqual(snap.digest, t.digest)) continue;
          node.app = { lastExecuted: t.seq, ids: [...snap.ids], idSet: new Set(snap.ids), digest: snap.digest, snapshots: new Map([[t.seq, snap]]) };
          this.markSynced(node); // the driver writes a state transfer synced
          this.stats.stateTransfers++;
          this.guard(node, (core) => core.installState(t.seq, t.digest, snap.ids));
          break;
        }
      }
      this.guard(node, () => undefined); // the Ready loop goes on (a newer transfer it asks for starts below)
      if (node.copying) return;
    }
    const t = node.transfer;
    if (!t) return;
    node.transfer = null;
    if (node.app.lastExecuted >= t.seq) return;
    node.copying = { t, doneAt: this.tick + 1 + this.rng.int(3 * this.maxDelay) };
  }

  // ------------------------------------------------------------ network

  private send(from: NodeId, o: Outgoing): void {
    if (this.faults) {
      if (this.partition && this.partition.has(from) !== this.partition.has(o.to)) return;
      if (this.rng.chance(this.dropP)) return;
      if (this.rng.chance(this.dupP)) this.enqueue(o, 1 + this.rng.int(this.maxDelay));
    }
    this.enqueue(o, 1 + (this.faults ? this.rng.int(this.maxDelay) : 0));
  }

  private enqueue(o: Outgoing, delay: number): void {
    const at = this.tick + delay;
    let q = this.queue.get(at);
    if (!q) this.queue.set(at, (q = []));
    q.push({ to: o.to, msg: o.msg });
  }

  private deliver(): void {
    const q = this.queue.get(this.tick);
    if (!q) return;
    this.queue.delete(this.tick);
    this.rng.shuffle(q);
    for (const { to, msg } of q) {
      const node = this.nodes.get(to)!;
      if (!node.core) continue;
      // The driver verifies the signature against the claimed sender before the core sees anything.
      if (!this.verify(msg)) {
        this.stats.signatureRejects++;
        continue;
      }
      this.stats.delivered++;
      node.byz?.observe(msg);
      this.guard(node, (core) => core.step(msg));
    }
  }

  // ------------------------------------------------------------ clients and the schedule

  propose(id: string, payload: Uint8Array, at: NodeId): void {
    const node = this.nodes.get(at)!;
    if (this.isCorrect(node) && payload[0] !== 0xff && !this.tracked.has(id)) {
      this.tracked.add(id);
      this.home.set(id, { at, payload });
    }
    this.guard(node, (core) => core.propose({ id, payload }));
  }

  private livenessDone(): boolean {
    for (const node of this.nodes.values()) {
      if (!this.isCorrect(node)) continue;
      for (const id of this.tracked) if (!node.app.idSet.has(id)) return false;
    }
    return true;
  }

  private missing(): string {
    const out: string[] = [];
    for (const node of this.nodes.values()) {
      if (!this.isCorrect(node)) continue;
      const miss = [...this.tracked].filter((id) => !node.app.idSet.has(id));
      const st = node.core?.status();
      out.push(
        `${node.id}: missing ${miss.length} (${miss.slice(0, 4).join(',')}) view=${st?.view} vc=${st?.inViewChange} exec=${st?.lastExecuted} h=${st?.lowWatermark} pending=${st?.pendingRequests}`,
      );
    }
    return out.join('; ');
  }

  run(): PbftSimResult {
    const faultTicks = this.opts.faultTicks ?? 200;
    const livenessTicks = this.opts.livenessTicks ?? 3000;
    const nRequests = this.opts.requests ?? 20;
    const schedule = new Map<number, Array<() => void>>();
    const at = (t: number, fn: () => void): void => {
      const l = schedule.get(t);
      if (l) l.push(fn);
      else schedule.set(t, [fn]);
    };
    for (let k = 0; k < nRequests; k++) {
      const id = `r${k}`;
      const invalid = this.rng.chance(0.05);
      const payload = new Uint8Array([invalid ? 0xff : 1 + (k % 200), k & 0xff]);
      const t = this.rng.int(faultTicks);
      const target = this.rng.pick(this.ids);
      at(t, () => this.propose(id, payload, target));
      if (this.rng.chance(0.15)) {
        const again = this.rng.pick(this.ids);
        at(t + this.rng.int(40), () => this.propose(id, payload, again));
      }
    }
    // Crashes of correct-or-not replicas, and partitions, during the fault phase.
    const crashes = this.rng.int(4);
    for (let c = 0; c < crashes; c++) {
      const id = this.rng.pick(this.ids);
      const t = this.rng.int(faultTicks);
      const until = t + this.rng.range(5, 80);
      at(t, () => {
        const node = this.nodes.get(id)!;
        if (node.core) this.crash(node, until);
      });
    }
    const partitions = this.rng.int(3);
    for (let p = 0; p < partitions; p++) {
      const t = this.rng.int(faultTicks);
      const side = new Set(this.ids.filter(() => this.rng.chance(0.5)));
      const len = this.rng.range(10, 80);
      at(t, () => (this.partition = side));
      at(t + len, () => (this.partition = null));
    }

    const end = faultTicks + livenessTicks;
    for (this.tick = 0; this.tick <= end; this.tick++) {
      if (this.tick === faultTicks) {
        this.faults = false;
        this.partition = null;
      }
      for (const fn of schedule.get(this.tick) ?? []) if (this.faults || this.tick === faultTicks) fn();
      if (!this.faults) this.partition = null;
      for (const node of this.nodes.values()) {
        if (!node.core && node.downUntil !== Number.MAX_SAFE_INTEGER && (node.downUntil <= this.tick || !this.faults)) {
          this.stats.restarts++;
          this.start(node);
        }
      }
      this.deliver();
      for (const node of this.nodes.values()) {
        this.guard(node, (core) => core.tick());
        if (node.byz && node.core) for (const o of node.byz.spontaneous(node.core.status())) this.send(node.id, o);
        this.tryTransfer(node);
      }
      // Clients re-send what their node has not executed yet (a node that crashed forgot its queue).
      if (this.tick % 25 === 0) {
        for (const id of this.tracked) {
          const { at: home, payload } = this.home.get(id)!;
          const node = this.nodes.get(home)!;
          if (node.core && !node.app.idSet.has(id)) this.guard(node, (core) => core.propose({ id, payload }));
        }
      }
      this.checkReadIndex();
      if (this.violations.length > 0) break;
      if (this.tick >= faultTicks && this.livenessDone()) break;
    }
    if (this.violations.length === 0 && !this.livenessDone()) {
      this.violate('liveness', `requests not executed ${livenessTicks} ticks after faults stopped: ${this.missing()}`);
    }
    let highestView = 0;
    for (const node of this.nodes.values()) highestView = Math.max(highestView, node.core?.status().view ?? 0);
    return {
      seed: this.seed,
      n: this.n,
      byzantine: [...this.collusion.byzantine],
      behaviours: [...this.nodes.values()].filter((x) => x.byz).map((x) => `${x.id}:${[...x.byz!.behaviours].join('+')}`),
      violations: this.violations,
      ticks: this.tick,
      highestSeq: this.agreed.size,
      highestView,
      ...this.stats,
    };
  }
}

export function runPbftSeed(seed: number, opts: PbftSimOptions = {}): PbftSimResult {
  return new PbftWorld(seed, opts).run();
}
