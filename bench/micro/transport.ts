// Owns the peer transport micro-benchmark: a PeerServer and a PeerClientPool of two orgs (made by initOrg) over
// loopback mutual-TLS HTTP/2, one connection. `send`: one-way messages (coalesced into batches by the pool) with
// at most 4,000 unacknowledged; `call`: request/response with 1 and 64 in flight. Server and client share this
// process (and so one core), as they would not in a cluster. One JSON line per case.
// Run: node --import tsx bench/micro/transport.ts [secondsPerCase]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { initOrg } from '../../src/pki/init.ts';
import { PeerClientPool } from '../../src/transport/client.ts';
import { PeerServer } from '../../src/transport/server.ts';

const SECONDS = Number(process.argv[2] ?? 2);
const MESSAGE_BYTES = 256;
const dir = mkdtempSync(join(tmpdir(), 'conclave-bench-transport-'));
const silent = pino({ level: 'silent' });

async function org(name: string): Promise<{ org: string; caPem: string; certPem: string; keyPem: string }> {
  const init = await initOrg({ org: name, outDir: join(dir, name) });
  return { org: name, caPem: readFileSync(init.files.caCert, 'utf8'), certPem: readFileSync(init.files.nodeCert, 'utf8'), keyPem: readFileSync(init.files.nodeKey, 'utf8') };
}

try {
  const acme = await org('acme');
  const globex = await org('globex');
  const server = await PeerServer.start({ tls: { certPem: acme.certPem, keyPem: acme.keyPem }, members: [acme, globex].map((o) => ({ org: o.org, caPem: o.caPem })), logger: silent });
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
  const message = new Uint8Array(MESSAGE_BYTES).fill(4);

  // one-way messages
  {
    const chunk = Array.from({ length: 200 }, () => message);
    let sent = 0;
    const started = performance.now();
    const stopAt = started + SECONDS * 1000;
    while (performance.now() < stopAt) {
      if (sent - received < 4000) {
        pool.send('acme', 'bench', 'raft', chunk);
        sent += chunk.length;
        await new Promise((done) => setImmediate(done));
      } else {
        await new Promise<void>((done) => {
          wake = done;
          setTimeout(done, 50);
        });
      }
    }
    await pool.flush();
    const seconds = (performance.now() - started) / 1000;
    const health = pool.health()[0]!;
    console.log(
      JSON.stringify({
        bench: 'transport',
        mode: 'send',
        messageBytes: MESSAGE_BYTES,
        connections: 1,
        seconds: Math.round(seconds * 1000) / 1000,
        messagesPerSec: Math.round(received / seconds),
        mbPerSec: Math.round(((received * MESSAGE_BYTES) / seconds / 1e6) * 10) / 10,
        messagesPerBatch: Math.round((health.sentMessages / Math.max(1, health.sentBatches)) * 10) / 10,
        dropped: health.droppedMessages,
      }),
    );
  }

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
