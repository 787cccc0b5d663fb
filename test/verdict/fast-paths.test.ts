// The fast paths of verdict parsing, canonical JSON, base64url, command decoding, verdict hashes and audit records
// against their earlier implementations (copied here, or test/verdict/reference-format.ts), over many generated
// inputs: the same bytes out, the same inputs refused with the same errors. Any divergence fails a case here.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AuditLog, makeRecord, recordHash, recordLeafHash, recordPayload, recordShapeProblem, type AuditRecord } from '../../src/audit/chain.ts';
import { canonicalBytes, canonicalJson, referenceCanonicalJson } from '../../src/crypto/canonical.ts';
import { generateSigningKey, signBytes } from '../../src/crypto/ed25519.ts';
import { toHex, utf8 } from '../../src/crypto/encoding.ts';
import { sha256 } from '../../src/crypto/hash.ts';
import { seededRandom } from '../../src/sim/prng.ts';
import { decodeBase64Url, parseVerdictJws, VerdictError } from '../../src/verdict/format.ts';
import { DecisionMachine } from '../../src/verdict/machine.ts';
import { decodeCommand, encodeCommand, signProposal, validateCommand } from '../../src/verdict/proposal.ts';
import { jwsHashOf } from '../../src/verdict/verify.ts';
import { makeFederation, makeSwarm, verdictOf } from './fixtures.ts';
import * as reference from './reference-format.ts';

// ---- the earlier implementations ---------------------------------------------------------------------------

