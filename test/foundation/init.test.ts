// `conclave init`: two orgs created with exactly the documented files, private files 0600, a card with only public
// parts, and an existing folder never overwritten.
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { importPrivateJwk } from '../../src/crypto/ed25519.ts';
import { buildPeerTrust, peerIdentity } from '../../src/pki/identity.ts';
import { InitError, initOrg, ORG_FILES } from '../../src/pki/init.ts';
import { tempDir } from './helpers.ts';

const EXPECTED_FILES = ['admin.jwk', 'agent.jwk', 'ca.crt', 'ca.key', 'member-card.yaml', 'node-signing.jwk', 'node.crt', 'node.key'];
const PRIVATE = ['ca.key', 'node.key', 'node-signing.jwk', 'agent.jwk', 'admin.jwk'];

describe('conclave init', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('creates two orgs, each with exactly the documented files, private ones mode 0600', async () => {
    for (const org of ['acme', 'globex']) {
      const result = await initOrg({ org, outDir: join(tmp.dir, org), node: 'edge-1' });
      expect(readdirSync(result.dir).sort()).toEqual(EXPECTED_FILES);
      expect(Object.values(ORG_FILES).sort()).toEqual(EXPECTED_FILES);
      for (const name of EXPECTED_FILES) {
        const mode = statSync(join(result.dir, name)).mode & 0o777;
        expect({ name, mode: mode.toString(8) }).toEqual({ name, mode: PRIVATE.includes(name) ? '600' : '644' });
      }
      // The node certificate chains to the org CA and names the org and node in its SAN.
      const trust = buildPeerTrust([{ org, caPem: readFileSync(result.files.caCert, 'utf8') }]);
      expect(peerIdentity(readFileSync(result.files.nodeCert, 'utf8'), trust)).toMatchObject({ org, node: 'edge-1' });
      const cert = new X509Certificate(readFileSync(result.files.nodeCert));
      expect(cert.subjectAltName).toContain(`URI:conclave://org/${org}/node/edge-1`);
      expect(cert.subjectAltName).toContain('DNS:localhost');
      expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
      // Each JWK file is a usable Ed25519 private key.
      for (const file of [result.files.nodeSigningKey, result.files.agentKey, result.files.adminKey]) {
        expect(importPrivateJwk(JSON.parse(readFileSync(file, 'utf8'))).kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
      }
    }
  });

  it('the member card holds only public parts, ready to paste under members:', async () => {
    const result = await initOrg({ org: 'initech', outDir: join(tmp.dir, 'initech') });
    const text = readFileSync(result.files.memberCard, 'utf8');
    expect(text).toBe(result.cardYaml);
    expect(text).not.toMatch(/PRIVATE KEY|"d"|\bd:/);
    const [card] = parse(text) as Record<string, any>[];
    expect(Object.keys(card!)).toEqual(['org', 'peerUrl', 'apiUrl', 'ca', 'nodeKeys', 'agentKeys', 'adminKeys']);
    expect(card!.org).toBe('initech');
    expect(card!.ca).toBe(readFileSync(result.files.caCert, 'utf8'));
    const privateJwks = [result.files.nodeSigningKey, result.files.agentKey, result.files.adminKey].map((f) => JSON.parse(readFileSync(f, 'utf8')));
    for (const [i, role] of ['nodeKeys', 'agentKeys', 'adminKeys'].entries()) {
      expect(card![role]).toHaveLength(1);
      const { d: _d, ...publicPart } = privateJwks[i];
      expect(card![role][0]).toEqual(publicPart);
      expect(Object.keys(card![role][0]).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'x']);
    }
  });

  it('never overwrites an existing folder, and says so', async () => {
    const dir = join(tmp.dir, 'acme');
    const before = readFileSync(join(dir, 'ca.key'), 'utf8');
    await expect(initOrg({ org: 'acme', outDir: dir })).rejects.toThrow(InitError);
    await expect(initOrg({ org: 'acme', outDir: dir })).rejects.toThrow(/already exists and is not empty: init never overwrites keys/);
    expect(readFileSync(join(dir, 'ca.key'), 'utf8')).toBe(before);
    const partial = join(tmp.dir, 'partial');
    mkdirSync(partial);
    writeFileSync(join(partial, 'notes.txt'), 'mine');
    await expect(initOrg({ org: 'hooli', outDir: partial })).rejects.toThrow(/not empty/);
    expect(readdirSync(partial)).toEqual(['notes.txt']);
    expect(readdirSync(tmp.dir).filter((name) => name.includes('.init-'))).toEqual([]); // no staging folder left behind
  });

  it('refuses an invalid org id', async () => {
    await expect(initOrg({ org: 'Acme Corp', outDir: join(tmp.dir, 'x') })).rejects.toThrow(/org id "Acme Corp" must match/);
  });

  it('the CLI prints the member card on stdout and exits non-zero instead of overwriting', () => {
    const bin = join(import.meta.dirname, '../../bin/conclave.js');
    const out = execFileSync(process.execPath, [bin, 'init', '--org', 'umbrella', '--out', join(tmp.dir, 'umbrella'), '--peer-url', 'https://umbrella.example:7001'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const [card] = parse(out) as Record<string, any>[];
    expect(card).toMatchObject({ org: 'umbrella', peerUrl: 'https://umbrella.example:7001' });
    const again = spawnSync(process.execPath, [bin, 'init', '--org', 'umbrella', '--out', join(tmp.dir, 'umbrella')], { encoding: 'utf8' });
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/conclave init: .* already exists and is not empty/);
  });
});
