// Full admission check of an agent's verdict on the receiving node: format, key, signature, swarm, policy value
// and issue time, in a fixed order so each refusal carries one stable code. Pure: the time is passed in.
import { createHash } from 'node:crypto';
import type { SwarmConfig } from '../config/types.ts';
import { parseVerdictJws, VerdictError, type ParsedVerdict } from './format.ts';
import type { Keyring } from './keyring.ts';

export interface VerifiedVerdict extends ParsedVerdict {
  /** Lowercase hex SHA-256 of the compact JWS (its ASCII bytes): the verdict's identity everywhere. */
  jwsHash: string;
}

export interface VerdictCheckContext {
  keyring: Keyring;
  /** The swarms this node knows, by id. */
  swarms: ReadonlyMap<string, SwarmConfig> | readonly SwarmConfig[];
  /** The swarm named by the request (the URL); the payload must name the same one. */
  expectedSwarm?: string;
  /** Unix seconds of the receiving node's clock; omit to skip the issue-time check (replicas never check it). */
  now?: number;
  /** Skip the signature check (raft replicas applying a proposal they trust); defaults to false. */
  skipSignature?: boolean;
}

export function jwsHashOf(jws: string): string {
  // Hashing the string directly encodes it as UTF-8 natively, as utf8() does (a lone surrogate becomes U+FFFD in
  // both), without the intermediate byte array and hex round trip: this runs per verdict on every node.
  return createHash('sha256').update(jws, 'utf8').digest('hex');
}

function findSwarm(swarms: VerdictCheckContext['swarms'], id: string): SwarmConfig | undefined {
  if (swarms instanceof Map) return swarms.get(id);
  return (swarms as readonly SwarmConfig[]).find((swarm) => swarm.id === id);
}

/**
 * Checks the key and the signature: UNKNOWN_KID (not listed, or not an agent key), KEY_ORG_MISMATCH (an agent key
 * of another org than payload.org), BAD_SIGNATURE.
 */
export function checkVerdictSignature(parsed: ParsedVerdict, keyring: Keyring, skipSignature = false): void {
  const entry = keyring.get(parsed.header.kid);
  if (!entry) throw new VerdictError('UNKNOWN_KID', `no key with kid ${JSON.stringify(parsed.header.kid)} is listed in the federation`);
  if (entry.role !== 'agent') {
    throw new VerdictError('UNKNOWN_KID', `kid ${JSON.stringify(entry.kid)} is a ${entry.role} key of ${entry.org}, not an agent key`);
  }
  if (entry.org !== parsed.payload.org) {
    throw new VerdictError(
      'KEY_ORG_MISMATCH',
      `kid ${JSON.stringify(entry.kid)} is an agent key of ${entry.org}, but the verdict claims org ${JSON.stringify(parsed.payload.org)}`,
    );
  }
  if (!skipSignature && !keyring.verify(entry, parsed.signingInput, parsed.signature)) {
    throw new VerdictError('BAD_SIGNATURE', `the signature does not verify with agent key ${entry.kid} of ${entry.org}`);
  }
}

/**
 * Checks a verdict against one swarm's membership and policy: SWARM_MISMATCH, ORG_NOT_IN_SWARM, VALUE_NOT_ALLOWED.
 */
export function checkVerdictAgainstSwarm(parsed: ParsedVerdict, swarm: SwarmConfig): void {
  const { payload } = parsed;
  if (payload.swarm !== swarm.id) {
    throw new VerdictError('SWARM_MISMATCH', `the verdict names swarm ${JSON.stringify(payload.swarm)}, but was sent to swarm ${JSON.stringify(swarm.id)}`);
  }
  if (!swarm.members.includes(payload.org)) {
    throw new VerdictError('ORG_NOT_IN_SWARM', `org ${JSON.stringify(payload.org)} is not a member of swarm ${JSON.stringify(swarm.id)}`);
  }
  if (!swarm.policy.values.includes(payload.verdict)) {
    throw new VerdictError(
      'VALUE_NOT_ALLOWED',
      `verdict ${JSON.stringify(payload.verdict)} is not allowed in swarm ${JSON.stringify(swarm.id)}; allowed: ${swarm.policy.values.join(', ')}`,
    );
  }
}

/** IAT_OUT_OF_RANGE when |now - iat| exceeds the swarm's maxClockSkewSeconds. */
export function checkIssueTime(parsed: ParsedVerdict, swarm: SwarmConfig, now: number): void {
  const skew = swarm.policy.maxClockSkewSeconds;
  const delta = parsed.payload.iat - now;
  if (delta > skew) throw new VerdictError('IAT_OUT_OF_RANGE', `iat is ${delta} s in the future; at most ${skew} s is accepted`);
  if (-delta > skew) throw new VerdictError('IAT_OUT_OF_RANGE', `iat is ${-delta} s in the past; at most ${skew} s is accepted`);
}

/**
 * What the receiving node runs on an agent's JWS before proposing it. Order: UNKNOWN_SWARM (the URL's swarm),
 * then the format (JWS_TOO_LARGE, MALFORMED_JWS, BAD_HEADER, PAYLOAD_INVALID), the key and signature (UNKNOWN_KID,
 * KEY_ORG_MISMATCH, BAD_SIGNATURE), the swarm (SWARM_MISMATCH, UNKNOWN_SWARM, ORG_NOT_IN_SWARM, VALUE_NOT_ALLOWED)
 * and last the issue time (IAT_OUT_OF_RANGE). Nonce replay depends on the applied state: DecisionMachine.admit.
 */
export function verifyVerdict(jws: unknown, context: VerdictCheckContext): VerifiedVerdict {
  if (context.expectedSwarm !== undefined && !findSwarm(context.swarms, context.expectedSwarm)) {
    throw new VerdictError('UNKNOWN_SWARM', `no swarm ${JSON.stringify(context.expectedSwarm)} on this node`);
  }
  const parsed = parseVerdictJws(jws);
  checkVerdictSignature(parsed, context.keyring, context.skipSignature ?? false);
  const swarmId = context.expectedSwarm ?? parsed.payload.swarm;
  if (parsed.payload.swarm !== swarmId) {
    throw new VerdictError('SWARM_MISMATCH', `the verdict names swarm ${JSON.stringify(parsed.payload.swarm)}, but was sent to swarm ${JSON.stringify(swarmId)}`);
  }
  const swarm = findSwarm(context.swarms, swarmId);
  if (!swarm) throw new VerdictError('UNKNOWN_SWARM', `no swarm ${JSON.stringify(swarmId)} on this node`);
  checkVerdictAgainstSwarm(parsed, swarm);
  if (context.now !== undefined) checkIssueTime(parsed, swarm, context.now);
  return { ...parsed, jwsHash: jwsHashOf(parsed.jws) };
}
