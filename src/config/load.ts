// Loading and validating the federation file: YAML → FederationConfig, or a FederationError listing every problem
// at once, each with its path in the file and a fix. A node never starts on a file this module refuses.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { importPrivateJwk, isPublicJwk, isValidPublicKey, jwkThumbprint, type PrivateJwk, type PublicJwk } from '../crypto/ed25519.ts';
import { fromBase64Url } from '../crypto/encoding.ts';
import { ID_PATTERN } from '../pki/certs.ts';
import { buildPeerTrust, peerIdentity, PeerIdentityError, splitPemCertificates } from '../pki/identity.ts';
import { FederationError, type Problem } from './errors.ts';
import { POLICY_VALUE_PATTERN } from '../verdict/policy.ts';
import type {
  AdminPolicy,
  DecisionRule,
  FederationConfig,
  MemberConfig,
  NodeSelfConfig,
  QuorumSpec,
  SwarmConfig,
  SwarmPolicy,
} from './types.ts';

export { FederationError, type Problem } from './errors.ts';

export const DEFAULT_MAX_CLOCK_SKEW_SECONDS = 300;
const ID_HINT = 'use 1-63 lowercase letters, digits or dashes, starting with a letter or digit';

type Dict = Record<string, unknown>;

/** Collects problems while walking the parsed YAML; each check reports and moves on. */
class Checker {
  readonly problems: Problem[] = [];
  constructor(readonly baseDir: string) {}

  add(path: string, message: string): void {
    this.problems.push({ path, message });
  }

  /** A mapping with only the allowed keys; unknown keys are reported with the closest known one. */
  object(value: unknown, path: string, allowed: readonly string[]): Dict | null {
    if (!isDict(value)) {
      this.add(path, `expected a mapping (key: value), got ${describe(value)}`);
      return null;
    }
    for (const key of Object.keys(value)) {
      if (allowed.includes(key)) continue;
      const guess = closest(key, allowed);
      this.add(join(path, key), `unknown key${guess ? ` — did you mean ${guess}?` : ''} (allowed here: ${allowed.join(', ')})`);
    }
    return value;
  }

  string(dict: Dict, key: string, path: string, required = true): string | undefined {
    const value = dict[key];
    if (value === undefined || value === null) {
      if (required) this.add(join(path, key), 'missing — this key is required');
      return undefined;
    }
    if (typeof value !== 'string' || value.trim() === '') {
      this.add(join(path, key), `expected a non-empty string, got ${describe(value)}`);
      return undefined;
    }
    return value;
  }

  id(dict: Dict, key: string, path: string): string | undefined {
    const value = this.string(dict, key, path);
    if (value === undefined) return undefined;
    if (!ID_PATTERN.test(value)) {
      this.add(join(path, key), `${JSON.stringify(value)} is not a valid id — ${ID_HINT}`);
      return undefined;
    }
    return value;
  }

  list(dict: Dict, key: string, path: string, required = true): unknown[] | undefined {
    const value = dict[key];
    if (value === undefined || value === null) {
      if (required) this.add(join(path, key), 'missing — this key is required (a list)');
      return undefined;
    }
    if (!Array.isArray(value)) {
      this.add(join(path, key), `expected a list, got ${describe(value)}`);
      return undefined;
    }
    return value;
  }

  /** Reads a file named relative to the federation file; reports a missing or unreadable file with `hint`. */
  file(value: string, path: string, hint: string): { text: string; absolute: string } | undefined {
    const absolute = resolve(this.baseDir, value);
    try {
      if (statSync(absolute).isDirectory()) {
        this.add(path, `${value} is a folder, not a file — ${hint}`);
        return undefined;
      }
      return { text: readFileSync(absolute, 'utf8'), absolute };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') this.add(path, `file ${value} not found — ${hint}`);
      else if (code === 'EACCES') this.add(path, `file ${value} cannot be read (permission denied) — check its owner and mode`);
      else this.add(path, `file ${value} cannot be read (${code ?? (error as Error).message})`);
      return undefined;
    }
  }
}

function isDict(value: unknown): value is Dict {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
  return `${typeof value} ${String(value)}`;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}

