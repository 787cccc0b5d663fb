// The durability contract of the write path, checked at the system-call level (strace) on a real process with real
// RocksDB: every acknowledged write follows a completed fdatasync of the very WAL file its batch was written to —
// across memtable switches, when RocksDB moves to a new WAL file — and that fdatasync runs off the JavaScript thread
// (wal-sync.ts): the event loop keeps serving while the disk syncs. The directory is listed only when RocksDB may
// have started a new WAL file, not at every sync.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const hasStrace = spawnSync('strace', ['-V']).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'conclave-walsync-'));
const WRITES = 24;

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('write path durability (strace)', () => {
  it.skipIf(!hasStrace)('each acknowledged write follows a completed fdatasync of the WAL file it went to, made off the JavaScript thread', () => {
    const script = join(dir, 'writer.mts');
    // Every fourth write carries 3 MiB: ~18 MiB in all, past the 8 MiB memtables, so RocksDB switches WAL files.
    writeFileSync(
      script,
      `import { writeSync } from 'node:fs';
import { NodeStore } from ${JSON.stringify(resolve('src/storage/node-store.ts'))};
const store = await NodeStore.open(${JSON.stringify(join(dir, 'db'))});
const kv = store.kv(null, 'x');
for (let i = 0; i < ${WRITES}; i++) {
  await kv.putSynced([{ key: 'k' + i, value: Buffer.alloc(i % 4 === 3 ? 3 << 20 : 512, i) }]);
  writeSync(1, 'ack ' + i + '\\n');
}
const { walListings, walQuickSyncs } = store.stats;
writeSync(2, JSON.stringify({ walListings, walQuickSyncs }) + '\\n');
await store.close();
`,
    );
    const trace = join(dir, 'strace.txt');
    const run = spawnSync('strace', ['-f', '-y', '-e', 'trace=fdatasync,write', '-o', trace, process.execPath, '--import', 'tsx', script], { cwd: resolve('.'), encoding: 'utf8', timeout: 120_000 });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout.trim().split('\n')).toEqual(Array.from({ length: WRITES }, (_, i) => `ack ${i}`));

    // Walk the trace in order: the WAL file each batch was written to, the WAL files fdatasynced (completed) since
    // that write, and which thread synced; an ack must follow a completed sync of the file its write went to.
    const lines = readFileSync(trace, 'utf8').split('\n');
    const started = new Map<string, string>(); // tid → the file of its unfinished fdatasync
    let lastWalWritten: string | null = null;
    let syncedSinceWrite = new Set<string>();
    const walSyncThreads = new Set<string>();
    const walFiles = new Set<string>();
    const acks: { tid: string; wal: string | null; synced: boolean }[] = [];
    for (const line of lines) {
      const tid = line.split(' ')[0]!;
      if (/ write\(1<[^>]*>, "ack \d+\\n"/.test(line)) {
        acks.push({ tid, wal: lastWalWritten, synced: lastWalWritten !== null && syncedSinceWrite.has(lastWalWritten) });
        continue;
      }
      // A write interrupted in the trace by another thread's line shows as "<unfinished ...>" (its path is there)
      // and later "<... write resumed>": the write starts here. This test has one write in flight at a time, so
      // no sync issued before it can complete after it.
      const walWrite = / write\(\d+<([^>]*\.log)>/.exec(line);
      if (walWrite) {
        lastWalWritten = walWrite[1]!;
        walFiles.add(lastWalWritten);
        syncedSinceWrite = new Set();
        continue;
      }
      const unfinished = / fdatasync\(\d+<([^>]*)>.*<unfinished \.\.\.>/.exec(line);
      if (unfinished) {
        started.set(tid, unfinished[1]!);
        continue;
      }
      const whole = / fdatasync\(\d+<([^>]*)>\)\s+= 0/.exec(line);
      const resumed = /<\.\.\. fdatasync resumed>\)\s+= 0/.test(line);
      const file = whole ? whole[1]! : resumed ? started.get(tid) : undefined;
      if (resumed) started.delete(tid);
      if (file?.endsWith('.log')) {
        syncedSinceWrite.add(file);
        walSyncThreads.add(tid);
      }
    }
    expect(acks.length).toBe(WRITES);
    expect(walFiles.size, 'RocksDB moved to a new WAL file during the run').toBeGreaterThanOrEqual(2);
    for (const [i, ack] of acks.entries()) expect(ack.synced, `ack ${i}: its batch went to ${ack.wal}, which was not fdatasynced before the ack`).toBe(true);
    const mainThread = acks[0]!.tid;
    expect(walSyncThreads.size).toBeGreaterThan(0);
    expect(walSyncThreads.has(mainThread), 'the JavaScript thread itself never waits in fdatasync').toBe(false);
    // The syncer lists the directory when a new WAL file may have appeared, not at each of the 24 syncs (RocksDB's
    // own directory scans would blur a count of getdents64 calls: its counters tell).
    const syncer = JSON.parse(run.stderr.trim().split('\n').at(-1)!) as { walListings: number; walQuickSyncs: number };
    expect(syncer.walListings + syncer.walQuickSyncs).toBe(WRITES);
    expect(syncer.walListings).toBeGreaterThan(0);
    expect(syncer.walListings).toBeLessThan(WRITES / 2);
  }, 150_000);
});
