// Test fixtures for verdict/: a small federation with fresh keys, swarm configs, and verdicts signed with node:crypto.
import type { MemberConfig, SwarmConfig, SwarmPolicy } from '../../src/config/types.ts';
import { exportPrivateJwk, generateSigningKey, signBytes, type SigningKey } from '../../src/crypto/ed25519.ts';
import { toBase64Url, utf8 } from '../../src/crypto/encoding.ts';
import { verdictSigningInput, type VerdictPayload } from '../../src/verdict/format.ts';
import { Keyring } from '../../src/verdict/keyring.ts';

export interface OrgKeys {
  agent: SigningKey;
  node: SigningKey;
  admin: SigningKey;
}

export interface Federation {
  orgs: string[];
  members: MemberConfig[];
  keys: Record<string, OrgKeys>;
  keyring: Keyring;
}

export const NOW = 1_760_000_000;

export function makeFederation(orgs: readonly string[]): Federation {
  const keys: Record<string, OrgKeys> = {};
  const members: MemberConfig[] = orgs.map((org) => {
    const k: OrgKeys = { agent: generateSigningKey(), node: generateSigningKey(), admin: generateSigningKey() };
    keys[org] = k;
    return {
      org,
      peerUrl: `https://${org}.example:7000`,
      apiUrl: null,
      caPem: '',
      agentKeys: [k.agent.publicJwk],
      nodeKeys: [k.node.publicJwk],
      adminKeys: [k.admin.publicJwk],
    };
  });
  return { orgs: [...orgs], members, keys, keyring: Keyring.fromMembers(members) };
}

export function makeSwarm(id: string, members: readonly string[], policy: Partial<SwarmPolicy> = {}, mode: SwarmConfig['mode'] = 'raft'): SwarmConfig {
  return {
    id,
    members: [...members],
    mode,
    adminPolicy: 'majority',
    policy: {
      values: ['approve', 'request-changes', 'reject'],
      quorum: 'majority',
      rule: { kind: 'majority' },
      fallback: null,
      maxClockSkewSeconds: 300,
      ...policy,
    },
  };
}

let nonceCounter = 0;

export function freshNonce(): string {
  nonceCounter++;
  return `nonce-${String(nonceCounter).padStart(10, '0')}`;
}

/** Signs a verdict with node:crypto (fast; byte-identical to agent.ts). */
export function signWith(key: SigningKey, payload: VerdictPayload, kid = key.kid): string {
  const input = verdictSigningInput(kid, payload);
  return `${input}.${toBase64Url(signBytes(key, utf8(input)))}`;
}

export function verdictOf(
  fed: Federation,
  org: string,
  fields: Partial<VerdictPayload> & { subject: string; verdict: string },
  swarm = 's1',
): string {
  const payload: VerdictPayload = {
    v: 1,
    swarm,
    org,
    agent: `${org}-bot`,
    reason: '',
    iat: NOW,
    nonce: freshNonce(),
    ...fields,
  };
  return signWith(fed.keys[payload.org]?.agent ?? fed.keys[org]!.agent, payload);
}

/** A compact JWS from raw header/payload objects and a key, for malformed-input tests. */
export function rawJws(header: unknown, payload: unknown, key: SigningKey): string {
  const h = toBase64Url(utf8(JSON.stringify(header)));
  const p = toBase64Url(utf8(JSON.stringify(payload)));
  return `${h}.${p}.${toBase64Url(signBytes(key, utf8(`${h}.${p}`)))}`;
}

export { exportPrivateJwk };