function closest(key: string, allowed: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of allowed) {
    const distance = editDistance(key, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : null;
}

function parseListen(value: unknown, path: string, c: Checker): { host: string; port: number } | undefined {
  if (typeof value !== 'string') {
    c.add(path, `expected "host:port" (e.g. 127.0.0.1:7001), got ${describe(value)}`);
    return undefined;
  }
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value.trim());
  if (!match) {
    c.add(path, `${JSON.stringify(value)} is not host:port — write e.g. 127.0.0.1:7001, 0.0.0.0:7001 or [::1]:7001`);
    return undefined;
  }
  const port = Number(match[3]);
  if (port < 1 || port > 65535) {
    c.add(path, `port ${port} is out of range — use 1-65535`);
    return undefined;
  }
  return { host: match[1] ?? match[2]!, port };
}

function parseUrl(value: unknown, path: string, c: Checker, protocols: readonly string[]): string | undefined {
  if (typeof value !== 'string' || value.trim() === '') {
    c.add(path, `expected a URL such as https://node.acme.example:7001, got ${describe(value)}`);
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    c.add(path, `${JSON.stringify(value)} is not a URL — write e.g. https://node.acme.example:7001`);
    return undefined;
  }
  if (!protocols.includes(url.protocol)) {
    c.add(path, `${url.protocol}// is not allowed here — use ${protocols.map((p) => p + '//').join(' or ')}`);
    return undefined;
  }
  if (url.username || url.password) c.add(path, 'a URL with a user name or password is not allowed — remove the credentials');
  else if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    c.add(path, `${JSON.stringify(value)} has a path, query or fragment — give only scheme, host and port`);
  } else return `${url.protocol}//${url.host}`;
  return undefined;
}

function parseCertificates(pem: string, path: string, c: Checker, expectCa: boolean): X509Certificate[] | undefined {
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    c.add(path, 'holds a PRIVATE KEY — never put a private key here; use the certificate (ca.crt / node.crt)');
    return undefined;
  }
  const blocks = splitPemCertificates(pem);
  if (blocks.length === 0) {
    c.add(path, 'not a PEM certificate (no -----BEGIN CERTIFICATE----- block)');
    return undefined;
  }
  const certs: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    const where = blocks.length > 1 ? ` (certificate ${i + 1} of ${blocks.length})` : '';
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch (error) {
      c.add(path, `not a valid certificate${where}: ${(error as Error).message}`);
      return undefined;
    }
    if (expectCa && !cert.ca) {
      c.add(path, `${cert.subject.replace(/\n/g, ', ')}${where} is not a CA certificate — use the org's ca.crt, not its node.crt`);
      return undefined;
    }
    if (Date.now() > new Date(cert.validTo).getTime()) {
      c.add(path, `certificate${where} expired on ${new Date(cert.validTo).toISOString()} — issue a new one (conclave init)`);
      return undefined;
    }
    certs.push(cert);
  }
  return certs;
}

interface KeyOwner {
  path: string;
  org: string;
}

function parseJwks(
  dict: Dict,
  key: string,
  path: string,
  c: Checker,
  org: string,
  kids: Map<string, KeyOwner>,
  xs: Map<string, KeyOwner>,
  required: boolean,
): PublicJwk[] {
  const list = c.list(dict, key, path, required);
  if (!list) return [];
  if (required && list.length === 0) c.add(join(path, key), 'empty — list at least one public JWK (from the member card)');
  const keys: PublicJwk[] = [];
  for (const [i, item] of list.entries()) {
    const jwk = parseJwk(item, `${join(path, key)}[${i}]`, c, org, kids, xs);
    if (jwk) keys.push(jwk);
  }
  return keys;
}

const JWK_KEYS = ['kty', 'crv', 'x', 'kid', 'alg', 'use', 'key_ops', 'ext', 'd'] as const;

