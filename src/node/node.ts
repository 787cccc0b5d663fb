// The composition root of one Conclave node: loads the federation file, opens storage, starts the peer server,
// the peer client pool, every swarm this org belongs to, and the public API; stops them in reverse order.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { loadFederation } from '../config/load.ts';
import type { FederationConfig } from '../config/types.ts';
import { importPrivateJwk, type PrivateJwk, type SigningKey } from '../crypto/ed25519.ts';
import { NodeStore } from '../storage/node-store.ts';
import type { KvStore } from '../storage/kv-store.ts';
import { PeerClientPool } from '../transport/client.ts';
import { PeerServer } from '../transport/server.ts';
import { NODE_IDENTITY_CHANNEL, proveNodeIdentity } from '../pki/doctor.ts';
import { LIVENESS_CHANNEL, NodeLiveness, PROTOCOL_LEVEL, RELAY_LESS_PROTOCOL_LEVEL } from '../transport/liveness.ts';
import { Keyring } from '../verdict/keyring.ts';
import { createApiServer } from '../api/server.ts';
import { NodeMetrics } from '../swarm/metrics.ts';
import { SwarmError, type SwarmLink } from '../swarm/engine.ts';
import { PeerReplyError } from '../transport/server.ts';
import { VerdictSwarm } from '../swarm/verdict-swarm.ts';
import type { NodeService } from '../swarm/service.ts';
import { nearestExpiry } from '../pki/doctor.ts';

/** What a reload (SIGHUP, `conclave admin reload`) did: applied transport/key changes and reported drift. */
export interface ReloadReport {
  at: string;
  ok: boolean;
  error: string | null;
  /** What was applied: peer endpoints, CA certificates, keys, this node's TLS certificate and signing key. */
  applied: string[];
  /** Per swarm: differences between the file's member list and the committed membership (never applied). */
  drift: Record<string, string[]>;
}

/** Node liveness heartbeats each peer node every this many Raft ticks (one minimum election timeout)... */
const LIVENESS_INTERVAL_TICKS = 10;
/** ...and reports it down after this many intervals of silence (beyond the longest randomized election timeout). */
const LIVENESS_LAPSE_INTERVALS = 3;

/** Node-wide key (kv space 'peer-levels') of the protocol levels the peers announced: {org: level}. */
const PEER_LEVELS_KEY = 'levels';

/** The peers' protocol levels as stored by an earlier run; entries that are not a positive whole level are ignored. */
async function readPeerLevels(store: KvStore): Promise<Map<string, number>> {
  const levels = new Map<string, number>();
  const stored = await store.get(PEER_LEVELS_KEY);
  if (!stored) return levels;
  try {
    const parsed = JSON.parse(Buffer.from(stored).toString('utf8')) as Record<string, unknown>;
    for (const [org, level] of Object.entries(parsed)) if (typeof level === 'number' && Number.isSafeInteger(level) && level >= 1) levels.set(org, level);
  } catch {
    // unreadable: this node hears every peer again within a liveness lapse
  }
  return levels;
}

/** The stall watch ticks this often and reports a tick late by at least STALL_REPORT_MS. */
const STALL_WATCH_MS = 250;
const STALL_REPORT_MS = 1000;

/** Files in the node's data folder: its pid (for `conclave admin reload`) and the last reload's report. */
export const PID_FILE = 'conclave.pid';
export const RELOAD_REPORT_FILE = 'last-reload.json';

