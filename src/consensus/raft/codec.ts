// The versioned binary wire format of Raft messages: encodeMessages / decodeMessages, byte-exact round trip.
//
// Layout (all integers big-endian): magic "RF", version u8, count u32, then per message:
// type u8, from str, to str, term u53, then the fields of its type in declaration order.
// str = u32 length + UTF-8; bytes = u32 length + raw; u53 = u32 high + u32 low (< 2^53);
// bool = u8 0|1; opt(bytes) = u8 0|1 then bytes; entry = index u53, term u53, type u8 (0 normal, 1 conf), data bytes;
// conf = voters (u32 count, str...) + learners; snapshot = index u53, term u53, conf, data bytes.
// Version 2 added heartbeat.quiesce (bool, after ctx); version 1 batches are refused, not guessed at.
import type { ConfState, Entry, Message, MessageType, Snapshot } from './types.ts';

const MAGIC0 = 0x52; // 'R'
const MAGIC1 = 0x46; // 'F'
export const CODEC_VERSION = 2;

const TYPE_CODES: Record<MessageType, number> = {
  app: 1,
  'app-resp': 2,
  vote: 3,
  'vote-resp': 4,
  prevote: 5,
  'prevote-resp': 6,
  heartbeat: 7,
  'heartbeat-resp': 8,
  snap: 9,
  'timeout-now': 10,
  'read-index': 11,
  'read-index-resp': 12,
};
const TYPES_BY_CODE = new Map(Object.entries(TYPE_CODES).map(([t, c]) => [c, t as MessageType]));

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

class Writer {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  private pos = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  u32(v: number): void {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`raft codec: ${v} is not a u32`);
    this.ensure(4);
    this.view.setUint32(this.pos, v);
    this.pos += 4;
  }

  u53(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`raft codec: ${v} is not a non-negative safe integer`);
    this.u32(Math.floor(v / 0x100000000));
    this.u32(v % 0x100000000);
  }

  bool(v: boolean): void {
    this.u8(v ? 1 : 0);
  }

  bytes(v: Uint8Array): void {
    this.u32(v.length);
    this.ensure(v.length);
    this.buf.set(v, this.pos);
    this.pos += v.length;
  }

  str(v: string): void {
    this.bytes(utf8.encode(v));
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

class Reader {
  private pos = 0;
  private readonly view: DataView;

  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) {
      throw new Error(`raft codec: truncated input: ${what} needs ${n} bytes at offset ${this.pos}, ${this.buf.length - this.pos} left`);
    }
  }

  remaining(): number {
    return this.buf.length - this.pos;
  }

  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  u53(what: string): number {
    const hi = this.u32(what);
    const lo = this.u32(what);
    if (hi > 0x1fffff) throw new Error(`raft codec: ${what} exceeds 2^53`);
    return hi * 0x100000000 + lo;
  }

  bool(what: string): boolean {
    const v = this.u8(what);
    if (v > 1) throw new Error(`raft codec: ${what} must be 0 or 1, got ${v}`);
    return v === 1;
  }

  bytes(what: string): Uint8Array {
    const n = this.u32(what);
    this.need(n, what);
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  str(what: string): string {
    try {
      return utf8Strict.decode(this.bytes(what));
    } catch (err) {
      if (err instanceof TypeError) throw new Error(`raft codec: ${what} is not valid UTF-8`);
      throw err;
    }
  }
}

function writeEntry(w: Writer, e: Entry): void {
  w.u53(e.index);
  w.u53(e.term);
  w.u8(e.type === 'conf' ? 1 : 0);
  w.bytes(e.data);
}

function readEntry(r: Reader): Entry {
  const index = r.u53('entry index');
  const term = r.u53('entry term');
  const code = r.u8('entry type');
  if (code > 1) throw new Error(`raft codec: unknown entry type ${code}`);
  return { index, term, type: code === 1 ? 'conf' : 'normal', data: r.bytes('entry data') };
}

function writeIds(w: Writer, ids: string[]): void {
  w.u32(ids.length);
  for (const id of ids) w.str(id);
}

function readIds(r: Reader, what: string): string[] {
  const n = r.u32(what);
  // Every id costs at least its 4-byte length: a bigger count is malformed, not a reason to allocate.
  if (n * 4 > r.remaining()) throw new Error(`raft codec: ${what} count ${n} exceeds the input`);
  return Array.from({ length: n }, () => r.str(what));
}

function writeSnapshot(w: Writer, s: Snapshot): void {
  w.u53(s.index);
  w.u53(s.term);
  writeIds(w, s.conf.voters);
  writeIds(w, s.conf.learners);
  w.bytes(s.data);
}

function readSnapshot(r: Reader): Snapshot {
  const index = r.u53('snapshot index');
  const term = r.u53('snapshot term');
  const conf: ConfState = { voters: readIds(r, 'snapshot voters'), learners: readIds(r, 'snapshot learners') };
  return { index, term, conf, data: r.bytes('snapshot data') };
}

function writeOptBytes(w: Writer, v: Uint8Array | null): void {
  w.bool(v !== null);
  if (v !== null) w.bytes(v);
}

