// Owns the PBFT driver's durable window of executed request ids (at-most-once across restarts). Each execution
// step appends ONE small key holding the ids it executed — the whole list used to be rewritten with every step,
// up to 100 000 ids (6.7 MB) per synced write — and chunks whose ids all fell out of the window are deleted in the
// same batch. The ops ride in the applier's batch with the records they describe, so both are durable together.
import { fromUtf8, utf8 } from '../crypto/encoding.ts';
import type { KvStore } from '../storage/kv-store.ts';

const CHUNK_DIGITS = 12;

export class ExecutedIds {
  /** Stored chunks, oldest first: key and id count. */
  private chunks: { key: string; count: number }[] = [];
  /** Ids in the stored chunks. */
  private stored = 0;
  private nextChunk = 0;
  /** Ids an earlier version stored in one list, written as the first chunk at the next append. */
  private legacyPending: string[] | null = null;

  constructor(
    private readonly store: Pick<KvStore, 'scan'>,
    /** Key prefix of this era's chunks, e.g. `pbft-exec.e3/ids/`. */
    private readonly prefix: string,
    private readonly window: number,
  ) {}

  /**
   * Loads the stored chunks and returns the last `window` ids, oldest first. `legacy`: ids an earlier version
   * stored in one list (only read when no chunk exists yet).
   */
  async load(legacy: readonly string[] = []): Promise<string[]> {
    const ids: string[] = [];
    this.chunks = [];
    for (let from: string | undefined; ; ) {
      const rows = await this.store.scan(this.prefix, { ...(from === undefined ? {} : { from }), limit: 1000 });
      const fresh = from === undefined ? rows : rows.slice(1); // `from` is inclusive: skip the row we had
      for (const row of fresh) {
        const chunk = JSON.parse(fromUtf8(row.value)) as string[];
        for (const id of chunk) ids.push(id);
        this.chunks.push({ key: fromUtf8(row.key), count: chunk.length });
      }
      if (rows.length < 1000) break;
      from = fromUtf8(rows[rows.length - 1]!.key);
    }
    const last = this.chunks.at(-1);
    this.nextChunk = last ? Number(last.key.slice(this.prefix.length)) + 1 : 0;
    if (this.chunks.length === 0 && legacy.length) {
      this.legacyPending = [...legacy];
      this.chunks.push({ key: this.chunkKey(this.nextChunk++), count: legacy.length });
      for (const id of legacy) ids.push(id);
    }
    this.stored = ids.length;
    return ids.slice(-this.window);
  }

  /** The ops that store `executed` (ids in execution order) and delete chunks entirely outside the window. */
  append(executed: readonly string[]): { key: string; value: Uint8Array | null }[] {
    const ops: { key: string; value: Uint8Array | null }[] = [];
    if (this.legacyPending) {
      ops.push({ key: this.chunks[0]!.key, value: utf8(JSON.stringify(this.legacyPending)) });
      this.legacyPending = null;
    }
    if (executed.length === 0) return ops;
    const key = this.chunkKey(this.nextChunk++);
    ops.push({ key, value: utf8(JSON.stringify(executed)) });
    this.chunks.push({ key, count: executed.length });
    this.stored += executed.length;
    // Drop the oldest chunks while the ids after them still fill the window.
    while (this.chunks.length > 1 && this.stored - this.chunks[0]!.count >= this.window) {
      const oldest = this.chunks.shift()!;
      this.stored -= oldest.count;
      ops.push({ key: oldest.key, value: null });
    }
    return ops;
  }

  /** Ids in the stored chunks (at most the window plus one chunk). */
  get size(): number {
    return this.stored;
  }

  private chunkKey(n: number): string {
    return `${this.prefix}${String(n).padStart(CHUNK_DIGITS, '0')}`;
  }
}
