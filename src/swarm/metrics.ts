// Prometheus metrics of one node: one registry per node process, labelled by swarm (and peer where it applies).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class NodeMetrics {
  readonly registry = new Registry();
  readonly role: Gauge<'swarm' | 'role'>;
  readonly term: Gauge<'swarm'>;
  readonly commitIndex: Gauge<'swarm'>;
  readonly appliedIndex: Gauge<'swarm'>;
  readonly applyLag: Gauge<'swarm'>;
  readonly proposals: Counter<'swarm' | 'outcome'>;
  readonly verdicts: Counter<'swarm' | 'status'>;
  readonly proposalVerdicts: Histogram<'swarm'>;
  readonly relayedVerdicts: Counter<'swarm' | 'event'>;
  readonly commitLatency: Histogram<'swarm'>;
  readonly peerUp: Gauge<'peer'>;
  readonly droppedMessages: Counter<'swarm' | 'reason'>;
  readonly fsyncBatches: Counter<'swarm'>;
  readonly certExpirySeconds: Gauge;
  readonly pbftDropped: Gauge<'swarm' | 'reason'>;
  /** Ed25519 signature checks of this node since start (set from the keyring at each scrape). */
  readonly signatureChecks: Gauge<'result'>;
  private keyringStats: (() => { verified: number; cacheHits: number }) | null = null;

  constructor(org: string) {
    this.registry.setDefaultLabels({ org });
    collectDefaultMetrics({ register: this.registry, prefix: 'conclave_process_' });
    const registers = [this.registry];
    this.role = new Gauge({ name: 'conclave_role', help: '1 for the role this node holds in the swarm', labelNames: ['swarm', 'role'], registers });
    this.term = new Gauge({ name: 'conclave_term', help: 'current Raft term or PBFT view', labelNames: ['swarm'], registers });
    this.commitIndex = new Gauge({ name: 'conclave_commit_index', help: 'highest committed log index', labelNames: ['swarm'], registers });
    this.appliedIndex = new Gauge({ name: 'conclave_applied_index', help: 'highest applied log index', labelNames: ['swarm'], registers });
    this.applyLag = new Gauge({ name: 'conclave_apply_lag', help: 'committed but not yet applied entries', labelNames: ['swarm'], registers });
    this.proposals = new Counter({ name: 'conclave_proposals_total', help: 'proposals by outcome', labelNames: ['swarm', 'outcome'], registers });
    this.verdicts = new Counter({ name: 'conclave_verdicts_total', help: 'verdict submissions by status', labelNames: ['swarm', 'status'], registers });
    this.proposalVerdicts = new Histogram({
      name: 'conclave_proposal_verdicts',
      help: 'verdicts per proposal this node made (bigger under load: one proposal per node awaits commit at a time)',
      labelNames: ['swarm'],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    this.relayedVerdicts = new Counter({
      name: 'conclave_relayed_verdicts_total',
      help: 'Verdicts a Raft follower or PBFT backup relayed to the leader or primary (sent, expired: proposed by itself after all) or the leader or primary took from others (received, refused)',
      labelNames: ['swarm', 'event'],
      registers,
    });
    this.commitLatency = new Histogram({
      name: 'conclave_commit_latency_seconds',
      help: 'from a verdict received to applied on this node',
      labelNames: ['swarm'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.peerUp = new Gauge({ name: 'conclave_peer_up', help: '1 when the peer link is healthy (circuit closed)', labelNames: ['peer'], registers });
    this.droppedMessages = new Counter({ name: 'conclave_dropped_messages_total', help: 'peer messages dropped, by reason', labelNames: ['swarm', 'reason'], registers });
    this.fsyncBatches = new Counter({ name: 'conclave_storage_synced_batches_total', help: 'synced storage batches', labelNames: ['swarm'], registers });
    this.pbftDropped = new Gauge({
      name: 'conclave_pbft_dropped_messages',
      help: 'PBFT messages the core refused since start, by reason (wrong view, outside watermarks, duplicate/replayed, conflicting, ...)',
      labelNames: ['swarm', 'reason'],
      registers,
    });
    const keyringStats = () => this.keyringStats?.();
    this.signatureChecks = new Gauge({
      name: 'conclave_signature_checks',
      help: 'Ed25519 signature checks since start: verified (computed) or cached (the same signature verified before)',
      labelNames: ['result'],
      registers,
      collect() {
        const stats = keyringStats();
        if (!stats) return;
        this.set({ result: 'verified' }, stats.verified);
        this.set({ result: 'cached' }, stats.cacheHits);
      },
    });
    this.certExpirySeconds = new Gauge({ name: 'conclave_cert_nearest_expiry_seconds', help: 'seconds until the nearest certificate in the federation expires', registers });
  }

  /** Reports the keyring's signature checks at each scrape. */
  observeKeyring(stats: () => { verified: number; cacheHits: number }): void {
    this.keyringStats = stats;
  }

  setRole(swarm: string, role: string): void {
    for (const r of ['follower', 'pre-candidate', 'candidate', 'leader', 'learner', 'primary', 'backup']) {
      this.role.set({ swarm, role: r }, r === role ? 1 : 0);
    }
  }
}