/** canonical.ts canonicalJson before its fast path (commit ddc54e0), verbatim. */
function oldCanonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isSafeInteger(value)) throw new Error(`canonical JSON allows only safe integers, got ${value}`);
      return String(value);
    case 'string':
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((item) => oldCanonicalJson(item)).join(',')}]`;
      if (value instanceof Uint8Array) throw new Error('canonical JSON cannot hold raw bytes; encode them as base64url');
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record)
        .filter((key) => record[key] !== undefined)
        .sort();
      return `{${keys.map((key) => `${JSON.stringify(key)}:${oldCanonicalJson(record[key])}`).join(',')}}`;
    }
    default:
      throw new Error(`canonical JSON cannot encode a ${typeof value}`);
  }
}

/** proposal.ts decodeCommand before it compared text (bytes re-encoded and compared byte by byte). */
function oldDecodeCommand(bytes: Uint8Array): unknown {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new VerdictError('MALFORMED_COMMAND', 'a log command must be UTF-8 JSON');
  }
  const cmd = validateCommand(value);
  if (Buffer.compare(Buffer.from(utf8(oldCanonicalJson(cmd))), Buffer.from(bytes)) !== 0) {
    throw new VerdictError('MALFORMED_COMMAND', 'the command is not in canonical JSON form');
  }
  return cmd;
}

/** What a call gave: its value, or its error's class, message and verdict code and field. */
function outcome(fn: () => unknown): unknown {
  try {
    return { ok: fn() };
  } catch (error) {
    const e = error as Error & { code?: string; field?: string };
    return { threw: e.constructor.name, message: e.message, code: e.code, field: e.field };
  }
}

/** Like outcome, but with the two VerdictError classes (current and reference copy) seen as one. */
function verdictOutcome(fn: () => unknown): unknown {
  const result = outcome(fn) as { threw?: string };
  if (result.threw === 'VerdictError') result.threw = 'VerdictError (either copy)';
  return result;
}

// ---- generators --------------------------------------------------------------------------------------------

const rand = seededRandom(8785);
const int = (n: number): number => Math.floor(rand() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;

/** Code units that stress JSON escaping and UTF-8: controls, quote, backslash, DEL, C1, U+2028, BOM, surrogates. */
const SPECIAL_UNITS = [0x00, 0x01, 0x08, 0x09, 0x0a, 0x0d, 0x1f, 0x20, 0x22, 0x2f, 0x5c, 0x7f, 0x80, 0x9f, 0xe9, 0x2028, 0x2029, 0xfeff, 0xfffd, 0xffff];

function randomString(maxLength: number): string {
  const length = int(maxLength + 1);
  let out = '';
  while (out.length < length) {
    const kind = int(10);
    if (kind < 4) out += String.fromCharCode(0x20 + int(0x5f)); // printable ASCII (quote and backslash included)
    else if (kind < 6) out += String.fromCharCode(pick(SPECIAL_UNITS));
    else if (kind === 6) out += String.fromCodePoint(0x10000 + int(0x100000)); // a surrogate pair
    else if (kind === 7) out += String.fromCharCode(0xd800 + int(0x800)); // a lone surrogate (high or low)
    else if (kind === 8) out += String.fromCharCode(0x100 + int(0xd700)); // BMP, below the surrogates
    else out += String.fromCharCode(int(0x20)); // C0 control
  }
  return out;
}

const KEY_POOL = ['v', 'a', 'b', 'B', 'aa', 'ab', '1', '2', '10', '01', '-1', '__proto__', 'toJSON', 'constructor', 'é', '\u2028', '\ud83d\ude00', '\ud800', '', ' ', '"', '\\'];

function randomKey(): string {
  return rand() < 0.7 ? pick(KEY_POOL) : randomString(6);
}

/** Random JSON-ish values, with some that canonical JSON must refuse (floats, undefined in arrays, bytes …). */
function randomValue(depth: number, allowBad: boolean): unknown {
  const kind = int(depth > 3 ? 7 : 11);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return rand() < 0.5;
    case 2:
      return pick([0, -0, 1, -1, 42, 2 ** 31, -(2 ** 31) - 1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, int(1e9) - 5e8]);
    case 3:
    case 4:
      return randomString(12);
    case 5:
      return randomString(300);
    case 6:
      if (!allowBad) return 'fine';
      return pick<unknown>([1.5, NaN, Infinity, -Infinity, Number.MAX_SAFE_INTEGER + 1, 2 ** 64, undefined, () => 1, Symbol('s'), 10n, new Uint8Array([1, 2])]);
    case 7:
    case 8: {
      // arrays: of strings only (a proposal's batch), or mixed
      const length = int(6);
      return rand() < 0.5 ? Array.from({ length }, () => randomString(40)) : Array.from({ length }, () => randomValue(depth + 1, allowBad));
    }
    default: {
      // objects, sometimes built with keys already in canonical order, sometimes with undefined members
      const keys = Array.from({ length: int(7) }, randomKey);
      if (rand() < 0.4) keys.sort();
      const object: Record<string, unknown> = rand() < 0.1 ? (Object.create(null) as Record<string, unknown>) : {};
      for (const key of keys) {
        const value = rand() < 0.1 ? undefined : randomValue(depth + 1, allowBad);
        Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
      }
      return object;
    }
  }
}

// ---- canonical JSON ----------------------------------------------------------------------------------------

describe('canonicalJson fast path', () => {
  it('gives the earlier serializer’s exact output (or its exact error) on 20000 random values', () => {
    for (let i = 0; i < 20_000; i++) {
      const value = randomValue(0, i % 4 === 0);
      const expected = outcome(() => oldCanonicalJson(value));
      expect(outcome(() => canonicalJson(value)), `case ${i}`).toEqual(expected);
      expect(outcome(() => referenceCanonicalJson(value)), `case ${i} (reference)`).toEqual(expected);
    }
  });

  it('agrees on the edge shapes: holes, undefined items, toJSON, exotic objects, integer-like keys, bytes', () => {
    const holes: unknown[] = ['a'];
    holes[2] = 'c';
    const arrayWithToJson = Object.assign(['a', 'b'], { toJSON: () => 'hijacked' });
    const objectWithToJson = { b: 1, toJSON: 'data, not a method' };
    const cases: unknown[] = [
      holes,
      [undefined],
      ['a', undefined],
      [1, , 2], // eslint-disable-line no-sparse-arrays
      arrayWithToJson,
      objectWithToJson,
      { toJSON: () => 1 },
      { '10': 1, '2': 2, '1': 3, b: 4, a: 5 },
      { b: undefined, a: undefined },
      new Date(0),
      new Map([['a', 1]]),
      new Int8Array([1, 2]),
      new Uint8Array([1]),
      Buffer.from('x'),
      { nested: { z: [1, 'x', { y: null, x: true }], a: [] } },
      JSON.parse('{"__proto__": {"b": 1}, "a": 2}'),
      Object.create({ inherited: 1 }),
      -0,
      [-0],
      '\ud800',
      ['\udc00\ud800', '\u2028'],
      10n,
      undefined,
      Symbol('x'),
    ];
    for (const [i, value] of cases.entries()) {
      expect(outcome(() => canonicalJson(value)), `edge case ${i}`).toEqual(outcome(() => oldCanonicalJson(value)));
    }
  });

  it('still agrees when a prototype gains a toJSON (the string-array shortcut steps aside)', () => {
    const proto = String.prototype as unknown as { toJSON?: unknown };
    proto.toJSON = function (this: string, key: string) {
      return `${key}:${this}`;
    };
    try {
      for (const value of [['a', 'b'], { k: ['x'] }, 'plain']) {
        expect(outcome(() => canonicalJson(value))).toEqual(outcome(() => oldCanonicalJson(value)));
      }
    } finally {
      delete proto.toJSON;
    }
  });

  it('canonicalBytes is the UTF-8 of the earlier serializer', () => {
    for (let i = 0; i < 2000; i++) {
      const value = randomValue(0, false);
      expect(Buffer.from(canonicalBytes(value)).equals(Buffer.from(utf8(oldCanonicalJson(value)))), `case ${i}`).toBe(true);
    }
  });
});

// ---- base64url ---------------------------------------------------------------------------------------------

/** base64url strings: valid ones of every length, and ones broken in each way a decoder must notice. */
function base64UrlCases(): string[] {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const cases: string[] = [];
  for (let length = 0; length <= 100; length++) {
    for (let k = 0; k < 12; k++) {
      const valid = Buffer.from(Array.from({ length }, () => int(256))).toString('base64url');
      cases.push(valid);
      // every character any length could end with: non-canonical trailing bits for most of them
      cases.push(length === 0 ? pick([...alphabet]) : valid.slice(0, -1) + pick([...alphabet]));
      // one character replaced by something outside the alphabet, or one added anywhere
      const bad = pick(['+', '/', '=', ' ', '\n', '.', '\u0000', 'é', '\u0100', '\ud83d', '\ud83d\ude00', '\u0141', '\u00c1', String.fromCharCode(0x80 + int(0x7f80))]);
      const at = int(valid.length + 1);
      cases.push(valid.slice(0, at) + bad + valid.slice(at + (rand() < 0.5 ? 1 : 0)));
      cases.push(`${valid}==`.slice(0, valid.length + int(3)));
      // random characters of every length
      cases.push(Array.from({ length: int(8) + length % 9 }, () => pick([...alphabet, '=', '+', '/'])).join(''));
    }
  }
  return cases;
}

describe('base64url decoders', () => {
  const cases = base64UrlCases();

  it(`the lookup-table decodeBase64Url accepts and refuses what the earlier one did, byte for byte (${cases.length} inputs)`, () => {
    let refused = 0;
    for (const text of cases) {
      const expected = outcome(() => reference.decodeBase64Url(text));
      if ((expected as { threw?: string }).threw) refused++;
      expect(outcome(() => decodeBase64Url(text)), JSON.stringify(text)).toEqual(expected);
    }
    expect(refused).toBeGreaterThan(cases.length / 3); // the malformed ones really were exercised
  });

  it('returns a fresh array each time (parsing decodes into scratch space; the public decoder never does)', () => {
    const first = decodeBase64Url('AAECAwQF');
    const second = decodeBase64Url('BgcICQoL');
    outcome(() => parseVerdictJws(jwsOf(randomHeaderText(), randomPayloadText())));
    expect([...first]).toEqual([0, 1, 2, 3, 4, 5]);
    expect([...second]).toEqual([6, 7, 8, 9, 10, 11]);
    expect(first.buffer).not.toBe(second.buffer);
  });

});

// ---- verdict parsing ---------------------------------------------------------------------------------------

const key = generateSigningKey();
const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64url');

/** A compact JWS whose header and payload JSON texts are given as they should be signed (possibly malformed). */
function jwsOf(headerText: string, payloadText: string, signature = signBytes(key, utf8(`${b64(headerText)}.${b64(payloadText)}`))): string {
  return `${b64(headerText)}.${b64(payloadText)}.${Buffer.from(signature).toString('base64url')}`;
}

function randomPayloadText(): string {
  const members: [string, unknown][] = [
    ['v', rand() < 0.95 ? 1 : pick([2, '1', 1.0, null])],
    ['swarm', rand() < 0.9 ? 's1' : randomString(10)],
    ['subject', rand() < 0.6 ? `subject/${int(1000)}` : randomString(30)],
    ['org', rand() < 0.9 ? 'org-a' : randomString(8)],
    ['agent', rand() < 0.8 ? 'bot' : randomString(8)],
    ['verdict', rand() < 0.9 ? 'approve' : randomString(8)],
    ['reason', rand() < 0.5 ? 'x'.repeat(int(600)) : rand() < 0.9 ? randomString(700) : '\u0800'.repeat(1300 + int(200))],
    ['iat', rand() < 0.9 ? 1_760_000_000 : pick([-1, 1.5, '1', 2 ** 60])],
    ['nonce', rand() < 0.9 ? `nonce-${String(int(1e9)).padStart(12, '0')}` : randomString(20)],
  ];
  if (rand() < 0.5) members.sort(() => rand() - 0.5);
  if (rand() < 0.08) members.push([pick(members)[0], 'again']); // a repeated member
  if (rand() < 0.05) members.push(['extra', { nested: ['"', '\\', '{', ':'] }]);
  if (rand() < 0.05) members.splice(int(members.length), 1);
  // JSON text written by hand: key escapes vary (\u0076 is "v"), white space may appear, strings escape
  // quotes and backslashes the way JSON.stringify does (or with \u escapes)
  const keyText = (name: string): string => (rand() < 0.05 ? `"${[...name].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"` : JSON.stringify(name));
  const space = (): string => (rand() < 0.1 ? pick([' ', '\n', '\t', '\r\n ']) : '');
  return `${space()}{${members.map(([name, value]) => `${space()}${keyText(name)}${space()}:${space()}${JSON.stringify(value)}`).join(',')}}${space()}`;
}

function randomHeaderText(): string {
  const kid = rand() < 0.9 ? key.kid : randomString(10);
  const options = [
    `{"alg":"EdDSA","kid":${JSON.stringify(kid)},"typ":"conclave-verdict+jws"}`,
    `{"typ":"conclave-verdict+jws","alg":"EdDSA","kid":${JSON.stringify(kid)}}`,
    `{"alg":"EdDSA","kid":${JSON.stringify(kid)},"typ":"conclave-verdict+jws","alg":"none"}`,
    `{"alg":"EdDSA","kid":"a\\"b","typ":"conclave-verdict+jws"}`,
    `{"alg":"HS256","kid":"k","typ":"conclave-verdict+jws"}`,
    `["alg"]`,
    `{"alg":"EdDSA","kid":"k","typ":"conclave-verdict+jws","x":{"y":1}}`,
  ];
  return rand() < 0.7 ? options[0]! : pick(options);
}

