// The PBFT driver's window of executed request ids on disk (src/swarm/executed-ids.ts), over real RocksDB: each
// step writes one chunk (never the whole list), chunks wholly outside the window are deleted in the same batch,
// a reopen returns exactly the last `window` ids in execution order, and a list stored by an earlier version is
// read and rewritten as the first chunk.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExecutedIds } from '../../src/swarm/executed-ids.ts';
import { NodeStore } from '../../src/storage/node-store.ts';
import { tempDir } from './helpers.ts';

let dir: { path: string; cleanup: () => Promise<void> };
let store: NodeStore;

beforeEach(async () => {
  dir = await tempDir('executed-ids');
  store = await NodeStore.open(dir.path);
});

afterEach(async () => {
  await store.close();
  await dir.cleanup();
});

const ids = (from: number, count: number) => Array.from({ length: count }, (_, i) => `id-${from + i}`);

describe('executed ids on disk', () => {
  it('writes one chunk per step, deletes chunks outside the window, and reloads the last window in order', async () => {
    const kv = store.kv('s1', 'applied');
    const window = 50;
    const executed = new ExecutedIds(kv, 'pbft-exec.e0/ids/', window);
    expect(await executed.load()).toEqual([]);
    let next = 0;
    let largestWrite = 0;
    for (let step = 0; step < 40; step++) {
      const count = 1 + (step % 7);
      const ops = executed.append(ids(next, count));
      next += count;
      largestWrite = Math.max(largestWrite, ...ops.map((op) => op.value?.byteLength ?? 0));
      await kv.putSynced(ops);
      // Never fewer than the window (once there were that many), never more than the window plus one chunk.
      expect(executed.size).toBeGreaterThanOrEqual(Math.min(next, window));
      expect(executed.size).toBeLessThan(window + 7);
    }
    expect(largestWrite).toBeLessThan(200); // one chunk of at most 7 ids, not the list
    const stored = await kv.scan('pbft-exec.e0/ids/', { limit: 10_000 });
    expect(stored.length).toBeLessThan(window); // old chunks were deleted

    const reopened = new ExecutedIds(kv, 'pbft-exec.e0/ids/', window);
    expect(await reopened.load()).toEqual(ids(next - window, window));
    // Appending after a reload continues the numbering (no chunk overwritten).
    await kv.putSynced(reopened.append(['after']));
    expect((await new ExecutedIds(kv, 'pbft-exec.e0/ids/', window).load()).at(-1)).toBe('after');
  });

  it('pages through more than a thousand chunks', async () => {
    const kv = store.kv('s1', 'applied');
    const executed = new ExecutedIds(kv, 'p/ids/', 5000);
    await executed.load();
    for (let i = 0; i < 1500; i++) await kv.putLazy(executed.append([`x${i}`]));
    await kv.putSynced([]);
    const loaded = await new ExecutedIds(kv, 'p/ids/', 5000).load();
    expect(loaded).toEqual(Array.from({ length: 1500 }, (_, i) => `x${i}`));
  });

  it('reads a list stored by an earlier version and rewrites it as the first chunk', async () => {
    const kv = store.kv('s1', 'applied');
    const executed = new ExecutedIds(kv, 'e/ids/', 100);
    expect(await executed.load(['old-1', 'old-2'])).toEqual(['old-1', 'old-2']);
    await kv.putSynced(executed.append(['new-1']));
    expect(await new ExecutedIds(kv, 'e/ids/', 100).load()).toEqual(['old-1', 'old-2', 'new-1']);
  });
});
