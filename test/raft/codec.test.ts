// Wire codec: byte-exact round trip of every message type, and clear errors on malformed input.
import { describe, it, expect } from 'vitest';
import { decodeMessages, encodeMessages } from '../../src/consensus/raft/codec.ts';
import { Prng } from '../../src/sim/prng.ts';
import type { Message } from '../../src/consensus/raft/types.ts';

const b = (...xs: number[]) => new Uint8Array(xs);

const samples: Message[] = [
  {
    type: 'app',
    from: 'acme',
    to: 'globex',
    term: 7,
    index: 41,
    logTerm: 6,
    commit: 40,
    entries: [
      { index: 42, term: 7, type: 'normal', data: b(0, 255, 1, 2) },
      { index: 43, term: 7, type: 'conf', data: b(1, 1, 120) },
      { index: 44, term: 7, type: 'normal', data: b() },
    ],
  },
  { type: 'app', from: 'a', to: 'b', term: 2 ** 53 - 1, index: 2 ** 40, logTerm: 0, commit: 0, entries: [] },
  { type: 'app-resp', from: 'b', to: 'a', term: 3, index: 9, reject: true, rejectHint: 5, logTerm: 2 },
  { type: 'vote', from: 'ünïcødé-org', to: 'b', term: 3, index: 9, logTerm: 2, transfer: true },
  { type: 'prevote', from: 'a', to: 'b', term: 4, index: 9, logTerm: 2, transfer: false },
  { type: 'vote-resp', from: 'b', to: 'a', term: 3, reject: false },
  { type: 'prevote-resp', from: 'b', to: 'a', term: 4, reject: true },
  { type: 'heartbeat', from: 'a', to: 'b', term: 3, commit: 8, ctx: null, quiesce: false },
  { type: 'heartbeat', from: 'a', to: 'b', term: 3, commit: 8, ctx: b(9, 9), quiesce: false },
  { type: 'heartbeat', from: 'a', to: 'b', term: 3, commit: 8, ctx: null, quiesce: true },
  { type: 'heartbeat-resp', from: 'b', to: 'a', term: 3, ctx: b() },
  { type: 'heartbeat-resp', from: 'b', to: 'a', term: 3, ctx: null },
  { type: 'snap', from: 'a', to: 'b', term: 3, snapshot: { index: 100, term: 3, conf: { voters: ['a', 'b'], learners: ['c'] }, data: b(1, 2, 3) } },
  { type: 'timeout-now', from: 'a', to: 'b', term: 3 },
  { type: 'read-index', from: 'b', to: 'a', term: 3, ctx: b(7) },
  { type: 'read-index-resp', from: 'a', to: 'b', term: 3, index: 8, ctx: b(7) },
];

describe('raft codec', () => {
  it('round-trips every message type exactly, payload bytes included', () => {
    const bytes = encodeMessages(samples);
    const decoded = decodeMessages(bytes);
    expect(decoded).toEqual(samples);
    expect(encodeMessages(decoded)).toEqual(bytes);
    // Byte arrays come back as real Uint8Arrays with the same contents.
    const app = decoded[0] as Extract<Message, { type: 'app' }>;
    expect(app.entries[0]!.data).toBeInstanceOf(Uint8Array);
    expect([...app.entries[0]!.data]).toEqual([0, 255, 1, 2]);
  });

  it('decodes a batch that sits inside a larger buffer (non-zero byteOffset)', () => {
    const bytes = encodeMessages(samples.slice(0, 3));
    const big = new Uint8Array(bytes.length + 10);
    big.set(bytes, 5);
    expect(decodeMessages(big.subarray(5, 5 + bytes.length))).toEqual(samples.slice(0, 3));
  });

  it('an empty batch round-trips', () => {
    expect(decodeMessages(encodeMessages([]))).toEqual([]);
  });

  it('every truncation of a valid batch is refused with a codec error', () => {
    const bytes = encodeMessages(samples);
    for (let n = 0; n < bytes.length; n++) {
      expect(() => decodeMessages(bytes.subarray(0, n)), `prefix of ${n} bytes`).toThrow(/^raft codec: /);
    }
  });

  it('names the problem: bad magic, unknown version, unknown type, bad boolean, trailing bytes, huge count', () => {
    const good = encodeMessages([samples[5]!]); // vote-resp: ..., reject bool is the last byte
    const bad = (mutate: (x: Uint8Array) => Uint8Array) => () => decodeMessages(mutate(good.slice()));
    expect(bad((x) => ((x[0] = 0), x))).toThrow(/bad magic/);
    expect(bad((x) => ((x[2] = 99), x))).toThrow(/unsupported version 99/);
    expect(bad((x) => ((x[7] = 200), x))).toThrow(/unknown message type code 200/);
    expect(bad((x) => ((x[x.length - 1] = 2), x))).toThrow(/must be 0 or 1/);
    expect(bad((x) => new Uint8Array([...x, 0]))).toThrow(/1 trailing bytes/);
    expect(bad((x) => ((x[3] = 0xff), x))).toThrow(/message count .* exceeds the input/);
  });

  it('refuses invalid UTF-8 in node ids', () => {
    const good = encodeMessages([{ type: 'timeout-now', from: 'a', to: 'b', term: 1 }]);
    const x = good.slice();
    // layout: magic(2) version(1) count(4) type(1) from-len(4) 'a'
    x[12] = 0xff;
    expect(() => decodeMessages(x)).toThrow(/not valid UTF-8/);
  });

  it('refuses to encode what it could not decode (negative or fractional numbers)', () => {
    expect(() => encodeMessages([{ type: 'timeout-now', from: 'a', to: 'b', term: -1 }])).toThrow(/raft codec/);
    expect(() => encodeMessages([{ type: 'timeout-now', from: 'a', to: 'b', term: 1.5 }])).toThrow(/raft codec/);
  });

  it('random corruption either decodes or throws a codec error, never anything else', () => {
    const good = encodeMessages(samples);
    const rng = new Prng(42);
    for (let i = 0; i < 2000; i++) {
      const x = good.slice();
      for (let k = 0; k < 1 + rng.int(4); k++) x[rng.int(x.length)] = rng.int(256);
      try {
        decodeMessages(x);
      } catch (err) {
        expect(err).toBeInstanceOf(Error);
        expect((err as Error).message).toMatch(/^raft codec: /);
      }
    }
  });
});
