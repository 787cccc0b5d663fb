// Ed25519 keys on the hot path (node:crypto KeyObjects): generation, JWK import/export, RFC 7638 key ids,
// signing and verification. Portable signing for agents lives in verdict/agent.ts (@noble/ed25519).
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { canonicalJson } from './canonical.ts';
import { sha256 } from './hash.ts';
import { fromBase64Url, toBase64Url, utf8 } from './encoding.ts';

export interface PublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid?: string;
  use?: string;
  alg?: string;
}

export interface PrivateJwk extends PublicJwk {
  d: string;
}

export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicJwk: PublicJwk;
}

export interface VerifyingKey {
  kid: string;
  publicKey: KeyObject;
  publicJwk: PublicJwk;
}

/** RFC 7638 thumbprint of an Ed25519 JWK: base64url(SHA-256 of {"crv","kty","x"} in canonical order). */
export function jwkThumbprint(jwk: Pick<PublicJwk, 'crv' | 'kty' | 'x'>): string {
  return toBase64Url(sha256(utf8(canonicalJson({ crv: jwk.crv, kty: jwk.kty, x: jwk.x }))));
}

export function isPublicJwk(value: unknown): value is PublicJwk {
  if (typeof value !== 'object' || value === null) return false;
  const jwk = value as Record<string, unknown>;
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') return false;
  try {
    return fromBase64Url(jwk.x).length === 32;
  } catch {
    return false;
  }
}

export function generateSigningKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return fromKeyObjects(privateKey, publicKey);
}

function fromKeyObjects(privateKey: KeyObject, publicKey: KeyObject, kid?: string): SigningKey {
  const exported = publicKey.export({ format: 'jwk' }) as { x: string };
  const base = { kty: 'OKP' as const, crv: 'Ed25519' as const, x: exported.x };
  const keyId = kid ?? jwkThumbprint(base);
  return { kid: keyId, privateKey, publicKey, publicJwk: { ...base, kid: keyId, alg: 'EdDSA' } };
}

export function exportPrivateJwk(key: SigningKey): PrivateJwk {
  const exported = key.privateKey.export({ format: 'jwk' }) as { d: string };
  return { ...key.publicJwk, d: exported.d };
}

export function importPrivateJwk(jwk: PrivateJwk): SigningKey {
  if (!isPublicJwk(jwk) || typeof jwk.d !== 'string') throw new Error('not an Ed25519 private JWK (kty OKP, crv Ed25519, x, d)');
  const privateKey = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d }, format: 'jwk' });
  const publicKey = createPublicKey(privateKey);
  const signingKey = fromKeyObjects(privateKey, publicKey, jwk.kid);
  if (signingKey.publicJwk.x !== jwk.x) throw new Error('private JWK: d does not match x');
  return signingKey;
}

export function importPublicJwk(jwk: PublicJwk): VerifyingKey {
  if (!isPublicJwk(jwk)) throw new Error('not an Ed25519 public JWK (kty OKP, crv Ed25519, 32-byte x)');
  const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
  const kid = jwk.kid ?? jwkThumbprint(jwk);
  return { kid, publicKey, publicJwk: { kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid } };
}

export function signBytes(key: SigningKey | KeyObject, message: Uint8Array): Uint8Array {
  const privateKey = 'privateKey' in key ? key.privateKey : key;
  return new Uint8Array(sign(null, message, privateKey));
}

export function verifyBytes(key: VerifyingKey | KeyObject, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  const publicKey = 'publicKey' in key ? key.publicKey : key;
  try {
    return verify(null, message, publicKey, signature);
  } catch {
    return false;
  }
}