/** Damages a valid JWS the ways a sender could: characters, parts, padding, trailing bits, bytes, sizes. */
function damage(jws: string): string {
  const parts = jws.split('.');
  switch (int(12)) {
    case 0:
      return jws.replace('.', '..');
    case 1:
      return `${jws}.`;
    case 2:
      return parts.slice(0, 2).join('.');
    case 3:
      return `${parts[0]}.${parts[1]}=.${parts[2]}`;
    case 4: {
      const at = int(jws.length);
      return jws.slice(0, at) + pick(['+', '/', ' ', 'é', '\ud800', '=']) + jws.slice(at + 1);
    }
    case 5:
      return `${parts[0]}.${parts[1]!.slice(0, -1)}${pick([...'BCDEFGHIJKLMNOPQRSTUVWXYZ'])}.${parts[2]}`; // trailing bits
    case 6:
      return `${parts[0]}.${parts[1]}.${parts[2]!.slice(0, -2)}`; // short signature
    case 7:
      return `${parts[0]}.${parts[1]}.${parts[2]}AAAA`; // long signature
    case 8:
      return `${parts[0]}.${Buffer.from([0xff, 0xfe, 0x7b, 0x7d]).toString('base64url')}.${parts[2]}`; // not UTF-8
    case 9:
      return `${parts[0]}.${parts[1]}A.${parts[2]}`; // length % 4 === 1 somewhere
    case 10:
      return `${parts[0]}.${b64('\ufeff{"v":1}')}.${parts[2]}`; // a BOM before the JSON
    default:
      return 'A'.repeat(16 * 1024 + int(3) - 1);
  }
}