export interface NodeOptions {
  configPath: string;
  logger: Logger;
  /** Milliseconds per Raft tick (election timeout is 10-20 ticks). */
  tickMs?: number;
  /** Raft snapshot (and log compaction) every this many applied entries (tests make it small). */
  snapshotEvery?: number;
  snapshotBytes?: number;
  /** How long one awaiting proposal holds back this node's next one (see VerdictSwarmOptions.proposalHoldMs). */
  proposalHoldMs?: number;
  /** While the log grows, the leader / primary signs a checkpoint this often (default 5 s). */
  checkpointSeconds?: number;
  /** Every node signs a checkpoint at every multiple of this many entries (default 1000; tests make it small). */
  checkpointEvery?: number;
  /**
   * Default true. False: this node neither relays its agents' verdicts to the Raft leader or PBFT primary nor takes relayed ones
   * (the relay channel is not served, as in versions before it) — for a rolling upgrade from such a version: nodes
   * run with it off until every node of the federation takes relayed verdicts.
   */
  relayVerdicts?: boolean;
  /** TEST ONLY: each swarm starts the engine of a new era this much later (see VerdictSwarmOptions.eraStartDelayMs). */
  eraStartDelayMs?: number;
  /** TEST ONLY: each copy of records from a peer waits this long first (see VerdictSwarmOptions.recordCopyDelayMs). */
  recordCopyDelayMs?: number;
  /** TEST ONLY: the protocol level this node announces (default PROTOCOL_LEVEL), to play a node of an earlier version. */
  announcedLevel?: number;
}

export class ConclaveNode implements NodeService {
  readonly org: string;
  readonly federation: string;
  readonly metricsContentType: string;
  private readonly swarms = new Map<string, VerdictSwarm>();
  private store: NodeStore | null = null;
  private pool: PeerClientPool | null = null;
  private peerServer: PeerServer | null = null;
  private liveness: NodeLiveness | null = null;
  private stallWatch: NodeJS.Timeout | null = null;
  private api: FastifyInstance | null = null;
  private readonly metrics: NodeMetrics;
  config: FederationConfig;
  /** The node's signing key: one object every swarm holds; a rotation replaces its contents in place. */
  private signingKey: SigningKey | null = null;
  private keyring: Keyring | null = null;
  private tls: { certPem: string; keyPem: string } | null = null;
  private lastReload: ReloadReport | null = null;

  constructor(private readonly options: NodeOptions) {
    this.config = loadFederation(options.configPath);
    this.org = this.config.node.org;
    this.federation = this.config.federation;
    this.metrics = new NodeMetrics(this.org);
    this.metricsContentType = this.metrics.registry.contentType;
  }

  get peerUrl(): string | null {
    return this.peerServer?.url ?? null;
  }

