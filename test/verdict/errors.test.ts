// Every refusal of a verdict carries its own stable code and HTTP status.
import { describe, expect, it } from 'vitest';
import { toBase64Url, utf8 } from '../../src/crypto/encoding.ts';
import { generateSigningKey, signBytes } from '../../src/crypto/ed25519.ts';
import { parseVerdictJws, VerdictError, VERDICT_ERROR_STATUS, type VerdictErrorCode, type VerdictPayload } from '../../src/verdict/format.ts';
import { DecisionMachine } from '../../src/verdict/machine.ts';
import { decodeCommand, encodeCommand, signProposal } from '../../src/verdict/proposal.ts';
import { verifyVerdict, type VerdictCheckContext } from '../../src/verdict/verify.ts';
import { freshNonce, makeFederation, makeSwarm, NOW, rawJws, signWith, verdictOf } from './fixtures.ts';

const fed = makeFederation(['acme', 'globex', 'initech', 'umbrella']);
const s1 = makeSwarm('s1', ['acme', 'globex', 'initech']);
const ctx: VerdictCheckContext = { keyring: fed.keyring, swarms: [s1], expectedSwarm: 's1', now: NOW };

function basePayload(overrides: Partial<VerdictPayload> = {}): VerdictPayload {
  return { v: 1, swarm: 's1', subject: 'github.com/acme/widget/pull/42@9f1c2e', org: 'acme', agent: 'reviewer-1', verdict: 'approve', reason: 'LGTM', iat: NOW, nonce: freshNonce(), ...overrides };
}

function header(kid = fed.keys.acme!.agent.kid): Record<string, unknown> {
  return { alg: 'EdDSA', kid, typ: 'conclave-verdict+jws' };
}

function refusal(fn: () => unknown): VerdictError {
  try {
    fn();
  } catch (error) {
    if (error instanceof VerdictError) return error;
    throw error;
  }
  throw new Error('expected a VerdictError, nothing was thrown');
}

function expectCode(fn: () => unknown, code: VerdictErrorCode, field?: string): VerdictError {
  const error = refusal(fn);
  expect({ code: error.code, message: error.message }).toMatchObject({ code });
  expect(error.status).toBe(VERDICT_ERROR_STATUS[code]);
  expect(error.status).toBeGreaterThanOrEqual(400);
  expect(error.status).toBeLessThan(500);
  if (field !== undefined) expect(error.field).toBe(field);
  return error;
}

