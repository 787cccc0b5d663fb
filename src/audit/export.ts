// The audit export (JSON Lines, docs/audit-format.md): producing its lines from a node's records and checkpoints,
// and reading them back from any byte stream with line numbers and strict, bounded parsing.
import type { ConsensusMode, SwarmRules } from '../config/types.ts';
import { canonicalJson } from '../crypto/canonical.ts';
import { toHex } from '../crypto/encoding.ts';
import { GENESIS_PREV, recordPayload, type AuditRecord } from './chain.ts';
import type { Checkpoint } from './checkpoint.ts';
import type { FrontierState } from './merkle.ts';

export const EXPORT_VERSION = 1;
/** Longest accepted line (bytes, newline excluded): a record of the largest command fits with room to spare. */
export const MAX_EXPORT_LINE_BYTES = 32 * 1024 * 1024;

export interface ExportHeader {
  type: 'header';
  v: 1;
  federation: string;
  swarm: string;
  /** Index of the first record in the export (>= 1). */
  from: number;
  /** Index of the last record (from - 1 when the export holds no record). */
  to: number;
  /** Unix seconds when the node produced the export (informational; not signed). */
  exportedAt: number;
  /** Record hash of record from - 1 (GENESIS_PREV when from = 1): the anchor of the chain. */
  prev: string;
  /** Merkle frontier of the tree of size from - 1 (size 0, no hashes, when from = 1). */
  frontier: FrontierState;
  /** True when the export carries a decision line for every decision reached in [from, to]. */
  decisions: boolean;
  /**
   * The membership, mode and rules the swarm started with (before index 1): an auditor replays admin changes and
   * decisions from it. Absent in exports of older nodes: the auditor then starts from the federation file's swarm.
   */
  genesis?: ExportGenesis;
}

export interface ExportGenesis {
  members: string[];
  mode: ConsensusMode;
  /** The decision and admin policy the log starts from (absent in exports of earlier versions: the file's). */
  rules?: SwarmRules;
}

export type ExportRecordLine = { type: 'record' } & AuditRecord;
export type ExportCheckpointLine = { type: 'checkpoint' } & Checkpoint;

/** A decision reached by applying the record at `index`, as the exporting node computed it. */
export interface ExportDecisionLine {
  type: 'decision';
  index: number;
  subject: string;
  value: string;
}

/** A consistency proof between two checkpoints of this export (hashes in lowercase hex, RFC 9162 order). */
export interface ExportProofLine {
  type: 'proof';
  kind: 'consistency';
  size1: number;
  size2: number;
  hashes: string[];
}

export type ExportLine = ExportHeader | ExportRecordLine | ExportCheckpointLine | ExportDecisionLine | ExportProofLine;

export interface ExportDecision {
  subject: string;
  value: string;
}

/** What a node supplies to produce an export of records [from, to]. */
export interface ExportSource {
  federation: string;
  swarm: string;
  from: number;
  to: number;
  exportedAt: number;
  /** Required when from > 1: the chain head and Merkle frontier just before `from` (AuditLog.state() at from - 1). */
  anchor?: { prev: string; frontier: FrontierState };
  /** The swarm's genesis membership and mode (see ExportHeader.genesis). */
  genesis?: ExportGenesis;
  /** The records from..to, in index order. */
  records: Iterable<AuditRecord> | AsyncIterable<AuditRecord>;
  /**
   * Checkpoints with from - 1 <= size <= to (others are skipped); each is written after the record at its size. An
   * array may be in any order; an async iterable must come in ascending size (it is read as the records advance, so
   * a long export never holds all its checkpoints).
   */
  checkpoints: readonly Checkpoint[] | AsyncIterable<Checkpoint>;
  /** When given, every decision reached at each index is written after its record (and header.decisions is true). */
  decisionsAt?: (index: number) => readonly ExportDecision[];
  /** When given, a consistency proof between each two successive checkpoint sizes is written after the second. */
  consistencyProof?: (size1: number, size2: number) => Uint8Array[] | Promise<Uint8Array[]>;
}

/** Serialises one line: canonical JSON (sorted keys, no white space), without the trailing newline. */
export function exportLineText(line: ExportLine): string {
  if (line.type === 'record') return canonicalJson({ type: 'record', ...recordPayload(line) });
  return canonicalJson(line);
}

