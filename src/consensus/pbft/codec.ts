// Wire codec for PBFT: versioned, byte-exact binary encoding of signed messages, the canonical bytes
// a node signs (signingBytes), the batch encoding behind batch digests, and the durable state.
import type {
  PbftCheckpointProof,
  PbftDurableState,
  PbftMessage,
  PbftMessageType,
  PbftNewViewEntry,
  PbftPreparedCert,
  PbftRequest,
  SignedPbftMessage,
} from './types.ts';

export const PBFT_CODEC_VERSION = 1;
const SIGNING_PREFIX = 'conclave/pbft/v1\n';
const BATCH_PREFIX = 'conclave/pbft/batch/v1\n';
const STATE_MAGIC = 0x50; // 'P'
/** Upper bound on any list length or byte string in a decoded message (a malformed length fails fast). */
const MAX_ITEMS = 1 << 20;

const TAGS: Record<PbftMessageType, number> = {
  request: 1,
  'pre-prepare': 2,
  prepare: 3,
  commit: 4,
  checkpoint: 5,
  'view-change': 6,
  'new-view': 7,
  executed: 8,
};
const TYPES: PbftMessageType[] = ['request', 'request', 'pre-prepare', 'prepare', 'commit', 'checkpoint', 'view-change', 'new-view', 'executed'];

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

const SIGNING_PREFIX_BYTES = utf8.encode(SIGNING_PREFIX);
const BATCH_PREFIX_BYTES = utf8.encode(BATCH_PREFIX);

/** Growable output buffer. One scratch instance is reused by every top-level encode (all are synchronous). */
class Writer {
  private buf = new Uint8Array(4096);
  private len = 0;

  reset(): this {
    this.len = 0;
    return this;
  }

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  u8(v: number): void {
    this.room(1);
    this.buf[this.len++] = v;
  }

  /** Unsigned LEB128 for any safe integer >= 0. */
  uint(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`pbft codec: cannot encode ${v} as an unsigned integer`);
    this.room(8);
    while (v >= 0x80) {
      this.buf[this.len++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.len++] = v;
  }

