// Admin approvals: an org admin signs one federation change (switch a swarm's mode, add or remove a member) as a
// compact JWS; approvals of one change id accumulate in the log until the swarm's admin policy is met.
import { canonicalJson } from '../crypto/canonical.ts';
import { toBase64Url, utf8 } from '../crypto/encoding.ts';
import { signBytes, type SigningKey } from '../crypto/ed25519.ts';
import { ADMIN_JWS_TYPE, type AdminAction, type AdminApprovalPayload, type AdminCommand } from './proposal.ts';

/** A fresh change id: 16 random bytes, base64url. */
export function newChangeId(): string {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(16)));
}

/** The compact JWS by which an admin approves `action` (identified by `id`) on `swarm`. */
export function signAdminApproval(key: SigningKey, payload: AdminApprovalPayload): string {
  const header = toBase64Url(utf8(canonicalJson({ alg: 'EdDSA', kid: key.kid, typ: ADMIN_JWS_TYPE })));
  const body = toBase64Url(utf8(canonicalJson(payload)));
  const signature = toBase64Url(signBytes(key, utf8(`${header}.${body}`)));
  return `${header}.${body}.${signature}`;
}

/** An admin command carrying one admin's approval; submit it to any node of the swarm. */
export function adminCommand(key: SigningKey, swarm: string, id: string, action: AdminAction): AdminCommand {
  return { v: 1, type: 'admin', swarm, id, action, approvals: [signAdminApproval(key, { v: 1, swarm, id, action })] };
}
