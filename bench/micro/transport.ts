// Owns the peer transport micro-benchmark: a PeerServer and a PeerClientPool of two orgs (made by initOrg) over
// loopback mutual-TLS HTTP/2, one connection. `send`: one-way messages (coalesced into frames of the pool's peer
// stream) with at most 4,000 unacknowledged, with the server's receive window at 4 MiB (default) and at the
// protocol's 64 KiB; `post`: the same messages as one POST /peer/v1/messages per batch, each answer awaited before
// the next (how the pool sent before the stream, and how older peers still do); `call`: request/response with 1 and
// 64 in flight. Server and client share this process (and so one core), as they would not in a cluster. One JSON
// line per case.
// Run: node --import tsx bench/micro/transport.ts [secondsPerCase]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Client } from 'undici';
import { initOrg } from '../../src/pki/init.ts';
import { PeerClientPool } from '../../src/transport/client.ts';
import { PeerServer } from '../../src/transport/server.ts';
import { BATCH_CONTENT_TYPE, encodeBatch } from '../../src/transport/wire.ts';

const SECONDS = Number(process.argv[2] ?? 2);
const MESSAGE_BYTES = 256;
const dir = mkdtempSync(join(tmpdir(), 'conclave-bench-transport-'));
const silent = pino({ level: 'silent' });

async function org(name: string): Promise<{ org: string; caPem: string; certPem: string; keyPem: string }> {
  const init = await initOrg({ org: name, outDir: join(dir, name) });
  return { org: name, caPem: readFileSync(init.files.caCert, 'utf8'), certPem: readFileSync(init.files.nodeCert, 'utf8'), keyPem: readFileSync(init.files.nodeKey, 'utf8') };
}

interface Bench {
  server: PeerServer;
  pool: PeerClientPool;
  received: () => number;
  /** Resolves at the next delivery (or after 50 ms). */
  delivered: () => Promise<void>;
}

async function setUp(acme: Awaited<ReturnType<typeof org>>, globex: Awaited<ReturnType<typeof org>>, receiveWindowBytes?: number): Promise<Bench> {
  const server = await PeerServer.start({
    tls: { certPem: acme.certPem, keyPem: acme.keyPem },
    members: [acme, globex].map((o) => ({ org: o.org, caPem: o.caPem })),
    logger: silent,
    ...(receiveWindowBytes ? { receiveWindowBytes } : {}),
  });
  let received = 0;
  let wake: (() => void) | null = null;
  server.onMessages('raft', (_from, _swarm, messages) => {
    received += messages.length;
    if (wake) {
      const w = wake;
      wake = null;
      w();
    }
  });
  server.onRequest('echo', (_from, _swarm, body) => body);
  const pool = new PeerClientPool({ self: 'globex', tls: { certPem: globex.certPem, keyPem: globex.keyPem }, members: [{ org: 'acme', peerUrl: server.url, caPem: acme.caPem }], logger: silent });
  await pool.whoami('acme');
  return {
    server,
    pool,
    received: () => received,
    delivered: () =>
      new Promise<void>((done) => {
        wake = done;
        setTimeout(done, 50);
      }),
  };
}

const round = (value: number, places = 1) => Math.round(value * 10 ** places) / 10 ** places;

/**
 * Offers `count` messages per turn (through `offer`) for SECONDS while at most `unacked` are undelivered, then
 * waits for `drain`: the measured wall time and this process's CPU, for every sending path alike.
 */
async function offerLoad(bench: Bench, unacked: number, offer: () => void, count: number, drain: () => Promise<void>): Promise<{ seconds: number; cpu: NodeJS.CpuUsage }> {
  let sent = 0;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const stopAt = started + SECONDS * 1000;
  while (performance.now() < stopAt) {
    if (sent - bench.received() < unacked) {
      offer();
      sent += count;
      await new Promise((done) => setImmediate(done));
    } else {
      await bench.delivered();
    }
  }
  await drain();
  return { seconds: (performance.now() - started) / 1000, cpu: process.cpuUsage(cpuBefore) };
}

