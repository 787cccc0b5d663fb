// The composition root of one Conclave node: loads the federation file, opens storage, starts the peer server,
// the peer client pool, every swarm this org belongs to, and the public API; stops them in reverse order.
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { loadFederation } from '../config/load.ts';
import type { FederationConfig } from '../config/types.ts';
import { importPrivateJwk, type PrivateJwk, type SigningKey } from '../crypto/ed25519.ts';
import { NodeStore } from '../storage/node-store.ts';
import { PeerClientPool } from '../transport/client.ts';
import { PeerServer } from '../transport/server.ts';
import { Keyring } from '../verdict/keyring.ts';
import { createApiServer } from '../api/server.ts';
import { NodeMetrics } from '../swarm/metrics.ts';
import type { SwarmLink } from '../swarm/engine.ts';
import { PeerReplyError } from '../transport/server.ts';
import { VerdictSwarm } from '../swarm/verdict-swarm.ts';
import type { NodeService } from '../swarm/service.ts';

export interface NodeOptions {
  configPath: string;
  logger: Logger;
  /** Milliseconds per Raft tick (election timeout is 10-20 ticks). */
  tickMs?: number;
}

export class ConclaveNode implements NodeService {
  readonly org: string;
  readonly federation: string;
  readonly metricsContentType: string;
  private readonly swarms = new Map<string, VerdictSwarm>();
  private store: NodeStore | null = null;
  private pool: PeerClientPool | null = null;
  private peerServer: PeerServer | null = null;
  private api: FastifyInstance | null = null;
  private readonly metrics: NodeMetrics;
  readonly config: FederationConfig;

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

    this.store = await NodeStore.open(config.node.dataDir);
    const members = config.members.map((m) => ({ org: m.org, peerUrl: m.peerUrl, caPem: m.caPem }));
    this.pool = new PeerClientPool({ self: this.org, tls, members, logger: logger.child({ part: 'peer-client' }) });
    this.peerServer = await PeerServer.start({ tls, members, listen: config.node.peerListen, logger: logger.child({ part: 'peer-server' }) });

    const pool = this.pool;
    const link: SwarmLink = {
      send: (to, swarm, channel, messages) => pool.send(to, swarm, channel, messages),
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
        ...(byzantine ? { byzantine } : {}),
      });
      this.swarms.set(swarmConfig.id, swarm);
    }
    // A peer may speak only for a swarm it is a member of; anything else is dropped and counted.
    const memberSwarm = (fromOrg: string, swarmId: string): VerdictSwarm | null => {
      const swarm = this.swarms.get(swarmId);
      if (!swarm || !swarm.state.decisions().swarm.members.includes(fromOrg)) {
        this.metrics.droppedMessages.inc({ swarm: swarmId, reason: swarm ? 'not-a-member' : 'unknown-swarm' });
        return null;
      }
      return swarm;
    };
    // Consensus channels carry their era ("raft.e0", "pbft.e1", ...): each swarm routes them to the engine of that era.
    for (const family of ['raft', 'raft-propose', 'pbft', 'pbft-call']) {
      this.peerServer.onMessages(`${family}.*`, (fromOrg, swarmId, messages, _peer, channel) => {
        memberSwarm(fromOrg, swarmId)?.receive(fromOrg, channel, messages);
      });
      this.peerServer.onRequest(`${family}.*`, async (fromOrg, swarmId, body, _peer, channel) => {
        const swarm = memberSwarm(fromOrg, swarmId);
        if (!swarm) throw new PeerReplyError(403, 'NOT_A_MEMBER', `${fromOrg} is not a member of swarm ${swarmId}`);
        return swarm.handleCall(fromOrg, channel, body);
      });
    }
    this.peerServer.onMessages('checkpoint', (fromOrg, swarmId, messages) => {
      memberSwarm(fromOrg, swarmId)?.receiveCheckpoint(fromOrg, messages);
    });
    for (const swarm of this.swarms.values()) await swarm.start();

    this.api = await createApiServer({ node: this, tls: { key: tls.keyPem, cert: tls.certPem }, logger: logger.child({ part: 'api' }) });
    await this.api.listen({ host: config.node.apiListen.host, port: config.node.apiListen.port });
    const address = this.api.server.address();
    const apiPort = typeof address === 'object' && address ? address.port : config.node.apiListen.port;
    logger.info({ org: this.org, peerPort: this.peerServer.port, apiPort, swarms: [...this.swarms.keys()] }, 'node started');
    return { peerPort: this.peerServer.port, apiPort };
  }

  async stop(): Promise<void> {
    await this.api?.close().catch(() => undefined);
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
    const health = this.pool?.health() ?? [];
    for (const peer of health as { org: string; state: string }[]) this.metrics.peerUp.set({ peer: peer.org }, peer.state === 'closed' ? 1 : 0);
    return health;
  }

  async metricsText(): Promise<string> {
    this.peerHealth();
    return this.metrics.registry.metrics();
  }
}