function parseJwk(value: unknown, path: string, c: Checker, org: string, kids: Map<string, KeyOwner>, xs: Map<string, KeyOwner>): PublicJwk | undefined {
  const dict = c.object(value, path, JWK_KEYS);
  if (!dict) return undefined;
  if (dict.d !== undefined) {
    c.add(join(path, 'd'), 'this is a PRIVATE key — remove d: a federation file holds only public keys (copy the member card)');
    return undefined;
  }
  if (dict.kty !== 'OKP' || dict.crv !== 'Ed25519') {
    c.add(path, `only Ed25519 keys are accepted (kty: OKP, crv: Ed25519), got kty ${describe(dict.kty)}, crv ${describe(dict.crv)}`);
    return undefined;
  }
  if (typeof dict.x !== 'string') {
    c.add(join(path, 'x'), `missing or not a string — x is the base64url public key`);
    return undefined;
  }
  let raw: Uint8Array;
  try {
    raw = fromBase64Url(dict.x);
  } catch {
    c.add(join(path, 'x'), 'not base64url (A-Z a-z 0-9 - _, no padding)');
    return undefined;
  }
  if (raw.length !== 32) {
    c.add(join(path, 'x'), `an Ed25519 public key is 32 bytes, this one is ${raw.length}`);
    return undefined;
  }
  if (!isValidPublicKey(raw)) {
    c.add(join(path, 'x'), 'not a usable Ed25519 public key: not a canonical point of the prime-order subgroup (a small-order or malformed key — no signature by it can verify)');
    return undefined;
  }
  if (dict.alg !== undefined && dict.alg !== 'EdDSA' && dict.alg !== 'Ed25519') {
    c.add(join(path, 'alg'), `alg ${describe(dict.alg)} does not fit an Ed25519 key — use EdDSA or leave it out`);
  }
  if (dict.kid !== undefined && (typeof dict.kid !== 'string' || dict.kid === '')) {
    c.add(join(path, 'kid'), `expected a non-empty string, got ${describe(dict.kid)}`);
    return undefined;
  }
  const base = { kty: 'OKP' as const, crv: 'Ed25519' as const, x: dict.x };
  const kid = (dict.kid as string | undefined) ?? jwkThumbprint(base);
  const jwk: PublicJwk = { ...base, kid, alg: 'EdDSA' };
  if (!isPublicJwk(jwk)) return undefined;
  const sameKid = kids.get(kid);
  if (sameKid) {
    c.add(join(path, 'kid'), `kid ${JSON.stringify(kid)} is already used by ${sameKid.path} (org ${sameKid.org}) — kids must be unique across the federation`);
    return undefined;
  }
  const sameKey = xs.get(jwk.x);
  if (sameKey) {
    c.add(join(path, 'x'), `the same public key is already listed at ${sameKey.path} (org ${sameKey.org}) — every key belongs to exactly one org and role`);
    return undefined;
  }
  kids.set(kid, { path, org });
  xs.set(jwk.x, { path, org });
  return jwk;
}

function countOf(value: unknown, path: string, c: Checker, memberCount: number, what: string): number | undefined {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    c.add(path, `expected a whole number ≥ 1, got ${describe(value)}`);
    return undefined;
  }
  if (memberCount > 0 && value > memberCount) {
    c.add(path, `${what} ${value} is larger than the swarm's ${memberCount} members — it could never be reached`);
    return undefined;
  }
  return value;
}

