// StoredDecisions: the decision machine's memory (subjects, verdicts by hash, nonces) kept in the swarm's applied-
// state space on disk, so a node's memory does not grow with the verdicts it ever committed. Reads are synchronous
// (the machine applies inside the consensus loop): unsaved writes first, then writes whose batch is being synced,
// then a bounded cache of subjects, then what the batch being applied prefetched in one multi-get, then RocksDB. Writes are handed out by drain() to join the synced batch that
// also carries the audit records and the applied index, so the on-disk state always matches the applied index.
//
// Keys (relative to the applied-state space):
//   d/s/<subject>          canonical JSON {votes, decision, late} of one subject
//   d/v/<jwsHash>          u64 index of the entry that carried the verdict, then the subject (UTF-8)
//   d/n/<org>\n<nonce>     the jwsHash of the verdict in which org used nonce (UTF-8)
import type { DecisionStore, SubjectState, VerdictLocation } from '../verdict/machine.ts';
import { canonicalBytes } from '../crypto/canonical.ts';
import type { KvOp, KvStore } from './kv-store.ts';
import { readU64, u64 } from './keys.ts';

const SUBJECT = 'd/s/';
const VERDICT = 'd/v/';
const NONCE = 'd/n/';

/** Subjects kept decoded in memory beyond the unsaved ones (votes carry reasons: a few KB each at most). */
export const DEFAULT_SUBJECT_CACHE = 4096;

type Value = Uint8Array;

export class StoredDecisions implements DecisionStore {
  /** Written since the last drain(), by full key. */
  private dirty = new Map<string, Value>();
  /** Drained and not yet known durable, oldest first (each generation is one synced batch). */
  private readonly syncing: Map<string, Value>[] = [];
  /** Disk values of the keys the batch being applied will read (undefined: absent); only between prefetch and endPrefetch. */
  private prefetched: Map<string, Value | undefined> | null = null;
  /** Recently used subjects, decoded; insertion order is the LRU order. */
  private readonly subjects = new Map<string, SubjectState>();

  constructor(
    private readonly kv: KvStore,
    private readonly subjectCache = DEFAULT_SUBJECT_CACHE,
  ) {}

  subject(subject: string): SubjectState | undefined {
    const cached = this.subjects.get(subject);
    if (cached) {
      this.subjects.delete(subject);
      this.subjects.set(subject, cached);
      return cached;
    }
    const bytes = this.read(SUBJECT + subject);
    if (!bytes) return undefined;
    const body = JSON.parse(Buffer.from(bytes).toString('utf8')) as Omit<SubjectState, 'subject'>;
    const state: SubjectState = { subject, votes: body.votes, decision: body.decision, late: body.late };
    this.remember(subject, state);
    return state;
  }

  putSubject(state: SubjectState): void {
    this.write(SUBJECT + state.subject, canonicalBytes({ votes: state.votes, decision: state.decision, late: state.late }));
    this.remember(state.subject, state);
  }

  verdict(jwsHash: string): VerdictLocation | undefined {
    const bytes = this.read(VERDICT + jwsHash);
    return bytes ? { index: readU64(bytes), subject: Buffer.from(bytes.buffer, bytes.byteOffset + 8, bytes.byteLength - 8).toString('utf8') } : undefined;
  }

  putVerdict(jwsHash: string, where: VerdictLocation): void {
    this.write(VERDICT + jwsHash, Buffer.concat([u64(where.index), Buffer.from(where.subject, 'utf8')]));
  }

  nonce(org: string, nonce: string): string | undefined {
    const bytes = this.read(`${NONCE}${org}\n${nonce}`);
    return bytes ? Buffer.from(bytes).toString('utf8') : undefined;
  }

  putNonce(org: string, nonce: string, jwsHash: string): void {
    this.write(`${NONCE}${org}\n${nonce}`, Buffer.from(jwsHash, 'utf8'));
  }

  prefetch(reads: { subjects: string[]; verdicts: string[]; nonces: Array<[org: string, nonce: string]> }): void {
    const keys = new Set<string>();
    for (const subject of reads.subjects) if (!this.subjects.has(subject)) keys.add(SUBJECT + subject);
    for (const jwsHash of reads.verdicts) keys.add(VERDICT + jwsHash);
    for (const [org, nonce] of reads.nonces) keys.add(`${NONCE}${org}\n${nonce}`);
    const onDisk = [...keys].filter((key) => !this.inMemory(key));
    this.prefetched = new Map();
    if (onDisk.length === 0) return;
    const values = this.kv.getManySync(onDisk);
    for (let i = 0; i < onDisk.length; i++) this.prefetched.set(onDisk[i]!, values[i]);
  }

  endPrefetch(): void {
    this.prefetched = null;
  }

  /**
   * The writes since the last drain, for the caller's next synced batch; call settle() once that batch is durable
   * (until then reads still see them here, never a stale value on disk).
   */
  drain(): { ops: KvOp[]; settle: () => void } {
    const generation = this.dirty;
    this.dirty = new Map();
    this.prefetched = null;
    if (generation.size === 0) return { ops: [], settle: () => undefined };
    this.syncing.push(generation);
    const ops: KvOp[] = [];
    for (const [key, value] of generation) ops.push({ key, value });
    return {
      ops,
      settle: () => {
        const at = this.syncing.indexOf(generation);
        if (at >= 0) this.syncing.splice(at, 1);
      },
    };
  }

  /** Unsaved and syncing writes (bounded by what one or two ready cycles apply). */
  get pendingWrites(): number {
    let n = this.dirty.size;
    for (const generation of this.syncing) n += generation.size;
    return n;
  }

  private write(key: string, value: Value): void {
    this.dirty.set(key, value);
  }

  private read(key: string): Value | undefined {
    const dirty = this.dirty.get(key);
    if (dirty) return dirty;
    for (let i = this.syncing.length - 1; i >= 0; i--) {
      const value = this.syncing[i]!.get(key);
      if (value) return value;
    }
    // Prefetched values are the disk's, read after everything above: a key written since is found above first.
    if (this.prefetched?.has(key)) return this.prefetched.get(key);
    return this.kv.getSync(key);
  }

  private inMemory(key: string): boolean {
    return this.dirty.has(key) || this.syncing.some((generation) => generation.has(key));
  }

  private remember(subject: string, state: SubjectState): void {
    this.subjects.delete(subject);
    this.subjects.set(subject, state);
    if (this.subjects.size > this.subjectCache) this.subjects.delete(this.subjects.keys().next().value!);
  }
}
