// The engine of a swarm era this node takes no part in: a node removed from a pbft swarm (the next era's replicas
// do not include it), or a node copying records to catch up with a later era. It serves the swarm's reads from the
// replicated state as it stands, refuses proposals and consistent reads with a stable code, and never speaks on a
// consensus channel.
import type { ConsensusMode } from '../config/types.ts';
import { SwarmError, type ConsensusEngine, type EngineStatus } from './engine.ts';

export interface BystanderReason {
  /** `NOT_A_MEMBER` (removed) or `CATCHING_UP`. */
  code: 'NOT_A_MEMBER' | 'CATCHING_UP';
  message: string;
}

export class BystanderEngine implements ConsensusEngine {
  readonly channels = { messages: [] as string[], calls: [] as string[] };

  constructor(
    readonly mode: ConsensusMode,
    private readonly reason: BystanderReason,
    private readonly appliedSize: () => number,
  ) {}

  async start(): Promise<void> {}

  async stop(): Promise<void> {}

  async propose(): Promise<void> {
    throw new SwarmError(this.reason.code === 'NOT_A_MEMBER' ? 409 : 503, this.reason.code, this.reason.message);
  }

  /** No linearizable read here: this node does not take part in the era whose commits the read must reflect. */
  async readBarrier(): Promise<number> {
    throw new SwarmError(this.reason.code === 'NOT_A_MEMBER' ? 409 : 503, this.reason.code, `no consistent read here: ${this.reason.message}`);
  }

  receive(_fromOrg: string, _channel: string, messages: Uint8Array[]): { dropped: number } {
    return { dropped: messages.length };
  }

  async handleCall(_fromOrg: string, channel: string): Promise<Uint8Array> {
    throw new SwarmError(404, 'UNKNOWN_CHANNEL', `no engine serves ${channel} here: ${this.reason.message}`);
  }

  status(): EngineStatus {
    const size = this.appliedSize();
    return {
      mode: this.mode,
      role: this.reason.code === 'NOT_A_MEMBER' ? 'not a member' : 'catching up',
      term: 0,
      leader: null,
      commitIndex: size,
      lastIndex: size,
      peers: [],
      detail: { reason: this.reason.message },
    };
  }

  serving(): boolean {
    return false;
  }

  leader(): string | null {
    return null;
  }
}