describe('parseVerdictJws fast paths', () => {
  it('parses and refuses 6000 generated verdicts exactly as the earlier parser did', () => {
    let parsed = 0;
    for (let i = 0; i < 6000; i++) {
      let jws = jwsOf(randomHeaderText(), randomPayloadText());
      if (rand() < 0.25) jws = damage(jws);
      const input: unknown = rand() < 0.01 ? pick([null, 42, ['a.b.c']]) : jws;
      const expected = verdictOutcome(() => reference.parseVerdictJws(input));
      expect(verdictOutcome(() => parseVerdictJws(input)), `case ${i}: ${String(input).slice(0, 200)}`).toEqual(expected);
      const ok = (expected as { ok?: reference.ParsedVerdict }).ok;
      if (ok) {
        parsed++;
        // the lazily encoded signing input, read field by field (not only through toEqual)
        const current = parseVerdictJws(input);
        expect(Buffer.from(current.signingInput).equals(Buffer.from(ok.signingInput))).toBe(true);
        expect(Buffer.from({ ...current }.signingInput).equals(Buffer.from(ok.signingInput))).toBe(true);
        expect(Buffer.from(current.signature).equals(Buffer.from(ok.signature))).toBe(true);
      }
    }
    expect(parsed).toBeGreaterThan(300); // both outcomes were exercised
    expect(parsed).toBeLessThan(5000);
  });

  it('counts members past strings with escaped quotes and trailing backslashes (repeated names found exactly)', () => {
    const tricky = ['\\', '\\\\', '"', '\\"', 'a\\', '":"', '{"v":1}', ',"v":', '\\u0022'];
    for (const text of tricky) {
      for (const repeat of [false, true]) {
        const payload = `{"v":1,"swarm":"s1","subject":${JSON.stringify(text)},"org":"org-a","agent":"bot","verdict":"approve","reason":${JSON.stringify(text)},"iat":1,"nonce":"nonce-0000000000"${repeat ? ',"v":1' : ''}}`;
        const jws = jwsOf(randomHeaderText(), payload);
        const expected = verdictOutcome(() => reference.parseVerdictJws(jws));
        expect(verdictOutcome(() => parseVerdictJws(jws)), `${text} ${repeat}`).toEqual(expected);
      }
    }
  });
});

