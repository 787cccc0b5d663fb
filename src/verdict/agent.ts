// The agent side: sign a verdict as a compact JWS and submit it to a node. Portable: @noble/ed25519 and fetch only,
// no node: imports and no Buffer, so it runs unchanged in browsers, Deno, Bun and edge runtimes.
import * as ed from '@noble/ed25519';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { decodeBase64Url, encodeBase64Url, utf8Bytes, validatePayload, verdictSigningInput, VerdictError, type VerdictPayload } from './format.ts';

ed.hashes.sha512 = sha512;

export interface AgentPrivateJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  d: string;
  kid?: string;
  /** Optional convenience members some key files carry: the org and agent name this key signs for. */
  org?: string;
  agent?: string;
}

export interface SignVerdictInput {
  privateJwk: AgentPrivateJwk;
  swarm: string;
  subject: string;
  org: string;
  agent: string;
  verdict: string;
  reason?: string;
  /** Unix seconds; defaults to the local clock. */
  iat?: number;
  /** 16-64 base64url characters; defaults to 16 random bytes (22 characters). */
  nonce?: string;
}

/** RFC 7638 thumbprint of an Ed25519 JWK, the kid used when the JWK carries none. */
export function agentKeyId(jwk: Pick<AgentPrivateJwk, 'crv' | 'kty' | 'x'>): string {
  return encodeBase64Url(sha256(utf8Bytes(`{"crv":"${jwk.crv}","kty":"${jwk.kty}","x":"${jwk.x}"}`)));
}

export function randomNonce(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return encodeBase64Url(bytes);
}

/** Signs a verdict: returns the compact JWS `<header>.<payload>.<signature>` described in docs/verdicts.md. */
export async function signVerdict(input: SignVerdictInput): Promise<string> {
  const jwk = input.privateJwk;
  if (jwk?.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.d !== 'string' || typeof jwk.x !== 'string') {
    throw new TypeError('privateJwk must be an Ed25519 private JWK (kty OKP, crv Ed25519, x, d)');
  }
  const secret = decodeBase64Url(jwk.d);
  const publicKey = ed.getPublicKey(secret);
  if (encodeBase64Url(publicKey) !== jwk.x) throw new TypeError('privateJwk: d does not match x');
  const payload: VerdictPayload = validatePayload({
    v: 1,
    swarm: input.swarm,
    subject: input.subject,
    org: input.org,
    agent: input.agent,
    verdict: input.verdict,
    reason: input.reason ?? '',
    iat: input.iat ?? Math.floor(Date.now() / 1000),
    nonce: input.nonce ?? randomNonce(),
  });
  const signingInput = verdictSigningInput(jwk.kid ?? agentKeyId(jwk), payload);
  const signature = ed.sign(utf8Bytes(signingInput), secret);
  return `${signingInput}.${encodeBase64Url(signature)}`;
}

type FetchLike = (url: string, init: { method: string; headers: Record<string, string>; body: string; dispatcher?: unknown }) => Promise<{
  status: number;
  text(): Promise<string>;
}>;

export interface SubmitVerdictInput {
  /** The node's public API base URL, e.g. https://node.acme.example:8443 */
  nodeUrl: string;
  swarm: string;
  jws: string;
  /** Wait for the commit (default) or answer on acceptance (?wait=false). */
  wait?: boolean;
  /** A fetch implementation (default: globalThis.fetch); e.g. undici's fetch. */
  fetch?: FetchLike;
  /** Passed through to fetch as `dispatcher` (undici): e.g. an Agent trusting the org's CA. */
  dispatcher?: unknown;
}

export type SubmitResult =
  | { ok: true; status: number; body: Record<string, unknown> }
  | { ok: false; status: number; code: string; message: string; body: unknown };

/** POSTs {"jws": ...} to {nodeUrl}/v1/swarms/{swarm}/verdicts and returns the node's JSON answer. */
export async function submitVerdict(input: SubmitVerdictInput): Promise<SubmitResult> {
  const doFetch = input.fetch ?? (globalThis.fetch as unknown as FetchLike | undefined);
  if (!doFetch) throw new TypeError('no fetch available: pass one in `fetch`');
  const url = `${input.nodeUrl.replace(/\/+$/, '')}/v1/swarms/${encodeURIComponent(input.swarm)}/verdicts${input.wait === false ? '?wait=false' : ''}`;
  const init: Parameters<FetchLike>[1] = {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ jws: input.jws }),
  };
  if (input.dispatcher !== undefined) init.dispatcher = input.dispatcher;
  const response = await doFetch(url, init);
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  if (response.status >= 200 && response.status < 300 && typeof body === 'object' && body !== null) {
    return { ok: true, status: response.status, body: body as Record<string, unknown> };
  }
  const error = (typeof body === 'object' && body !== null ? body : {}) as { code?: unknown; message?: unknown };
  return {
    ok: false,
    status: response.status,
    code: typeof error.code === 'string' ? error.code : `HTTP_${response.status}`,
    message: typeof error.message === 'string' ? error.message : typeof body === 'string' && body ? body.slice(0, 500) : `HTTP ${response.status}`,
    body,
  };
}

export { VerdictError };
