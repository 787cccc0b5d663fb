// Mutual TLS over HTTP/2 between nodes: who is accepted, who is refused and why, batches and calls end to end, on a
// stream and, to a peer from before streams, one POST per batch.
import { createSecureServer } from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueNodeCert, createOrgCa } from '../../src/pki/certs.ts';
import { PeerClientPool, PeerCallError } from '../../src/transport/client.ts';
import { PeerReplyError, PeerServer } from '../../src/transport/server.ts';
import { decodeBatch } from '../../src/transport/wire.ts';
import { waitFor } from '../support/wait.ts';
import { makeOrg, rawRequest, rawStream, tempDir, type TestOrg } from './helpers.ts';

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
    server.onRequest('explode', () => {
      throw new Error('the handler broke');
    });
    server.onMessages('explode', () => {
      throw new Error('the messages handler broke');
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
      await waitFor('all 205 messages to arrive', () => received.reduce((n, r) => n + r.messages.length, 0) >= 205, 10_000);
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
      await waitFor('the batch to be reported', () => senders.length > 0, 10_000);
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

  it.each([
    ['a batch sent as another content type', '/peer/v1/messages', { 'content-type': 'text/plain' }, 415, 'BATCH_CONTENT_TYPE'],
    ['a stream opened as another content type', '/peer/v1/stream', { 'content-type': 'application/json' }, 415, 'STREAM_CONTENT_TYPE'],
    ['a call without the swarm header', '/peer/v1/call/echo', { 'content-type': 'application/octet-stream' }, 400, 'CALL_BAD_SWARM'],
    ['a call naming no valid swarm id', '/peer/v1/call/echo', { 'content-type': 'application/octet-stream', 'conclave-swarm': '../../etc' }, 400, 'CALL_BAD_SWARM'],
    ['a call body of another content type', '/peer/v1/call/echo', { 'content-type': 'application/json', 'conclave-swarm': 'review' }, 415, 'CALL_CONTENT_TYPE'],
    ['a batch with no content type', '/peer/v1/messages', {}, 415, 'BATCH_CONTENT_TYPE'],
  ])('answers %s with a stable code, delivers nothing and stays up', async (_what, path, headers, status, code) => {
    const before = { received: received.length, stats: server.stats() };
    const answer = await rawRequest({ url: server.url, ca: acme.caPem, cert: globex.certPem, key: globex.keyPem, path, method: 'POST', headers, body: new Uint8Array([1, 2, 3]) });
    expect(answer.status).toBe(status);
    expect(JSON.parse(answer.body)).toMatchObject({ code, message: expect.any(String) });
    expect(received.length).toBe(before.received);
    expect(server.stats().callsServed).toBe(before.stats.callsServed);
    const whoami = await rawRequest({ url: server.url, ca: acme.caPem, cert: globex.certPem, key: globex.keyPem, path: '/peer/v1/whoami' });
    expect(whoami.status).toBe(200);
  });

  it('a batch or call body over its limit: 413 BATCH_TOO_LARGE / CALL_TOO_LARGE, and the server stays up', async () => {
    const small = await PeerServer.start({ tls: { certPem: acme.certPem, keyPem: acme.keyPem }, members: [acme, globex].map((o) => ({ org: o.org, caPem: o.caPem })), maxBatchBytes: 1024, maxCallBytes: 1024 });
    small.onRequest('echo', async (_from, _swarm, body) => body);
    try {
      const as = { url: small.url, ca: acme.caPem, cert: globex.certPem, key: globex.keyPem, method: 'POST', body: new Uint8Array(4096) };
      const batch = await rawRequest({ ...as, path: '/peer/v1/messages', headers: { 'content-type': 'application/vnd.conclave.batch.v1' } });
      expect([batch.status, JSON.parse(batch.body).code]).toEqual([413, 'BATCH_TOO_LARGE']);
      const call = await rawRequest({ ...as, path: '/peer/v1/call/echo', headers: { 'content-type': 'application/octet-stream', 'conclave-swarm': 'review' } });
      expect([call.status, JSON.parse(call.body).code]).toEqual([413, 'CALL_TOO_LARGE']);
      const fits = await rawRequest({ ...as, body: new Uint8Array(16), path: '/peer/v1/call/echo', headers: { 'content-type': 'application/octet-stream', 'conclave-swarm': 'review' } });
      expect(fits.status).toBe(200);
    } finally {
      await small.close();
    }
  });

  it('a handler that throws: the call answers 500 CALL_HANDLER_FAILED, a batch still reaches its other channels; both are counted', async () => {
    const pool = new PeerClientPool({ self: 'globex', tls: { certPem: globex.certPem, keyPem: globex.keyPem }, members: [{ org: 'acme', peerUrl: server.url, caPem: acme.caPem }] });
    try {
      const before = server.stats().handlerErrors;
      await expect(pool.call('acme', 'review', 'explode', new Uint8Array(1))).rejects.toMatchObject({ code: 'CALL_HANDLER_FAILED', statusCode: 500 });
      expect(server.stats().handlerErrors).toBe(before + 1);
      const start = received.length;
      pool.send('acme', 'review', 'explode', [new Uint8Array([7])]);
      pool.send('acme', 'review', 'raft', [new Uint8Array([8])]);
      await waitFor('the raft message beside the broken handler', () => received.slice(start).some((r) => r.channel === 'raft' && r.messages[0]?.[0] === 8), 10_000);
      expect(server.stats().handlerErrors).toBe(before + 2);
      expect(await pool.whoami('acme')).toEqual({ org: 'globex', node: 'node1' });
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

describe('the peer stream: one long-lived HTTP/2 stream per peer link, length-prefixed frames', () => {
  const tmp = tempDir();
  let acme: TestOrg;
  let globex: TestOrg;
  let initech: TestOrg;
  let server: PeerServer;
  const received: { from: string; swarm: string; channel: string; message: string }[] = [];
  const membersOf = (...orgs: TestOrg[]) => orgs.map((o) => ({ org: o.org, caPem: o.caPem }));
  const poolFor = (self: TestOrg, url: string, extra: Partial<ConstructorParameters<typeof PeerClientPool>[0]> = {}) =>
    new PeerClientPool({ self: self.org, tls: { certPem: self.certPem, keyPem: self.keyPem }, members: [{ org: 'acme', peerUrl: url, caPem: acme.caPem }], ...extra });
  const text = (value: string) => new Uint8Array(Buffer.from(value));
  const frame = (bytes: Uint8Array) => {
    const out = new Uint8Array(4 + bytes.length);
    new DataView(out.buffer).setUint32(0, bytes.length);
    out.set(bytes, 4);
    return out;
  };

  beforeAll(async () => {
    acme = await makeOrg(tmp.dir, 'acme');
    globex = await makeOrg(tmp.dir, 'globex');
    initech = await makeOrg(tmp.dir, 'initech');
    server = await PeerServer.start({ tls: { certPem: acme.certPem, keyPem: acme.keyPem }, members: membersOf(acme, globex, initech) });
    for (const channel of ['raft', 'pbft']) {
      server.onMessages(channel, (from, swarm, messages) => {
        for (const m of messages) received.push({ from, swarm, channel, message: Buffer.from(m).toString('utf8') });
      });
    }
  });

  afterAll(async () => {
    await server.close();
    tmp.cleanup();
  });

  it('many messages across swarms and channels arrive in order, over one stream request rather than one request per batch', async () => {
    received.length = 0;
    const before = server.stats();
    const pool = poolFor(globex, server.url);
    const routes = [
      ['review', 'raft'],
      ['deploy', 'raft'],
      ['review', 'pbft'],
    ] as const;
    const sent: string[] = [];
    try {
      for (let turn = 0; turn < 60; turn++) {
        for (let i = 0; i < 50; i++) {
          const [swarm, channel] = routes[(turn + i) % routes.length]!;
          const message = `${swarm}/${channel}/${turn}-${i}`;
          pool.send('acme', swarm, channel, [text(message)]);
          sent.push(message);
        }
        await new Promise((done) => setImmediate(done)); // the next turn of the event loop: the next frame
      }
      await waitFor(`all ${sent.length} messages to arrive`, () => received.length >= sent.length, 20_000);
      expect(received.map((r) => `${r.swarm}/${r.channel}/${r.message.split('/')[2]}`)).toEqual(sent);
      expect(received.every((r) => r.from === 'globex')).toBe(true);
      const health = pool.health()[0]!;
      expect(health).toMatchObject({ stream: 'open', sentMessages: sent.length, droppedMessages: 0, queuedMessages: 0 });
      expect(health.sentBatches).toBeGreaterThan(10); // many frames ...
      const after = server.stats();
      expect(after.streamsOpened - before.streamsOpened).toBe(1); // ... on one stream
      expect(after.batchRequests - before.batchRequests).toBe(0);
      expect(after.batchesReceived - before.batchesReceived).toBe(health.sentBatches);
      expect(after.streamsOpen - before.streamsOpen).toBe(1);
    } finally {
      await pool.close();
    }
    await waitFor('the stream to be closed on the server', () => server.stats().streamsOpen === before.streamsOpen, 10_000);
  });

  it('flush resolves once every queued message was accepted by the stream, and close delivers what was queued', async () => {
    received.length = 0;
    const pool = poolFor(globex, server.url);
    try {
      await pool.whoami('acme'); // connected, so the messages below wait for the stream, not the handshake
      const messages = Array.from({ length: 3000 }, (_, i) => text(`m${i}`.padEnd(300, '.')));
      pool.send('acme', 'review', 'raft', messages);
      expect(pool.health()[0]).toMatchObject({ queuedMessages: 3000, sentMessages: 0 });
      await pool.flush();
      expect(pool.health()[0]).toMatchObject({ queuedMessages: 0, sentMessages: 3000, droppedMessages: 0 });
      pool.send('acme', 'review', 'raft', [text('last')]);
    } finally {
      await pool.close(); // gives the queued message its grace, then ends the stream cleanly
    }
    await waitFor('3001 messages to arrive', () => received.length >= 3001, 10_000);
    expect(received.at(-1)!.message).toBe('last');
  });

  it('a restarted peer: the client reconnects with backoff and later messages arrive on a new stream', async () => {
    const first = await PeerServer.start({ tls: { certPem: acme.certPem, keyPem: acme.keyPem }, members: membersOf(acme, globex) });
    const port = first.port;
    const got: string[] = [];
    first.onMessages('raft', (_from, _swarm, messages) => messages.forEach((m) => got.push(Buffer.from(m).toString('utf8'))));
    const pool = poolFor(globex, first.url, { backoff: { baseMs: 20, maxMs: 200 }, breakerThreshold: 1000 });
    let second: PeerServer | null = null;
    try {
      pool.send('acme', 'review', 'raft', [text('before')]);
      await waitFor('the first message', () => got.includes('before'), 10_000);
      await first.close();
      await waitFor('the client to see its stream end', () => pool.health()[0]!.stream !== 'open', 10_000);
      second = await PeerServer.start({ tls: { certPem: acme.certPem, keyPem: acme.keyPem }, members: membersOf(acme, globex), listen: { host: '127.0.0.1', port } });
      const again: string[] = [];
      second.onMessages('raft', (_from, _swarm, messages) => messages.forEach((m) => again.push(Buffer.from(m).toString('utf8'))));
      let n = 0;
      // Messages sent while nobody listens may be dropped (the protocols retransmit): keep sending until one arrives.
      await waitFor('a message on the restarted peer', () => {
        pool.send('acme', 'review', 'raft', [text(`after-${n++}`)]);
        return again.length > 0;
      }, 20_000);
      expect(again[0]).toMatch(/^after-\d+$/);
      expect(second.stats().streamsOpened).toBe(1);
      expect(pool.health()[0]).toMatchObject({ state: 'closed', stream: 'open' });
    } finally {
      await pool.close();
      await second?.close();
    }
  });

  it('a stream from a forged certificate is refused (403 PEER_SAN_MISMATCH), counted, and nothing is delivered', async () => {
    received.length = 0;
    const forged = await issueNodeCert({ ca: { certPem: globex.caPem, keyPem: globex.caKeyPem }, org: 'globex', sanOrg: 'initech', node: 'node1' });
    const before = server.stats();
    const pool = new PeerClientPool({
      self: 'globex',
      tls: forged,
      members: [{ org: 'acme', peerUrl: server.url, caPem: acme.caPem }],
      breakerThreshold: 1,
      backoff: { baseMs: 2000, maxMs: 2000 }, // open for 1.5 s: longer than waitFor's polling interval
      random: () => 0.5,
    });
    try {
      pool.send('acme', 'review', 'raft', [text('forged')]);
      await waitFor('the breaker to open', () => pool.health()[0]!.state === 'open', 20_000);
      const health = pool.health()[0]!;
      expect(health.lastError).toMatch(/HTTP 403: .*PEER_SAN_MISMATCH/);
      expect(health).toMatchObject({ sentMessages: 0, queuedMessages: 0 });
      expect(health.droppedMessages).toBe(1);
      expect(server.stats().refused.PEER_SAN_MISMATCH! - (before.refused.PEER_SAN_MISMATCH ?? 0)).toBe(1);
      expect(server.stats().streamsOpened).toBe(before.streamsOpened);
      expect(received).toEqual([]);
    } finally {
      await pool.close();
    }
  });

  it('a stream from a CA that is not a member never gets past TLS', async () => {
    const rogue = await makeOrg(tmp.dir, 'rogue');
    const before = server.stats();
    const pool = poolFor(rogue, server.url, { breakerThreshold: 1 });
    try {
      pool.send('acme', 'review', 'raft', [text('rogue')]);
      await waitFor('the rogue stream to fail', () => pool.health()[0]!.state === 'open', 10_000);
      expect(pool.health()[0]!.sentMessages).toBe(0);
      expect(server.stats().tlsFailures).toBeGreaterThan(before.tlsFailures);
      expect(server.stats().streamsOpened).toBe(before.streamsOpened);
    } finally {
      await pool.close();
    }
  });

  it.each([
    ['a length prefix above the batch limit', () => [new Uint8Array([0xff, 0xff, 0xff, 0xf0])], 'STREAM_FRAME_TOO_LARGE'],
    ['a malformed batch', () => [frame(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]))], 'BATCH_MALFORMED'],
    ['a malformed batch split across writes', () => [frame(text('not a batch at all')).subarray(0, 3), frame(text('not a batch at all')).subarray(3)], 'BATCH_MALFORMED'],
  ])('%s ends that stream with a counted error; the server keeps serving other peers', async (_name, chunks, code) => {
    const before = server.stats();
    const end = await rawStream({ url: server.url, ca: acme.caPem, cert: initech.certPem, key: initech.keyPem, chunks: chunks() });
    expect(end.status).toBe(200);
    expect(end.rstCode).not.toBe(0);
    expect(JSON.parse(end.body)).toMatchObject({ code });
    const after = server.stats();
    expect(after.streamErrors[code]! - (before.streamErrors[code] ?? 0)).toBe(1);
    expect(after.batchesReceived).toBe(before.batchesReceived);

    received.length = 0;
    const pool = poolFor(globex, server.url);
    try {
      pool.send('acme', 'review', 'raft', [text('still served')]);
      await waitFor('a message from another peer', () => received.length === 1, 10_000);
    } finally {
      await pool.close();
    }
  });

  it('a member removed by a trust update stops being delivered on its already-open stream', async () => {
    const local = await PeerServer.start({ tls: { certPem: acme.certPem, keyPem: acme.keyPem }, members: membersOf(acme, globex) });
    const got: string[] = [];
    local.onMessages('raft', (_from, _swarm, messages) => messages.forEach((m) => got.push(Buffer.from(m).toString('utf8'))));
    const pool = poolFor(globex, local.url, { breakerThreshold: 3, backoff: { baseMs: 20, maxMs: 50 } });
    try {
      pool.send('acme', 'review', 'raft', [text('while a member')]);
      await waitFor('the first message', () => got.length === 1, 10_000);
      expect(pool.health()[0]!.stream).toBe('open');
      local.updateMembers(membersOf(acme));
      let offered = 0;
      await waitFor('the removed member to be cut off', () => {
        pool.send('acme', 'review', 'raft', [text(`after removal ${offered++}`)]);
        return pool.health()[0]!.state === 'open';
      }, 20_000);
      expect(got).toEqual(['while a member']);
      expect(local.stats().streamErrors.PEER_UNKNOWN_CA).toBe(1);
      expect(local.stats().streamsOpen).toBe(0);
      expect(pool.health()[0]!.lastError).toMatch(/PEER_UNKNOWN_CA/);
    } finally {
      await pool.close();
      await local.close();
    }
  });

  it('every frame re-identifies its sender: a certificate that expires mid-stream ends the stream (PEER_CERT_EXPIRED)', async () => {
    let clock = new Date();
    const timed = await PeerServer.start({ tls: { certPem: acme.certPem, keyPem: acme.keyPem }, members: membersOf(acme, globex), now: () => clock });
    const got: string[] = [];
    timed.onMessages('raft', (_from, _swarm, messages) => messages.forEach((m) => got.push(Buffer.from(m).toString('utf8'))));
    const pool = poolFor(globex, timed.url);
    try {
      pool.send('acme', 'review', 'raft', [text('valid')]);
      await waitFor('the first message', () => got.length === 1, 10_000);
      clock = new Date(Date.now() + 400 * DAY);
      pool.send('acme', 'review', 'raft', [text('expired')]);
      await waitFor('the stream to be ended', () => timed.stats().streamErrors.PEER_CERT_EXPIRED === 1, 10_000);
      expect(got).toEqual(['valid']);
      await waitFor('the client to see why', () => /PEER_CERT_EXPIRED/.test(pool.health()[0]!.lastError ?? ''), 10_000);
    } finally {
      await pool.close();
      await timed.close();
    }
  });

  it('a slow receiver holds the sender back: messages wait in the bounded queue (oldest dropped), not in write buffers', async () => {
    const slow = await PeerServer.start({ tls: { certPem: acme.certPem, keyPem: acme.keyPem }, members: membersOf(acme, globex) });
    let receivedMessages = 0;
    slow.onMessages('raft', (_from, _swarm, messages) => {
      const until = performance.now() + messages.length * 0.5; // a handler that costs 0.5 ms per message
      while (performance.now() < until);
      receivedMessages += messages.length;
    });
    const bound = 2000;
    const messageBytes = 4096;
    const pool = poolFor(globex, slow.url, { maxQueuedMessages: bound, maxBatchBytes: 256 * 1024, batchTimeoutMs: 60_000 });
    const message = new Uint8Array(messageBytes).fill(7);
    let offered = 0;
    let maxInFlight = 0;
    try {
      for (let turn = 0; turn < 150; turn++) {
        pool.send('acme', 'review', 'raft', Array.from({ length: 200 }, () => message)); // 800 KiB per turn
        offered += 200;
        await new Promise((done) => setImmediate(done));
        const health = pool.health()[0]!;
        expect(health.queuedMessages).toBeLessThanOrEqual(bound);
        maxInFlight = Math.max(maxInFlight, health.sentMessages - receivedMessages);
      }
      const health = pool.health()[0]!;
      // Written to the stream but not yet read by the handler: at most the 4 MiB window, one frame and the socket's
      // buffers, far below the ~117 MiB offered.
      expect(maxInFlight * messageBytes, `${maxInFlight} messages were written but not yet read`).toBeLessThan(12 * 1024 * 1024);
      expect(health.droppedMessages).toBeGreaterThan(offered / 2);
      await pool.flush();
      const flushed = pool.health()[0]!;
      expect(flushed.sentMessages + flushed.droppedMessages).toBe(offered);
      await waitFor('the receiver to catch up', () => receivedMessages === pool.health()[0]!.sentMessages, 30_000);
    } finally {
      await pool.close();
      await slow.close();
    }
  });

  it('an idle stream outlives the idle-session timeout: its session is pinged, not closed', async () => {
    const local = await PeerServer.start({ tls: { certPem: acme.certPem, keyPem: acme.keyPem }, members: membersOf(acme, globex), idleSessionMs: 200 });
    const got: string[] = [];
    local.onMessages('raft', (_from, _swarm, messages) => messages.forEach((m) => got.push(Buffer.from(m).toString('utf8'))));
    const pool = poolFor(globex, local.url);
    try {
      pool.send('acme', 'review', 'raft', [text('first')]);
      await waitFor('the first message', () => got.length === 1, 10_000);
      await waitFor('three idle periods', () => local.stats().idleStreamPings >= 3, 10_000);
      pool.send('acme', 'review', 'raft', [text('after idling')]);
      await waitFor('the second message', () => got.length === 2, 10_000);
      expect(local.stats()).toMatchObject({ streamsOpened: 1, streamsOpen: 1 });
      expect(pool.health()[0]).toMatchObject({ consecutiveFailures: 0, lastError: null, stream: 'open' });
    } finally {
      await pool.close();
      await local.close();
    }
  });

  it('the server closes promptly with a peer stream open', async () => {
    const local = await PeerServer.start({ tls: { certPem: acme.certPem, keyPem: acme.keyPem }, members: membersOf(acme, globex), closeGraceMs: 30_000 });
    local.onMessages('raft', () => undefined);
    const pool = poolFor(globex, local.url);
    try {
      pool.send('acme', 'review', 'raft', [text('hello')]);
      await waitFor('the stream to open', () => local.stats().streamsOpen === 1, 10_000);
      const started = performance.now();
      await local.close();
      expect(performance.now() - started).toBeLessThan(5000); // not the 30 s grace
    } finally {
      await pool.close();
    }
  });
});

describe('rolling upgrades: a peer of a version from before streams (no /peer/v1/stream route)', () => {
  const tmp = tempDir();
  let acme: TestOrg;
  let globex: TestOrg;
  const membersOf = (...orgs: TestOrg[]) => orgs.map((o) => ({ org: o.org, caPem: o.caPem }));
  const text = (value: string) => new Uint8Array(Buffer.from(value));
  const routes = [
    ['review', 'raft'],
    ['deploy', 'raft'],
    ['review', 'pbft'],
  ] as const;

  /** A real acme PeerServer on `port` (0: a free one), with or without the stream route, recording what arrives. */
  async function acmeServer(offerStreams: boolean, got: string[], port = 0): Promise<PeerServer> {
    const server = await PeerServer.start({ tls: { certPem: acme.certPem, keyPem: acme.keyPem }, members: membersOf(acme, globex), offerStreams, listen: { host: '127.0.0.1', port } });
    for (const channel of ['raft', 'pbft']) {
      server.onMessages(channel, (_from, swarm, messages) => messages.forEach((m) => got.push(`${swarm}/${channel}/${Buffer.from(m).toString('utf8')}`)));
    }
    return server;
  }

  /** Sends `turns` turns of 20 messages across swarms and channels (each turn its own batch); returns them in order. */
  async function sendTurns(pool: PeerClientPool, tag: string, turns: number): Promise<string[]> {
    const sent: string[] = [];
    for (let turn = 0; turn < turns; turn++) {
      for (let i = 0; i < 20; i++) {
        const [swarm, channel] = routes[(turn + i) % routes.length]!;
        pool.send('acme', swarm, channel, [text(`${tag}-${turn}-${i}`)]);
        sent.push(`${swarm}/${channel}/${tag}-${turn}-${i}`);
      }
      await new Promise((done) => setImmediate(done));
    }
    return sent;
  }

  beforeAll(async () => {
    acme = await makeOrg(tmp.dir, 'acme');
    globex = await makeOrg(tmp.dir, 'globex');
  });
  afterAll(() => tmp.cleanup());

  it('the link falls back to one POST per batch without a breaker failure, and returns to a stream once the peer is upgraded', async () => {
    const got: string[] = [];
    const old = await acmeServer(false, got);
    const port = old.port;
    const pool = new PeerClientPool({
      self: 'globex',
      tls: { certPem: globex.certPem, keyPem: globex.keyPem },
      members: [{ org: 'acme', peerUrl: old.url, caPem: acme.caPem }],
      breakerThreshold: 1, // a 404 counted as a failure would open the breaker at once
      backoff: { baseMs: 20, maxMs: 200 },
      streamRetryMs: 1000,
    });
    let upgraded: PeerServer | null = null;
    try {
      const sent = await sendTurns(pool, 'old', 30);
      await waitFor(`all ${sent.length} messages on the old peer`, () => got.length >= sent.length, 20_000);
      expect(got).toEqual(sent);
      const health = pool.health()[0]!;
      expect(health).toMatchObject({ mode: 'batch', state: 'closed', consecutiveFailures: 0, lastError: null, sentMessages: sent.length, droppedMessages: 0, queuedMessages: 0 });
      const stats = old.stats();
      expect(stats.streamsOpened).toBe(0);
      expect(stats.batchRequests).toBeGreaterThan(1);
      expect(stats.batchRequests).toBe(health.sentBatches);

      // The peer is upgraded: same port, now with the stream route. After streamRetryMs the link asks again.
      await old.close();
      got.length = 0;
      upgraded = await acmeServer(true, got, port);
      const server = upgraded;
      let n = 0;
      // Messages sent while the peer restarts may be dropped (the protocols retransmit): keep sending until the link streams.
      await waitFor('the link to return to a stream', () => {
        pool.send('acme', 'review', 'raft', [text(`during-${n++}`)]);
        return pool.health()[0]!.mode === 'stream' && server.stats().streamsOpened >= 1;
      }, 20_000);
      await pool.flush();
      await waitFor('what was sent meanwhile', () => got.length === pool.health()[0]!.sentMessages - sent.length, 10_000);
      const batchRequests = server.stats().batchRequests;
      got.length = 0;
      const later = await sendTurns(pool, 'new', 10);
      await waitFor(`all ${later.length} messages on the upgraded peer`, () => got.length >= later.length, 20_000);
      expect(got).toEqual(later);
      expect(server.stats()).toMatchObject({ streamsOpened: 1, streamsOpen: 1, batchRequests }); // on the stream, not as POSTs
      expect(pool.health()[0]).toMatchObject({ mode: 'stream', stream: 'open', state: 'closed', consecutiveFailures: 0 });
    } finally {
      await pool.close();
      await upgraded?.close();
      await old.close();
    }
  });

  it('one batch in flight per link: a slow old peer gets the next batch only after answering the previous one', async () => {
    // A real mutual-TLS HTTP/2 server with acme's certificate, shaped like an old node that takes 20 ms per batch:
    // 404 for the stream, 200 for each batch once that time has passed. It records how many batches overlapped.
    const got: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const slow = createSecureServer({ key: acme.keyPem, cert: acme.certPem, ca: [globex.caPem], requestCert: true, minVersion: 'TLSv1.3' });
    slow.on('stream', (stream, headers) => {
      stream.on('error', () => undefined);
      if (headers[':path'] !== '/peer/v1/messages') {
        stream.resume();
        stream.respond({ ':status': 404, 'content-type': 'application/json' });
        return void stream.end(JSON.stringify({ code: 'NOT_FOUND', message: 'no peer route' }));
      }
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        for (const group of decodeBatch(new Uint8Array(Buffer.concat(chunks)))) {
          for (const m of group.messages) got.push(`${group.swarm}/${group.channel}/${Buffer.from(m).toString('utf8')}`);
        }
        setTimeout(() => {
          inFlight--;
          stream.respond({ ':status': 200, 'content-type': 'application/json' });
          stream.end(JSON.stringify({ accepted: 1, unrouted: 0 }));
        }, 20);
      });
    });
    await new Promise<void>((done) => slow.listen(0, '127.0.0.1', done));
    const { port } = slow.address() as { port: number };
    const pool = new PeerClientPool({ self: 'globex', tls: { certPem: globex.certPem, keyPem: globex.keyPem }, members: [{ org: 'acme', peerUrl: `https://127.0.0.1:${port}`, caPem: acme.caPem }] });
    try {
      const sent = await sendTurns(pool, 'slow', 30);
      await pool.flush();
      expect(got).toEqual(sent);
      expect(maxInFlight).toBe(1);
      expect(pool.health()[0]).toMatchObject({ mode: 'batch', sentMessages: sent.length, droppedMessages: 0, consecutiveFailures: 0 });
      expect(pool.health()[0]!.sentBatches).toBeGreaterThan(1); // the turns that came while one was in flight coalesced
    } finally {
      await pool.close();
      await new Promise((done) => slow.close(done));
    }
  });

  it('flush waits for the batches in batch mode, and close gives queued batches their grace', async () => {
    const got: string[] = [];
    const old = await acmeServer(false, got);
    const pool = new PeerClientPool({ self: 'globex', tls: { certPem: globex.certPem, keyPem: globex.keyPem }, members: [{ org: 'acme', peerUrl: old.url, caPem: acme.caPem }] });
    try {
      pool.send('acme', 'review', 'raft', [text('first')]);
      await waitFor('batch mode', () => pool.health()[0]!.mode === 'batch' && got.length === 1, 10_000);
      pool.send('acme', 'review', 'raft', Array.from({ length: 3000 }, (_, i) => text(`m${i}`.padEnd(300, '.'))));
      await pool.flush();
      expect(pool.health()[0]).toMatchObject({ queuedMessages: 0, sentMessages: 3001, droppedMessages: 0 });
      expect(got.length).toBe(3001); // each batch was answered 200 after its handlers ran
      pool.send('acme', 'review', 'raft', Array.from({ length: 3000 }, (_, i) => text(`late${i}`.padEnd(300, '.'))));
    } finally {
      await pool.close();
      await old.close();
    }
    expect(got.length).toBe(6001);
    expect(got.at(-1)).toMatch(/^review\/raft\/late2999/);
  });
});