// ---- verdict hashes ----------------------------------------------------------------------------------------

describe('jwsHashOf', () => {
  it('is the hex SHA-256 of the TextEncoder UTF-8 bytes, lone surrogates included', () => {
    for (let i = 0; i < 3000; i++) {
      const text = i % 3 === 0 ? jwsOf(randomHeaderText(), randomPayloadText()) : randomString(200);
      expect(jwsHashOf(text), JSON.stringify(text)).toBe(toHex(sha256(new TextEncoder().encode(text))));
    }
  });
});

// ---- log commands ------------------------------------------------------------------------------------------

describe('decodeCommand canonical check by text', () => {
  const sig = 'A'.repeat(86);
  function commandTexts(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let i = 0; i < 1500; i++) {
      const batch = Array.from({ length: 1 + int(4) }, () => (rand() < 0.7 ? jwsOf(randomHeaderText(), randomPayloadText()) : randomString(50) || 'x'));
      const cmd = { v: 1, type: 'verdicts', swarm: rand() < 0.9 ? 's1' : randomString(5) || 's', proposer: 'org-a', batch, sig };
      const canonical = oldCanonicalJson(cmd);
      const variants = [
        canonical,
        JSON.stringify(cmd), // members in another order
        JSON.stringify(cmd, null, 1),
        canonical.replace('"s1"', '"\\u0073\\u0031"'), // the same value, escaped otherwise
        canonical.replace(/\//g, '\\/'),
        `\ufeff${canonical}`, // a byte order mark
        `${canonical} `,
        canonical.replace('"v":1', '"v":1.0'),
        '{"type":"noop","v":1}',
        '{"v":1,"type":"noop"}',
      ];
      out.push(utf8(pick(variants)));
      if (rand() < 0.1) out.push(new Uint8Array([...utf8(canonical).slice(0, 20), 0xc3, 0x28, ...utf8(canonical).slice(22)])); // bad UTF-8
      if (rand() < 0.1) out.push(new Uint8Array([0xef, 0xbb, 0xbf, ...utf8(canonical)]));
    }
    return out;
  }

  it('accepts exactly the canonical bytes the byte comparison accepted, and refuses the rest the same way', () => {
    let accepted = 0;
    for (const bytes of commandTexts()) {
      const expected = outcome(() => oldDecodeCommand(bytes));
      if ((expected as { ok?: unknown }).ok) accepted++;
      expect(outcome(() => decodeCommand(bytes)), Buffer.from(bytes).toString('utf8').slice(0, 200)).toEqual(expected);
    }
    expect(accepted).toBeGreaterThan(100);
  });

  it('encodeCommand is the earlier canonical form', () => {
    const cmd = decodeCommand(utf8(oldCanonicalJson({ v: 1, type: 'verdicts', swarm: 's1', proposer: 'org-a', batch: [jwsOf(randomHeaderText(), randomPayloadText())], sig })));
    expect(Buffer.from(encodeCommand(cmd)).toString('utf8')).toBe(oldCanonicalJson(cmd));
  });
});

