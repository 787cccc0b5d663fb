// A frozen copy of src/verdict/format.ts as it was before its fast paths (commit e3ba184), with its own error class:
// the oracle test/verdict/fast-paths.test.ts compares the current parser with. Never optimize this file.

/** Every way a verdict or a log command can be refused, with the HTTP status the public API answers. */
export const VERDICT_ERROR_STATUS = {
  MALFORMED_JWS: 400,
  JWS_TOO_LARGE: 413,
  BAD_HEADER: 400,
  PAYLOAD_INVALID: 400,
  UNKNOWN_KID: 401,
  KEY_ORG_MISMATCH: 403,
  BAD_SIGNATURE: 401,
  SWARM_MISMATCH: 400,
  UNKNOWN_SWARM: 404,
  ORG_NOT_IN_SWARM: 403,
  VALUE_NOT_ALLOWED: 422,
  IAT_OUT_OF_RANGE: 422,
  NONCE_REPLAYED: 409,
  MALFORMED_COMMAND: 400,
  BAD_PROPOSAL: 403,
  ADMIN_APPROVAL_INVALID: 403,
} as const;

export type VerdictErrorCode = keyof typeof VERDICT_ERROR_STATUS;

export class VerdictError extends Error {
  readonly code: VerdictErrorCode;
  readonly status: number;
  /** For PAYLOAD_INVALID and BAD_HEADER: the offending field. */
  readonly field: string | undefined;

  constructor(code: VerdictErrorCode, message: string, field?: string) {
    super(message);
    this.name = 'VerdictError';
    this.code = code;
    this.status = VERDICT_ERROR_STATUS[code];
    this.field = field;
  }

  toJSON(): { code: VerdictErrorCode; status: number; message: string; field?: string } {
    return this.field === undefined
      ? { code: this.code, status: this.status, message: this.message }
      : { code: this.code, status: this.status, message: this.message, field: this.field };
  }
}

export const VERDICT_JWS_TYPE = 'conclave-verdict+jws';
export const VERDICT_LIMITS = {
  /** Whole compact JWS, in bytes (it is ASCII). */
  maxJwsBytes: 16 * 1024,
  /** Unicode code points. */
  maxSubjectChars: 512,
  /** UTF-8 bytes. */
  maxReasonBytes: 4096,
  /** Unicode code points, for swarm, org and agent names and key ids. */
  maxNameChars: 128,
  maxVerdictChars: 64,
  minNonceChars: 16,
  maxNonceChars: 64,
} as const;

export interface VerdictHeader {
  alg: 'EdDSA';
  kid: string;
  typ: typeof VERDICT_JWS_TYPE;
}

export interface VerdictPayload {
  v: 1;
  swarm: string;
  subject: string;
  org: string;
  agent: string;
  verdict: string;
  reason: string;
  /** Issue time, unix seconds. */
  iat: number;
  nonce: string;
}

export interface ParsedVerdict {
  jws: string;
  header: VerdictHeader;
  payload: VerdictPayload;
  /** ASCII bytes of `<header b64>.<payload b64>`: what the signature covers. */
  signingInput: Uint8Array;
  signature: Uint8Array;
}

const PAYLOAD_FIELDS = ['v', 'swarm', 'subject', 'org', 'agent', 'verdict', 'reason', 'iat', 'nonce'] as const;
const HEADER_FIELDS = ['alg', 'kid', 'typ'] as const;
const NONCE = /^[A-Za-z0-9_-]+$/;
const B64URL = /^[A-Za-z0-9_-]*$/;
// C0 and C1 control characters, and the Unicode line/paragraph separators: never part of a name or subject.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

// ---- portable byte helpers ----------------------------------------------------------------------------------

const B64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const B64_LOOKUP = new Map<string, number>([...B64_ALPHABET].map((char, i) => [char, i]));

/** base64url without padding (RFC 4648 §5), as JWS uses it. */
export function encodeBase64Url(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += B64_ALPHABET[(n >> 18) & 63]! + B64_ALPHABET[(n >> 12) & 63]! + B64_ALPHABET[(n >> 6) & 63]! + B64_ALPHABET[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += B64_ALPHABET[(n >> 18) & 63]! + B64_ALPHABET[(n >> 12) & 63]!;
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += B64_ALPHABET[(n >> 18) & 63]! + B64_ALPHABET[(n >> 12) & 63]! + B64_ALPHABET[(n >> 6) & 63]!;
  }
  return out;
}