function parsePolicy(value: unknown, path: string, c: Checker, memberCount: number): SwarmPolicy | undefined {
  const dict = c.object(value, path, ['values', 'quorum', 'rule', 'fallback', 'maxClockSkewSeconds']);
  if (!dict) return undefined;
  let ok = true;
  const values: string[] = [];
  const rawValues = c.list(dict, 'values', path);
  if (!rawValues) ok = false;
  else if (rawValues.length === 0) {
    c.add(join(path, 'values'), 'empty — list the verdict values agents may give, e.g. [approve, request-changes, reject]');
    ok = false;
  } else {
    for (const [i, item] of rawValues.entries()) {
      const where = `${join(path, 'values')}[${i}]`;
      if (typeof item !== 'string' || !POLICY_VALUE_PATTERN.test(item)) {
        c.add(where, `${describe(item)} is not a valid value — use lowercase letters, digits, dashes or underscores`);
        ok = false;
      } else if (values.includes(item)) {
        c.add(where, `${JSON.stringify(item)} is listed twice`);
        ok = false;
      } else values.push(item);
    }
  }

  let quorum: QuorumSpec | undefined;
  if (dict.quorum === 'majority' || dict.quorum === 'all') quorum = dict.quorum;
  else if (dict.quorum === undefined) c.add(join(path, 'quorum'), 'missing — use majority, all, or a number of orgs');
  else if (typeof dict.quorum === 'number') quorum = countOf(dict.quorum, join(path, 'quorum'), c, memberCount, 'quorum');
  else c.add(join(path, 'quorum'), `expected majority, all, or a number of orgs, got ${describe(dict.quorum)}`);
  if (quorum === undefined) ok = false;

  let rule: DecisionRule | undefined;
  const rulePath = join(path, 'rule');
  if (dict.rule === 'majority' || dict.rule === 'unanimity') rule = { kind: dict.rule };
  else if (dict.rule === undefined) c.add(rulePath, 'missing — use majority, unanimity, or {threshold: N, value: V}');
  else if (isDict(dict.rule)) {
    const ruleDict = c.object(dict.rule, rulePath, ['threshold', 'value']);
    const count = ruleDict ? countOf(ruleDict.threshold, join(rulePath, 'threshold'), c, memberCount, 'threshold') : undefined;
    const ruleValue = ruleDict ? c.string(ruleDict, 'value', rulePath) : undefined;
    if (ruleValue !== undefined && values.length > 0 && !values.includes(ruleValue)) {
      c.add(join(rulePath, 'value'), `${JSON.stringify(ruleValue)} is not one of the policy's values (${values.join(', ')})`);
    } else if (count !== undefined && ruleValue !== undefined) rule = { kind: 'threshold', value: ruleValue, count };
  } else c.add(rulePath, `expected majority, unanimity, or {threshold: N, value: V}, got ${describe(dict.rule)}`);
  if (rule === undefined) ok = false;

  let fallback: string | null = null;
  if (dict.fallback !== undefined && dict.fallback !== null) {
    if (typeof dict.fallback !== 'string' || (values.length > 0 && !values.includes(dict.fallback))) {
      c.add(join(path, 'fallback'), `${describe(dict.fallback)} is not one of the policy's values (${values.join(', ')})`);
      ok = false;
    } else fallback = dict.fallback;
  }

  let maxClockSkewSeconds = DEFAULT_MAX_CLOCK_SKEW_SECONDS;
  if (dict.maxClockSkewSeconds !== undefined) {
    const skew = dict.maxClockSkewSeconds;
    if (typeof skew !== 'number' || !Number.isInteger(skew) || skew < 1 || skew > 86_400) {
      c.add(join(path, 'maxClockSkewSeconds'), `expected whole seconds between 1 and 86400, got ${describe(skew)}`);
      ok = false;
    } else maxClockSkewSeconds = skew;
  }
  if (!ok || quorum === undefined || rule === undefined) return undefined;
  return { values, quorum, rule, fallback, maxClockSkewSeconds };
}

function parseAdminPolicy(value: unknown, path: string, c: Checker, memberCount: number): AdminPolicy | undefined {
  if (value === undefined || value === null) return 'majority';
  if (value === 'majority' || value === 'all' || value === 'two-thirds') return value;
  if (typeof value === 'number') return countOf(value, path, c, memberCount, 'adminPolicy');
  c.add(path, `expected majority, all, two-thirds, or a number of orgs, got ${describe(value)}`);
  return undefined;
}

interface ParsedMember {
  config: MemberConfig;
  cas: X509Certificate[];
  index: number;
}

const MEMBER_KEYS = ['org', 'peerUrl', 'apiUrl', 'ca', 'nodeKeys', 'nodeKey', 'agentKeys', 'adminKeys'] as const;

/** A member entry as a mapping: inline, or its card file merged with the entry's overrides. */
function memberDict(value: unknown, index: number, c: Checker): Dict | undefined {
  const path = `members[${index}]`;
  const entry = c.object(value, path, [...MEMBER_KEYS, 'card']);
  if (!entry) return undefined;
  return entry.card === undefined ? entry : readCard(entry, path, c, MEMBER_KEYS);
}

