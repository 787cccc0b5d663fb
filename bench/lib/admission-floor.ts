// Owns the admission floor of the end-to-end benchmark (`--only floor`): ONE process serving the real public API
// (src/api/server.ts: fastify, TLS, HTTP/2, the route's JSON schemas) whose swarm admits each posted verdict exactly
// as a node does on arrival — parse, Ed25519 signature against the org's agent key, swarm, org and value, issue
// time — and then answers `committed` at once: no consensus, no peer, no storage, no decision. What it measures is the
// work every verdict costs before any replication, with the same load generator as the real runs; its CPU per
// verdict bounds from below what any node design built on this API can reach on this machine.
// Run: node --import tsx bench/lib/admission-floor.ts <empty dir>   → prints {"url", "caFile", "agentJwkFile", "org"}
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createApiServer } from '../../src/api/server.ts';
import { DEFAULT_POLICY } from '../../src/devcluster/cluster.ts';
import type { SwarmConfig } from '../../src/config/types.ts';
import { initOrg } from '../../src/pki/init.ts';
import type { NodeService, SubmitResult, SwarmService } from '../../src/swarm/service.ts';
import { Keyring } from '../../src/verdict/keyring.ts';
import { verifyVerdict } from '../../src/verdict/verify.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: admission-floor.ts <empty dir>');
const ORG = 'acme';
const SWARM = 'reviews';
const org = await initOrg({ org: ORG, outDir: join(dir, ORG) });
const keyring = Keyring.fromMembers([{ org: ORG, agentKeys: org.card.agentKeys, nodeKeys: org.card.nodeKeys, adminKeys: org.card.adminKeys }]);
const swarmConfig: SwarmConfig = { id: SWARM, members: [ORG], mode: 'raft', policy: { values: [...DEFAULT_POLICY.values], quorum: 'majority', rule: { kind: 'majority' }, fallback: null, maxClockSkewSeconds: 300 }, adminPolicy: 'all' };
let index = 0;

const unsupported = (): never => {
  throw new Error('not part of the admission floor');
};

const swarm: SwarmService = {
  id: SWARM,
  async submitVerdict(jws: string): Promise<SubmitResult> {
    // A refusal throws VerdictError, which the API answers with its code, as a node does.
    const verdict = verifyVerdict(jws, { keyring, swarms: [swarmConfig], expectedSwarm: SWARM, now: Math.floor(Date.now() / 1000) });
    return { status: 'committed', swarm: SWARM, jwsHash: verdict.jwsHash, index: ++index, entryHash: null, subject: null };
  },
  verdict: unsupported,
  subject: () => null,
  readBarrier: unsupported,
  log: unsupported,
  status: unsupported,
  checkpoints: unsupported,
  inclusionProof: unsupported,
  consistencyProof: unsupported,
  submitAdmin: unsupported,
  adminChange: () => null,
  exportLines: unsupported,
};

const node: NodeService = {
  org: ORG,
  federation: 'bench-floor',
  swarm: (id) => (id === SWARM ? swarm : undefined),
  swarmIds: () => [SWARM],
  ready: () => true,
  peerHealth: () => [],
  metricsText: async () => '',
  metricsContentType: 'text/plain',
};

const app = await createApiServer({
  node,
  tls: { key: readFileSync(org.files.nodeKey, 'utf8'), cert: readFileSync(org.files.nodeCert, 'utf8') },
  logger: false,
});
const address = await app.listen({ host: '127.0.0.1', port: 0 });
console.log(JSON.stringify({ url: address.replace('0.0.0.0', '127.0.0.1'), caFile: org.files.caCert, agentJwkFile: org.files.agentKey, org: ORG, swarm: SWARM }));
const stop = () => void app.close().finally(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
