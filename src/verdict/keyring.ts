// The federation's public keys by kid (agent, node and admin keys of every org) and hot-path Ed25519 verification
// (crypto/ed25519.ts verifyBytes: libsodium), behind a bounded cache so one node never verifies the same signature twice.
import { createHash, type KeyObject } from 'node:crypto';
import type { MemberConfig } from '../config/types.ts';
import { importPublicJwk, rawPublicKey, verifyBytes, type SigningKey } from '../crypto/ed25519.ts';
import { bytesEqual, fromBase64Url } from '../crypto/encoding.ts';

export type KeyRole = 'agent' | 'node' | 'admin';

export interface KeyringEntry {
  kid: string;
  org: string;
  role: KeyRole;
  publicKey: KeyObject;
  /** The raw 32-byte public key, bound into cache keys. */
  raw: Uint8Array;
}

export interface KeyringStats {
  /** Signatures actually verified (not answered from the cache). */
  verified: number;
  /** Verifications answered from the cache. */
  cacheHits: number;
  cacheSize: number;
}

export const DEFAULT_VERIFY_CACHE_SIZE = 65_536;

const ROLE_FIELDS: ReadonlyArray<[KeyRole, 'agentKeys' | 'nodeKeys' | 'adminKeys']> = [
  ['agent', 'agentKeys'],
  ['node', 'nodeKeys'],
  ['admin', 'adminKeys'],
];

export class Keyring {
  private readonly byKid = new Map<string, KeyringEntry>();
  private readonly byOrgRole = new Map<string, KeyringEntry[]>();
  /** LRU of successful verifications: Map keeps insertion order, a hit is re-inserted at the end. */
  private readonly cache = new Map<string, true>();
  private readonly cacheLimit: number;
  private verifiedCount = 0;
  private hitCount = 0;

  private constructor(cacheLimit: number) {
    if (!Number.isSafeInteger(cacheLimit) || cacheLimit < 0) throw new Error(`verify cache size must be a non-negative integer, got ${cacheLimit}`);
    this.cacheLimit = cacheLimit;
  }

  /**
   * Builds the keyring from the federation's members (FederationConfig.members). A kid is the JWK's `kid`, or its
   * RFC 7638 thumbprint when absent; a kid listed twice (in two orgs or two roles) is refused: it would make the
   * signer ambiguous.
   */
  static fromMembers(members: readonly Pick<MemberConfig, 'org' | 'agentKeys' | 'nodeKeys' | 'adminKeys'>[], options: { cacheSize?: number } = {}): Keyring {
    const keyring = new Keyring(options.cacheSize ?? DEFAULT_VERIFY_CACHE_SIZE);
    for (const member of members) {
      for (const [role, field] of ROLE_FIELDS) {
        for (const jwk of member[field]) {
          const key = importPublicJwk(jwk);
          const existing = keyring.byKid.get(key.kid);
          if (existing) {
            throw new Error(`key id ${key.kid} is listed twice (${existing.org} ${existing.role} key and ${member.org} ${role} key)`);
          }
          const entry: KeyringEntry = { kid: key.kid, org: member.org, role, publicKey: key.publicKey, raw: fromBase64Url(key.publicJwk.x) };
          keyring.byKid.set(entry.kid, entry);
          const group = `${member.org}\n${role}`;
          const list = keyring.byOrgRole.get(group) ?? [];
          list.push(entry);
          keyring.byOrgRole.set(group, list);
        }
      }
    }
    return keyring;
  }

  /**
   * Reload: replaces the keys with those of `members` in place (every holder of this keyring sees them). The
   * verification cache stays valid: its keys bind the public key bytes. Throws, changing nothing, when invalid.
   */
  replaceMembers(members: readonly Pick<MemberConfig, 'org' | 'agentKeys' | 'nodeKeys' | 'adminKeys'>[]): void {
    const fresh = Keyring.fromMembers(members, { cacheSize: 0 });
    this.byKid.clear();
    this.byOrgRole.clear();
    for (const [kid, entry] of fresh.byKid) this.byKid.set(kid, entry);
    for (const [group, list] of fresh.byOrgRole) this.byOrgRole.set(group, list);
  }

  get(kid: string): KeyringEntry | undefined {
    return this.byKid.get(kid);
  }

  /** The keys an org holds in one role, in the order the federation file lists them. */
  keysOf(org: string, role: KeyRole): readonly KeyringEntry[] {
    return this.byOrgRole.get(`${org}\n${role}`) ?? [];
  }

  /**
   * Verifies an Ed25519 signature (verifyBytes). A successful verification is remembered (bounded LRU keyed by
   * SHA-256 over the public key, the message and the signature), so the same signature is never verified twice;
   * failures are not remembered, so garbage cannot evict good entries.
   */
  verify(entry: KeyringEntry, message: Uint8Array, signature: Uint8Array): boolean {
    if (signature.length !== 64) return false;
    const cacheKey = this.cacheKey(entry, message, signature);
    if (this.cache.has(cacheKey)) {
      this.cache.delete(cacheKey);
      this.cache.set(cacheKey, true);
      this.hitCount++;
      return true;
    }
    this.verifiedCount++;
    const ok = verifyBytes(entry.raw, message, signature);
    if (ok && this.cacheLimit > 0) {
      this.cache.set(cacheKey, true);
      if (this.cache.size > this.cacheLimit) this.cache.delete(this.cache.keys().next().value!);
    }
    return ok;
  }

  /**
   * Remembers a signature this node just made with its own key as verified (a signature made with a key is valid
   * under it). Only when the key is listed here with the same public key bytes; otherwise nothing is remembered.
   */
  rememberOwnSignature(key: SigningKey, message: Uint8Array, signature: Uint8Array): void {
    const entry = this.byKid.get(key.kid);
    if (!entry || this.cacheLimit === 0 || signature.length !== 64 || !bytesEqual(entry.raw, rawPublicKey(key.publicKey))) return;
    this.cache.set(this.cacheKey(entry, message, signature), true);
    if (this.cache.size > this.cacheLimit) this.cache.delete(this.cache.keys().next().value!);
  }

  private cacheKey(entry: KeyringEntry, message: Uint8Array, signature: Uint8Array): string {
    return createHash('sha256').update(entry.raw).update(signature).update(message).digest('base64url');
  }

  stats(): KeyringStats {
    return { verified: this.verifiedCount, cacheHits: this.hitCount, cacheSize: this.cache.size };
  }
}