  async start(): Promise<{ peerPort: number; apiPort: number }> {
    const { config, options } = this;
    const logger = options.logger;
    const tls = { certPem: readFileSync(config.node.tlsCertFile, 'utf8'), keyPem: readFileSync(config.node.tlsKeyFile, 'utf8') };
    const signingKey: SigningKey = importPrivateJwk(JSON.parse(readFileSync(config.node.signingKeyFile, 'utf8')) as PrivateJwk);
    const ownMember = config.members.find((m) => m.org === this.org)!;
    if (!ownMember.nodeKeys.some((k) => k.x === signingKey.publicJwk.x)) {
      throw new Error(`the node signing key ${config.node.signingKeyFile} is not among org ${this.org}'s nodeKeys in the federation file`);
    }
    const keyring = Keyring.fromMembers(config.members);
    this.signingKey = signingKey;
    this.keyring = keyring;
    this.metrics.observeKeyring(() => keyring.stats());
    this.tls = tls;

    this.store = await NodeStore.open(config.node.dataDir);
    const members = this.transportMembers();
    this.pool = new PeerClientPool({ self: this.org, tls, members, logger: logger.child({ part: 'peer-client' }) });
    this.peerServer = await PeerServer.start({ tls, members, listen: config.node.peerListen, logger: logger.child({ part: 'peer-server' }) });

    const pool = this.pool;
    const link: SwarmLink = {
      send: (to, swarm, channel, messages) => {
        try {
          pool.send(to, swarm, channel, messages);
        } catch (error) {
          // a peer taken out of the transport by a committed removal: the message has no one to go to
          this.metrics.droppedMessages.inc({ swarm, reason: 'no-peer-link' }, messages.length);
          logger.debug({ err: error, to, swarm, channel }, 'message to a peer without a link dropped');
        }
      },
      call: (to, swarm, channel, body, timeoutMs) => pool.call(to, swarm, channel, body, { timeoutMs }),
    };
    // TEST ONLY: CONCLAVE_TEST_BYZANTINE=equivocate:<org> turns that org's PBFT replicas into an equivocating primary.
    const byzantine = process.env.CONCLAVE_TEST_BYZANTINE === `equivocate:${this.org}` ? ('equivocate' as const) : undefined;
    if (byzantine) logger.warn({ org: this.org }, 'TEST MODE: this node behaves as a Byzantine (equivocating) PBFT primary');
    for (const swarmConfig of config.swarms) {
      if (!swarmConfig.members.includes(this.org)) continue;
      const swarm = new VerdictSwarm({
        federation: config,
        swarm: swarmConfig,
        self: this.org,
        keyring,
        signingKey,
        store: this.store,
        link,
        logger,
        metrics: this.metrics,
        ...(options.tickMs ? { tickMs: options.tickMs } : {}),
        ...(options.snapshotEvery ? { snapshotEvery: options.snapshotEvery } : {}),
        ...(options.snapshotBytes ? { snapshotBytes: options.snapshotBytes } : {}),
        ...(options.proposalHoldMs ? { proposalHoldMs: options.proposalHoldMs } : {}),
        ...(options.checkpointSeconds ? { checkpointSeconds: options.checkpointSeconds } : {}),
        ...(options.checkpointEvery ? { checkpointEvery: options.checkpointEvery } : {}),
        ...(options.relayVerdicts === false ? { relayVerdicts: false } : {}),
        onMembership: () => setImmediate(() => this.applyTransportMembers()),
        ...(byzantine ? { byzantine } : {}),
        ...(options.eraStartDelayMs ? { eraStartDelayMs: options.eraStartDelayMs } : {}),
        ...(options.recordCopyDelayMs ? { recordCopyDelayMs: options.recordCopyDelayMs } : {}),
        peerLevel: (org) => this.liveness?.levelOf(org) ?? null,
        peerLevelWaitMs: LIVENESS_LAPSE_INTERVALS * LIVENESS_INTERVAL_TICKS * (options.tickMs ?? 100),
      });
      this.swarms.set(swarmConfig.id, swarm);
    }
    // A peer may speak only for a swarm it is a member of; anything else is dropped and counted.
    const memberSwarm = (fromOrg: string, swarmId: string): VerdictSwarm | null => {
      const swarm = this.swarms.get(swarmId);
      if (!swarm || !swarm.state.peers().includes(fromOrg)) {
        this.metrics.droppedMessages.inc({ swarm: swarmId, reason: swarm ? 'not-a-member' : 'unknown-swarm' });
        return null;
      }
      return swarm;
    };
    // A swarm's refusal (not started yet, records it does not hold, another era) is an answer with its status and
    // code, not a failure of the peer server.
    const answerCall = async (fromOrg: string, swarmId: string, channel: string, body: Uint8Array): Promise<Uint8Array> => {
      const swarm = memberSwarm(fromOrg, swarmId);
      if (!swarm) throw new PeerReplyError(403, 'NOT_A_MEMBER', `${fromOrg} is not a member of swarm ${swarmId}`);
      try {
        return await swarm.handleCall(fromOrg, channel, body);
      } catch (error) {
        if (error instanceof SwarmError) throw new PeerReplyError(error.status, error.code, error.message);
        throw error;
      }
    };
    // Consensus channels carry their era ("raft.e0", "pbft.e1", ...): each swarm routes them to the engine of that era;
    // "verdicts.relay" (a follower or backup hands admitted verdicts to the leader or primary) belongs to the swarm, not to an era.
    const families = ['raft', 'pbft', 'pbft-call', ...(options.relayVerdicts === false ? [] : ['verdicts'])];
    for (const family of families) {
      this.peerServer.onMessages(`${family}.*`, (fromOrg, swarmId, messages, _peer, channel) => {
        memberSwarm(fromOrg, swarmId)?.receive(fromOrg, channel, messages);
      });
      this.peerServer.onRequest(`${family}.*`, (fromOrg, swarmId, body, _peer, channel) => answerCall(fromOrg, swarmId, channel, body));
    }
    // Swarm-level calls (era catch-up): where the swarm's history stands, and stored audit records.
    this.peerServer.onRequest('swarm.*', (fromOrg, swarmId, body, _peer, channel) => answerCall(fromOrg, swarmId, channel, body));
    // Proof of the signing key this node uses now (conclave doctor's key-consistency check): the key id and a
    // signature over the caller's nonce, so what a peer presents is checked, not just what the file claims.
    this.peerServer.onRequest(NODE_IDENTITY_CHANNEL, async (fromOrg, _swarmId, body) => {
      const key = this.signingKey!;
      return Buffer.from(JSON.stringify(proveNodeIdentity(key, this.org, fromOrg, body)));
    });
    this.peerServer.onMessages('checkpoint', (fromOrg, swarmId, messages) => {
      memberSwarm(fromOrg, swarmId)?.receiveCheckpoint(fromOrg, messages);
    });
    // Node liveness replaces per-swarm heartbeats for idle (quiesced) Raft swarms: see transport/liveness.ts.
    const livenessMs = LIVENESS_INTERVAL_TICKS * (options.tickMs ?? 100);
    const levelStore = this.store.kv(null, 'peer-levels');
    const liveness = new NodeLiveness({
      // What the peers announced before this restart: a member's node that is down now still counts as upgraded.
      remembered: await readPeerLevels(levelStore),
      onLevel: (org, level, all) => {
        logger.info({ peer: org, protocolLevel: level }, 'peer node announces a protocol level');
        // Lazy: lost only to a power loss, and then this node merely waits to hear the peer again.
        levelStore.putLazy([{ key: PEER_LEVELS_KEY, value: Buffer.from(JSON.stringify(Object.fromEntries(all))) }]).catch((error: unknown) => logger.warn({ err: error }, 'could not store the peers\' protocol levels'));
      },
      peers: () => pool.peers(),
      send: (to, swarm, channel, messages) => link.send(to, swarm, channel, messages),
      onPeerDown: (org) => {
        logger.warn({ peer: org, silentMs: LIVENESS_LAPSE_INTERVALS * livenessMs }, 'peer node not heard from: its swarms elect new leaders');
        for (const swarm of this.swarms.values()) swarm.peerDown(org);
      },
      onPeerUp: (org) => logger.info({ peer: org }, 'peer node heard again'),
      intervalMs: livenessMs,
      lapseMs: LIVENESS_LAPSE_INTERVALS * livenessMs,
      // Level 3 means "a pbft primary takes relayed verdicts": a node that serves no relay channel announces 2.
      level: options.announcedLevel ?? (options.relayVerdicts === false ? RELAY_LESS_PROTOCOL_LEVEL : PROTOCOL_LEVEL),
    });
    this.liveness = liveness;
    this.peerServer.onMessages(LIVENESS_CHANNEL, (fromOrg, _swarm, messages) => liveness.announced(fromOrg, messages));
    this.peerServer.onPeerBatch((fromOrg) => liveness.heard(fromOrg));
    // Before the swarms: starting 1,000 swarms takes a while, and this node is alive (its peers must not think otherwise).
    liveness.start();
    this.watchForStalls();
    for (const swarm of this.swarms.values()) await swarm.start();
    // The committed membership (rebuilt from storage) decides whom the transport trusts, not the file alone.
    this.applyTransportMembers();
    this.setCertExpiryMetric();
    for (const [id, swarm] of this.swarms) {
      const drift = swarm.membershipView().drift;
      if (drift.length) logger.warn({ swarm: id, drift }, 'the federation file and the committed membership differ (reported, not applied)');
    }
    try {
      writeFileSync(join(config.node.dataDir, PID_FILE), `${process.pid}\n`);
    } catch (error) {
      logger.warn({ err: error }, 'could not write the pid file (conclave admin reload needs it)');
    }

    this.api = await createApiServer({ node: this, tls: { key: tls.keyPem, cert: tls.certPem }, logger: logger.child({ part: 'api' }) });
    await this.api.listen({ host: config.node.apiListen.host, port: config.node.apiListen.port });
    const address = this.api.server.address();
    const apiPort = typeof address === 'object' && address ? address.port : config.node.apiListen.port;
    logger.info({ org: this.org, peerPort: this.peerServer.port, apiPort, swarms: [...this.swarms.keys()] }, 'node started');
    return { peerPort: this.peerServer.port, apiPort };
  }

