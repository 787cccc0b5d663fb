// The verdict wire format (docs/verdicts.md): compact JWS parsing, payload validation, the stable error codes.
// Portable on purpose (no node: imports, no Buffer): verdict/agent.ts runs it in browsers and edge runtimes too.

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
/** Sextet of each ASCII character code, -1 for a character outside the alphabet (indexed by charCodeAt). */
const B64_INDEX = new Int8Array(128).fill(-1);
for (let i = 0; i < B64_ALPHABET.length; i++) B64_INDEX[B64_ALPHABET.charCodeAt(i)] = i;

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

/** The sextet of the character at `i`, or -1 when it is not in the base64url alphabet. */
function sextet(text: string, i: number): number {
  const code = text.charCodeAt(i);
  return code < 128 ? B64_INDEX[code]! : -1;
}

/**
 * Strict base64url decoding: no padding, no stray characters, and the unused trailing bits must be zero. Four
 * characters at a time through a lookup table.
 */
export function decodeBase64Url(text: string): Uint8Array {
  return decodeBase64UrlInto(text, new Uint8Array(decodedLength(text)));
}

function decodedLength(text: string): number {
  if (text.length % 4 === 1) throw new Error('invalid base64url');
  return Math.floor((text.length * 3) / 4);
}

/** Scratch space for parts decoded only to be read at once (a verdict's header and payload JSON). */
let scratch = new Uint8Array(2048);

/**
 * decodeBase64Url into shared scratch space: valid only until the next call. Every verdict's header and payload
 * are decoded on every node, and allocating a fresh array for bytes read once costs more than decoding them.
 */
function decodeBase64UrlTransient(text: string): Uint8Array {
  const length = decodedLength(text);
  if (scratch.length < length) scratch = new Uint8Array(Math.max(length, scratch.length * 2));
  return decodeBase64UrlInto(text, scratch.subarray(0, length));
}

/** Decodes into `out`, which is exactly decodedLength(text) long. */
function decodeBase64UrlInto(text: string, out: Uint8Array): Uint8Array {
  const length = text.length;
  const rest = length % 4;
  const full = length - rest;
  let o = 0;
  for (let i = 0; i < full; i += 4) {
    const a = sextet(text, i);
    const b = sextet(text, i + 1);
    const c = sextet(text, i + 2);
    const d = sextet(text, i + 3);
    if ((a | b | c | d) < 0) throw new Error('invalid base64url');
    const n = (a << 18) | (b << 12) | (c << 6) | d;
    out[o++] = n >> 16;
    out[o++] = (n >> 8) & 0xff;
    out[o++] = n & 0xff;
  }
  if (rest === 2) {
    const a = sextet(text, full);
    const b = sextet(text, full + 1);
    if ((a | b) < 0) throw new Error('invalid base64url');
    out[o] = (a << 2) | (b >> 4);
    if ((b & 0x0f) !== 0) throw new Error('invalid base64url: non-canonical trailing bits');
  } else if (rest === 3) {
    const a = sextet(text, full);
    const b = sextet(text, full + 1);
    const c = sextet(text, full + 2);
    if ((a | b | c) < 0) throw new Error('invalid base64url');
    const n = (a << 12) | (b << 6) | c;
    out[o++] = n >> 10;
    out[o] = (n >> 2) & 0xff;
    if ((c & 0x03) !== 0) throw new Error('invalid base64url: non-canonical trailing bits');
  }
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
  // A UTF-16 code unit is at most 3 UTF-8 bytes: only a reason that long can be over the limit, so only it is encoded.
  if (reason.length * 3 > VERDICT_LIMITS.maxReasonBytes && utf8Bytes(reason).length > VERDICT_LIMITS.maxReasonBytes) throw invalid('reason', `is longer than ${VERDICT_LIMITS.maxReasonBytes} UTF-8 bytes`);
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
    text = strictDecoder.decode(decodeBase64UrlTransient(part));
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
  let members = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0x22) i = closingQuote(text, i);
    else if (code === 0x7b || code === 0x5b) depth++;
    else if (code === 0x7d || code === 0x5d) depth--;
    else if (code === 0x3a && depth === 1) members++;
  }
  return members;
}

/**
 * Index of the quote closing the JSON string opened at `open` (valid JSON: there is one). Jumps from quote to
 * quote with indexOf — a verdict's text is mostly its strings — and a quote is escaped when an odd number of
 * backslashes precedes it.
 */
function closingQuote(text: string, open: number): number {
  let quote = open;
  for (;;) {
    quote = text.indexOf('"', quote + 1);
    if (quote < 0) return text.length;
    let backslashes = 0;
    while (text.charCodeAt(quote - 1 - backslashes) === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return quote;
  }
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
  // The signing input is encoded on first use: a raft replica applying a proposal it trusts never checks the
  // agent's signature, and this would be one more allocation per verdict on every node.
  const signedLength = headerPart.length + 1 + payloadPart.length;
  let signingInput: Uint8Array | undefined;
  return {
    jws,
    header,
    payload,
    get signingInput(): Uint8Array {
      return (signingInput ??= utf8Bytes(jws.slice(0, signedLength)));
    },
    signature,
  };
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
