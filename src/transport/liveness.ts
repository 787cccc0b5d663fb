// Node liveness: one tiny message per peer node every interval, on its own channel and for all swarms at once, and
// the verdict it feeds: a peer not heard from for `lapseMs` is reported down (once, until it is heard again).
//
// Why it exists: idle Raft swarms quiesce (no ticks, no heartbeats), so a quiesced follower no longer notices by
// itself that its leader's node died. Instead of every swarm heartbeating every peer (1,000 swarms = 1,000 heartbeat
// pairs per interval), the node heartbeats each peer node once and tells every swarm led from a node that went down
// (after CockroachDB's node liveness + quiescence). A false alarm (a slow peer) only makes some swarms tick and
// campaign; PreVote and the followers' leader lease keep it from deposing a live leader.
export const LIVENESS_CHANNEL = 'liveness';
/** The peer batch format addresses every message group to a swarm; node-level messages use this id (never a swarm's). */
export const LIVENESS_SWARM = 'node-liveness';
/**
 * The protocol level this node speaks: what its log entries may carry that an older node would apply differently,
 * and what its peers may ask of it. 1: every version before levels were announced. 2: admin commands name their
 * approvers; set-policy changes. 3: as a PBFT primary it takes the verdicts backups relay to it
 * (swarm/verdict-swarm.ts RELAY_CHANNEL) — a node started with --no-relay announces RELAY_LESS_PROTOCOL_LEVEL.
 * A node proposes what needs a level only while every member's node announced at least that level (see
 * VerdictSwarm.submitAdmin) — during a rolling upgrade an older node would refuse such an entry that the others
 * apply, and the swarm's replicas would differ.
 */
export const PROTOCOL_LEVEL = 3;
/** What a node of this version that serves no relay channel (`--no-relay`) announces: all of level 2, not 3. */
export const RELAY_LESS_PROTOCOL_LEVEL = 2;
/** The protocol level of a node that sends the first liveness format (a single byte 1): every earlier version. */
export const LEGACY_PROTOCOL_LEVEL = 1;
/**
 * The liveness message: its arrival is the news; its bytes announce the sender's protocol level. Format 1: [1] (no
 * level: level 1). Format 2: [2, level]. Earlier versions read none of it, so the longer message reaches them safely.
 */
function livenessMessage(level: number): Uint8Array {
  return new Uint8Array([2, level]);
}

/** The protocol level a liveness message announces, or null when it is not one this node understands. */
export function announcedLevel(message: Uint8Array): number | null {
  if (message.length === 1 && message[0] === 1) return LEGACY_PROTOCOL_LEVEL;
  if (message.length === 2 && message[0] === 2 && message[1]! >= 1) return message[1]!;
  return null;
}

export interface NodeLivenessOptions {
  /** The peer orgs to heartbeat and watch (asked every round: membership changes come and go). */
  peers: () => readonly string[];
  /** Sends one message to a peer's node (fire and forget: the transport drops it while the peer is unreachable). */
  send: (org: string, swarm: string, channel: string, messages: Uint8Array[]) => void;
  /** A peer was not heard from for lapseMs. Called once per outage. */
  onPeerDown: (org: string) => void;
  /** A peer reported down was heard again. */
  onPeerUp?: (org: string) => void;
  /** Milliseconds between heartbeats (and lapse checks). */
  intervalMs: number;
  /** Silence after which a peer is reported down; more than the swarms' election timeout and a few intervals. */
  lapseMs: number;
  /** Milliseconds clock (tests inject one). Default performance.now. */
  now?: () => number;
  /** The protocol level this node announces. Default PROTOCOL_LEVEL. */
  level?: number;
  /**
   * The levels peers announced before this node (re)started, as `onLevel` stored them: a restarted node knows them
   * before it hears each peer again — a member's node that is down right now is still known to run this version.
   */
  remembered?: ReadonlyMap<string, number>;
  /** A peer announced a level other than the one known for it (store it for `remembered`). */
  onLevel?: (org: string, level: number, all: ReadonlyMap<string, number>) => void;
}