/** Strict base64url decoding: no padding, no stray characters, and the unused trailing bits must be zero. */
export function decodeBase64Url(text: string): Uint8Array {
  if (!B64URL.test(text) || text.length % 4 === 1) throw new Error('invalid base64url');
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (const char of text) {
    acc = (acc << 6) | B64_LOOKUP.get(char)!;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) throw new Error('invalid base64url: non-canonical trailing bits');
  return out;
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

export function utf8Bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

function codePoints(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** True when the string holds no lone surrogate (so it has a UTF-8 form and round-trips through JSON). */
function isWellFormed(text: string): boolean {
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(text);
}

// ---- validation ---------------------------------------------------------------------------------------------

function invalid(field: string, problem: string): VerdictError {
  return new VerdictError('PAYLOAD_INVALID', `payload.${field} ${problem}`, field);
}

function checkName(record: Record<string, unknown>, field: string, maxChars: number): string {
  const value = record[field];
  if (typeof value !== 'string') return fail(invalid(field, 'must be a string'));
  if (value.length === 0) return fail(invalid(field, 'must not be empty'));
  if (!isWellFormed(value)) return fail(invalid(field, 'is not well-formed Unicode'));
  if (codePoints(value) > maxChars) return fail(invalid(field, `is longer than ${maxChars} characters`));
  if (CONTROL.test(value)) return fail(invalid(field, 'must not contain control characters'));
  if (value.trim() !== value) return fail(invalid(field, 'must not begin or end with white space'));
  return value;
}

function fail(error: VerdictError): never {
  throw error;
}

/**
 * Checks a decoded payload against the format (docs/verdicts.md, "Payload"): exactly the nine members, each with
 * its type and limits. Throws PAYLOAD_INVALID naming the first offending field, in the order of the format table.
 */
export function validatePayload(value: unknown): VerdictPayload {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new VerdictError('PAYLOAD_INVALID', 'payload must be a JSON object', 'payload');
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!(PAYLOAD_FIELDS as readonly string[]).includes(key)) throw invalid(key, 'is not a member of the verdict format (v1)');
  }
  if (record.v !== 1) throw invalid('v', 'must be the number 1');
  const swarm = checkName(record, 'swarm', VERDICT_LIMITS.maxNameChars);
  const subject = checkName(record, 'subject', VERDICT_LIMITS.maxSubjectChars);
  const org = checkName(record, 'org', VERDICT_LIMITS.maxNameChars);
  const agent = checkName(record, 'agent', VERDICT_LIMITS.maxNameChars);
  const verdict = checkName(record, 'verdict', VERDICT_LIMITS.maxVerdictChars);
  const reason = record.reason;
  if (typeof reason !== 'string') throw invalid('reason', 'must be a string (it may be empty)');
  if (!isWellFormed(reason)) throw invalid('reason', 'is not well-formed Unicode');
  if (utf8Bytes(reason).length > VERDICT_LIMITS.maxReasonBytes) throw invalid('reason', `is longer than ${VERDICT_LIMITS.maxReasonBytes} UTF-8 bytes`);
  const iat = record.iat;
  if (typeof iat !== 'number' || !Number.isSafeInteger(iat) || iat < 0) throw invalid('iat', 'must be a non-negative integer (unix seconds)');
  const nonce = record.nonce;
  if (
    typeof nonce !== 'string' ||
    !NONCE.test(nonce) ||
    nonce.length < VERDICT_LIMITS.minNonceChars ||
    nonce.length > VERDICT_LIMITS.maxNonceChars
  ) {
    throw invalid('nonce', `must be ${VERDICT_LIMITS.minNonceChars}-${VERDICT_LIMITS.maxNonceChars} base64url characters`);
  }
  return { v: 1, swarm, subject, org, agent, verdict, reason, iat, nonce };
}

