// The federation file: the example loads, a generated federation loads, and each broken file is refused with every
// problem named by its path and reason.
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { FederationError, loadFederation } from '../../src/config/load.ts';
import { writeLocalFederation, type LocalFederation } from '../../src/config/local-federation.ts';
import { initOrg } from '../../src/pki/init.ts';
import { tempDir } from './helpers.ts';

function problemsOf(path: string): { path: string; message: string }[] {
  try {
    loadFederation(path);
  } catch (error) {
    if (error instanceof FederationError) return error.problems;
    throw error;
  }
  throw new Error(`${path} loaded, but it should have been refused`);
}

describe('federation file', () => {
  const tmp = tempDir();
  let fed: LocalFederation;
  let base: Record<string, any>;
  let variant = 0;

  beforeAll(async () => {
    fed = await writeLocalFederation({
      dir: join(tmp.dir, 'fed'),
      orgs: ['acme', 'globex', 'initech', 'umbrella'],
      swarms: [
        { id: 'review', mode: 'raft', members: ['acme', 'globex', 'initech'], policy: { values: ['approve', 'reject'], quorum: 'majority', rule: 'majority' } },
        { id: 'release', mode: 'pbft', policy: { values: ['ship', 'hold'], quorum: 'all', rule: { threshold: 3, value: 'ship' }, fallback: 'hold' } },
      ],
    });
    base = parse(readFileSync(fed.configPaths.acme!, 'utf8'));
  });
  afterAll(() => tmp.cleanup());

  /** Writes a modified copy of acme's valid file next to it (so relative paths still resolve) and returns its problems. */
  function broken(mutate: (doc: Record<string, any>) => void): { path: string; message: string }[] {
    const doc = structuredClone(base);
    mutate(doc);
    const file = join(fed.dir, 'acme', `broken-${variant++}.yaml`);
    writeFileSync(file, stringify(doc));
    return problemsOf(file);
  }

  it('the example in config/ loads once its orgs are initialized', async () => {
    const root = join(tmp.dir, 'example');
    cpSync(join(import.meta.dirname, '../../config'), join(root, 'config'), { recursive: true });
    for (const org of ['acme', 'globex', 'initech', 'umbrella']) await initOrg({ org, outDir: join(root, 'certs', org) });
    const config = loadFederation(join(root, 'config/federation.example.yaml'));
    expect(config.node).toMatchObject({ org: 'acme', name: 'node1', peerListen: { host: '127.0.0.1', port: 7001 } });
    expect(config.members.map((m) => [m.org, m.peerUrl])).toEqual([
      ['acme', 'https://127.0.0.1:7001'],
      ['globex', 'https://127.0.0.1:7002'],
      ['initech', 'https://127.0.0.1:7003'],
      ['umbrella', 'https://127.0.0.1:7004'],
    ]);
    expect(config.swarms.map((s) => [s.id, s.mode, s.adminPolicy])).toEqual([
      ['code-review', 'raft', 'majority'],
      ['release-gate', 'pbft', 'two-thirds'],
    ]);
    expect(config.swarms[1]!.policy).toEqual({ values: ['ship', 'hold'], quorum: 'all', rule: { kind: 'threshold', value: 'ship', count: 3 }, fallback: 'hold', maxClockSkewSeconds: 300 });
  });

  it('a generated federation loads for every org, with absolute paths and defaults filled in', () => {
    for (const local of fed.orgs) {
      const config = loadFederation(local.configPath);
      expect(config.node.org).toBe(local.org);
      expect(config.node.tlsCertFile).toBe(local.files.nodeCert);
      expect(config.node.dataDir).toBe(local.dataDir);
      expect(config.members).toHaveLength(4);
      expect(config.swarms[0]!.policy).toMatchObject({ fallback: null, maxClockSkewSeconds: 300, rule: { kind: 'majority' } });
    }
  });

  it('reports a missing CA file with the member path and the init command that makes it', () => {
    expect(broken((d) => (d.members[1].ca = '../certs/globex/nope.crt'))).toContainEqual({
      path: 'members[1].ca',
      message: 'file ../certs/globex/nope.crt not found — run conclave init --org globex or fix the path',
    });
  });

  it('reports every problem at once, not only the first', () => {
    const problems = broken((d) => {
      d.federation = 'Bad Id';
      d.members[2].peerUrl = 'http://127.0.0.1:7003';
      d.swarms[0].policy.quorum = 9;
    });
    expect(problems.map((p) => p.path)).toEqual(['federation', 'members[2].peerUrl', 'swarms[0].policy.quorum']);
  });

  it('reports an unknown key with the closest known one', () => {
    expect(broken((d) => (d.swarms = d.swarms.map((s: any) => ({ ...s, memebrs: s.members }))))).toContainEqual({
      path: 'swarms[0].memebrs',
      message: expect.stringMatching(/^unknown key — did you mean members\?/),
    });
  });

  it('reports a wrong type', () => {
    expect(broken((d) => (d.node.peer = '127.0.0.1:7001'))).toContainEqual({ path: 'node.peer', message: 'expected a mapping (key: value), got the string "127.0.0.1:7001"' });
  });

  it('reports a duplicate org and a duplicate swarm id', () => {
    const problems = broken((d) => {
      d.members.push({ ...d.members[0] });
      d.swarms.push({ ...d.swarms[0] });
    });
    expect(problems).toContainEqual({ path: 'members[4].org', message: expect.stringMatching(/org "acme" is listed twice/) });
    expect(problems).toContainEqual({ path: 'swarms[2].id', message: expect.stringMatching(/swarm "review" is already defined at swarms\[0\]/) });
  });

  it('reports a swarm member and a node org that are not members', () => {
    const problems = broken((d) => {
      d.swarms[0].members.push('hooli');
      d.node.org = 'hooli';
    });
    expect(problems).toContainEqual({ path: 'swarms[0].members[3]', message: expect.stringMatching(/org "hooli" is not listed under members/) });
    expect(problems).toContainEqual({ path: 'node.org', message: expect.stringMatching(/org "hooli" is not listed under members/) });
  });

  it('reports a PEM that is not a certificate, and a node certificate where a CA belongs', () => {
    const problems = broken((d) => {
      d.members[0].ca = '../certs/acme/node.key';
      d.members[1].ca = '../certs/globex/node.crt';
    });
    expect(problems).toContainEqual({ path: 'members[0].ca', message: expect.stringMatching(/holds a PRIVATE KEY/) });
    expect(problems).toContainEqual({ path: 'members[1].ca', message: expect.stringMatching(/is not a CA certificate — use the org's ca.crt/) });
  });

  it('reports JWKs that are not Ed25519, have a bad x, or carry a private d', () => {
    const problems = broken((d) => {
      d.members[0].agentKeys[0] = { kty: 'EC', crv: 'P-256', x: 'abc', y: 'def' };
      d.members[1].agentKeys[0].x = 'AAAA';
      d.members[2].adminKeys[0].d = 'secret';
    });
    expect(problems).toContainEqual({ path: 'members[0].agentKeys[0]', message: expect.stringMatching(/only Ed25519 keys are accepted/) });
    expect(problems).toContainEqual({ path: 'members[0].agentKeys[0].y', message: expect.stringMatching(/unknown key/) });
    expect(problems).toContainEqual({ path: 'members[1].agentKeys[0].x', message: 'an Ed25519 public key is 32 bytes, this one is 3' });
    expect(problems).toContainEqual({ path: 'members[2].adminKeys[0].d', message: expect.stringMatching(/PRIVATE key — remove d/) });
  });

  it('reports a public key of small order: it would make every signature by it unverifiable (node:crypto would accept forgeries)', () => {
    // The identity point (y = 1): with R = identity and S = 0, OpenSSL accepts ANY message under this key.
    const identity = Buffer.concat([Buffer.from([1]), Buffer.alloc(31)]).toString('base64url');
    const problems = broken((d) => {
      d.members[1].agentKeys[0].x = identity;
      delete d.members[1].agentKeys[0].kid;
    });
    expect(problems).toContainEqual({ path: 'members[1].agentKeys[0].x', message: expect.stringMatching(/not a usable Ed25519 public key: not a canonical point of the prime-order subgroup/) });
  });

  it('reports a kid used by two orgs', () => {
    expect(broken((d) => (d.members[1].agentKeys[0].kid = d.members[0].agentKeys[0].kid))).toContainEqual({
      path: 'members[1].agentKeys[0].kid',
      message: expect.stringMatching(/is already used by members\[0\]\.agentKeys\[0\] \(org acme\)/),
    });
  });

  it('reports bad URLs, listen addresses and ports', () => {
    const problems = broken((d) => {
      d.members[1].peerUrl = 'https://127.0.0.1:7002/peer';
      d.members[2].apiUrl = 'not a url';
      d.node.peer.listen = '127.0.0.1';
      d.node.api.listen = '127.0.0.1:70000';
    });
    expect(problems).toContainEqual({ path: 'members[1].peerUrl', message: expect.stringMatching(/has a path, query or fragment/) });
    expect(problems).toContainEqual({ path: 'members[2].apiUrl', message: expect.stringMatching(/is not a URL/) });
    expect(problems).toContainEqual({ path: 'node.peer.listen', message: expect.stringMatching(/is not host:port/) });
    expect(problems).toContainEqual({ path: 'node.api.listen', message: 'port 70000 is out of range — use 1-65535' });
  });

  it('reports a threshold value outside the values and a quorum larger than the swarm', () => {
    const problems = broken((d) => {
      d.swarms[1].policy.rule = { threshold: 2, value: 'maybe' };
      d.swarms[0].policy.quorum = 4;
    });
    expect(problems).toContainEqual({ path: 'swarms[1].policy.rule.value', message: '"maybe" is not one of the policy\'s values (ship, hold)' });
    expect(problems).toContainEqual({ path: 'swarms[0].policy.quorum', message: "quorum 4 is larger than the swarm's 3 members — it could never be reached" });
  });

  it.each([
    ['a missing required key', (d: any) => delete d.federation, 'federation', /^missing — this key is required/],
    ['a key that must be a string', (d: any) => (d.node.org = 42), 'node.org', /^expected a non-empty string, got number 42/],
    ['a missing list', (d: any) => delete d.members, 'members', /^missing — this key is required \(a list\)/],
    ['a list that is not one', (d: any) => (d.members = 'acme'), 'members', /^expected a list, got/],
    ['a file path that is a folder', (d: any) => (d.node.tls.ca = '.'), 'node.tls.ca', /is a folder, not a file/],
    ['a listen address that is not a string', (d: any) => (d.node.peer.listen = 7001), 'node.peer.listen', /^expected "host:port" \(e\.g\. 127\.0\.0\.1:7001\), got number 7001/],
    ['a URL that is not a string', (d: any) => (d.members[1].peerUrl = ['x']), 'members[1].peerUrl', /^expected a URL such as https:\/\/node\.acme\.example:7001, got a list/],
    ['a URL with credentials', (d: any) => (d.members[1].peerUrl = 'https://user:pw@127.0.0.1:7002'), 'members[1].peerUrl', /user name or password is not allowed/],
    ['an empty list of node keys (agent keys may be empty: an org whose agents do not vote)', (d: any) => (d.members[1].nodeKeys = []), 'members[1].nodeKeys', /^empty — list at least one public JWK/],
    ['a JWK without x', (d: any) => delete d.members[1].agentKeys[0].x, 'members[1].agentKeys[0].x', /^missing or not a string — x is the base64url public key/],
    ['a JWK whose x is not base64url', (d: any) => (d.members[1].agentKeys[0].x = 'a+b/c='), 'members[1].agentKeys[0].x', /^not base64url/],
    ['a JWK with an alg that does not fit Ed25519', (d: any) => (d.members[1].agentKeys[0].alg = 'RS256'), 'members[1].agentKeys[0].alg', /does not fit an Ed25519 key — use EdDSA/],
    ['a JWK with an empty kid', (d: any) => (d.members[1].agentKeys[0].kid = ''), 'members[1].agentKeys[0].kid', /^expected a non-empty string/],
    ['one public key listed for two orgs', (d: any) => (d.members[1].agentKeys[0] = { ...d.members[0].agentKeys[0], kid: 'other-kid' }), 'members[1].agentKeys[0].x', /the same public key is already listed at members\[0\]\.agentKeys\[0\] \(org acme\)/],
    ['a quorum that is not a whole number', (d: any) => (d.swarms[0].policy.quorum = 1.5), 'swarms[0].policy.quorum', /^expected a whole number ≥ 1, got number 1\.5/],
    ['an empty list of values', (d: any) => (d.swarms[0].policy.values = []), 'swarms[0].policy.values', /^empty — list the verdict values agents may give/],
    ['a value that is not valid', (d: any) => (d.swarms[0].policy.values = ['approve', 'Not OK']), 'swarms[0].policy.values[1]', /is not a valid value — use lowercase letters/],
    ['a value listed twice', (d: any) => (d.swarms[0].policy.values = ['approve', 'reject', 'approve']), 'swarms[0].policy.values[2]', /"approve" is listed twice/],
    ['a missing quorum', (d: any) => delete d.swarms[0].policy.quorum, 'swarms[0].policy.quorum', /^missing — use majority, all, or a number of orgs/],
    ['a quorum of another kind', (d: any) => (d.swarms[0].policy.quorum = 'most'), 'swarms[0].policy.quorum', /^expected majority, all, or a number of orgs, got/],
    ['a missing rule', (d: any) => delete d.swarms[0].policy.rule, 'swarms[0].policy.rule', /^missing — use majority, unanimity, or \{threshold: N, value: V\}/],
    ['a rule of another kind', (d: any) => (d.swarms[0].policy.rule = 'plurality'), 'swarms[0].policy.rule', /^expected majority, unanimity, or \{threshold: N, value: V\}, got/],
    ['a fallback outside the values', (d: any) => (d.swarms[0].policy.fallback = 'maybe'), 'swarms[0].policy.fallback', /is not one of the policy's values \(approve, reject\)/],
  ])('reports %s at its path', (_what, mutate, path, message) => {
    const problems = broken(mutate);
    const found = problems.filter((problem) => problem.path === path);
    expect(found, JSON.stringify(problems)).not.toEqual([]);
    expect(found.some((problem) => message.test(problem.message)), JSON.stringify(found)).toBe(true);
  });

  it('refuses a pbft swarm with fewer than 4 members, saying why', () => {
    expect(broken((d) => (d.swarms[0].mode = 'pbft'))).toContainEqual({
      path: 'swarms[0].mode',
      message: 'pbft needs at least 4 members (n = 3f+1 with f ≥ 1) and this swarm has 3 — add members or use mode: raft',
    });
  });

  it("refuses a node certificate that does not chain to its org's CA", () => {
    const problems = broken((d) => {
      d.node.tls.cert = '../certs/globex/node.crt';
      d.node.tls.key = '../certs/globex/node.key';
    });
    expect(problems).toContainEqual({ path: 'node.tls.cert', message: expect.stringMatching(/^was not issued by org acme's CA \(members\[0\]\.ca\)/) });
  });

  it('refuses a key that does not match the certificate and a signing key missing from nodeKeys', () => {
    const problems = broken((d) => {
      d.node.tls.key = '../certs/globex/node.key';
      d.node.signingKey = '../certs/globex/node-signing.jwk';
    });
    expect(problems).toContainEqual({ path: 'node.tls.key', message: expect.stringMatching(/does not match node.tls.cert/) });
    expect(problems).toContainEqual({ path: 'node.signingKey', message: expect.stringMatching(/is not among members\[0\]\.nodeKeys/) });
  });

  it('refuses ids that do not match the id pattern, and an unsupported version', () => {
    const problems = broken((d) => {
      d.version = 2;
      d.swarms[0].id = '-review';
    });
    expect(problems).toContainEqual({ path: 'version', message: 'unsupported version number 2 — this Conclave reads version: 1' });
    expect(problems).toContainEqual({ path: 'swarms[0].id', message: expect.stringMatching(/"-review" is not a valid id/) });
  });

  it('reports YAML syntax errors with line and column', () => {
    const file = join(fed.dir, 'acme', 'syntax.yaml');
    writeFileSync(file, 'version: 1\nfederation: [unclosed\n');
    expect(problemsOf(file)[0]).toMatchObject({ path: expect.stringMatching(/^line \d+, column \d+$/), message: expect.stringMatching(/^YAML syntax/) });
  });

  it('conclave validate prints every problem and exits non-zero, or OK and exits zero', async () => {
    const { execFileSync, spawnSync } = await import('node:child_process');
    const bin = join(import.meta.dirname, '../../bin/conclave.js');
    const ok = execFileSync(process.execPath, [bin, 'validate', '--config', fed.configPaths.globex!], { encoding: 'utf8' });
    expect(ok).toMatch(/^OK .*federation local, node globex\/node1, 4 members/);
    const badFile = join(fed.dir, 'acme', 'cli-broken.yaml');
    writeFileSync(badFile, stringify({ ...base, swarms: [{ ...base.swarms[0], mode: 'pbft' }] }));
    const bad = spawnSync(process.execPath, [bin, 'validate', '--config', badFile], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/1 problem\n {2}swarms\[0\]\.mode: pbft needs at least 4 members/);
  });
});
