// Ed25519 keys on the hot path: generation, JWK import/export, RFC 7638 key ids (node:crypto KeyObjects), signing
// (node:crypto) and verification (libsodium through sodium-native). Portable signing for agents lives in
// verdict/agent.ts (@noble/ed25519).
//
// Why libsodium for verification: it verifies in ~50 µs where OpenSSL (node:crypto) takes ~85-117 µs on this
// machine, and every node verifies every agent verdict it admits and every proposal it applies (pbft: every message)
// — verification was the largest single item of a node's CPU profile. Its rule is RFC 8032's cofactorless check
// plus two refusals OpenSSL does not make: a public key or a signature point R of small order, and a non-canonical
// public key encoding (honest keys and signatures never have them). Every node and the auditor verify with this one
// function, so they agree on every signature; docs/audit-format.md states the rule for independent verifiers.
import { createPrivateKey, createPublicKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import sodium from 'sodium-native';
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

/** The raw 32-byte public key of a KeyObject (exported once per key object, then remembered). */
const rawPublicKeys = new WeakMap<KeyObject, Uint8Array>();

export function rawPublicKey(key: KeyObject): Uint8Array {
  let raw = rawPublicKeys.get(key);
  if (!raw) {
    raw = fromBase64Url((key.export({ format: 'jwk' }) as { x: string }).x);
    rawPublicKeys.set(key, raw);
  }
  return raw;
}

/**
 * Whether 32 bytes are a usable Ed25519 public key: a canonical encoding of a point of the prime-order subgroup,
 * not of small order. Keys failing this could never have a signature verified (see verifyBytes), so the federation
 * file refuses them up front.
 */
export function isValidPublicKey(raw: Uint8Array): boolean {
  return raw.length === 32 && sodium.crypto_core_ed25519_is_valid_point(raw as Buffer);
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

/**
 * A fresh key from 32 random bytes (libsodium derives the public key; node:crypto imports both as JWK, ~0.07 ms).
 * Not generateKeyPairSync: in Node 20 the key-generation job it leaves for the GC can be collected by a GC that runs
 * inside KeyObject#export({format: 'jwk'}), and its destructor then waits for the lock that export holds — the
 * thread hangs for good (seen: a test worker stuck in ~KeyGenJob under ExportJWK). Not a PKCS#8 DER import either:
 * OpenSSL 3's decoder takes ~0.4 ms a key.
 */
export function generateSigningKey(): SigningKey {
  const seed = randomBytes(32);
  const publicRaw = Buffer.alloc(sodium.crypto_sign_PUBLICKEYBYTES);
  const secret = Buffer.alloc(sodium.crypto_sign_SECRETKEYBYTES);
  sodium.crypto_sign_seed_keypair(publicRaw, secret, seed);
  const x = publicRaw.toString('base64url');
  const privateKey = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', x, d: seed.toString('base64url') }, format: 'jwk' });
  seed.fill(0);
  secret.fill(0);
  return fromKeyObjects(privateKey, createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' }));
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
  const raw = fromBase64Url(jwk.x);
  if (!isValidPublicKey(raw)) throw new Error('not a usable Ed25519 public key: x is not a canonical point of the prime-order subgroup (no signature by it can verify)');
  const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
  rawPublicKeys.set(publicKey, raw);
  const kid = jwk.kid ?? jwkThumbprint(jwk);
  return { kid, publicKey, publicJwk: { kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid } };
}

export function signBytes(key: SigningKey | KeyObject, message: Uint8Array): Uint8Array {
  const privateKey = 'privateKey' in key ? key.privateKey : key;
  return new Uint8Array(sign(null, message, privateKey));
}

/**
 * Verifies an Ed25519 signature (libsodium's crypto_sign_verify_detached: RFC 8032 cofactorless verification; S must
 * be canonical, R and the public key must not be of small order, the public key must be canonically encoded).
 * `key` is the raw 32-byte public key, or a key object holding it.
 */
export function verifyBytes(key: VerifyingKey | KeyObject | Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  const raw = key instanceof Uint8Array ? key : rawPublicKey('publicKey' in key ? key.publicKey : key);
  if (raw.length !== 32) return false;
  return sodium.crypto_sign_verify_detached(signature as Buffer, message as Buffer, raw as Buffer);
}