export interface PeerLiveness {
  org: string;
  up: boolean;
  /** Milliseconds since the peer's node was last heard (since start when never heard). */
  silentMs: number;
  /** The protocol level its node last announced (before a restart of this node, too); null if it never did. */
  level: number | null;
}

interface Watched {
  heardAt: number;
  up: boolean;
}

export class NodeLiveness {
  private readonly watched = new Map<string, Watched>();
  private timer: NodeJS.Timeout | null = null;
  private readonly now: () => number;
  private lastRoundAt: number | null = null;
  /** Per peer org: the protocol level its node announced last (kept while the peer is watched or not, and remembered across restarts). */
  private readonly levels = new Map<string, number>();
  private readonly message: Uint8Array;

  constructor(private readonly options: NodeLivenessOptions) {
    if (!(options.intervalMs > 0) || !(options.lapseMs > options.intervalMs)) {
      throw new Error(`node liveness: need 0 < intervalMs (${options.intervalMs}) < lapseMs (${options.lapseMs})`);
    }
    this.now = options.now ?? (() => performance.now());
    this.message = livenessMessage(options.level ?? PROTOCOL_LEVEL);
    for (const [org, level] of options.remembered ?? []) this.levels.set(org, level);
  }

  start(): void {
    if (this.timer) return;
    this.round();
    this.timer = setInterval(() => this.round(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** A liveness message, or any other batch (it proves the node alive as well), arrived from `org`'s node. */
  heard(org: string): void {
    const peer = this.watched.get(org);
    if (!peer) return; // not a peer we watch (yet): the next round adds it
    peer.heardAt = this.now();
    if (!peer.up) {
      peer.up = true;
      this.options.onPeerUp?.(org);
    }
  }

  /** Liveness messages from `org`'s node: it is alive, and announces its protocol level (the last one counts). */
  announced(org: string, messages: readonly Uint8Array[]): void {
    for (const message of messages) {
      const level = announcedLevel(message);
      if (level === null || this.levels.get(org) === level) continue;
      this.levels.set(org, level);
      this.options.onLevel?.(org, level, this.levels);
    }
    this.heard(org);
  }

  /**
   * The protocol level `org`'s node announced last — in this run, or (options.remembered) before this node
   * restarted — or null when it never announced one to this node.
   */
  levelOf(org: string): number | null {
    return this.levels.get(org) ?? null;
  }

  status(): PeerLiveness[] {
    const now = this.now();
    return [...this.watched].map(([org, peer]) => ({ org, up: peer.up, silentMs: Math.round(now - peer.heardAt), level: this.levelOf(org) }));
  }

  /** One interval: heartbeat every peer, then report the peers silent for too long. Public for tests. */
  round(): void {
    const now = this.now();
    // This node itself stalled (a long GC pause, SIGSTOP, a starved machine) if a whole lapse passed since its last
    // round: what arrived meanwhile may still be queued unread, so it judges nobody now and gives every peer a fresh
    // lapse from here.
    const stalled = this.lastRoundAt !== null && now - this.lastRoundAt > this.options.lapseMs;
    this.lastRoundAt = now;
    const peers = new Set(this.options.peers());
    for (const org of this.watched.keys()) if (!peers.has(org)) this.watched.delete(org);
    for (const org of peers) {
      // A peer seen for the first time gets a full lapse of grace: it may be starting.
      if (!this.watched.has(org)) this.watched.set(org, { heardAt: now, up: true });
      this.options.send(org, LIVENESS_SWARM, LIVENESS_CHANNEL, [this.message]);
    }
    for (const [org, peer] of this.watched) {
      if (stalled) peer.heardAt = Math.max(peer.heardAt, now);
      if (peer.up && now - peer.heardAt > this.options.lapseMs) {
        peer.up = false;
        this.options.onPeerDown(org);
      }
    }
  }
}
