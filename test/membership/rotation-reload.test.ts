// Reload, rotation and doctor (owned by the membership feature): a node's TLS certificate and signing key are
// rotated with an overlap (both keys listed) while verdicts keep committing; a reload reports — never applies —
// differences between the file's swarm members and the committed membership; `conclave doctor` on a good and a
// broken file; the nearest-certificate-expiry metric.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { loadFederation } from '../../src/config/load.ts';
import { exportPrivateJwk, generateSigningKey } from '../../src/crypto/ed25519.ts';
import { fromBase64Url } from '../../src/crypto/encoding.ts';
import { createOrgCa, issueNodeCert } from '../../src/pki/certs.ts';
import { runDoctor } from '../../src/pki/doctor.ts';
import { Keyring } from '../../src/verdict/keyring.ts';
import { decodeCommand, verifyProposal } from '../../src/verdict/proposal.ts';
import { membershipFixture, SWARM, verdictStream, waitFor, type MembershipFixture } from './support.ts';

const ORGS = ['acme', 'bolt', 'cato'];

/** The certificate a node's peer port presents now. */
function presentedCert(port: number, client: { cert: string; key: string; ca: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ALPNProtocols: ['h2'], ...client, minVersion: 'TLSv1.3' }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fingerprint);
    });
    socket.once('error', reject);
  });
}

