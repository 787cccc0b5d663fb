// Ed25519 verification (crypto/ed25519.ts verifyBytes, libsodium): RFC 8032's known answers, agreement with
// node:crypto (OpenSSL) on honest and damaged signatures, and the refusals libsodium makes that OpenSSL does not
// (small-order keys and R) — the rule every node and the auditor share, stated in docs/audit-format.md.
import { createPublicKey, randomBytes, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateSigningKey, importPublicJwk, isValidPublicKey, rawPublicKey, verifyBytes } from '../../src/crypto/ed25519.ts';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));

// RFC 8032 §7.1, TEST 1-3 and TEST SHA(abc).
const RFC8032 = [
  {
    pk: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    msg: '',
    sig: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    pk: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    msg: '72',
    sig: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
  {
    pk: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
    msg: 'af82',
    sig: '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
  },
];

function openssl(raw: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
  try {
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}

describe('Ed25519 verification (libsodium)', () => {
  it('accepts the RFC 8032 test vectors and refuses each with one bit of the message, R or S flipped', () => {
    for (const v of RFC8032) {
      const pk = hex(v.pk);
      const msg = hex(v.msg);
      const sig = hex(v.sig);
      expect(verifyBytes(pk, msg, sig)).toBe(true);
      expect(openssl(pk, msg, sig)).toBe(true);
      for (const bit of [0, 200, 256 + 9, 511]) {
        const bad = sig.slice();
        bad[bit >> 3]! ^= 1 << (bit & 7);
        expect(verifyBytes(pk, msg, bad)).toBe(false);
      }
      const other = Uint8Array.from([...msg, 0]);
      expect(verifyBytes(pk, other, sig)).toBe(false);
    }
  });

  it('agrees with node:crypto on 300 honest signatures and their damaged copies', () => {
    for (let i = 0; i < 300; i++) {
      const { privateKey, publicKey } = generateSigningKey();
      const raw = rawPublicKey(publicKey);
      const message = randomBytes(i % 3 === 0 ? 0 : 1 + (i * 37) % 2000);
      const signature = new Uint8Array(sign(null, message, privateKey));
      expect(verifyBytes(raw, message, signature)).toBe(true);
      expect(verifyBytes(publicKey, message, signature)).toBe(true);
      const damaged = signature.slice();
      damaged[i % 64]! ^= 1 << (i % 8);
      expect(verifyBytes(raw, message, damaged)).toBe(openssl(raw, message, damaged));
      expect(verifyBytes(raw, message, damaged)).toBe(false);
    }
  });

  it('refuses a non-canonical S (S + L), as node:crypto does', () => {
    const v = RFC8032[0]!;
    const sig = hex(v.sig);
    // L = 2^252 + 27742317777372353535851937790883648493, little-endian; S + L still < 2^256 here.
    const L = 2n ** 252n + 27742317777372353535851937790883648493n;
    let s = 0n;
    for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(sig[32 + i]!);
    let sl = s + L;
    const bad = sig.slice();
    for (let i = 0; i < 32; i++) {
      bad[32 + i] = Number(sl & 0xffn);
      sl >>= 8n;
    }
    expect(verifyBytes(hex(v.pk), hex(v.msg), bad)).toBe(false);
    expect(openssl(hex(v.pk), hex(v.msg), bad)).toBe(false);
  });

  it('refuses the identity key with R = identity, S = 0 for any message — which node:crypto accepts', () => {
    const identity = Uint8Array.from([1, ...new Array(31).fill(0)]);
    const forged = Uint8Array.from([1, ...new Array(63).fill(0)]);
    for (const message of [new Uint8Array(0), new TextEncoder().encode('approve PR #42')]) {
      expect(openssl(identity, message, forged)).toBe(true);
      expect(verifyBytes(identity, message, forged)).toBe(false);
    }
    expect(isValidPublicKey(identity)).toBe(false);
    expect(() => importPublicJwk({ kty: 'OKP', crv: 'Ed25519', x: Buffer.from(identity).toString('base64url') })).toThrow(/not a usable Ed25519 public key/);
  });

  it('refuses signatures of the wrong length and keys of the wrong length without throwing', () => {
    const v = RFC8032[1]!;
    expect(verifyBytes(hex(v.pk), hex(v.msg), hex(v.sig).slice(0, 63))).toBe(false);
    expect(verifyBytes(hex(v.pk).slice(0, 31), hex(v.msg), hex(v.sig))).toBe(false);
  });
});
