// Owns the batching of linearizable reads that both engines share: one round — a Raft ReadIndex request, a PBFT
// read-index query of every peer — is out at a time, and the reads that begin meanwhile join the next round, which
// asks once the one out is done. A round asks after every read that joined it began, so its answer serves them all;
// concurrent reads cost one round per round trip, not one each (etcd's server batches its ReadIndex requests so).
export class ReadRounds<R> {
  private next: R | null = null;
  private out: R | null = null;
  /** Rounds asked since start (the engines report them beside their read barriers). */
  asked = 0;

  /** `ask` sends a round's request(s); the engine calls `release` once that round is answered or given up. */
  constructor(private readonly ask: (round: R) => void) {}

  /** The round a read that begins now waits on: the next one to ask (made by `make` when there is none yet). */
  join(make: () => R): R {
    if (!this.next) {
      this.next = make();
      if (!this.out) setImmediate(() => this.start());
    }
    return this.next;
  }

  /** `round` no longer holds the next one back (answered, or given up on): the next round asks. */
  release(round: R): void {
    if (this.out !== round) return;
    this.out = null;
    if (this.next) setImmediate(() => this.start());
  }

  private start(): void {
    const round = this.next;
    if (!round || this.out) return;
    this.next = null;
    this.out = round;
    this.asked++;
    this.ask(round);
  }
}