  bytes(b: Uint8Array): void {
    this.uint(b.length);
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  str(s: string): void {
    // Fast path for ASCII (ids, request ids): no intermediate allocation.
    const n = s.length;
    let ascii = n < 0x80;
    for (let i = 0; ascii && i < n; i++) if (s.charCodeAt(i) > 0x7f) ascii = false;
    if (!ascii) return this.bytes(utf8.encode(s));
    this.room(n + 1);
    this.buf[this.len++] = n;
    for (let i = 0; i < n; i++) this.buf[this.len++] = s.charCodeAt(i);
  }

  raw(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  done(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

class Reader {
  private pos = 0;
  constructor(private readonly b: Uint8Array) {}

  fail(what: string): never {
    throw new Error(`pbft codec: malformed message: ${what} at byte ${this.pos} of ${this.b.length}`);
  }

  u8(what: string): number {
    if (this.pos >= this.b.length) this.fail(`truncated ${what}`);
    return this.b[this.pos++]!;
  }

  uint(what: string): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; ; i++) {
      if (i >= 8) this.fail(`${what} too long`);
      const byte = this.u8(what);
      v += (byte & 0x7f) * mul;
      if ((byte & 0x80) === 0) {
        if (i > 0 && byte === 0) this.fail(`non-canonical ${what}`);
        break;
      }
      mul *= 0x80;
    }
    if (!Number.isSafeInteger(v)) this.fail(`${what} out of range`);
    return v;
  }

  count(what: string): number {
    const n = this.uint(what);
    if (n > MAX_ITEMS || n > this.b.length - this.pos) this.fail(`${what} ${n} exceeds the remaining input`);
    return n;
  }

  bytes(what: string): Uint8Array {
    const n = this.count(`${what} length`);
    const out = this.b.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  str(what: string): string {
    const b = this.bytes(what);
    try {
      return utf8Strict.decode(b);
    } catch {
      return this.fail(`${what} is not UTF-8`);
    }
  }

  end(): void {
    if (this.pos !== this.b.length) this.fail(`${this.b.length - this.pos} trailing bytes`);
  }
}

function writeRequest(w: Writer, r: PbftRequest): void {
  w.str(r.id);
  w.bytes(r.payload);
}

function readRequest(r: Reader): PbftRequest {
  return { id: r.str('request id'), payload: r.bytes('request payload') };
}

function writeRequests(w: Writer, rs: readonly PbftRequest[]): void {
  w.uint(rs.length);
  for (const q of rs) writeRequest(w, q);
}

function readRequests(r: Reader): PbftRequest[] {
  const n = r.count('request count');
  const out: PbftRequest[] = [];
  for (let i = 0; i < n; i++) out.push(readRequest(r));
  return out;
}

function writeSignedList(w: Writer, ms: readonly SignedPbftMessage[]): void {
  w.uint(ms.length);
  for (const m of ms) writeSigned(w, m);
}

function readSignedList(r: Reader, depth: number): SignedPbftMessage[] {
  const n = r.count('message count');
  const out: SignedPbftMessage[] = [];
  for (let i = 0; i < n; i++) out.push(readSigned(r, depth + 1));
  return out;
}

function writeProof(w: Writer, p: PbftCheckpointProof | null): void {
  if (p === null) {
    w.u8(0);
    return;
  }
  w.u8(1);
  w.uint(p.seq);
  w.bytes(p.digest);
  writeSignedList(w, p.proof);
}

function readProof(r: Reader, depth: number): PbftCheckpointProof | null {
  const flag = r.u8('checkpoint flag');
  if (flag === 0) return null;
  if (flag !== 1) r.fail(`checkpoint flag ${flag}`);
  return { seq: r.uint('checkpoint seq'), digest: r.bytes('checkpoint digest'), proof: readSignedList(r, depth) };
}

/** Type tag and body: everything of a message except `to`, `from` and `sig`. */
function writeBody(w: Writer, m: PbftMessage): void {
  const tag = TAGS[m.type];
  if (tag === undefined) throw new Error(`pbft codec: unknown message type ${String((m as { type: unknown }).type)}`);
  w.u8(tag);
  switch (m.type) {
    case 'request':
      writeRequest(w, m.request);
      return;
    case 'pre-prepare':
      w.uint(m.view);
      w.uint(m.seq);
      w.bytes(m.digest);
      writeRequests(w, m.requests);
      return;
    case 'prepare':
    case 'commit':
      w.uint(m.view);
      w.uint(m.seq);
      w.bytes(m.digest);
      return;
    case 'checkpoint':
      w.uint(m.seq);
      w.bytes(m.digest);
      return;
    case 'view-change':
      w.uint(m.view);
      writeProof(w, m.checkpoint);
      w.uint(m.prepared.length);
      for (const c of m.prepared) {
        w.uint(c.view);
        w.uint(c.seq);
        w.bytes(c.digest);
        writeRequests(w, c.requests);
        writeSignedList(w, c.prepares);
      }
      return;
    case 'executed':
      w.uint(m.seq);
      w.bytes(m.digest);
      writeRequests(w, m.requests);
      return;
    case 'new-view':
      w.uint(m.view);
      writeSignedList(w, m.viewChanges);
      w.uint(m.prePrepares.length);
      for (const e of m.prePrepares) {
        w.uint(e.seq);
        w.bytes(e.digest);
        writeRequests(w, e.requests);
      }
      return;
  }
}

type Body = PbftMessage extends infer M ? (M extends PbftMessage ? Omit<M, 'to'> : never) : never;

function readBody(r: Reader, depth: number): Body {
  const tag = r.u8('type tag');
  const type = tag >= 1 && tag < TYPES.length ? TYPES[tag]! : r.fail(`unknown type tag ${tag}`);
  switch (type) {
    case 'request':
      return { type, request: readRequest(r) };
    case 'pre-prepare':
      return { type, view: r.uint('view'), seq: r.uint('seq'), digest: r.bytes('digest'), requests: readRequests(r) };
    case 'prepare':
    case 'commit':
      return { type, view: r.uint('view'), seq: r.uint('seq'), digest: r.bytes('digest') };
    case 'checkpoint':
      return { type, seq: r.uint('seq'), digest: r.bytes('digest') };
    case 'executed':
      return { type, seq: r.uint('seq'), digest: r.bytes('digest'), requests: readRequests(r) };
    case 'view-change': {
      const view = r.uint('view');
      const checkpoint = readProof(r, depth);
      const n = r.count('prepared count');
      const prepared: PbftPreparedCert[] = [];
      for (let i = 0; i < n; i++) {
        prepared.push({
          view: r.uint('cert view'),
          seq: r.uint('cert seq'),
          digest: r.bytes('cert digest'),
          requests: readRequests(r),
          prepares: readSignedList(r, depth),
        });
      }
      return { type, view, checkpoint, prepared };
    }
    case 'new-view': {
      const view = r.uint('view');
      const viewChanges = readSignedList(r, depth);
      const n = r.count('pre-prepare count');
      const prePrepares: PbftNewViewEntry[] = [];
      for (let i = 0; i < n; i++) prePrepares.push({ seq: r.uint('seq'), digest: r.bytes('digest'), requests: readRequests(r) });
      return { type, view, viewChanges, prePrepares };
    }
  }
}

function writeSigned(w: Writer, m: SignedPbftMessage): void {
  w.u8(PBFT_CODEC_VERSION);
  w.str(m.from);
  w.str(m.to);
  w.bytes(m.sig);
  writeBody(w, m);
}

function readSigned(r: Reader, depth: number): SignedPbftMessage {
  if (depth > 4) r.fail('messages nested too deeply');
  const version = r.u8('version');
  if (version !== PBFT_CODEC_VERSION) r.fail(`unsupported version ${version} (this build reads ${PBFT_CODEC_VERSION})`);
  const from = r.str('from');
  const to = r.str('to');
  const sig = r.bytes('sig');
  const body = readBody(r, depth);
  return { ...body, to, from, sig } as SignedPbftMessage;
}

/** Wire bytes of a signed message (version 1). */
const scratch = new Writer();

export function encodePbftMessage(m: SignedPbftMessage): Uint8Array {
  const w = scratch.reset();
  writeSigned(w, m);
  return w.done();
}

/** Inverse of encodePbftMessage; throws an Error naming the defect on malformed or non-canonical input. */
export function decodePbftMessage(bytes: Uint8Array): SignedPbftMessage {
  const r = new Reader(bytes);
  const m = readSigned(r, 0);
  r.end();
  return m;
}

/**
 * The exact bytes a node signs and a receiver verifies: a domain prefix, the swarm id, the sender and the
 * message body. `to` is deliberately excluded: one vote has one signed form whoever it is sent to.
 */
export function signingBytes(msg: PbftMessage & { from: string }, swarm: string): Uint8Array {
  const w = scratch.reset();
  w.raw(SIGNING_PREFIX_BYTES);
  w.str(swarm);
  w.str(msg.from);
  writeBody(w, msg);
  return w.done();
}

/** Canonical encoding of a batch; its hash is the batch digest. */
export function encodeBatch(requests: readonly PbftRequest[]): Uint8Array {
  const w = scratch.reset();
  w.raw(BATCH_PREFIX_BYTES);
  writeRequests(w, requests);
  return w.done();
}

/** Serialises a durable state (hard state, stable checkpoint and log) for storage. */
export function encodePbftDurableState(s: PbftDurableState): Uint8Array {
  const w = scratch.reset();
  w.u8(STATE_MAGIC);
  w.u8(PBFT_CODEC_VERSION);
  w.uint(s.view);
  w.u8(s.inViewChange ? 1 : 0);
  writeProof(w, s.stableCheckpoint);
  writeSignedList(w, s.log);
  return w.done();
}

export function decodePbftDurableState(bytes: Uint8Array): PbftDurableState {
  const r = new Reader(bytes);
  if (r.u8('magic') !== STATE_MAGIC) r.fail('not a PBFT durable state');
  const version = r.u8('version');
  if (version !== PBFT_CODEC_VERSION) r.fail(`unsupported state version ${version}`);
  const view = r.uint('view');
  const flag = r.u8('inViewChange');
  if (flag > 1) r.fail(`inViewChange flag ${flag}`);
  const stableCheckpoint = readProof(r, 0);
  const log = readSignedList(r, -1);
  r.end();
  return { view, inViewChange: flag === 1, stableCheckpoint, log };
}