/**
 * The lines of an export, in order: header; then for each index: its record, its decisions, the checkpoints of
 * that size (sorted by time, then root) and, after the first checkpoint of a new size, the consistency proof from
 * the previous checkpoint size. Each string is one line without its newline.
 */
export async function* exportLines(source: ExportSource): AsyncGenerator<string> {
  const { from, to } = source;
  if (!Number.isSafeInteger(from) || from < 1 || !Number.isSafeInteger(to) || to < from - 1) throw new RangeError(`bad export range ${from}..${to}`);
  if (from > 1 && !source.anchor) throw new RangeError('an export that starts after index 1 needs the anchor (prev hash and frontier)');
  const anchor = source.anchor ?? { prev: GENESIS_PREV, frontier: { size: 0, hashes: [] } };
  if (anchor.frontier.size !== from - 1) throw new RangeError(`the anchor frontier has size ${anchor.frontier.size}, want ${from - 1}`);
  const header: ExportHeader = {
    type: 'header',
    v: 1,
    federation: source.federation,
    swarm: source.swarm,
    from,
    to,
    exportedAt: source.exportedAt,
    prev: anchor.prev,
    frontier: anchor.frontier,
    decisions: source.decisionsAt !== undefined,
    ...(source.genesis
      ? { genesis: { members: [...source.genesis.members].sort(), mode: source.genesis.mode, ...(source.genesis.rules ? { rules: { policy: source.genesis.rules.policy, adminPolicy: source.genesis.rules.adminPolicy } } : {}) } }
      : {}),
  };
  yield exportLineText(header);

  const checkpoints = Array.isArray(source.checkpoints)
    ? [...(source.checkpoints as readonly Checkpoint[])].sort((a, b) => a.size - b.size)
    : (source.checkpoints as AsyncIterable<Checkpoint>);
  const pending = ascending(checkpoints);
  let lastCheckpointSize: number | null = null;
  const emitCheckpoints = async function* (size: number): AsyncGenerator<string> {
    const list = await pending.takeUpTo(size);
    if (list.length === 0) return;
    list.sort((a, b) => a.time - b.time || (a.root < b.root ? -1 : a.root > b.root ? 1 : 0));
    for (const cp of list) yield exportLineText({ type: 'checkpoint', ...cp });
    if (source.consistencyProof && lastCheckpointSize !== null && lastCheckpointSize > 0 && lastCheckpointSize < size) {
      const hashes = (await source.consistencyProof(lastCheckpointSize, size)).map(toHex);
      yield exportLineText({ type: 'proof', kind: 'consistency', size1: lastCheckpointSize, size2: size, hashes });
    }
    lastCheckpointSize = size;
  };

  yield* emitCheckpoints(from - 1);
  let expected = from;
  if (to >= from) for await (const record of source.records) {
    if (record.index !== expected) throw new RangeError(`export: expected record ${expected}, the source gave ${record.index}`);
    yield exportLineText({ type: 'record', ...record });
    if (source.decisionsAt) {
      const decisions = [...source.decisionsAt(expected)].sort((a, b) => (a.subject < b.subject ? -1 : a.subject > b.subject ? 1 : 0));
      for (const d of decisions) yield exportLineText({ type: 'decision', index: expected, subject: d.subject, value: d.value });
    }
    yield* emitCheckpoints(expected);
    expected++;
    if (expected > to) break;
  }
  await pending.close();
  if (expected !== to + 1) throw new RangeError(`export: the source ended at record ${expected - 1}, before ${to}`);
}

/**
 * Checkpoints in ascending size, handed out as the export advances: takeUpTo(size) returns those of exactly `size`
 * and drops smaller ones (outside the range, or of a size with no record in it). Throws when the source goes back.
 */
