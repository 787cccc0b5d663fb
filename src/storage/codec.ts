// On-disk value encodings of the Raft records (versioned, big-endian, no JSON on the hot path).
//   entry      [v=1][type: 0 normal | 1 conf][term u64][data...]            (index lives in the key)
//   hard state [v=1][term u64][commit u64][voteLen u16][vote utf8]          (voteLen 0xffff = no vote)
//   log meta   [v=1][compacted index u64][compacted term u64]
//   snapshot   [v=1][index u64][term u64][confLen u32][conf JSON][data...]
//   conf       [v=1][conf JSON]                                              JSON: {"voters":[..],"learners":[..]}
import type { ConfState, Entry, HardState, Snapshot } from '../consensus/raft/types.ts';
import { corrupt } from './errors.ts';
import { readU64, u64 } from './keys.ts';

const V1 = 1;
const NO_VOTE = 0xffff;

export interface LogMeta {
  /** index and term of the last entry removed by compaction or a snapshot install (0, 0 when none) */
  compactedIndex: number;
  compactedTerm: number;
}

function bytes(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** A copy as a plain Uint8Array (not a Buffer view into a larger allocation). */
function copyOut(b: Uint8Array, start: number): Uint8Array {
  return new Uint8Array(b.subarray(start));
}

function version(b: Uint8Array, what: string): void {
  corrupt(b.byteLength > 0 && b[0] === V1, () => `${what}: unknown encoding version ${b[0]}`);
}

export function encodeEntry(e: Entry): Buffer {
  const head = Buffer.allocUnsafe(10);
  head[0] = V1;
  head[1] = e.type === 'conf' ? 1 : 0;
  u64(e.term).copy(head, 2);
  return Buffer.concat([head, bytes(e.data)]);
}

export function entryTerm(value: Uint8Array): number {
  corrupt(value.byteLength >= 10, () => 'entry: value shorter than its header');
  version(value, 'entry');
  return readU64(value, 2);
}

export function decodeEntry(index: number, value: Uint8Array): Entry {
  const term = entryTerm(value);
  corrupt(value[1] === 0 || value[1] === 1, () => `entry ${index}: unknown type ${value[1]}`);
  return { index, term, type: value[1] === 1 ? 'conf' : 'normal', data: copyOut(value, 10) };
}

export function encodeHardState(hs: HardState): Buffer {
  const vote = hs.vote === null ? null : Buffer.from(hs.vote, 'utf8');
  if (vote && vote.byteLength >= NO_VOTE) throw new RangeError('vote id too long');
  const head = Buffer.allocUnsafe(19);
  head[0] = V1;
  u64(hs.term).copy(head, 1);
  u64(hs.commit).copy(head, 9);
  head.writeUInt16BE(vote ? vote.byteLength : NO_VOTE, 17);
  return vote ? Buffer.concat([head, vote]) : head;
}

export function decodeHardState(value: Uint8Array): HardState {
  version(value, 'hard state');
  corrupt(value.byteLength >= 19, () => 'hard state: truncated');
  const b = bytes(value);
  const voteLen = b.readUInt16BE(17);
  const vote = voteLen === NO_VOTE ? null : b.subarray(19, 19 + voteLen).toString('utf8');
  corrupt(vote === null || b.byteLength === 19 + voteLen, () => 'hard state: bad vote length');
  return { term: readU64(b, 1), commit: readU64(b, 9), vote };
}

export function encodeLogMeta(m: LogMeta): Buffer {
  return Buffer.concat([Buffer.from([V1]), u64(m.compactedIndex), u64(m.compactedTerm)]);
}

export function decodeLogMeta(value: Uint8Array): LogMeta {
  version(value, 'log meta');
  corrupt(value.byteLength === 17, () => 'log meta: bad length');
  return { compactedIndex: readU64(value, 1), compactedTerm: readU64(value, 9) };
}

function confJson(conf: ConfState): Buffer {
  return Buffer.from(JSON.stringify({ voters: [...conf.voters], learners: [...conf.learners] }), 'utf8');
}

function parseConf(text: string, what: string): ConfState {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    corrupt(false, () => `${what}: conf state is not JSON`);
  }
  const c = parsed as { voters?: unknown; learners?: unknown };
  const isIds = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');
  corrupt(isIds(c.voters) && isIds(c.learners), () => `${what}: malformed conf state`);
  return { voters: c.voters as string[], learners: c.learners as string[] };
}

export function encodeConf(conf: ConfState): Buffer {
  return Buffer.concat([Buffer.from([V1]), confJson(conf)]);
}

export function decodeConf(value: Uint8Array): ConfState {
  version(value, 'conf');
  return parseConf(bytes(value).subarray(1).toString('utf8'), 'conf');
}

export function encodeSnapshot(s: Snapshot): Buffer {
  const conf = confJson(s.conf);
  const head = Buffer.allocUnsafe(21);
  head[0] = V1;
  u64(s.index).copy(head, 1);
  u64(s.term).copy(head, 9);
  head.writeUInt32BE(conf.byteLength, 17);
  return Buffer.concat([head, conf, bytes(s.data)]);
}

export function decodeSnapshot(value: Uint8Array): Snapshot {
  version(value, 'snapshot');
  corrupt(value.byteLength >= 21, () => 'snapshot: truncated');
  const b = bytes(value);
  const confLen = b.readUInt32BE(17);
  corrupt(b.byteLength >= 21 + confLen, () => 'snapshot: truncated conf');
  const conf = parseConf(b.subarray(21, 21 + confLen).toString('utf8'), 'snapshot');
  return { index: readU64(b, 1), term: readU64(b, 9), conf, data: copyOut(b, 21 + confLen) };
}