// ---- audit records -----------------------------------------------------------------------------------------

describe('audit append computes the canonical record once', () => {
  it('hash, leaf hash and stored bytes are those of the record-level functions and the earlier definitions', () => {
    const log = AuditLog.create('fed', 'swarm-é');
    for (let index = 1; index <= 300; index++) {
      const data = new Uint8Array(Array.from({ length: int(index < 101 ? index : 5000) }, () => int(256)));
      const appended = log.append({ index, mode: index % 7 === 0 ? 'pbft' : 'raft', epoch: int(5), data });
      const record: AuditRecord = appended.record;
      const canonical = utf8(oldCanonicalJson(recordPayload(record)));
      expect(Buffer.from(appended.bytes).equals(Buffer.from(canonical))).toBe(true);
      expect(Buffer.from(appended.bytes).equals(Buffer.from(canonicalBytes(record)))).toBe(true);
      expect(appended.hash).toBe(toHex(createHash('sha256').update('conclave/audit-record/v1\n').update(canonical).digest()));
      expect(appended.hash).toBe(recordHash(record));
      expect(toHex(appended.leafHash)).toBe(toHex(recordLeafHash(record)));
      expect(toHex(appended.leafHash)).toBe(toHex(createHash('sha256').update(new Uint8Array([0])).update(canonical).digest()));
      // the data check makeRecord skips for bytes it encodes itself would have passed
      expect(recordShapeProblem(record)).toBeNull();
    }
  });

  it('makeRecord still checks data given as a string', () => {
    expect(() => makeRecord(null, { federation: 'f', swarm: 's', index: 1, mode: 'raft', epoch: 0, data: 'not base64url!' })).toThrow(/record.data/);
  });
});

// ---- the proposal signature, verified once per entry -------------------------------------------------------

describe('DecisionMachine.apply with proposalSignatureVerified', () => {
  const fed = makeFederation(['acme', 'globex', 'initech']);
  const swarm = makeSwarm('s1', ['acme', 'globex']);

  it('skips only the signature (the caller verified it); without the flag a forged proposal is still refused', () => {
    const jws = verdictOf(fed, 'acme', { subject: 'x', verdict: 'approve' });
    const forged = signProposal('s1', 'acme', [jws], fed.keys.globex!.node);
    expect(new DecisionMachine(swarm, fed.keyring).apply(1, forged, { verifyAgentSignatures: false })).toEqual([
      expect.objectContaining({ status: 'rejected', code: 'BAD_PROPOSAL' }),
    ]);
    expect(new DecisionMachine(swarm, fed.keyring).apply(1, forged, { verifyAgentSignatures: false, proposalSignatureVerified: true })).toEqual([
      expect.objectContaining({ status: 'recorded' }),
    ]);
  });

  it('still refuses a proposer outside the swarm and a proposal for another swarm', () => {
    const jws = verdictOf(fed, 'acme', { subject: 'y', verdict: 'approve' });
    const byOutsider = signProposal('s1', 'initech', [jws], fed.keys.initech!.node);
    const otherSwarm = signProposal('s2', 'acme', [jws], fed.keys.acme!.node);
    const opts = { verifyAgentSignatures: false, proposalSignatureVerified: true };
    expect(new DecisionMachine(swarm, fed.keyring).apply(1, byOutsider, opts)).toEqual([expect.objectContaining({ status: 'rejected', code: 'BAD_PROPOSAL' })]);
    expect(new DecisionMachine(swarm, fed.keyring).apply(1, otherSwarm, opts)).toEqual([expect.objectContaining({ status: 'rejected', code: 'SWARM_MISMATCH' })]);
  });
});

