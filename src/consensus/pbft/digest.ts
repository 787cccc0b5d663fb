// Byte helpers and the batch digest: the one definition of "which batch" every replica agrees on.
import type { PbftRequest } from './types.ts';
import { encodeBatch } from './codec.ts';

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function toHex(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += (b[i]! < 16 ? '0' : '') + b[i]!.toString(16);
  return s;
}

/** Digest of a batch (empty batch = the null request): hash of its canonical encoding. */
export function batchDigest(hash: (b: Uint8Array) => Uint8Array, requests: readonly PbftRequest[]): Uint8Array {
  return hash(encodeBatch(requests));
}
