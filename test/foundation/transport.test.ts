// Mutual TLS over HTTP/2 between nodes: who is accepted, who is refused and why, batches and calls end to end.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueNodeCert, createOrgCa } from '../../src/pki/certs.ts';
import { PeerClientPool, PeerCallError } from '../../src/transport/client.ts';
import { PeerReplyError, PeerServer } from '../../src/transport/server.ts';
import { makeOrg, rawRequest, tempDir, type TestOrg } from './helpers.ts';

const DAY = 24 * 3600 * 1000;

describe('peer transport over mutual TLS HTTP/2', () => {
  const tmp = tempDir();
  let acme: TestOrg;
  let globex: TestOrg;
  let server: PeerServer;
  const received: { from: string; swarm: string; channel: string; messages: Uint8Array[] }[] = [];

  beforeAll(async () => {
    acme = await makeOrg(tmp.dir, 'acme');
    globex = await makeOrg(tmp.dir, 'globex');
    server = await PeerServer.start({
      tls: { certPem: acme.certPem, keyPem: acme.keyPem },
      members: [acme, globex].map((o) => ({ org: o.org, caPem: o.caPem })),
    });
    for (const channel of ['raft', 'pbft']) {
      server.onMessages(channel, (from, swarm, messages) => received.push({ from, swarm, channel, messages: messages.map((m) => m.slice()) }));
    }
    server.onRequest('echo', async (from, swarm, body) => new Uint8Array([...Buffer.from(`${from}/${swarm}:`), ...body]));
    server.onRequest('refuse', () => {
      throw new PeerReplyError(409, 'NOT_LEADER', 'ask globex instead');
    });
  });

  afterAll(async () => {
    await server.close();
    tmp.cleanup();
  });

  it("accepts a member's certificate over HTTP/2 and whoami answers the caller's org and node", async () => {
    const answer = await rawRequest({ url: server.url, ca: acme.caPem, cert: globex.certPem, key: globex.keyPem, path: '/peer/v1/whoami' });
    expect(answer.alpn).toBe('h2');
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ org: 'globex', node: 'node1' });
  });

  it('the client pool reaches a member over HTTP/2 and is identified as its own org', async () => {
    const pool = new PeerClientPool({ self: 'globex', tls: { certPem: globex.certPem, keyPem: globex.keyPem }, members: [{ org: 'acme', peerUrl: server.url, caPem: acme.caPem }] });
    try {
      expect(await pool.whoami('acme')).toEqual({ org: 'globex', node: 'node1' });
      expect(pool.health()).toMatchObject([{ org: 'acme', state: 'closed', consecutiveFailures: 0 }]);
    } finally {
      await pool.close();
    }
  });

  /**
   * Runs a request that TLS must refuse: no HTTP answer comes back. Returns the handshake failures the server
   * recorded meanwhile (Node reports a missing certificate; a bad one is dropped right after the handshake).
   */
  async function expectTlsRefusal(request: Promise<unknown>): Promise<string[]> {
    const before = server.stats().tlsFailureReasons;
    const outcome = await request.then(
      (answer) => ({ answer }),
      (error: unknown) => ({ error }),
    );
    expect(outcome, 'TLS should have refused the connection before any HTTP answer').not.toHaveProperty('answer');
    const after = server.stats().tlsFailureReasons;
    return Object.keys(after).filter((reason) => after[reason]! > (before[reason] ?? 0));
  }

  it('refuses a connection that presents no client certificate', async () => {
    const reasons = await expectTlsRefusal(rawRequest({ url: server.url, ca: acme.caPem, path: '/peer/v1/whoami' }));
    expect(reasons).toEqual(['ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE']);
  });

  it('refuses a certificate from a CA that is not a member', async () => {
    const rogue = await makeOrg(tmp.dir, 'rogue');
    await expectTlsRefusal(rawRequest({ url: server.url, ca: acme.caPem, cert: rogue.certPem, key: rogue.keyPem, path: '/peer/v1/whoami' }));
  });

  it("refuses org B's CA minting a certificate that claims org A (403 PEER_SAN_MISMATCH)", async () => {
    const forged = await issueNodeCert({ ca: { certPem: globex.caPem, keyPem: globex.caKeyPem }, org: 'globex', sanOrg: 'acme', node: 'node1' });
    const answer = await rawRequest({ url: server.url, ca: acme.caPem, cert: forged.certPem, key: forged.keyPem, path: '/peer/v1/whoami' });
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'PEER_SAN_MISMATCH' });
    expect(JSON.parse(answer.body).message).toMatch(/issued by org globex's CA but its SAN claims org acme/);
    expect(server.stats().refused.PEER_SAN_MISMATCH).toBeGreaterThanOrEqual(1);
  });

  it('refuses an expired member certificate', async () => {
    const expired = await issueNodeCert({
      ca: { certPem: globex.caPem, keyPem: globex.caKeyPem },
      org: 'globex',
      node: 'node1',
      notBefore: new Date(Date.now() - 30 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    await expectTlsRefusal(rawRequest({ url: server.url, ca: acme.caPem, cert: expired.certPem, key: expired.keyPem, path: '/peer/v1/whoami' }));
  });

  it('a certificate that expires during a long-lived connection is refused on its next request (403 PEER_CERT_EXPIRED)', async () => {
    let clock = new Date();
    const timed = await PeerServer.start({
      tls: { certPem: acme.certPem, keyPem: acme.keyPem },
      members: [acme, globex].map((o) => ({ org: o.org, caPem: o.caPem })),
      now: () => clock,
    });
    const pool = new PeerClientPool({ self: 'globex', tls: { certPem: globex.certPem, keyPem: globex.keyPem }, members: [{ org: 'acme', peerUrl: timed.url, caPem: acme.caPem }] });
    try {
      expect(await pool.whoami('acme')).toEqual({ org: 'globex', node: 'node1' });
      clock = new Date(Date.now() + 400 * DAY);
      await expect(pool.whoami('acme')).rejects.toMatchObject({ code: 'PEER_CERT_EXPIRED', statusCode: 403 });
    } finally {
      await pool.close();
      await timed.close();
    }
  });

  it('an org removed from the members is refused on its open connection (403 PEER_UNKNOWN_CA)', async () => {
    const local = await PeerServer.start({
      tls: { certPem: acme.certPem, keyPem: acme.keyPem },
      members: [acme, globex].map((o) => ({ org: o.org, caPem: o.caPem })),
    });
    const pool = new PeerClientPool({ self: 'globex', tls: { certPem: globex.certPem, keyPem: globex.keyPem }, members: [{ org: 'acme', peerUrl: local.url, caPem: acme.caPem }] });
    try {
      expect(await pool.whoami('acme')).toEqual({ org: 'globex', node: 'node1' });
      local.updateMembers([{ org: 'acme', caPem: acme.caPem }]);
      await expect(pool.whoami('acme')).rejects.toMatchObject({ code: 'PEER_UNKNOWN_CA', statusCode: 403 });
    } finally {
      await pool.close();
      await local.close();
    }
  });

  it("the client refuses a server whose certificate does not chain to that member's CA", async () => {
    // An impostor at acme's address, with a valid certificate from globex's CA.
    const impostor = await PeerServer.start({
      tls: { certPem: globex.certPem, keyPem: globex.keyPem },
      members: [acme, globex].map((o) => ({ org: o.org, caPem: o.caPem })),
    });
    const pool = new PeerClientPool({ self: 'globex', tls: { certPem: globex.certPem, keyPem: globex.keyPem }, members: [{ org: 'acme', peerUrl: impostor.url, caPem: acme.caPem }] });
    try {
      const error = await pool.whoami('acme').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PeerCallError);
      expect((error as PeerCallError).code).toBe('PEER_UNREACHABLE');
      expect((error as Error).message).toMatch(/certificate|self.signed|issuer/i);
    } finally {
      await pool.close();
      await impostor.close();
    }
  });

  it("the client refuses a server whose certificate is from the member's CA but names another org", async () => {
    const other = await createOrgCa({ org: 'initech' });
    const misnamed = await issueNodeCert({ ca: other, org: 'initech', sanOrg: 'umbrella', node: 'node1' });
    const impostor = await PeerServer.start({ tls: misnamed, members: [{ org: 'globex', caPem: globex.caPem }] });
    const pool = new PeerClientPool({ self: 'globex', tls: { certPem: globex.certPem, keyPem: globex.keyPem }, members: [{ org: 'initech', peerUrl: impostor.url, caPem: other.certPem }] });
    try {
      const error = await pool.whoami('initech').catch((e: unknown) => e);
      expect((error as Error).message).toMatch(/PEER_SAN_MISMATCH: .* is not a node of org initech/);
    } finally {
      await pool.close();
      await impostor.close();
    }
  });

  it('a batch of peer messages survives the round trip byte-exact, including empty and large messages', async () => {
    received.length = 0;
    const pool = new PeerClientPool({ self: 'globex', tls: { certPem: globex.certPem, keyPem: globex.keyPem }, members: [{ org: 'acme', peerUrl: server.url, caPem: acme.caPem }] });
    const large = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 7919) & 0xff);
    const sent: { swarm: string; channel: string; messages: Uint8Array[] }[] = [
      { swarm: 'review', channel: 'raft', messages: [new Uint8Array(0), new Uint8Array([0, 255, 1]), large] },
      { swarm: 'deploy', channel: 'pbft', messages: [new Uint8Array([42]), new Uint8Array(0)] },
      { swarm: 'review', channel: 'raft', messages: Array.from({ length: 200 }, (_, i) => new Uint8Array(i).fill(i)) },
    ];
    try {
      for (const group of sent) pool.send('acme', group.swarm, group.channel, group.messages);
      await pool.flush();
      const flat = (groups: { swarm: string; channel: string; messages: Uint8Array[] }[]) => groups.flatMap((g) => g.messages.map((m) => `${g.swarm}/${g.channel}/${Buffer.from(m).toString('base64')}`));
      expect(received.every((r) => r.from === 'globex')).toBe(true);
      expect(flat(received)).toEqual(flat(sent));
      expect(pool.health()[0]).toMatchObject({ sentMessages: 205, droppedMessages: 0 });
      expect(pool.health()[0]!.sentBatches).toBeGreaterThanOrEqual(1);
    } finally {
      await pool.close();
    }
  });

  it('every batch is reported to the peer-batch listener with its sender, even one with no routed channel', async () => {
    const senders: string[] = [];
    server.onPeerBatch((from) => senders.push(from));
    const pool = new PeerClientPool({ self: 'globex', tls: { certPem: globex.certPem, keyPem: globex.keyPem }, members: [{ org: 'acme', peerUrl: server.url, caPem: acme.caPem }] });
    try {
      pool.send('acme', 'review', 'nobody-listens', [new Uint8Array([1])]);
      await pool.flush();
      expect(senders).toEqual(['globex']);
    } finally {
      await pool.close();
    }
  });

  it('a call returns the peer answer, and the peer handler errors arrive with their code', async () => {
    const pool = new PeerClientPool({ self: 'globex', tls: { certPem: globex.certPem, keyPem: globex.keyPem }, members: [{ org: 'acme', peerUrl: server.url, caPem: acme.caPem }] });
    try {
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => pool.call('acme', 'review', 'echo', new Uint8Array([i]))));
      answers.forEach((answer, i) => expect([...answer]).toEqual([...Buffer.from('globex/review:'), i]));
      await expect(pool.call('acme', 'review', 'nothing-here', new Uint8Array(1))).rejects.toMatchObject({ code: 'CALL_NO_HANDLER', statusCode: 404 });
      await expect(pool.call('acme', 'review', 'refuse', new Uint8Array(1))).rejects.toMatchObject({ code: 'NOT_LEADER', statusCode: 409 });
      expect(pool.health()[0]!.state).toBe('closed'); // an answer, even a refusal, proves the peer is alive
    } finally {
      await pool.close();
    }
  });

  it('answers a malformed batch with 400 BATCH_MALFORMED', async () => {
    const answer = await rawRequest({
      url: server.url,
      ca: acme.caPem,
      cert: globex.certPem,
      key: globex.keyPem,
      path: '/peer/v1/messages',
      method: 'POST',
      headers: { 'content-type': 'application/vnd.conclave.batch.v1' },
      body: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]),
    });
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'BATCH_MALFORMED' });
  });
});