// ---- keys judged before commit: apply consults no key -------------------------------------------------------

describe('DecisionMachine.apply with keysCheckedBeforeCommit (what nodes apply)', () => {
  const fed = makeFederation(['acme', 'globex', 'initech']);
  // Same org names, other keys: what a node whose federation file lags (or leads) another's would see.
  const elsewhere = makeFederation(['acme', 'globex', 'initech']);
  const swarm = makeSwarm('s1', ['acme', 'globex']);
  const nodeOpts = { verifyAgentSignatures: false, keysCheckedBeforeCommit: true };

  it('a verdict signed with an agent key this keyring lacks: UNKNOWN_KID for the auditor, recorded by a node', () => {
    const jws = verdictOf(elsewhere, 'acme', { subject: 'k', verdict: 'approve' });
    const proposal = signProposal('s1', 'acme', [jws], fed.keys.acme!.node);
    expect(new DecisionMachine(swarm, fed.keyring).apply(1, proposal, { verifyAgentSignatures: false })).toEqual([expect.objectContaining({ status: 'rejected', code: 'UNKNOWN_KID' })]);
    const here = new DecisionMachine(swarm, fed.keyring).apply(1, proposal, nodeOpts);
    expect(here).toEqual([expect.objectContaining({ status: 'recorded' })]);
    // Whatever keys a node's file lists, it applies the same: the machine with the other federation's keys agrees.
    expect(new DecisionMachine(swarm, elsewhere.keyring).apply(1, proposal, nodeOpts)).toEqual(here);
  });

  it('a proposal signed with a node key this keyring lacks is applied; membership, swarm and nonce rules still hold', () => {
    const jws = verdictOf(fed, 'acme', { subject: 'n', verdict: 'approve' });
    const byUnknownKey = signProposal('s1', 'acme', [jws], elsewhere.keys.acme!.node);
    expect(new DecisionMachine(swarm, fed.keyring).apply(1, byUnknownKey, { verifyAgentSignatures: false })).toEqual([expect.objectContaining({ status: 'rejected', code: 'BAD_PROPOSAL' })]);
    const node = new DecisionMachine(swarm, fed.keyring);
    expect(node.apply(1, byUnknownKey, nodeOpts)).toEqual([expect.objectContaining({ status: 'recorded' })]);
    const outsider = signProposal('s1', 'initech', [verdictOf(fed, 'acme', { subject: 'o', verdict: 'approve' })], fed.keys.initech!.node);
    expect(node.apply(2, outsider, nodeOpts)).toEqual([expect.objectContaining({ status: 'rejected', code: 'BAD_PROPOSAL' })]);
    const otherSwarm = signProposal('s2', 'acme', [verdictOf(fed, 'acme', { subject: 'p', verdict: 'approve' }, 's2')], fed.keys.acme!.node);
    expect(node.apply(3, otherSwarm, nodeOpts)).toEqual([expect.objectContaining({ status: 'rejected', code: 'SWARM_MISMATCH' })]);
    const nonce = 'same-nonce-for-both-0123';
    const first = signProposal('s1', 'acme', [verdictOf(fed, 'acme', { subject: 'q1', verdict: 'approve', nonce })], fed.keys.acme!.node);
    const second = signProposal('s1', 'acme', [verdictOf(fed, 'acme', { subject: 'q2', verdict: 'approve', nonce })], fed.keys.acme!.node);
    expect(node.apply(4, first, nodeOpts)[0]!.status).toBe('recorded');
    expect(node.apply(5, second, nodeOpts)).toEqual([expect.objectContaining({ status: 'rejected', code: 'NONCE_REPLAYED' })]);
  });
});
