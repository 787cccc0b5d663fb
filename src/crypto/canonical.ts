// Canonical JSON (the RFC 8785 subset we use): the one byte form of a value that every signature and hash covers.
import { utf8 } from './encoding.ts';

export type CanonicalValue =
  | null
  | boolean
  | number
  | string
  | CanonicalValue[]
  | { [key: string]: CanonicalValue | undefined };

/**
 * Serializes with object keys sorted by UTF-16 code units, no whitespace, and only safe integers as numbers
 * (floats have no portable canonical form, so they are refused). Keys whose value is undefined are omitted.
 *
 * Hot: every log command, proposal signature, audit record and meta goes through here on every node. It computes
 * exactly referenceCanonicalJson node by node (that one is compositional, so the two may be mixed per subtree),
 * with three shortcuts: an array of strings — a proposal's batch — is one native JSON.stringify, keys already in
 * order are not sorted again, and strings are built by appending instead of map/join. Anything unusual (holes,
 * raw bytes, floats, undefined in arrays, functions …) is handed to the reference, which also owns every error.
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      return Number.isSafeInteger(value) ? String(value) : referenceCanonicalJson(value);
    case 'string':
      return JSON.stringify(value);
    case 'object':
      return Array.isArray(value) ? canonicalArray(value) : value instanceof Uint8Array ? referenceCanonicalJson(value) : canonicalObject(value as Record<string, unknown>);
    default:
      return referenceCanonicalJson(value);
  }
}

export function canonicalBytes(value: unknown): Uint8Array {
  return utf8(canonicalJson(value));
}

function canonicalArray(value: unknown[]): string {
  if (isPlainStringArray(value)) return JSON.stringify(value);
  let out = '[';
  for (let i = 0; i < value.length; i++) {
    if (!(i in value)) return referenceCanonicalJson(value); // a hole: whatever the reference makes of it
    if (i > 0) out += ',';
    out += canonicalJson(value[i]);
  }
  return `${out}]`;
}

/**
 * True when JSON.stringify(value) writes `[` + each item's JSON.stringify + `]`, as the reference does: every
 * item is a string (a hole is not) and no toJSON can step in (JSON.stringify calls one on the array, or on each
 * string with its index as the key where the reference passes "").
 */
function isPlainStringArray(value: unknown[]): boolean {
  if ((value as { toJSON?: unknown }).toJSON !== undefined || (String.prototype as { toJSON?: unknown }).toJSON !== undefined) return false;
  for (let i = 0; i < value.length; i++) if (typeof value[i] !== 'string') return false;
  return true;
}

function canonicalObject(record: Record<string, unknown>): string {
  const keys = Object.keys(record).filter((key) => record[key] !== undefined);
  for (let i = 1; i < keys.length; i++) {
    if (!(keys[i - 1]! < keys[i]!)) {
      keys.sort();
      break;
    }
  }
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    if (i > 0) out += ',';
    out += `${JSON.stringify(key)}:${canonicalJson(record[key])}`;
  }
  return `${out}}`;
}

/** The definition of canonical JSON (the fast path must give its bytes): sort, quote, recurse, refuse the rest. */
export function referenceCanonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isSafeInteger(value)) throw new Error(`canonical JSON allows only safe integers, got ${value}`);
      return String(value);
    case 'string':
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((item) => referenceCanonicalJson(item)).join(',')}]`;
      if (value instanceof Uint8Array) throw new Error('canonical JSON cannot hold raw bytes; encode them as base64url');
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record)
        .filter((key) => record[key] !== undefined)
        .sort();
      return `{${keys.map((key) => `${JSON.stringify(key)}:${referenceCanonicalJson(record[key])}`).join(',')}}`;
    }
    default:
      throw new Error(`canonical JSON cannot encode a ${typeof value}`);
  }
}