try {
  const acme = await org('acme');
  const globex = await org('globex');
  const message = new Uint8Array(MESSAGE_BYTES).fill(4);

  // Two loads: throughput (200 messages per turn, up to 4,000 unacknowledged), and one message at a time, each
  // waiting for the previous one's delivery: how consensus traffic looks at a few verdicts per second.
  const loads = [
    { perTurn: 200, unacked: 4000 },
    { perTurn: 1, unacked: 1 },
  ];
  // The first case warms the JIT up and is not reported (measured here: the first case of a run is ~3x slower).
  const cases = [
    { window: undefined, ...loads[0]!, warmUp: true },
    { window: undefined, ...loads[0]!, warmUp: false },
    { window: 1024 * 1024, ...loads[0]!, warmUp: false },
    { window: 65_535, ...loads[0]!, warmUp: false },
    { window: undefined, ...loads[1]!, warmUp: false },
  ];
  // one-way messages on the peer stream
  for (const { window, perTurn, unacked, warmUp } of cases) {
    const bench = await setUp(acme, globex, window);
    const chunk = Array.from({ length: perTurn }, () => message);
    const { pool } = bench;
    const { seconds, cpu } = await offerLoad(bench, unacked, () => pool.send('acme', 'bench', 'raft', chunk), chunk.length, async () => {
      await pool.flush();
      while (bench.received() < pool.health()[0]!.sentMessages) await bench.delivered();
    });
    const health = pool.health()[0]!;
    const stats = bench.server.stats();
    if (!warmUp) console.log(
      JSON.stringify({
        bench: 'transport',
        mode: 'send',
        path: 'stream',
        perTurn,
        maxUnacked: unacked,
        receiveWindowKiB: Math.round((window ?? 4 * 1024 * 1024) / 1024),
        messageBytes: MESSAGE_BYTES,
        connections: 1,
        seconds: round(seconds, 3),
        messagesPerSec: Math.round(bench.received() / seconds),
        mbPerSec: round((bench.received() * MESSAGE_BYTES) / seconds / 1e6),
        messagesPerBatch: round(health.sentMessages / Math.max(1, health.sentBatches)),
        cpuMsPer1kMessages: round((cpu.user + cpu.system) / 1000 / (bench.received() / 1000), 2),
        streamRequests: stats.streamsOpened,
        batchRequests: stats.batchRequests,
        dropped: health.droppedMessages,
      }),
    );
    await pool.close();
    await bench.server.close();
  }

  // one-way messages as one POST per batch, answer awaited before the next (the pool's way before the stream)
  for (const { perTurn, unacked } of loads) {
    const chunk = Array.from({ length: perTurn }, () => message);
    const bench = await setUp(acme, globex);
    const client = new Client(bench.server.url, {
      allowH2: true,
      connect: { ca: acme.caPem, cert: globex.certPem, key: globex.keyPem, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'], checkServerIdentity: () => undefined },
    });
    const queue: Uint8Array[] = [];
    let sending = false;
    let posts = 0;
    let messagesPosted = 0;
    const pump = async (): Promise<void> => {
      if (sending) return;
      sending = true;
      while (queue.length > 0) {
        const messages = queue.splice(0, 4096);
        const response = await client.request({
          method: 'POST',
          path: '/peer/v1/messages',
          headers: { 'content-type': BATCH_CONTENT_TYPE },
          body: Buffer.from(encodeBatch([{ swarm: 'bench', channel: 'raft', messages }])),
          idempotent: true,
        });
        await response.body.arrayBuffer();
        posts++;
        messagesPosted += messages.length;
      }
      sending = false;
    };
    const offer = (): void => {
      queue.push(...chunk);
      setImmediate(() => void pump()); // the pool coalesced per turn of the event loop, as here
    };
    const { seconds, cpu } = await offerLoad(bench, unacked, offer, chunk.length, async () => {
      while (sending || queue.length > 0) await bench.delivered();
    });
    console.log(
      JSON.stringify({
        bench: 'transport',
        mode: 'send',
        path: 'post-per-batch',
        perTurn,
        maxUnacked: unacked,
        messageBytes: MESSAGE_BYTES,
        connections: 1,
        seconds: round(seconds, 3),
        messagesPerSec: Math.round(bench.received() / seconds),
        mbPerSec: round((bench.received() * MESSAGE_BYTES) / seconds / 1e6),
        messagesPerBatch: round(messagesPosted / Math.max(1, posts)),
        cpuMsPer1kMessages: round((cpu.user + cpu.system) / 1000 / (bench.received() / 1000), 2),
        batchRequests: bench.server.stats().batchRequests,
      }),
    );
    await client.close();
    await bench.pool.close();
    await bench.server.close();
  }

  const { pool, server } = await setUp(acme, globex);
  // request / response
  for (const inFlight of [1, 64]) {
    let calls = 0;
    const started = performance.now();
    const stopAt = started + SECONDS * 1000;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (performance.now() < stopAt) {
          await pool.call('acme', 'bench', 'echo', message);
          calls++;
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    console.log(JSON.stringify({ bench: 'transport', mode: 'call', inFlight, messageBytes: MESSAGE_BYTES, connections: 1, seconds: Math.round(seconds * 1000) / 1000, callsPerSec: Math.round(calls / seconds), meanMs: Math.round(((seconds * 1000 * inFlight) / calls) * 1000) / 1000 }));
  }
  await pool.close();
  await server.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