function parseMember(dict: Dict, index: number, c: Checker, kids: Map<string, KeyOwner>, xs: Map<string, KeyOwner>): ParsedMember | undefined {
  const path = `members[${index}]`;
  const org = c.id(dict, 'org', path);
  const label = org ?? `#${index}`;
  const peerUrl = dict.peerUrl === undefined ? (c.add(join(path, 'peerUrl'), 'missing — the https:// address of the member node\'s peer port'), undefined) : parseUrl(dict.peerUrl, join(path, 'peerUrl'), c, ['https:']);
  const apiUrl = dict.apiUrl === undefined || dict.apiUrl === null ? null : parseUrl(dict.apiUrl, join(path, 'apiUrl'), c, ['https:', 'http:']);

  let caPem: string | undefined;
  let cas: X509Certificate[] | undefined;
  const caValue = c.string(dict, 'ca', path);
  if (caValue !== undefined) {
    if (caValue.trimStart().startsWith('-----BEGIN')) caPem = caValue;
    else caPem = c.file(caValue, join(path, 'ca'), `run conclave init --org ${label} or fix the path`)?.text;
    if (caPem !== undefined) cas = parseCertificates(caPem, join(path, 'ca'), c, true);
  }

  let nodeKeys: PublicJwk[] = [];
  if (dict.nodeKeys !== undefined && dict.nodeKey !== undefined) c.add(join(path, 'nodeKey'), 'give either nodeKey or nodeKeys, not both');
  else if (dict.nodeKey !== undefined) {
    const jwk = parseJwk(dict.nodeKey, join(path, 'nodeKey'), c, label, kids, xs);
    if (jwk) nodeKeys = [jwk];
  } else if (dict.nodeKeys === undefined) c.add(join(path, 'nodeKeys'), 'missing — list the node\'s public JWK (from the member card)');
  else nodeKeys = parseJwks(dict, 'nodeKeys', path, c, label, kids, xs, true);
  const agentKeys = parseJwks(dict, 'agentKeys', path, c, label, kids, xs, false);
  const adminKeys = parseJwks(dict, 'adminKeys', path, c, label, kids, xs, false);

  if (org === undefined || peerUrl === undefined || apiUrl === undefined || caPem === undefined || !cas || nodeKeys.length === 0) return undefined;
  return { config: { org, peerUrl, apiUrl, caPem, nodeKeys, agentKeys, adminKeys }, cas, index };
}

/**
 * A member given as `card: <path to member-card.yaml>` (as conclave init wrote it), optionally overriding
 * peerUrl / apiUrl: the card's fields, then the entry's own.
 */