  /**
   * The org → peer URL / CA the transport uses: members of the file that are in the committed membership (voters,
   * learners, admitted orgs) of a swarm this node runs. A removed org's certificate is refused from then on.
   */
  private transportMembers(): { org: string; peerUrl: string; caPem: string }[] {
    const wanted = new Set<string>([this.org]);
    if (this.swarms.size === 0) for (const swarm of this.config.swarms) if (swarm.members.includes(this.org)) for (const org of swarm.members) wanted.add(org);
    for (const swarm of this.swarms.values()) for (const org of swarm.state.peers()) wanted.add(org);
    return this.config.members.filter((m) => wanted.has(m.org)).map((m) => ({ org: m.org, peerUrl: m.peerUrl, caPem: m.caPem }));
  }

  private applyTransportMembers(): void {
    if (!this.pool || !this.peerServer) return;
    const members = this.transportMembers();
    this.pool.updateMembers(members);
    this.peerServer.updateMembers(members);
    this.options.logger.debug({ org: this.org, peers: members.map((m) => m.org) }, 'peer transport members updated');
  }

  /**
   * Logs when this process's event loop was held for a second or more (a synchronous disk write, a long GC, a starved
   * machine): peers then see this node go silent, so a stall in the log explains elections that follow it.
   */
  private watchForStalls(): void {
    let last = performance.now();
    this.stallWatch = setInterval(() => {
      const now = performance.now();
      const stalledMs = now - last - STALL_WATCH_MS;
      last = now;
      if (stalledMs < STALL_REPORT_MS) return;
      // With the longest synchronous batch write since the last report: a disk stall and a CPU stall look alike otherwise.
      const slowestWriteMs = this.store ? Math.round(this.store.stats.slowestWriteMs) : null;
      this.store?.resetSlowestWrite();
      this.options.logger.warn({ stalledMs: Math.round(stalledMs), slowestWriteMs }, 'event loop stalled: this node answered nothing meanwhile');
    }, STALL_WATCH_MS);
    this.stallWatch.unref();
  }