function ascending(source: Iterable<Checkpoint> | AsyncIterable<Checkpoint>): { takeUpTo(size: number): Promise<Checkpoint[]>; close(): Promise<void> } {
  const iterator = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : (source as Iterable<Checkpoint>)[Symbol.iterator]();
  let ahead: Checkpoint | null = null;
  let done = false;
  let lastSize = -1;
  return {
    async takeUpTo(size: number): Promise<Checkpoint[]> {
      const taken: Checkpoint[] = [];
      while (!done) {
        if (!ahead) {
          const next = await iterator.next();
          if (next.done) {
            done = true;
            break;
          }
          if (next.value.size < lastSize) throw new RangeError(`export: checkpoint of size ${next.value.size} after size ${lastSize} (they must ascend)`);
          lastSize = next.value.size;
          ahead = next.value;
        }
        if (ahead.size > size) break;
        if (ahead.size === size) taken.push(ahead);
        ahead = null;
      }
      return taken;
    },
    /** Lets the source release what it holds (the checkpoints past the export's range are never read). */
    async close(): Promise<void> {
      if (!done) await iterator.return?.();
      done = true;
    },
  };
}

/** Writes an export to a sink (a stream's write, a file handle...), one line and "\n" at a time. */
export async function writeExport(source: ExportSource, write: (chunk: string) => unknown): Promise<number> {
  let count = 0;
  for await (const line of exportLines(source)) {
    await write(`${line}\n`);
    count++;
  }
  return count;
}

export type ReadLine = { lineNumber: number; line: ExportLine } | { lineNumber: number; error: string };

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Splits a byte or text stream into lines ("\n", an optional "\r" before it is dropped), bounded in length. */
export async function* splitLines(stream: AsyncIterable<Uint8Array | string>, maxLineBytes = MAX_EXPORT_LINE_BYTES): AsyncGenerator<{ lineNumber: number; text: string } | { lineNumber: number; error: string }> {
  let pending: Uint8Array[] = [];
  let pendingLength = 0;
  let lineNumber = 0;
  let overflow = false;
  const take = (tail: Uint8Array): { lineNumber: number; text: string } | { lineNumber: number; error: string } => {
    lineNumber++;
    const parts = [...pending, tail];
    const length = pendingLength + tail.length;
    pending = [];
    pendingLength = 0;
    if (overflow) {
      overflow = false;
      return { lineNumber, error: `line longer than ${maxLineBytes} bytes` };
    }
    const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts, length);
    let end = bytes.length;
    if (end > 0 && bytes[end - 1] === 0x0d) end--;
    try {
      return { lineNumber, text: decoder.decode(bytes.subarray(0, end)) };
    } catch {
      return { lineNumber, error: 'line is not valid UTF-8' };
    }
  };
  for await (const chunk of stream) {
    let bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    for (;;) {
      const nl = bytes.indexOf(0x0a);
      if (nl < 0) {
        if (!overflow) {
          if (pendingLength + bytes.length > maxLineBytes) {
            overflow = true;
            pending = [];
            pendingLength = 0;
          } else if (bytes.length > 0) {
            pending.push(bytes.slice());
            pendingLength += bytes.length;
          }
        }
        break;
      }
      const head = bytes.subarray(0, nl);
      if (!overflow && pendingLength + head.length > maxLineBytes) overflow = true;
      yield take(overflow ? new Uint8Array(0) : head);
      bytes = bytes.subarray(nl + 1);
    }
  }
  if (pendingLength > 0 || overflow) yield take(new Uint8Array(0));
}

/**
 * Reads an export: each non-empty line parsed as JSON with a known `type`. Shape checks of records and checkpoints
 * belong to the verifier; here a line is an error only when it is not JSON, not an object, or of an unknown type.
 */
export async function* readExport(stream: AsyncIterable<Uint8Array | string>): AsyncGenerator<ReadLine> {
  for await (const item of splitLines(stream)) {
    if ('error' in item) {
      yield item;
      continue;
    }
    if (item.text.length === 0) continue;
    let value: unknown;
    try {
      value = JSON.parse(item.text);
    } catch {
      yield { lineNumber: item.lineNumber, error: 'line is not JSON' };
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      yield { lineNumber: item.lineNumber, error: 'line is not a JSON object' };
      continue;
    }
    const type = (value as { type?: unknown }).type;
    if (type !== 'header' && type !== 'record' && type !== 'checkpoint' && type !== 'decision' && type !== 'proof') {
      yield { lineNumber: item.lineNumber, error: `unknown line type ${JSON.stringify(type)}` };
      continue;
    }
    yield { lineNumber: item.lineNumber, line: value as ExportLine };
  }
}