function readCard(entry: Dict, path: string, c: Checker, keys: readonly string[]): Dict | undefined {
  if (typeof entry.card !== 'string' || entry.card === '') {
    c.add(join(path, 'card'), `expected the path of a member-card.yaml, got ${describe(entry.card)}`);
    return undefined;
  }
  const file = c.file(entry.card, join(path, 'card'), 'run conclave init for that org, or ask it for its member card');
  if (!file) return undefined;
  const doc = parseDocument(file.text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    c.add(join(path, 'card'), `${entry.card} is not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
    return undefined;
  }
  let card: unknown = doc.toJS({ maxAliasCount: 100 });
  if (Array.isArray(card)) {
    if (card.length !== 1) {
      c.add(join(path, 'card'), `${entry.card} lists ${card.length} members; a member card holds exactly one`);
      return undefined;
    }
    card = card[0];
  }
  const cardDict = c.object(card, `${join(path, 'card')} (${entry.card})`, keys);
  if (!cardDict) return undefined;
  const { card: _card, ...overrides } = entry;
  return { ...cardDict, ...overrides };
}

function parseSwarm(
  value: unknown,
  index: number,
  c: Checker,
  members: Map<string, ParsedMember>,
  knownOrgs: Set<string>,
  someMembersUnreadable: boolean,
): SwarmConfig | undefined {
  const path = `swarms[${index}]`;
  const dict = c.object(value, path, ['id', 'members', 'mode', 'policy', 'adminPolicy']);
  if (!dict) return undefined;
  const id = c.id(dict, 'id', path);
  const orgs: string[] = [];
  let ok = true;
  const list = c.list(dict, 'members', path);
  if (!list) ok = false;
  else if (list.length === 0) {
    c.add(join(path, 'members'), 'empty — list the orgs of this swarm');
    ok = false;
  } else {
    for (const [i, item] of list.entries()) {
      const where = `${join(path, 'members')}[${i}]`;
      if (typeof item !== 'string' || !ID_PATTERN.test(item)) {
        c.add(where, `${describe(item)} is not a valid org id — ${ID_HINT}`);
        ok = false;
      } else if (orgs.includes(item)) {
        c.add(where, `org ${item} is listed twice`);
        ok = false;
      } else {
        if (!knownOrgs.has(item)) {
          if (!someMembersUnreadable) c.add(where, `org ${JSON.stringify(item)} is not listed under members — add its member card there or remove it from the swarm`);
          ok = false;
        } else if (!members.has(item)) ok = false; // its member entry had problems, already reported
        orgs.push(item);
      }
    }
  }
  let mode: 'raft' | 'pbft' | undefined;
  if (dict.mode === 'raft' || dict.mode === 'pbft') mode = dict.mode;
  else c.add(join(path, 'mode'), dict.mode === undefined ? 'missing — use raft or pbft' : `expected raft or pbft, got ${describe(dict.mode)}`);
  if (mode === 'pbft' && list && orgs.length < 4) {
    c.add(
      join(path, 'mode'),
      `pbft needs at least 4 members (n = 3f+1 with f ≥ 1) and this swarm has ${orgs.length} — add members or use mode: raft`,
    );
    ok = false;
  }
  const policy = dict.policy === undefined ? (c.add(join(path, 'policy'), 'missing — give values, quorum and rule'), undefined) : parsePolicy(dict.policy, join(path, 'policy'), c, orgs.length);
  const adminPolicy = parseAdminPolicy(dict.adminPolicy, join(path, 'adminPolicy'), c, orgs.length);
  if (!ok || id === undefined || mode === undefined || policy === undefined || adminPolicy === undefined) return undefined;
  return { id, members: orgs, mode, policy, adminPolicy };
}

interface ParsedNode {
  /** Absent when org, listen addresses or dataDir had problems (already reported). */
  config?: Omit<NodeSelfConfig, 'tlsCertFile' | 'tlsKeyFile' | 'caFile' | 'signingKeyFile' | 'name'>;
  files: { cert?: { text: string; absolute: string }; key?: { text: string; absolute: string }; ca?: { text: string; absolute: string }; signing?: { text: string; absolute: string } };
  name?: string;
}

function parseNode(value: unknown, c: Checker): ParsedNode | undefined {
  const path = 'node';
  const dict = c.object(value, path, ['org', 'name', 'peer', 'api', 'dataDir', 'tls', 'signingKey']);
  if (!dict) return undefined;
  const org = c.id(dict, 'org', path);
  const name = dict.name === undefined ? undefined : c.id(dict, 'name', path);
  const hint = `run conclave init --org ${org ?? '<org>'} or fix the path`;
  const listen = (key: 'peer' | 'api'): { host: string; port: number } | undefined => {
    if (dict[key] === undefined) {
      c.add(join(path, key), `missing — give ${key}: {listen: "127.0.0.1:${key === 'peer' ? 7001 : 8001}"}`);
      return undefined;
    }
    const sub = c.object(dict[key], join(path, key), ['listen']);
    if (!sub) return undefined;
    if (sub.listen === undefined) {
      c.add(join(path, `${key}.listen`), 'missing — write host:port, e.g. 127.0.0.1:7001');
      return undefined;
    }
    return parseListen(sub.listen, join(path, `${key}.listen`), c);
  };
  const peerListen = listen('peer');
  const apiListen = listen('api');
  if (peerListen && apiListen && peerListen.port === apiListen.port && (peerListen.host === apiListen.host || peerListen.host === '0.0.0.0' || apiListen.host === '0.0.0.0')) {
    c.add(join(path, 'api.listen'), `port ${apiListen.port} is also node.peer.listen's port — the peer port and the API port must differ`);
  }
  const dataDir = c.string(dict, 'dataDir', path);
  const files: ParsedNode['files'] = {};
  let tlsFiles: { cert?: string; key?: string; ca?: string } = {};
  if (dict.tls === undefined) c.add(join(path, 'tls'), 'missing — give tls: {cert, key, ca} (files written by conclave init)');
  else {
    const tls = c.object(dict.tls, join(path, 'tls'), ['cert', 'key', 'ca']);
    if (tls) {
      tlsFiles = { cert: c.string(tls, 'cert', 'node.tls'), key: c.string(tls, 'key', 'node.tls'), ca: c.string(tls, 'ca', 'node.tls') };
      if (tlsFiles.cert !== undefined) files.cert = c.file(tlsFiles.cert, 'node.tls.cert', hint);
      if (tlsFiles.key !== undefined) files.key = c.file(tlsFiles.key, 'node.tls.key', hint);
      if (tlsFiles.ca !== undefined) files.ca = c.file(tlsFiles.ca, 'node.tls.ca', hint);
    }
  }
  const signingKey = c.string(dict, 'signingKey', path);
  if (signingKey !== undefined) files.signing = c.file(signingKey, 'node.signingKey', hint);
  if (org === undefined || !peerListen || !apiListen || dataDir === undefined) return { files };
  return {
    config: { org, peerListen, apiListen, dataDir: resolve(c.baseDir, dataDir) },
    files,
    ...(name === undefined ? {} : { name }),
  };
}

/** Cross-checks the node's own files against its org's member entry: cert issued by the org CA, key pair, signing key. */
function checkOwnMaterial(node: ParsedNode, self: ParsedMember, all: ParsedMember[], c: Checker): string | undefined {
  const memberPath = `members[${self.index}]`;
  let nodeName: string | undefined;
  if (node.files.cert) {
    const certs = parseCertificates(node.files.cert.text, 'node.tls.cert', c, false);
    const leaf = certs?.[0];
    if (leaf) {
      if (leaf.ca) c.add('node.tls.cert', 'is a CA certificate — use node.crt, the node certificate conclave init wrote');
      else if (!self.cas.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey))) {
        c.add('node.tls.cert', `was not issued by org ${self.config.org}'s CA (${memberPath}.ca) — use the node.crt written next to that CA, or fix ${memberPath}.ca`);
      } else {
        try {
          const identity = peerIdentity(leaf, buildPeerTrust(all.map((member) => member.config)));
          nodeName = identity.node;
          if (node.name !== undefined && node.name !== identity.node) {
            c.add('node.name', `${JSON.stringify(node.name)} differs from the node named in node.tls.cert (${identity.node}) — fix node.name or remove it`);
          }
        } catch (error) {
          if (error instanceof PeerIdentityError) c.add('node.tls.cert', `peers would refuse it (${error.code}): ${error.message}`);
          else throw error;
        }
      }
      if (node.files.key) {
        try {
          const key = createPrivateKey(node.files.key.text);
          if (!leaf.checkPrivateKey(key)) c.add('node.tls.key', 'does not match node.tls.cert — use the node.key written with that node.crt');
        } catch (error) {
          c.add('node.tls.key', `not a PEM private key: ${(error as Error).message}`);
        }
      }
    }
  }
  if (node.files.ca) {
    const cas = parseCertificates(node.files.ca.text, 'node.tls.ca', c, true);
    if (cas && !cas.every((ca) => self.cas.some((pinned) => pinned.fingerprint256 === ca.fingerprint256))) {
      c.add('node.tls.ca', `is not the CA listed for org ${self.config.org} at ${memberPath}.ca — they must be the same certificate`);
    }
  }
  if (node.files.signing) {
    try {
      const key = importPrivateJwk(JSON.parse(node.files.signing.text) as PrivateJwk);
      if (!self.config.nodeKeys.some((jwk) => jwk.x === key.publicJwk.x)) {
        c.add('node.signingKey', `its public key (x ${key.publicJwk.x}) is not among ${memberPath}.nodeKeys — paste the node's public JWK there`);
      }
    } catch (error) {
      c.add('node.signingKey', `not an Ed25519 private JWK (kty OKP, crv Ed25519, x, d): ${(error as Error).message}`);
    }
  }
  return nodeName;
}

