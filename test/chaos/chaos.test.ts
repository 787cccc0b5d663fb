// Owns the CI-sized chaos runs: `node bin/conclave.js chaos --duration 20` as a real process, for raft (3 orgs),
// pbft (4 orgs), 4 orgs switching live between raft and pbft between the faults, and raft with a member leaving and
// joining again with an empty data folder, asserting exit 0, the final line with lost/duplicated/divergent 0 and acked > 0, a non-empty fault
// summary, consistent reads that never missed an acknowledged verdict, a well-formed JSON Lines history (submits and
// reads), and that no node process outlives the run. Also the proxy on its own.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LinkProxy } from '../../src/chaos/proxy.ts';
import { processesMentioning, runConclave } from '../support/processes.ts';

const work = mkdtempSync(join(tmpdir(), 'conclave-chaos-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function chaosRun(mode: 'raft' | 'pbft', seed: number, extra: { name?: string; args?: string[]; durationS?: number } = {}): Promise<string> {
  const name = extra.name ?? mode;
  const dir = join(work, name);
  const historyFile = join(work, `${name}-history.jsonl`);
  const { code, stdout, stderr } = await runConclave(['chaos', '--duration', String(extra.durationS ?? 20), '--mode', mode, '--seed', String(seed), '--dir', dir, '--history', historyFile, ...(extra.args ?? [])], 240_000);
  const transcript = `exit ${code}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`;
  const lines = stdout.trimEnd().split('\n');
  const last = lines[lines.length - 1]!;
  // Exactly one final line, in the documented shape.
  expect(last, transcript).toMatch(/^acked: \d+, lost: \d+, duplicated: \d+, divergent: \d+$/);
  expect(lines.filter((line) => line.startsWith('acked: ')), transcript).toHaveLength(1);
  expect(last, transcript).toMatch(/, lost: 0, duplicated: 0, divergent: 0$/);
  expect(Number(/^acked: (\d+)/.exec(last)![1]), transcript).toBeGreaterThan(0);
  expect(stdout, transcript).toMatch(/audit: verifies/);
  expect(code, transcript).toBe(0);
  // Faults were injected and reported.
  const faults = /^ {2}(\d+) in all: /m.exec(stdout);
  expect(Number(faults?.[1] ?? 0), transcript).toBeGreaterThan(0);

  // Consistent readers ran throughout: every read that answered held the verdict acknowledged before it began.
  const reads = /^consistent reads: (\d+) in all, (\d+) held the acknowledged verdict, (\d+) stale, (\d+) unavailable \(503, timeout, or 409 NOT_A_MEMBER\), (\d+) unexpected;/m.exec(stdout);
  expect(reads, transcript).not.toBeNull();
  const [total, found, stale, unavailable, unexpected] = reads!.slice(1).map(Number) as [number, number, number, number, number];
  expect(found, transcript).toBeGreaterThan(0);
  expect([stale, unexpected], transcript).toEqual([0, 0]);
  expect(found + unavailable).toBe(total);

  // The history: JSON Lines, every invoke answered by exactly one ok / fail / info of the same process.
  const history = readFileSync(historyFile, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line) as { type: string; process: number; time: number; f: string; value: { subject: string; jwsHash: string; index?: number; found?: boolean } });
  expect(history.length).toBeGreaterThan(0);
  const open = new Map<number, string>();
  let oks = 0;
  let readOks = 0;
  const ackedAt = new Map<string, number>();
  for (const record of history) {
    expect(['submit', 'read']).toContain(record.f);
    expect(typeof record.time).toBe('number');
    expect(record.value.jwsHash).toMatch(/^[0-9a-f]{64}$/);
    if (record.type === 'invoke') {
      expect(open.has(record.process)).toBe(false);
      open.set(record.process, record.value.jwsHash);
    } else {
      expect(['ok', 'fail', 'info']).toContain(record.type);
      expect(open.get(record.process)).toBe(record.value.jwsHash);
      open.delete(record.process);
      if (record.type === 'ok' && record.f === 'submit') {
        oks++;
        expect(record.value.index).toBeGreaterThan(0);
        ackedAt.set(record.value.jwsHash, record.time);
      }
      if (record.type === 'ok' && record.f === 'read') {
        // A read is only of a verdict whose acknowledgement came first, and it found it.
        readOks++;
        expect(record.value.found).toBe(true);
        expect(ackedAt.get(record.value.jwsHash)).toBeLessThanOrEqual(record.time);
      }
    }
  }
  expect(open.size).toBe(0);
  expect(readOks).toBe(found);
  expect(`acked: ${oks},`).toBe(last.slice(0, last.indexOf(',') + 1));
  // No node outlives the run.
  expect(processesMentioning(dir)).toEqual([]);
  return stdout;
}

