// The seam between a swarm and its consensus protocol: what VerdictSwarm needs from Raft or PBFT, so a swarm
// can switch protocols at a committed index. Also the applier contract both engines feed.
import type { ConsensusMode } from '../config/types.ts';
import type { PeerProgressView } from './service.ts';

/** One committed log entry as engines hand it to the replicated state, in global log-index order. */
export interface CommittedEntry {
  index: number;
  /** Raft term or PBFT view. */
  epoch: number;
  /** Raft configuration entries are recorded in the audit trail but carry no command. */
  kind: 'command' | 'conf';
  data: Uint8Array;
}

/** The replicated state machine fed by an engine. */
export interface Applier {
  /** Applies one committed entry. Returns 'halt' when this entry ends the engine's era (a committed mode switch). */
  apply(entry: CommittedEntry): 'continue' | 'halt';
  /**
   * Makes what the entries of one cycle produced durable (one synced batch). `lazy`: written in order but durable
   * only with the node's next synced write — for an engine whose log can replay the entries after a crash (Raft).
   */
  flush(extra?: { key: string; value: Uint8Array | null }[], options?: { lazy?: boolean }): Promise<void>;
  /** The state as of the last applied entry, for a Raft snapshot. */
  snapshot(): Uint8Array;
  /** Replaces the state with a snapshot taken at `index` (Raft InstallSnapshot). */
  restore(data: Uint8Array, index: number): Promise<void>;
  /** Index of the last applied entry. */
  readonly size: number;
  /** The audit chain head: last applied index and its record hash. */
  head(): { size: number; hash: string };
}

/** The node-to-node channel as engines need it (transport/ client pool + server handlers). */
export interface SwarmLink {
  /** Queues messages; they leave together with everything else sent this turn (see afterQueuedWrites). */
  send(to: string, swarm: string, channel: string, messages: Uint8Array[]): void;
  call(to: string, swarm: string, channel: string, body: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
}

/**
 * Resolves two turns of the event loop later, when what was sent this turn is on the wire: the transport hands the
 * turn's messages to HTTP/2 in a setImmediate, and node's HTTP/2 session writes queued frames to the socket in a
 * native immediate of the turn after. An engine awaits this before a long synchronous stretch (applying a batch),
 * or its peers wait for that stretch too (traced: a commit notice reached a follower 0.27 ms after the leader handed
 * it out when the leader was idle, ~1 ms when it applied first).
 */
export function afterQueuedWrites(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}

export interface EngineStatus {
  mode: ConsensusMode;
  role: string;
  /** Raft term or PBFT view. */
  term: number;
  /** Raft leader or PBFT primary. */
  leader: string | null;
  commitIndex: number;
  lastIndex: number;
  peers: PeerProgressView[];
  /** Engine-specific detail for /v1/status. */
  detail?: Record<string, unknown>;
}

export interface ConsensusEngine {
  readonly mode: ConsensusMode;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Resolves once the proposal was accepted into the protocol (the state machine reports its outcome). */
  propose(data: Uint8Array, timeoutMs: number): Promise<void>;
  /** Messages of this engine's channels from an authenticated member org. */
  receive(fromOrg: string, channel: string, messages: Uint8Array[]): { dropped: number };
  /** Request/response calls of this engine's channels. */
  handleCall(fromOrg: string, channel: string, body: Uint8Array): Promise<Uint8Array>;
  status(): EngineStatus;
  /** True when the engine knows a leader / primary and is not halted. */
  serving(): boolean;
  /** Who orders proposals now — the Raft leader, the PBFT primary — or null while unknown or changing. */
  leader(): string | null;
  /**
   * Linearizable read barrier (Raft: ReadIndex; PBFT: the read indexes of 2f+1 replicas): resolves once this node has
   * applied everything committed before the call, or rejects with 503 NO_QUORUM when too few peers confirm in time,
   * 503 NOT_APPLIED when this node does not apply that far in time.
   */
  readBarrier(timeoutMs: number): Promise<number>;
  /** The peer channels this engine uses. */
  readonly channels: { messages: string[]; calls: string[] };
}

export class SwarmError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