export interface ValidateOptions {
  /** Folder that relative paths are resolved against. */
  baseDir: string;
  /** Recorded as `sourcePath` and used in the error message. */
  sourcePath: string;
}

/** Validates an already-parsed federation document (for callers that build it in memory). */
export function validateFederation(raw: unknown, options: ValidateOptions): FederationConfig {
  const c = new Checker(options.baseDir);
  const root = c.object(raw, '(top level)', ['version', 'federation', 'node', 'members', 'swarms']);
  if (!root) throw new FederationError(options.sourcePath, c.problems);

  if (root.version === undefined) c.add('version', 'missing — write version: 1');
  else if (root.version !== 1) c.add('version', `unsupported version ${describe(root.version)} — this Conclave reads version: 1`);
  const federation = c.id(root, 'federation', '');

  const kids = new Map<string, KeyOwner>();
  const xs = new Map<string, KeyOwner>();
  const members = new Map<string, ParsedMember>();
  const knownOrgs = new Set<string>();
  const peerUrls = new Map<string, number>();
  const caFingerprints = new Map<string, ParsedMember>();
  const memberList = c.list(root, 'members', '');
  if (memberList && memberList.length === 0) c.add('members', 'empty — list every org of the federation, this node\'s own org included');
  // When an entry cannot even be read (missing card, not a mapping), its org is unknown: "org X is not listed
  // under members" would then only repeat that problem, so those follow-on reports are left out.
  let unreadableMembers = 0;
  for (const [i, item] of (memberList ?? []).entries()) {
    const dict = memberDict(item, i, c);
    const org = dict && typeof dict.org === 'string' ? dict.org : undefined;
    if (org === undefined) unreadableMembers++;
    if (!dict) continue;
    if (org !== undefined && knownOrgs.has(org)) {
      c.add(`members[${i}].org`, `org ${JSON.stringify(org)} is listed twice — each org appears once under members`);
      continue;
    }
    if (org !== undefined) knownOrgs.add(org);
    const member = parseMember(dict, i, c, kids, xs);
    if (!member) continue;
    const sameUrl = peerUrls.get(member.config.peerUrl);
    if (sameUrl !== undefined) c.add(`members[${i}].peerUrl`, `${member.config.peerUrl} is also members[${sameUrl}].peerUrl — each org runs its own node`);
    peerUrls.set(member.config.peerUrl, i);
    const sharedCa = member.cas.map((ca) => caFingerprints.get(ca.fingerprint256)).find((other) => other !== undefined);
    if (sharedCa) {
      c.add(`members[${i}].ca`, `same CA certificate as members[${sharedCa.index}] (org ${sharedCa.config.org}) — each org has its own CA, or one org could speak as the other`);
      continue;
    }
    for (const ca of member.cas) caFingerprints.set(ca.fingerprint256, member);
    members.set(member.config.org, member);
  }

  const node = root.node === undefined ? (c.add('node', 'missing — describe this node: org, peer, api, dataDir, tls, signingKey'), undefined) : parseNode(root.node, c);
  let nodeName: string | undefined;
  if (node?.config?.org !== undefined && memberList) {
    const self = members.get(node.config.org);
    if (!knownOrgs.has(node.config.org)) {
      if (unreadableMembers === 0) c.add('node.org', `org ${JSON.stringify(node.config.org)} is not listed under members — add this org's member card (conclave init prints it)`);
    } else if (self) nodeName = checkOwnMaterial(node, self, [...members.values()], c);
  }

  const swarms: SwarmConfig[] = [];
  const swarmIds = new Map<string, number>();
  const swarmList = c.list(root, 'swarms', '');
  for (const [i, item] of (swarmList ?? []).entries()) {
    const id = isDict(item) && typeof item.id === 'string' ? item.id : undefined;
    if (id !== undefined && swarmIds.has(id)) {
      c.add(`swarms[${i}].id`, `swarm ${JSON.stringify(id)} is already defined at swarms[${swarmIds.get(id)}] — swarm ids are unique`);
      continue;
    }
    if (id !== undefined) swarmIds.set(id, i);
    const swarm = parseSwarm(item, i, c, members, knownOrgs, unreadableMembers > 0);
    if (swarm) swarms.push(swarm);
  }

  if (c.problems.length > 0 || federation === undefined || !node?.config || !node.files.cert || !node.files.key || !node.files.ca || !node.files.signing) {
    if (c.problems.length === 0) c.add('node', 'incomplete node section');
    throw new FederationError(options.sourcePath, c.problems);
  }
  return {
    version: 1,
    federation,
    sourcePath: options.sourcePath,
    node: {
      ...node.config,
      ...(nodeName === undefined ? {} : { name: nodeName }),
      tlsCertFile: node.files.cert.absolute,
      tlsKeyFile: node.files.key.absolute,
      caFile: node.files.ca.absolute,
      signingKeyFile: node.files.signing.absolute,
    },
    members: [...members.values()].sort((a, b) => a.index - b.index).map((member) => member.config),
    swarms,
  };
}

/** Parses YAML text as a federation file; relative paths resolve against the folder of `sourcePath`. */
export function parseFederation(text: string, sourcePath: string): FederationConfig {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new FederationError(
      sourcePath,
      doc.errors.map((error) => {
        const position = error.linePos?.[0];
        return { path: position ? `line ${position.line}, column ${position.col}` : '(yaml)', message: `YAML syntax: ${error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}` };
      }),
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    throw new FederationError(sourcePath, [{ path: '(yaml)', message: (error as Error).message }]);
  }
  return validateFederation(raw, { baseDir: dirname(sourcePath), sourcePath });
}

/** Reads and validates a federation file. Throws FederationError listing every problem found. */
export function loadFederation(path: string): FederationConfig {
  const sourcePath = resolve(path);
  let text: string;
  try {
    text = readFileSync(sourcePath, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new FederationError(sourcePath, [
      { path: '(file)', message: code === 'ENOENT' ? `${path} not found — give the federation file with --config` : `${path} cannot be read (${code ?? (error as Error).message})` },
    ]);
  }
  return parseFederation(text, sourcePath);
}
