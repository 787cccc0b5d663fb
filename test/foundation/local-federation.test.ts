// writeLocalFederation end to end: every org's generated file loads, its node starts a peer server with the
// credentials it names, and every node reaches every other one as its own org.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadFederation } from '../../src/config/load.ts';
import { ephemeralPortRange, freePorts, writeLocalFederation } from '../../src/config/local-federation.ts';
import { loadNodeCredentials } from '../../src/pki/credentials.ts';
import { PeerClientPool } from '../../src/transport/client.ts';
import { PeerServer } from '../../src/transport/server.ts';
import { tempDir } from './helpers.ts';

describe('writeLocalFederation', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it("picks ports outside the kernel's ephemeral range (where any connect() could take them), all different", async () => {
    const [ephemeralLow] = ephemeralPortRange();
    const ports = await freePorts(12);
    expect(new Set(ports).size).toBe(12);
    for (const port of ports) {
      expect(port).toBeGreaterThanOrEqual(10_000);
      expect(port).toBeLessThan(ephemeralLow);
    }
  });

  it('writes a federation whose nodes all authenticate each other over mutual TLS', async () => {
    const fed = await writeLocalFederation({
      dir: join(tmp.dir, 'fed'),
      orgs: ['acme', 'globex', 'initech'],
      swarm: { id: 'review', mode: 'raft', policy: { values: ['approve', 'reject'], quorum: 'majority', rule: 'majority' } },
    });
    const ports = fed.orgs.flatMap((o) => [o.peerPort, o.apiPort]);
    expect(new Set(ports).size).toBe(6);
    const servers: PeerServer[] = [];
    const pools: PeerClientPool[] = [];
    try {
      for (const local of fed.orgs) {
        const config = loadFederation(local.configPath);
        const creds = loadNodeCredentials(config);
        expect(creds).toMatchObject({ org: local.org, node: 'node1' });
        servers.push(await PeerServer.start({ tls: creds, members: config.members, listen: config.node.peerListen }));
        pools.push(new PeerClientPool({ self: local.org, tls: creds, members: config.members }));
      }
      for (const [i, pool] of pools.entries()) {
        for (const other of fed.orgs.filter((o) => o.org !== fed.orgs[i]!.org)) {
          expect(await pool.whoami(other.org)).toEqual({ org: fed.orgs[i]!.org, node: 'node1' });
        }
      }
    } finally {
      await Promise.all(pools.map((p) => p.close()));
      await Promise.all(servers.map((s) => s.close()));
    }
  });

  it('uses fixed ports when given a base port', async () => {
    const fed = await writeLocalFederation({ dir: join(tmp.dir, 'fixed'), orgs: ['acme', 'globex'], basePort: 17100 });
    expect(fed.orgs.map((o) => [o.peerPort, o.apiPort])).toEqual([
      [17100, 17101],
      [17102, 17103],
    ]);
    expect(loadFederation(fed.configPaths.globex!).members.map((m) => m.peerUrl)).toEqual(['https://127.0.0.1:17100', 'https://127.0.0.1:17102']);
  });
});
