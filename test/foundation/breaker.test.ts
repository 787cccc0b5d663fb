// A dead peer costs nothing: the per-peer circuit breaker opens after consecutive failures, fails fast while open,
// and closes again through a half-open probe once the peer is back. Queues are bounded and count what they drop;
// a peer that stops reading its stream fails it after the batch timeout.
import { createSecureServer, type ServerHttp2Stream } from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts } from '../../src/config/local-federation.ts';
import { PeerClientPool, PeerCallError } from '../../src/transport/client.ts';
import { PeerServer } from '../../src/transport/server.ts';
import { makeOrg, tempDir, type TestOrg } from './helpers.ts';

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolvePromise) => setTimeout(resolvePromise, 10));
  }
}

describe('peer circuit breaker', () => {
  const tmp = tempDir();
  let acme: TestOrg;
  let globex: TestOrg;

  beforeAll(async () => {
    acme = await makeOrg(tmp.dir, 'acme');
    globex = await makeOrg(tmp.dir, 'globex');
  });
  afterAll(() => tmp.cleanup());

  it('opens on a dead peer, fails fast while open, and closes through a probe when the peer comes back', async () => {
    const [port] = await freePorts(1);
    const pool = new PeerClientPool({
      self: 'globex',
      tls: { certPem: globex.certPem, keyPem: globex.keyPem },
      members: [{ org: 'acme', peerUrl: `https://127.0.0.1:${port}`, caPem: acme.caPem }],
      breakerThreshold: 3,
      backoff: { baseMs: 100, maxMs: 400 }, // after the 3rd failure: open for 400·0.75 = 300 ms
      random: () => 0.5,
    });
    try {
      for (let i = 0; i < 3; i++) {
        await expect(pool.call('acme', 'review', 'echo', new Uint8Array(1))).rejects.toMatchObject({ code: 'PEER_UNREACHABLE' });
      }
      const [opened] = pool.health();
      expect(opened).toMatchObject({ org: 'acme', state: 'open', consecutiveFailures: 3 });
      expect(opened!.lastError).toMatch(/ECONNREFUSED/);

      // While open: calls fail without touching the network, and messages are dropped and counted.
      const started = performance.now();
      const fast = await pool.call('acme', 'review', 'echo', new Uint8Array(1)).catch((e: unknown) => e);
      expect(fast).toBeInstanceOf(PeerCallError);
      expect((fast as PeerCallError).code).toBe('PEER_CIRCUIT_OPEN');
      expect(performance.now() - started).toBeLessThan(50);
      pool.send('acme', 'review', 'raft', [new Uint8Array([1]), new Uint8Array([2])]);
      expect(pool.health()[0]).toMatchObject({ queuedMessages: 0, droppedMessages: 2 });

      // The peer comes back on the same port; after the retry delay the next call is the half-open probe.
      const server = await PeerServer.start({
        tls: { certPem: acme.certPem, keyPem: acme.keyPem },
        members: [acme, globex].map((o) => ({ org: o.org, caPem: o.caPem })),
        listen: { host: '127.0.0.1', port: port! },
      });
      server.onRequest('echo', (_from, _swarm, body) => body);
      try {
        await until(() => pool.health()[0]!.retryInMs === 0, 'the retry time');
        const answer = await pool.call('acme', 'review', 'echo', new Uint8Array([7]));
        expect([...answer]).toEqual([7]);
        expect(pool.health()[0]).toMatchObject({ state: 'closed', consecutiveFailures: 0 });
      } finally {
        await pool.close();
        await server.close();
      }
    } finally {
      await pool.close();
    }
  });

  it('batches to a dead peer back off and open the breaker without unbounded queueing', async () => {
    const [port] = await freePorts(1);
    const pool = new PeerClientPool({
      self: 'globex',
      tls: { certPem: globex.certPem, keyPem: globex.keyPem },
      members: [{ org: 'acme', peerUrl: `https://127.0.0.1:${port}`, caPem: acme.caPem }],
      breakerThreshold: 2,
      maxQueuedMessages: 5,
      backoff: { baseMs: 400, maxMs: 2000 }, // jitter 0 halves it: retry after 200 ms, then open for 400 ms
      random: () => 0,
    });
    try {
      pool.send('acme', 'review', 'raft', Array.from({ length: 12 }, (_, i) => new Uint8Array([i])));
      expect(pool.health()[0]).toMatchObject({ queuedMessages: 5, droppedMessages: 7 }); // oldest dropped first
      // Keep traffic flowing, as a Raft leader would: failed batches back off, then the breaker opens.
      let offered = 12;
      const deadline = Date.now() + 10_000;
      while (pool.health()[0]!.state !== 'open') {
        if (Date.now() > deadline) throw new Error(`breaker never opened: ${JSON.stringify(pool.health())}`);
        pool.send('acme', 'review', 'raft', [new Uint8Array([offered++ & 0xff])]);
        await new Promise((resolvePromise) => setTimeout(resolvePromise, 5));
      }
      pool.send('acme', 'review', 'raft', [new Uint8Array([99])]);
      offered++;
      expect(pool.health()[0]!.queuedMessages).toBe(0); // dropped on arrival while open: a dead peer costs nothing
      await pool.flush();
      const health = pool.health()[0]!;
      expect(health).toMatchObject({ queuedMessages: 0, sentMessages: 0, droppedMessages: offered, consecutiveFailures: 2 });
    } finally {
      await pool.close();
    }
  });

  it('a peer that stops reading its stream: the stuck frame counts as dropped after the batch timeout, then the breaker opens', async () => {
    // A real mutual-TLS HTTP/2 server holding acme's certificate that answers the stream and then never reads it,
    // with the protocol's smallest windows, so the sender's writes stall once ~64 KiB are in flight.
    const stalled: ServerHttp2Stream[] = [];
    const stuck = createSecureServer({ key: acme.keyPem, cert: acme.certPem, ca: [globex.caPem], requestCert: true, minVersion: 'TLSv1.3', settings: { initialWindowSize: 65_535 } });
    stuck.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      stream.pause();
      stalled.push(stream);
    });
    await new Promise<void>((done) => stuck.listen(0, '127.0.0.1', done));
    const { port } = stuck.address() as { port: number };
    const pool = new PeerClientPool({
      self: 'globex',
      tls: { certPem: globex.certPem, keyPem: globex.keyPem },
      members: [{ org: 'acme', peerUrl: `https://127.0.0.1:${port}`, caPem: acme.caPem }],
      batchTimeoutMs: 300,
      breakerThreshold: 1,
      maxBatchBytes: 64 * 1024,
      maxQueuedMessages: 100,
    });
    try {
      const message = new Uint8Array(16 * 1024).fill(3);
      let offered = 0;
      await until(() => {
        pool.send('acme', 'review', 'raft', [message]);
        offered++;
        return pool.health()[0]!.state === 'open';
      }, 'the stalled stream to open the breaker');
      const health = pool.health()[0]!;
      expect(health.lastError).toMatch(/PEER_TIMEOUT: a frame waited \d+ ms/);
      expect(health.sentMessages).toBeGreaterThan(0); // what fit in the windows before the peer stopped reading
      expect(health.droppedMessages).toBeGreaterThan(0);
      expect(health.queuedMessages).toBe(0);
      await pool.flush();
      expect(pool.health()[0]!.sentMessages + pool.health()[0]!.droppedMessages).toBe(offered);
      expect(stalled.length).toBe(1);
    } finally {
      await pool.close(200);
      for (const stream of stalled) stream.close();
      await new Promise((done) => stuck.close(done));
    }
  });

  it('in batch mode (the peer has no stream route) a peer answering its batches 503 opens the breaker, as a failed stream does', async () => {
    // A real mutual-TLS HTTP/2 server holding acme's certificate, shaped like an overloaded node from before streams:
    // 404 NOT_FOUND for the stream, 503 for every batch.
    const paths: string[] = [];
    const overloaded = createSecureServer({ key: acme.keyPem, cert: acme.certPem, ca: [globex.caPem], requestCert: true, minVersion: 'TLSv1.3' });
    overloaded.on('stream', (stream, headers) => {
      const path = String(headers[':path']);
      paths.push(path);
      stream.on('error', () => undefined);
      stream.resume();
      const notFound = path === '/peer/v1/stream';
      stream.respond({ ':status': notFound ? 404 : 503, 'content-type': 'application/json' });
      stream.end(JSON.stringify(notFound ? { code: 'NOT_FOUND', message: `no peer route POST ${path}` } : { code: 'OVERLOADED', message: 'try later' }));
    });
    await new Promise<void>((done) => overloaded.listen(0, '127.0.0.1', done));
    const { port } = overloaded.address() as { port: number };
    const pool = new PeerClientPool({
      self: 'globex',
      tls: { certPem: globex.certPem, keyPem: globex.keyPem },
      members: [{ org: 'acme', peerUrl: `https://127.0.0.1:${port}`, caPem: acme.caPem }],
      breakerThreshold: 2,
      backoff: { baseMs: 40, maxMs: 40 },
      random: () => 0,
    });
    try {
      let offered = 0;
      await until(() => {
        pool.send('acme', 'review', 'raft', [new Uint8Array([offered++ & 0xff])]);
        return pool.health()[0]!.state === 'open';
      }, 'the refused batches to open the breaker');
      await pool.flush();
      const health = pool.health()[0]!;
      expect(health).toMatchObject({ mode: 'batch', state: 'open', consecutiveFailures: 2, sentMessages: 0, queuedMessages: 0, droppedMessages: offered });
      expect(health.lastError).toMatch(/^HTTP 503: .*OVERLOADED/);
      // One stream request (its 404 no failure), then exactly the two failed batches that opened the breaker.
      expect(paths).toEqual(['/peer/v1/stream', '/peer/v1/messages', '/peer/v1/messages']);
    } finally {
      await pool.close(200);
      await new Promise((done) => overloaded.close(done));
    }
  });
});
