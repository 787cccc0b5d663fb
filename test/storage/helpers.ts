// Shared helpers of the storage tests: temp data directories and entry builders.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Entry } from '../../src/consensus/raft/types.ts';

export async function tempDir(label: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `conclave-storage-${label}-`));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** Deterministic payload of an entry, so a reader can recompute what was written at (index, term). */
export function payload(index: number, term: number, salt = 0): Uint8Array {
  const len = 1 + ((index * 7 + term * 13 + salt) % 97);
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (index * 31 + term * 17 + salt * 5 + i) & 0xff;
  return out;
}

export function entry(index: number, term: number, salt = 0, type: Entry['type'] = 'normal'): Entry {
  return { index, term, type, data: payload(index, term, salt) };
}

export function entries(from: number, to: number, term: number, salt = 0): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, term, salt));
  return out;
}