describe('verdict refusals', () => {
  it('a well-formed verdict passes every check', () => {
    const jws = signWith(fed.keys.acme!.agent, basePayload({ reason: 'see: {"a": [1, {"b": ":"}]} \\" \\\\ end:' }));
    const verified = verifyVerdict(jws, ctx);
    expect(verified.payload.org).toBe('acme');
    expect(verified.jwsHash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('MALFORMED_JWS: not three base64url parts, or a signature of the wrong length', () => {
    expectCode(() => verifyVerdict('not a jws', ctx), 'MALFORMED_JWS');
    expectCode(() => verifyVerdict('a.b', ctx), 'MALFORMED_JWS');
    expectCode(() => verifyVerdict('a..c', ctx), 'MALFORMED_JWS');
    expectCode(() => verifyVerdict('a+b.c.d', ctx), 'MALFORMED_JWS');
    expectCode(() => verifyVerdict(42, ctx), 'MALFORMED_JWS');
    const [h, p] = signWith(fed.keys.acme!.agent, basePayload()).split('.');
    expectCode(() => verifyVerdict(`${h}.${p}.${toBase64Url(new Uint8Array(32))}`, ctx), 'MALFORMED_JWS');
  });

  it('JWS_TOO_LARGE: a JWS over 16 KiB is refused before parsing', () => {
    expectCode(() => verifyVerdict('a'.repeat(16 * 1024 + 1), ctx), 'JWS_TOO_LARGE');
    expect(VERDICT_ERROR_STATUS.JWS_TOO_LARGE).toBe(413);
  });

  it('BAD_HEADER: wrong alg, wrong typ, missing kid, extra members, not JSON', () => {
    const key = fed.keys.acme!.agent;
    expectCode(() => verifyVerdict(rawJws({ ...header(), alg: 'ES256' }, basePayload(), key), ctx), 'BAD_HEADER', 'alg');
    expectCode(() => verifyVerdict(rawJws({ ...header(), typ: 'JWT' }, basePayload(), key), ctx), 'BAD_HEADER', 'typ');
    expectCode(() => verifyVerdict(rawJws({ alg: 'EdDSA', typ: 'conclave-verdict+jws' }, basePayload(), key), ctx), 'BAD_HEADER', 'kid');
    expectCode(() => verifyVerdict(rawJws({ ...header(), crit: ['b64'] }, basePayload(), key), ctx), 'BAD_HEADER', 'crit');
    const p = toBase64Url(utf8(JSON.stringify(basePayload())));
    expectCode(() => verifyVerdict(`${toBase64Url(utf8('{nope'))}.${p}.${toBase64Url(new Uint8Array(64))}`, ctx), 'BAD_HEADER');
    const dup = toBase64Url(utf8('{"alg":"EdDSA","kid":"x","typ":"conclave-verdict+jws","kid":"' + key.kid + '"}'));
    expectCode(() => verifyVerdict(`${dup}.${p}.${toBase64Url(signBytes(key, utf8(`${dup}.${p}`)))}`, ctx), 'BAD_HEADER', 'header');
  });

  it('PAYLOAD_INVALID names the field', () => {
    const key = fed.keys.acme!.agent;
    const cases: [Record<string, unknown>, string][] = [
      [{ v: 2 }, 'v'],
      [{ swarm: '' }, 'swarm'],
      [{ subject: 'x'.repeat(513) }, 'subject'],
      [{ subject: 'line\nbreak' }, 'subject'],
      [{ org: 7 }, 'org'],
      [{ agent: ' padded' }, 'agent'],
      [{ verdict: null }, 'verdict'],
      [{ reason: 'é'.repeat(2049) }, 'reason'],
      [{ iat: 1.5 }, 'iat'],
      [{ iat: -1 }, 'iat'],
      [{ nonce: 'short' }, 'nonce'],
      [{ nonce: 'has spaces in the nonce!' }, 'nonce'],
      [{ extra: true }, 'extra'],
    ];
    for (const [override, field] of cases) {
      expectCode(() => verifyVerdict(rawJws(header(), { ...basePayload(), ...override }, key), ctx), 'PAYLOAD_INVALID', field);
    }
    // a repeated member name is refused: parsers disagree on which one wins
    const dupHeader = toBase64Url(utf8(JSON.stringify(header())));
    const dupPayload = toBase64Url(utf8(JSON.stringify(basePayload()).replace('"verdict":"approve"', '"verdict":"reject","verdict":"approve"')));
    const dupSig = toBase64Url(signBytes(key, utf8(`${dupHeader}.${dupPayload}`)));
    expectCode(() => verifyVerdict(`${dupHeader}.${dupPayload}.${dupSig}`, ctx), 'PAYLOAD_INVALID', 'payload');
    const { nonce: _omitted, ...withoutNonce } = basePayload();
    expectCode(() => verifyVerdict(rawJws(header(), withoutNonce, key), ctx), 'PAYLOAD_INVALID', 'nonce');
    expectCode(() => verifyVerdict(rawJws(header(), ['not', 'an', 'object'], key), ctx), 'PAYLOAD_INVALID', 'payload');
    // the limits themselves are inclusive
    expect(parseVerdictJws(rawJws(header(), basePayload({ subject: 's'.repeat(512), reason: 'r'.repeat(4096) }), key)).payload.subject).toHaveLength(512);
  });

  it('UNKNOWN_KID: a kid no member lists, or a node key used as an agent key', () => {
    const stranger = generateSigningKey();
    expectCode(() => verifyVerdict(signWith(stranger, basePayload()), ctx), 'UNKNOWN_KID');
    expectCode(() => verifyVerdict(signWith(fed.keys.acme!.node, basePayload()), ctx), 'UNKNOWN_KID');
  });

  it('KEY_ORG_MISMATCH: an agent key of globex signing as acme', () => {
    const error = expectCode(() => verifyVerdict(signWith(fed.keys.globex!.agent, basePayload({ org: 'acme' })), ctx), 'KEY_ORG_MISMATCH');
    expect(error.message).toContain('globex');
  });

  it('BAD_SIGNATURE: a valid-looking signature by another key, or a tampered payload', () => {
    const acme = fed.keys.acme!.agent;
    const forged = signWith(fed.keys.globex!.agent, basePayload(), acme.kid); // claims acme's kid
    expectCode(() => verifyVerdict(forged, ctx), 'BAD_SIGNATURE');
    const [h, , s] = signWith(acme, basePayload()).split('.');
    const tampered = toBase64Url(utf8(JSON.stringify(basePayload({ verdict: 'reject' }))));
    expectCode(() => verifyVerdict(`${h}.${tampered}.${s}`, ctx), 'BAD_SIGNATURE');
  });

  it('SWARM_MISMATCH: the payload names another swarm than the URL', () => {
    const s2 = makeSwarm('s2', ['acme', 'globex']);
    const jws = signWith(fed.keys.acme!.agent, basePayload({ swarm: 's2' }));
    expectCode(() => verifyVerdict(jws, { ...ctx, swarms: [s1, s2] }), 'SWARM_MISMATCH');
  });

  it('UNKNOWN_SWARM: the URL or the payload names a swarm this node does not run', () => {
    const jws = signWith(fed.keys.acme!.agent, basePayload());
    expectCode(() => verifyVerdict(jws, { ...ctx, expectedSwarm: 'nope' }), 'UNKNOWN_SWARM');
    const other = signWith(fed.keys.acme!.agent, basePayload({ swarm: 'nope' }));
    expectCode(() => verifyVerdict(other, { keyring: fed.keyring, swarms: [s1], now: NOW }), 'UNKNOWN_SWARM');
  });

  it('ORG_NOT_IN_SWARM: a federation member that is not in this swarm', () => {
    const jws = signWith(fed.keys.umbrella!.agent, basePayload({ org: 'umbrella' }));
    expectCode(() => verifyVerdict(jws, ctx), 'ORG_NOT_IN_SWARM');
  });

  it("VALUE_NOT_ALLOWED: a verdict value outside the swarm's policy", () => {
    const error = expectCode(() => verifyVerdict(signWith(fed.keys.acme!.agent, basePayload({ verdict: 'maybe' })), ctx), 'VALUE_NOT_ALLOWED');
    expect(error.message).toContain('approve');
  });

  it('IAT_OUT_OF_RANGE: too far in the past or in the future of the injected clock; the bound is inclusive', () => {
    const key = fed.keys.acme!.agent;
    expectCode(() => verifyVerdict(signWith(key, basePayload({ iat: NOW - 301 })), ctx), 'IAT_OUT_OF_RANGE');
    expectCode(() => verifyVerdict(signWith(key, basePayload({ iat: NOW + 301 })), ctx), 'IAT_OUT_OF_RANGE');
    expect(() => verifyVerdict(signWith(key, basePayload({ iat: NOW - 300 })), ctx)).not.toThrow();
    expect(() => verifyVerdict(signWith(key, basePayload({ iat: NOW + 300 })), ctx)).not.toThrow();
    // replicas apply without a clock: no `now`, no check
    expect(() => verifyVerdict(signWith(key, basePayload({ iat: 0 })), { ...ctx, now: undefined })).not.toThrow();
  });

  it('NONCE_REPLAYED: the same org and nonce in a verdict with other content, at admission and in apply', () => {
    const machine = new DecisionMachine(s1, fed.keyring);
    const nonce = freshNonce();
    const first = signWith(fed.keys.acme!.agent, basePayload({ nonce }));
    const second = signWith(fed.keys.acme!.agent, basePayload({ nonce, subject: 'another' }));
    const proposal = signProposal('s1', 'acme', [first], fed.keys.acme!.node);
    expect(machine.apply(1, proposal, { verifyAgentSignatures: true })[0]!.status).toBe('recorded');
    const admitted = verifyVerdict(second, ctx);
    expectCode(() => machine.checkNonce(admitted.payload.org, admitted.payload.nonce, admitted.jwsHash), 'NONCE_REPLAYED');
    const [outcome] = machine.apply(2, signProposal('s1', 'acme', [second], fed.keys.acme!.node), { verifyAgentSignatures: true });
    expect(outcome).toMatchObject({ status: 'rejected', code: 'NONCE_REPLAYED' });
    expect(machine.subject('another')).toBeUndefined();
    // another org may use the same nonce
    const globex = signWith(fed.keys.globex!.agent, basePayload({ nonce, org: 'globex' }));
    expect(machine.apply(3, signProposal('s1', 'globex', [globex], fed.keys.globex!.node), { verifyAgentSignatures: true })[0]!.status).toBe('decision');
  });

  it('MALFORMED_COMMAND: log bytes that are not a canonical command', () => {
    const good = signProposal('s1', 'acme', [verdictOf(fed, 'acme', { subject: 'x', verdict: 'approve' })], fed.keys.acme!.node);
    expect(decodeCommand(encodeCommand(good))).toEqual(good);
    expectCode(() => decodeCommand(utf8('{"type":"noop","v":1} ')), 'MALFORMED_COMMAND');
    expectCode(() => decodeCommand(utf8('{"v":1,"type":"noop"}')), 'MALFORMED_COMMAND'); // not canonical key order
    expectCode(() => decodeCommand(utf8('{"type":"noop","v":2}')), 'MALFORMED_COMMAND');
    expectCode(() => decodeCommand(utf8('{"type":"launch","v":1}')), 'MALFORMED_COMMAND');
    expectCode(() => decodeCommand(new Uint8Array([0xff, 0xfe])), 'MALFORMED_COMMAND');
    expectCode(() => decodeCommand(encodeCommand({ ...good, batch: [] })), 'MALFORMED_COMMAND');
    expectCode(() => decodeCommand(utf8(JSON.stringify({ ...good, extra: 1 }))), 'MALFORMED_COMMAND');
  });

  it('BAD_PROPOSAL: a batch signed by another org than the proposer is rejected verdict by verdict', () => {
    const machine = new DecisionMachine(s1, fed.keyring);
    const jws = verdictOf(fed, 'acme', { subject: 'x', verdict: 'approve' });
    const forged = { ...signProposal('s1', 'acme', [jws], fed.keys.globex!.node) };
    const outcomes = machine.apply(1, forged, { verifyAgentSignatures: false });
    expect(outcomes).toEqual([expect.objectContaining({ status: 'rejected', code: 'BAD_PROPOSAL' })]);
    expect(machine.subject('x')).toBeUndefined();
  });
});