  private setCertExpiryMetric(): void {
    const nearest = nearestExpiry(this.config, this.tls?.certPem ?? null);
    if (nearest) this.metrics.certExpirySeconds.set(Math.round((nearest.validTo.getTime() - Date.now()) / 1000));
  }

  /**
   * Re-reads the federation file: applies new peer endpoints, CA certificates, public keys, this node's TLS
   * certificate and signing key; reports (log + /v1/status + the report file), never applies, differences between
   * the file's swarm members and the committed membership. A file that does not load changes nothing.
   */
  reload(): ReloadReport {
    const logger = this.options.logger;
    const report: ReloadReport = { at: new Date().toISOString(), ok: true, error: null, applied: [], drift: {} };
    try {
      const next = loadFederation(this.options.configPath);
      if (next.node.org !== this.org) throw new Error(`the file is now for org ${next.node.org}, this node runs org ${this.org}: restart instead`);
      const tls = { certPem: readFileSync(next.node.tlsCertFile, 'utf8'), keyPem: readFileSync(next.node.tlsKeyFile, 'utf8') };
      const signingKey = importPrivateJwk(JSON.parse(readFileSync(next.node.signingKeyFile, 'utf8')) as PrivateJwk);
      const ownMember = next.members.find((m) => m.org === this.org)!;
      if (!ownMember.nodeKeys.some((k) => k.x === signingKey.publicJwk.x)) throw new Error(`the node signing key ${next.node.signingKeyFile} is not among org ${this.org}'s nodeKeys`);
      // Everything is read and checked before anything changes.
      this.keyring?.replaceMembers(next.members);
      const before = new Map(this.config.members.map((m) => [m.org, m]));
      for (const member of next.members) {
        const old = before.get(member.org);
        if (!old) report.applied.push(`${member.org}: new member card`);
        else {
          if (old.peerUrl !== member.peerUrl) report.applied.push(`${member.org}: peer URL ${old.peerUrl} -> ${member.peerUrl}`);
          if (old.caPem !== member.caPem) report.applied.push(`${member.org}: CA certificates changed`);
          for (const role of ['nodeKeys', 'agentKeys', 'adminKeys'] as const) {
            if (JSON.stringify(old[role]) !== JSON.stringify(member[role])) report.applied.push(`${member.org}: ${role} changed`);
          }
        }
      }
      for (const org of before.keys()) if (!next.members.some((m) => m.org === org)) report.applied.push(`${org}: member card removed`);
      this.config = next;
      if (this.tls && (this.tls.certPem !== tls.certPem || this.tls.keyPem !== tls.keyPem)) {
        this.tls = tls;
        this.peerServer?.updateTls(tls);
        this.pool?.updateTls(tls);
        report.applied.push('this node: TLS certificate and key');
      }
      if (this.signingKey && this.signingKey.kid !== signingKey.kid) {
        Object.assign(this.signingKey, signingKey);
        report.applied.push(`this node: signing key ${signingKey.kid}`);
      }
      this.applyTransportMembers();
      for (const [id, swarm] of this.swarms) {
        swarm.setFileConfig(next);
        const drift = swarm.membershipView().drift;
        if (drift.length) report.drift[id] = drift;
      }
      for (const swarm of next.swarms) {
        if (swarm.members.includes(this.org) && !this.swarms.has(swarm.id)) {
          (report.drift[swarm.id] ??= []).push(`swarm ${swarm.id} is new in the file: this node starts it only on restart`);
        }
      }
      this.setCertExpiryMetric();
      logger.info({ applied: report.applied, drift: report.drift }, 'federation file reloaded');
      if (Object.keys(report.drift).length) logger.warn({ drift: report.drift }, 'the federation file and the committed membership differ (reported, not applied)');
    } catch (error) {
      report.ok = false;
      report.error = error instanceof Error ? error.message : String(error);
      logger.error({ err: error }, 'reload failed: the federation file was not applied');
    }
    this.lastReload = report;
    try {
      writeFileSync(join(this.config.node.dataDir, RELOAD_REPORT_FILE), JSON.stringify(report, null, 2) + '\n');
    } catch {
      // the report is also in the log and in /v1/status
    }
    return report;
  }

