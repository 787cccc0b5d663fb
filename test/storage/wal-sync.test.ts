// The durability contract of the write path, checked at the system-call level (strace) on a real process with real
// RocksDB: every acknowledged write follows a completed fdatasync of RocksDB's WAL file, and that fdatasync runs off
// the JavaScript thread (wal-sync.ts) — the event loop keeps serving while the disk syncs.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const hasStrace = spawnSync('strace', ['-V']).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'conclave-walsync-'));
const WRITES = 12;

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('write path durability (strace)', () => {
  it.skipIf(!hasStrace)('each acknowledged write follows a completed fdatasync of the WAL, made off the JavaScript thread', () => {
    const script = join(dir, 'writer.mts');
    writeFileSync(
      script,
      `import { writeSync } from 'node:fs';
import { NodeStore } from ${JSON.stringify(resolve('src/storage/node-store.ts'))};
const store = await NodeStore.open(${JSON.stringify(join(dir, 'db'))});
const kv = store.kv(null, 'x');
for (let i = 0; i < ${WRITES}; i++) {
  await kv.putSynced([{ key: 'k' + i, value: Buffer.alloc(512, i) }]);
  writeSync(1, 'ack ' + i + '\\n');
}
await store.close();
`,
    );
    const trace = join(dir, 'strace.txt');
    const run = spawnSync('strace', ['-f', '-y', '-e', 'trace=fdatasync,write', '-o', trace, process.execPath, '--import', 'tsx', script], { cwd: resolve('.'), encoding: 'utf8', timeout: 120_000 });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout.trim().split('\n')).toEqual(Array.from({ length: WRITES }, (_, i) => `ack ${i}`));

    // Walk the trace in order: count WAL fdatasyncs completed since the last ack; note which thread made them.
    const lines = readFileSync(trace, 'utf8').split('\n');
    const started = new Map<string, boolean>(); // tid → its unfinished fdatasync is on a WAL file
    let walSyncsSinceAck = 0;
    const walSyncThreads = new Set<string>();
    const acks: { tid: string; walSyncsBefore: number }[] = [];
    for (const line of lines) {
      const tid = line.split(' ')[0]!;
      if (/ write\(1<[^>]*>, "ack \d+\\n"/.test(line)) {
        acks.push({ tid, walSyncsBefore: walSyncsSinceAck });
        walSyncsSinceAck = 0;
        continue;
      }
      const unfinished = / fdatasync\(\d+<([^>]*)>.*<unfinished \.\.\.>/.exec(line);
      if (unfinished) {
        started.set(tid, unfinished[1]!.endsWith('.log'));
        continue;
      }
      const whole = / fdatasync\(\d+<([^>]*)>\)\s+= 0/.exec(line);
      const resumed = /<\.\.\. fdatasync resumed>\)\s+= 0/.test(line);
      const onWal = whole ? whole[1]!.endsWith('.log') : resumed ? started.get(tid) === true : false;
      if (resumed) started.delete(tid);
      if ((whole || resumed) && onWal) {
        walSyncsSinceAck++;
        walSyncThreads.add(tid);
      }
    }
    expect(acks.length).toBe(WRITES);
    for (const [i, ack] of acks.entries()) expect(ack.walSyncsBefore, `WAL fdatasyncs completed before ack ${i}`).toBeGreaterThanOrEqual(1);
    const mainThread = acks[0]!.tid;
    expect(walSyncThreads.size).toBeGreaterThan(0);
    expect(walSyncThreads.has(mainThread), 'the JavaScript thread itself never waits in fdatasync').toBe(false);
  }, 150_000);
});