function readOptBytes(r: Reader, what: string): Uint8Array | null {
  return r.bool(what) ? r.bytes(what) : null;
}

function writeMessage(w: Writer, m: Message): void {
  const code = TYPE_CODES[m.type];
  if (code === undefined) throw new Error(`raft codec: cannot encode message type ${String(m.type)}`);
  w.u8(code);
  w.str(m.from);
  w.str(m.to);
  w.u53(m.term);
  switch (m.type) {
    case 'app':
      w.u53(m.index);
      w.u53(m.logTerm);
      w.u32(m.entries.length);
      for (const e of m.entries) writeEntry(w, e);
      w.u53(m.commit);
      return;
    case 'app-resp':
      w.u53(m.index);
      w.bool(m.reject);
      w.u53(m.rejectHint);
      w.u53(m.logTerm);
      return;
    case 'vote':
    case 'prevote':
      w.u53(m.index);
      w.u53(m.logTerm);
      w.bool(m.transfer);
      return;
    case 'vote-resp':
    case 'prevote-resp':
      w.bool(m.reject);
      return;
    case 'heartbeat':
      w.u53(m.commit);
      writeOptBytes(w, m.ctx);
      w.bool(m.quiesce);
      return;
    case 'heartbeat-resp':
      writeOptBytes(w, m.ctx);
      return;
    case 'snap':
      writeSnapshot(w, m.snapshot);
      return;
    case 'timeout-now':
      return;
    case 'read-index':
      w.bytes(m.ctx);
      return;
    case 'read-index-resp':
      w.u53(m.index);
      w.bytes(m.ctx);
      return;
  }
}

function readMessage(r: Reader): Message {
  const code = r.u8('message type');
  const type = TYPES_BY_CODE.get(code);
  if (type === undefined) throw new Error(`raft codec: unknown message type code ${code}`);
  const from = r.str('from');
  const to = r.str('to');
  const term = r.u53('term');
  switch (type) {
    case 'app': {
      const index = r.u53('app index');
      const logTerm = r.u53('app logTerm');
      const n = r.u32('entry count');
      // An entry takes at least 21 bytes: refuse counts the input cannot hold before allocating.
      if (n * 21 > r.remaining()) throw new Error(`raft codec: entry count ${n} exceeds the input`);
      const entries = Array.from({ length: n }, () => readEntry(r));
      return { type, from, to, term, index, logTerm, entries, commit: r.u53('app commit') };
    }
    case 'app-resp':
      return { type, from, to, term, index: r.u53('index'), reject: r.bool('reject'), rejectHint: r.u53('rejectHint'), logTerm: r.u53('logTerm') };
    case 'vote':
    case 'prevote':
      return { type, from, to, term, index: r.u53('index'), logTerm: r.u53('logTerm'), transfer: r.bool('transfer') };
    case 'vote-resp':
    case 'prevote-resp':
      return { type, from, to, term, reject: r.bool('reject') };
    case 'heartbeat':
      return { type, from, to, term, commit: r.u53('commit'), ctx: readOptBytes(r, 'ctx'), quiesce: r.bool('quiesce') };
    case 'heartbeat-resp':
      return { type, from, to, term, ctx: readOptBytes(r, 'ctx') };
    case 'snap':
      return { type, from, to, term, snapshot: readSnapshot(r) };
    case 'timeout-now':
      return { type, from, to, term };
    case 'read-index':
      return { type, from, to, term, ctx: r.bytes('ctx') };
    case 'read-index-resp':
      return { type, from, to, term, index: r.u53('index'), ctx: r.bytes('ctx') };
  }
}

export function encodeMessages(msgs: Message[]): Uint8Array {
  const w = new Writer();
  w.u8(MAGIC0);
  w.u8(MAGIC1);
  w.u8(CODEC_VERSION);
  w.u32(msgs.length);
  for (const m of msgs) writeMessage(w, m);
  return w.finish();
}

/** Decodes a batch; throws an Error naming the problem on any malformed, truncated or trailing input. */
export function decodeMessages(bytes: Uint8Array): Message[] {
  if (!(bytes instanceof Uint8Array)) throw new Error('raft codec: input is not a Uint8Array');
  const r = new Reader(bytes);
  if (r.u8('magic') !== MAGIC0 || r.u8('magic') !== MAGIC1) throw new Error('raft codec: bad magic (not a Raft message batch)');
  const version = r.u8('version');
  if (version !== CODEC_VERSION) throw new Error(`raft codec: unsupported version ${version} (this node speaks ${CODEC_VERSION})`);
  const count = r.u32('message count');
  // Each message needs at least 17 bytes: type (1), two string lengths (4 + 4), term (8).
  if (count * 17 > r.remaining()) throw new Error(`raft codec: message count ${count} exceeds the input`);
  const out: Message[] = [];
  for (let i = 0; i < count; i++) out.push(readMessage(r));
  if (r.remaining() !== 0) throw new Error(`raft codec: ${r.remaining()} trailing bytes after ${count} messages`);
  return out;
}
