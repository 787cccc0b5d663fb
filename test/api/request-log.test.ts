// The API's access log (src/api/server.ts): a node at the default level writes no line per request (fastify's two
// info lines per request were a measurable share of a loaded node's CPU); at debug, one line per answered request.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Agent, fetch } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { writeLocalFederation } from '../../src/config/local-federation.ts';
import { ConclaveNode } from '../../src/node/node.ts';

const dir = mkdtempSync(join(tmpdir(), 'conclave-reqlog-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('API request log', () => {
  it('is silent at info and one debug line per request at debug', async () => {
    const federation = await writeLocalFederation({ dir, orgs: ['acme'], swarm: { id: 'reviews', mode: 'raft', members: ['acme'], policy: { values: ['approve', 'reject'], quorum: 1, rule: 'majority' } } });
    const org = federation.orgs[0]!;
    const lines: { level: number; msg?: string; url?: string; status?: number }[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line) as (typeof lines)[number]);
        done();
      },
    });
    const logger = pino({ level: 'info' }, sink);
    const node = new ConclaveNode({ configPath: org.configPath, logger });
    const { apiPort } = await node.start();
    const agent = new Agent({ connect: { ca: readFileSync(join(org.certDir, 'ca.crt'), 'utf8') }, allowH2: true });
    const get = async (path: string) => {
      const response = await fetch(`https://127.0.0.1:${apiPort}${path}`, { dispatcher: agent });
      await response.arrayBuffer();
      return response.status;
    };
    try {
      expect(await get('/v1/swarms/reviews/status')).toBe(200);
      expect(await get('/v1/swarms/nope/status')).toBe(404);
      expect(lines.filter((l) => l.url !== undefined || /request/.test(l.msg ?? ''))).toEqual([]);

      logger.level = 'debug';
      expect(await get('/v1/swarms/reviews/status')).toBe(200);
      expect(await get('/v1/swarms/nope/status')).toBe(404);
      const answered = lines.filter((l) => l.msg === 'request answered');
      expect(answered.map((l) => [l.url, l.status, l.level])).toEqual([
        ['/v1/swarms/reviews/status', 200, 20],
        ['/v1/swarms/nope/status', 404, 20],
      ]);
    } finally {
      await agent.close();
      await node.stop();
    }
  }, 60_000);
});
