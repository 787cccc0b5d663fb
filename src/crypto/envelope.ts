// Domain-separated signatures over canonical JSON: the one way a node or admin signs a structured message.
import { canonicalBytes } from './canonical.ts';
import { concatBytes, fromBase64Url, toBase64Url, utf8 } from './encoding.ts';
import { signBytes, verifyBytes, type SigningKey, type VerifyingKey } from './ed25519.ts';

/**
 * The bytes signed for a structured message: ASCII "conclave/" + domain + "/v1\n" followed by the canonical JSON
 * of the payload. The domain prefix keeps a signature made for one purpose (a proposal) from being replayed as
 * another (a checkpoint).
 */
export function envelopeSigningBytes(domain: string, payload: unknown): Uint8Array {
  return concatBytes(envelopePrefix(domain), canonicalBytes(payload));
}

/** The domain prefix alone, for a caller that hashes prefix and canonical bytes it already holds in two parts. */
export function envelopePrefix(domain: string): Uint8Array {
  if (!/^[a-z][a-z0-9-]*$/.test(domain)) throw new Error(`invalid signing domain ${JSON.stringify(domain)}`);
  return utf8(`conclave/${domain}/v1\n`);
}

export function signEnvelope(domain: string, payload: unknown, key: SigningKey): string {
  return toBase64Url(signBytes(key, envelopeSigningBytes(domain, payload)));
}

export function verifyEnvelope(domain: string, payload: unknown, signature: string, key: VerifyingKey): boolean {
  let sig: Uint8Array;
  try {
    sig = fromBase64Url(signature);
  } catch {
    return false;
  }
  return verifyBytes(key, envelopeSigningBytes(domain, payload), sig);
}