describe('reload, rotation with overlap, doctor', () => {
  let fx: MembershipFixture;

  beforeAll(async () => {
    fx = await membershipFixture({ orgs: ORGS, swarmMembers: ORGS });
    await Promise.all(ORGS.map((org) => fx.start(org)));
    await waitFor('a leader', async () => (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/status`)).json?.leader);
  }, 120_000);

  afterAll(async () => {
    await fx?.close();
  });

  it("rotates acme's node TLS certificate and signing key with commits continuing throughout", async () => {
    const acme = fx.orgs.get('acme')!;
    const bolt = fx.orgs.get('bolt')!;
    const stream = verdictStream(fx, () => ORGS);
    try {
      await waitFor('commits before the rotation', () => stream.committed() >= 15);
      // 1. Overlap: the new signing key's public half goes into acme's nodeKeys in every org's file; reload all.
      const newKey = generateSigningKey();
      writeFileSync(join(acme.certDir, 'node-signing-2.jwk'), JSON.stringify(exportPrivateJwk(newKey)));
      for (const org of ORGS) {
        fx.editFile(org, (doc) => {
          doc.members.find((m: { org: string }) => m.org === 'acme').nodeKeys.push(newKey.publicJwk);
        });
        const report = fx.nodes.get(org)!.reload();
        expect(report.ok, report.error ?? '').toBe(true);
        expect(report.applied).toContain('acme: nodeKeys changed');
      }
      const before = stream.committed();
      await waitFor('commits during the overlap', () => stream.committed() >= before + 15);

      // 2. acme switches to a new TLS certificate (same CA) and the new signing key; reload acme only.
      const ca = { certPem: readFileSync(join(acme.certDir, 'ca.crt'), 'utf8'), keyPem: readFileSync(join(acme.certDir, 'ca.key'), 'utf8') };
      const tls = await issueNodeCert({ ca, org: 'acme', node: acme.node, hosts: ['127.0.0.1'] });
      writeFileSync(join(acme.certDir, 'node-2.crt'), tls.certPem);
      writeFileSync(join(acme.certDir, 'node-2.key'), tls.keyPem, { mode: 0o600 });
      fx.editFile('acme', (doc) => {
        doc.node.tls.cert = doc.node.tls.cert.replace('node.crt', 'node-2.crt');
        doc.node.tls.key = doc.node.tls.key.replace('node.key', 'node-2.key');
        doc.node.signingKey = doc.node.signingKey.replace('node-signing.jwk', 'node-signing-2.jwk');
      });
      const report = fx.nodes.get('acme')!.reload();
      expect(report.ok, report.error ?? '').toBe(true);
      expect(report.applied).toEqual(expect.arrayContaining(['this node: TLS certificate and key', `this node: signing key ${newKey.kid}`]));
      const during = stream.committed();
      await waitFor('commits after the switch', () => stream.committed() >= during + 30);

      // acme's peer port presents the new certificate...
      const fingerprint = await presentedCert(acme.peerPort, {
        cert: readFileSync(join(bolt.certDir, 'node.crt'), 'utf8'),
        key: readFileSync(join(bolt.certDir, 'node.key'), 'utf8'),
        ca: ca.certPem,
      });
      expect(fingerprint).toBe(new X509Certificate(tls.certPem).fingerprint256);
      // ...and acme's latest proposals are signed with the new key.
      const status = (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/status`)).json;
      const entries = (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/log?from=${Math.max(1, status.appliedIndex - 60)}&limit=100`)).json.entries as { proposer: string | null; data: string }[];
      const latest = entries.filter((e) => e.proposer === 'acme').at(-1)!;
      const onlyNewKey = Keyring.fromMembers([{ org: 'acme', nodeKeys: [newKey.publicJwk], agentKeys: [], adminKeys: [] }]);
      const command = decodeCommand(fromBase64Url(latest.data));
      expect(command.type === 'verdicts' && verifyProposal(command, onlyNewKey)).toBe(true);
    } finally {
      const result = await stream.stop();
      expect(result.errors).toEqual([]);
    }
  }, 240_000);

  it("rotates cato's CA with an overlap (both CAs trusted), then drops the old one, with commits continuing", async () => {
    const cato = fx.orgs.get('cato')!;
    const acme = fx.orgs.get('acme')!;
    const stream = verdictStream(fx, () => ORGS);
    try {
      await waitFor('commits before the CA rotation', () => stream.committed() >= 10);
      const oldCa = readFileSync(join(cato.certDir, 'ca.crt'), 'utf8');
      const newCa = await createOrgCa({ org: 'cato' });
      writeFileSync(join(cato.certDir, 'ca-2.crt'), newCa.certPem);
      writeFileSync(join(cato.certDir, 'ca-bundle.crt'), oldCa + newCa.certPem);
      const setCatoCa = (file: string) => {
        for (const org of ORGS) {
          fx.editFile(org, (doc) => {
            const member = doc.members.find((m: { org: string }) => m.org === 'cato');
            member.ca = member.ca.replace(/ca(-bundle|-2)?\.crt$/, file);
            if (org === 'cato') doc.node.tls.ca = doc.node.tls.ca.replace(/ca(-bundle|-2)?\.crt$/, file);
          });
        }
      };
      const reloadAll = () => {
        for (const org of ORGS) {
          const report = fx.nodes.get(org)!.reload();
          expect(report.ok, `${org}: ${report.error ?? ''}`).toBe(true);
        }
      };
      // 1. Overlap: every org trusts both of cato's CAs.
      setCatoCa('ca-bundle.crt');
      reloadAll();
      let mark = stream.committed();
      await waitFor('commits while both CAs are trusted', () => stream.committed() >= mark + 10);
      // 2. cato's node moves to a certificate issued by the new CA.
      const tls = await issueNodeCert({ ca: newCa, org: 'cato', node: cato.node, hosts: ['127.0.0.1'] });
      writeFileSync(join(cato.certDir, 'node-ca2.crt'), tls.certPem);
      writeFileSync(join(cato.certDir, 'node-ca2.key'), tls.keyPem, { mode: 0o600 });
      fx.editFile('cato', (doc) => {
        doc.node.tls.cert = doc.node.tls.cert.replace(/node(-2|-ca2)?\.crt$/, 'node-ca2.crt');
        doc.node.tls.key = doc.node.tls.key.replace(/node(-2|-ca2)?\.key$/, 'node-ca2.key');
      });
      const report = fx.nodes.get('cato')!.reload();
      expect(report.ok, report.error ?? '').toBe(true);
      mark = stream.committed();
      await waitFor('commits after cato presents the new certificate', () => stream.committed() >= mark + 10);
      // 3. The old CA is dropped everywhere; commits go on, and cato's peer port presents the new-CA certificate.
      setCatoCa('ca-2.crt');
      reloadAll();
      mark = stream.committed();
      await waitFor('commits after the old CA is gone', () => stream.committed() >= mark + 15);
      // cato still talks to its peers with its new certificate: it keeps up with the leader's commit index.
      const target = (await fx.api('acme', 'GET', `/v1/swarms/${SWARM}/status`)).json.commitIndex as number;
      await waitFor('cato to apply what the swarm committed', async () => (await fx.api('cato', 'GET', `/v1/swarms/${SWARM}/status`)).json.appliedIndex >= target);
      const jws = await fx.sign('cato', 'github.com/acme/widget/pull/after-ca-rotation', 'approve');
      expect((await fx.api('cato', 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws })).status).toBe(200);
      const fingerprint = await presentedCert(cato.peerPort, {
        cert: readFileSync(join(acme.certDir, 'node.crt'), 'utf8'),
        key: readFileSync(join(acme.certDir, 'node.key'), 'utf8'),
        ca: newCa.certPem,
      });
      expect(fingerprint).toBe(new X509Certificate(tls.certPem).fingerprint256);
    } finally {
      const result = await stream.stop();
      expect(result.errors).toEqual([]);
    }
  }, 240_000);

  it('a reload reports, and never applies, a difference between the file and the committed membership', async () => {
    fx.editFile('bolt', (doc) => {
      doc.swarms[0].members = ['acme', 'bolt'];
    });
    const report = fx.nodes.get('bolt')!.reload();
    expect(report.ok).toBe(true);
    expect(report.drift[SWARM]!.join('\n')).toMatch(/cato is a committed voter but not in the file: propose remove-member/);
    const status = (await fx.api('bolt', 'GET', `/v1/swarms/${SWARM}/status`)).json;
    expect(status.members).toEqual(ORGS);
    expect(status.membership.file).toEqual(['acme', 'bolt']);
    expect(status.membership.drift.length).toBeGreaterThan(0);
    const jws = await fx.sign('cato', 'github.com/acme/widget/pull/still-counted', 'approve');
    expect((await fx.api('bolt', 'POST', `/v1/swarms/${SWARM}/verdicts?wait=true`, { jws })).status).toBe(200);

    // A file that does not load changes nothing and says why.
    const path = fx.orgs.get('bolt')!.configPath;
    const good = readFileSync(path, 'utf8');
    writeFileSync(path, good.replace('federation: local', 'federation: [broken'));
    const bad = fx.nodes.get('bolt')!.reload();
    expect(bad.ok).toBe(false);
    expect(bad.error).toBeTruthy();
    writeFileSync(path, good);
    fx.editFile('bolt', (doc) => {
      doc.swarms[0].members = ORGS;
    });
    expect(fx.nodes.get('bolt')!.reload().drift).toEqual({});
    // The nearest certificate expiry is exported.
    const metrics = (await fx.api('bolt', 'GET', '/metrics')).json as string;
    const value = Number(/conclave_cert_nearest_expiry_seconds\{[^}]*\} (\S+)/.exec(metrics)?.[1]);
    expect(value).toBeGreaterThan(300 * 86_400);
  }, 120_000);

  it('doctor: a good file passes (peers reachable over mTLS), a broken one fails with each problem named', async () => {
    const good = await runDoctor(loadFederation(fx.orgs.get('cato')!.configPath), { timeoutMs: 10_000 });
    expect(good.findings.filter((f) => f.level === 'error')).toEqual([]);
    expect(good.ok).toBe(true);
    expect(good.findings.filter((f) => f.subject.startsWith('peer/') && f.level === 'ok').map((f) => f.subject)).toEqual(['peer/acme', 'peer/bolt']);
    // Each peer proved (a signature over a fresh nonce) that it holds a node key the file lists.
    expect(good.findings.filter((f) => f.subject.startsWith('keys/') && f.level === 'ok').map((f) => f.subject)).toEqual(['keys/acme', 'keys/bolt']);

    // Broken: bolt's peer URL points nowhere, and a second CA of acme's (a rotation overlap) expires in 10 days.
    const cato = fx.orgs.get('cato')!;
    const doc = parse(readFileSync(cato.configPath, 'utf8'));
    doc.members.find((m: { org: string }) => m.org === 'bolt').peerUrl = 'https://127.0.0.1:1';
    const soon = await createOrgCa({ org: 'acme', days: 10 });
    const acmeCa = readFileSync(join(fx.orgs.get('acme')!.certDir, 'ca.crt'), 'utf8');
    writeFileSync(join(fx.dir, 'acme-cas.pem'), acmeCa + soon.certPem);
    doc.members.find((m: { org: string }) => m.org === 'acme').ca = '../acme-cas.pem';
    // ...and the file lists a node key for acme that acme's node does not use.
    doc.members.find((m: { org: string }) => m.org === 'acme').nodeKeys = [generateSigningKey().publicJwk];
    const brokenPath = join(fx.dir, 'cato', 'broken.yaml');
    writeFileSync(brokenPath, stringify(doc, { lineWidth: 0 }));
    const broken = await runDoctor(loadFederation(brokenPath), { timeoutMs: 5000 });
    expect(broken.ok).toBe(false);
    expect(broken.findings.find((f) => f.subject === 'peer/bolt')).toMatchObject({ level: 'error' });
    expect(broken.findings.find((f) => f.subject === 'ca/acme#1')).toMatchObject({ level: 'warn' });
    expect(broken.findings.find((f) => f.subject === 'peer/acme')).toMatchObject({ level: 'ok' });
    expect(broken.findings.find((f) => f.subject === 'keys/acme')).toMatchObject({ level: 'error', message: expect.stringMatching(/which the file does not list/) });

    // The CLI exits non-zero on it (offline: the certificate checks alone pass, so make one fail: an expired CA).
    const run = promisify(execFile);
    const cli = (config: string) => run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'doctor', '--config', config], { cwd: process.cwd() }).then(
      (r) => ({ code: 0, out: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
    );
    const result = await cli(brokenPath);
    expect(result.code).toBe(1);
    expect(result.out).toMatch(/ERROR peer\/bolt/);
    expect(result.out).toMatch(/WARN {2}ca\/acme#1/);
    expect((await cli(cato.configPath)).code).toBe(0);
  }, 180_000);
});