describe('conclave chaos (real processes, fault-injecting proxies)', () => {
  it('raft, 3 orgs, 20 s of faults: nothing lost, duplicated or divergent, and the audit verifies', async () => {
    await chaosRun('raft', 7);
  }, 300_000);

  it('pbft, 4 orgs, 20 s of faults: nothing lost, duplicated or divergent, and the audit verifies', async () => {
    await chaosRun('pbft', 11);
  }, 300_000);

  it('4 orgs, 30 s, switching live raft → pbft → raft between faults: nothing lost, duplicated or divergent; the audit follows the eras', async () => {
    const stdout = await chaosRun('raft', 5, { name: 'switch', durationS: 30, args: ['--orgs', '4', '--faults', 'switch-mode,kill,pause,isolate,bridge'] });
    // The schedule of seed 5 begins isolate, switch, switch (each fault holds at most 5 s, then at most 2.5 s of quiet):
    // within 30 s both switches start on the slowest machine, and each was applied.
    expect(stdout).toMatch(/switch-mode +\S+ +raft → pbft( with \S+ down)?: applied at index \d+/);
    expect(stdout).toMatch(/switch-mode +\S+ +pbft → raft( with \S+ down)?: applied at index \d+/);
    expect(stdout).not.toMatch(/switch-mode .* — FAILED/);
  }, 300_000);

  it('raft, 3 orgs, 25 s with a member leaving and joining again empty: nothing lost, duplicated or divergent; the audit verifies', async () => {
    // Seed 6 begins with the leave-join: initech is removed, its data deleted, admitted again and started empty; the
    // kills and partitions after it hit the swarm it rejoined.
    const stdout = await chaosRun('raft', 6, { name: 'leave-join', durationS: 25, args: ['--faults', 'leave-join,kill,isolate'] });
    expect(stdout).toMatch(/leave-join +\S+ +(\S+) removed through \S+: applied at index \d+; admitted again through \S+: applied at index \d+/);
    expect(stdout).not.toMatch(/leave-join .* — FAILED/);
  }, 300_000);
});

describe('LinkProxy', () => {
  let echo: Server;
  const sockets: Socket[] = [];

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((done) => (echo ? echo.close(() => done()) : done()));
  });

  function dial(port: number): Promise<Socket> {
    return new Promise((resolvePromise, reject) => {
      const socket = connect({ host: '127.0.0.1', port }, () => resolvePromise(socket));
      socket.once('error', reject);
      socket.on('error', () => undefined); // resets are what the test provokes
      sockets.push(socket);
    });
  }

  function roundTrip(socket: Socket, text: string, timeoutMs: number): Promise<string | null> {
    return new Promise((done) => {
      const timer = setTimeout(() => {
        socket.off('data', onData);
        done(null);
      }, timeoutMs);
      const onData = (chunk: Buffer) => {
        clearTimeout(timer);
        socket.off('data', onData);
        done(chunk.toString());
      };
      socket.on('data', onData);
      socket.write(text);
    });
  }

  it('forwards, delays, black-holes, resets and refuses, then heals', async () => {
    echo = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.pipe(socket);
    });
    await new Promise<void>((done) => echo.listen(0, '127.0.0.1', () => done()));
    const port = (echo.address() as { port: number }).port;
    const link = new LinkProxy('a', 'b', { host: '127.0.0.1', port });
    await link.start();
    try {
      const socket = await dial(link.port);
      expect(await roundTrip(socket, 'hello', 10_000)).toBe('hello');

      link.delay(300);
      const started = Date.now();
      expect(await roundTrip(socket, 'slow', 10_000)).toBe('slow');
      expect(Date.now() - started).toBeGreaterThanOrEqual(550); // 300 ms each way

      link.heal();
      link.cut('blackhole');
      expect(await roundTrip(socket, 'lost', 700)).toBeNull();
      expect(link.stats.bytesDropped).toBeGreaterThan(0);

      link.cut('reset');
      const closed = await new Promise<boolean>((done) => {
        if (socket.destroyed) done(true);
        socket.once('close', () => done(true));
        setTimeout(() => done(false), 10_000);
      });
      expect(closed).toBe(true);
      const refused = await dial(link.port).then(
        (s) => new Promise<boolean>((done) => {
          s.once('close', () => done(true));
          s.once('error', () => done(true));
          setTimeout(() => done(false), 10_000);
        }),
        () => true,
      );
      expect(refused).toBe(true);

      link.heal();
      const again = await dial(link.port);
      expect(await roundTrip(again, 'back', 10_000)).toBe('back');
    } finally {
      await link.close();
    }
  });
});