  reloadReport(): ReloadReport | null {
    return this.lastReload;
  }

  async stop(): Promise<void> {
    rmSync(join(this.config.node.dataDir, PID_FILE), { force: true });
    await this.api?.close().catch(() => undefined);
    this.liveness?.stop();
    if (this.stallWatch) clearInterval(this.stallWatch);
    for (const swarm of this.swarms.values()) await swarm.stop();
    await this.pool?.close().catch(() => undefined);
    await this.peerServer?.close().catch(() => undefined);
    await this.store?.close();
    this.options.logger.info({ org: this.org }, 'node stopped');
  }

  swarm(id: string): VerdictSwarm | undefined {
    return this.swarms.get(id);
  }

  swarmIds(): string[] {
    return [...this.swarms.keys()];
  }

  ready(): boolean {
    if (!this.store) return false;
    for (const swarm of this.swarms.values()) if (!swarm.serving()) return false;
    return true;
  }

  peerHealth(): unknown[] {
    const live = new Map((this.liveness?.status() ?? []).map((peer) => [peer.org, peer]));
    const health = (this.pool?.health() ?? []).map((peer) => {
      const liveness = live.get(peer.org);
      return { ...peer, nodeUp: liveness?.up ?? null, silentMs: liveness?.silentMs ?? null, protocolLevel: this.liveness?.levelOf(peer.org) ?? null };
    });
    for (const peer of health as { org: string; state: string }[]) this.metrics.peerUp.set({ peer: peer.org }, peer.state === 'closed' ? 1 : 0);
    return health;
  }

  async metricsText(): Promise<string> {
    for (const swarm of this.swarms.values()) {
      const dropped = (swarm.status().detail?.dropped ?? {}) as Record<string, number>;
      for (const [reason, count] of Object.entries(dropped)) this.metrics.pbftDropped.set({ swarm: swarm.id, reason }, count);
    }
    this.peerHealth();
    return this.metrics.registry.metrics();
  }
}