function validateHeader(value: unknown): VerdictHeader {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new VerdictError('BAD_HEADER', 'the protected header must be a JSON object', 'header');
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!(HEADER_FIELDS as readonly string[]).includes(key)) {
      throw new VerdictError('BAD_HEADER', `header member ${JSON.stringify(key)} is not allowed: the header is exactly {alg, kid, typ}`, key);
    }
  }
  if (record.alg !== 'EdDSA') throw new VerdictError('BAD_HEADER', `header.alg must be "EdDSA", got ${JSON.stringify(record.alg)}`, 'alg');
  if (record.typ !== VERDICT_JWS_TYPE) {
    throw new VerdictError('BAD_HEADER', `header.typ must be "${VERDICT_JWS_TYPE}", got ${JSON.stringify(record.typ)}`, 'typ');
  }
  const kid = record.kid;
  if (typeof kid !== 'string' || kid.length === 0 || kid.length > VERDICT_LIMITS.maxNameChars || CONTROL.test(kid)) {
    throw new VerdictError('BAD_HEADER', `header.kid must be a non-empty string of at most ${VERDICT_LIMITS.maxNameChars} characters`, 'kid');
  }
  return { alg: 'EdDSA', kid, typ: VERDICT_JWS_TYPE };
}

function decodeJsonPart(part: string, what: 'header' | 'payload'): unknown {
  const code = what === 'header' ? 'BAD_HEADER' : 'PAYLOAD_INVALID';
  let text: string;
  try {
    text = strictDecoder.decode(decodeBase64Url(part));
  } catch {
    throw new VerdictError(code, `the ${what} is not base64url-encoded UTF-8`, what);
  }
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch {
    throw new VerdictError(code, `the ${what} is not JSON`, what);
  }
  // JSON parsers disagree on duplicate member names (first or last wins): refuse them, so that every verifier, in
  // any language, reads the same verdict out of the signed bytes.
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && topLevelMembers(text) !== Object.keys(value).length) {
    throw new VerdictError(code, `the ${what} repeats a member name`, what);
  }
  return value;
}

/** Counts the members of a top-level JSON object (the text is known to be valid JSON). */
function topLevelMembers(text: string): number {
  let depth = 0;
  let inString = false;
  let members = 0;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (inString) {
      if (char === '\\') i++;
      else if (char === '"') inString = false;
    } else if (char === '"') inString = true;
    else if (char === '{' || char === '[') depth++;
    else if (char === '}' || char === ']') depth--;
    else if (char === ':' && depth === 1) members++;
  }
  return members;
}

/**
 * Parses a compact JWS verdict and validates its header and payload. Does not check the signature, the key or the
 * swarm: see verdict/verify.ts. Throws VerdictError (JWS_TOO_LARGE, MALFORMED_JWS, BAD_HEADER, PAYLOAD_INVALID).
 */
export function parseVerdictJws(jws: unknown): ParsedVerdict {
  if (typeof jws !== 'string') throw new VerdictError('MALFORMED_JWS', 'a verdict is a compact JWS string');
  if (jws.length > VERDICT_LIMITS.maxJwsBytes) {
    throw new VerdictError('JWS_TOO_LARGE', `the JWS is ${jws.length} bytes; the limit is ${VERDICT_LIMITS.maxJwsBytes}`);
  }
  const parts = jws.split('.');
  if (parts.length !== 3 || parts.some((part) => part.length === 0 || !B64URL.test(part))) {
    throw new VerdictError('MALFORMED_JWS', 'not a compact JWS: expected three non-empty base64url parts separated by "."');
  }
  const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
  const header = validateHeader(decodeJsonPart(headerPart, 'header'));
  const payload = validatePayload(decodeJsonPart(payloadPart, 'payload'));
  let signature: Uint8Array;
  try {
    signature = decodeBase64Url(signaturePart);
  } catch {
    throw new VerdictError('MALFORMED_JWS', 'the signature part is not base64url');
  }
  if (signature.length !== 64) throw new VerdictError('MALFORMED_JWS', `an Ed25519 signature is 64 bytes, got ${signature.length}`);
  return { jws, header, payload, signingInput: utf8Bytes(`${headerPart}.${payloadPart}`), signature };
}

/** The header and payload JSON an agent signs (members in the documented order; nodes accept any order). */
export function verdictSigningInput(kid: string, payload: VerdictPayload): string {
  const header = encodeBase64Url(utf8Bytes(JSON.stringify({ alg: 'EdDSA', kid, typ: VERDICT_JWS_TYPE })));
  const ordered = {
    v: payload.v,
    swarm: payload.swarm,
    subject: payload.subject,
    org: payload.org,
    agent: payload.agent,
    verdict: payload.verdict,
    reason: payload.reason,
    iat: payload.iat,
    nonce: payload.nonce,
  };
  return `${header}.${encodeBase64Url(utf8Bytes(JSON.stringify(ordered)))}`;
}
