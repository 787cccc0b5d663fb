// Peer identity from a certificate: the issuing pinned CA decides the org, the SAN must agree, validity is enforced.
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createOrgCa, issueNodeCert } from '../../src/pki/certs.ts';
import { buildPeerTrust, peerIdentity, PeerIdentityError, sanUris } from '../../src/pki/identity.ts';

const DAY = 24 * 3600 * 1000;

function refusal(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (error) {
    if (error instanceof PeerIdentityError) return { code: error.code, message: error.message };
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('peerIdentity', async () => {
  const acmeCa = await createOrgCa({ org: 'acme' });
  const globexCa = await createOrgCa({ org: 'globex' });
  const trust = buildPeerTrust([
    { org: 'acme', caPem: acmeCa.certPem },
    { org: 'globex', caPem: globexCa.certPem },
  ]);

  it('names the org whose CA issued the certificate and the node from the SAN', async () => {
    const cert = await issueNodeCert({ ca: acmeCa, org: 'acme', node: 'n1' });
    expect(peerIdentity(cert.certPem, trust)).toMatchObject({ org: 'acme', node: 'n1' });
  });

  it('refuses a missing certificate (an empty getPeerCertificate result)', () => {
    expect(refusal(() => peerIdentity({} as never, trust)).code).toBe('PEER_NO_CERT');
    expect(refusal(() => peerIdentity(null, trust)).code).toBe('PEER_NO_CERT');
  });

  it('refuses a certificate from a CA no member pinned', async () => {
    const stranger = await createOrgCa({ org: 'acme' }); // same name, different key: names alone prove nothing
    const cert = await issueNodeCert({ ca: stranger, org: 'acme', node: 'n1' });
    expect(refusal(() => peerIdentity(cert.certPem, trust))).toMatchObject({ code: 'PEER_UNKNOWN_CA', message: expect.stringMatching(/not the pinned CA of any member/) });
  });

  it("refuses org B's CA vouching for a node of org A", async () => {
    const cert = await issueNodeCert({ ca: globexCa, org: 'globex', sanOrg: 'acme', node: 'n1' });
    expect(refusal(() => peerIdentity(cert.certPem, trust))).toEqual({
      code: 'PEER_SAN_MISMATCH',
      message: "the certificate was issued by org globex's CA but its SAN claims org acme: an org's CA can only vouch for its own nodes",
    });
  });

  it('refuses expired and not-yet-valid certificates', async () => {
    const cert = await issueNodeCert({ ca: acmeCa, org: 'acme', node: 'n1', notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + DAY) });
    expect(refusal(() => peerIdentity(cert.certPem, trust, new Date(Date.now() + 2 * DAY))).code).toBe('PEER_CERT_EXPIRED');
    expect(refusal(() => peerIdentity(cert.certPem, trust, new Date(Date.now() - 2 * DAY))).code).toBe('PEER_CERT_NOT_YET_VALID');
  });

  it('refuses a CA certificate presented as a node certificate', () => {
    expect(refusal(() => peerIdentity(acmeCa.certPem, trust)).code).toBe('PEER_BAD_CERT');
  });

  it('refuses a CA pinned for two orgs as ambiguous', async () => {
    const doubled = buildPeerTrust([
      { org: 'acme', caPem: acmeCa.certPem },
      { org: 'globex', caPem: acmeCa.certPem },
    ]);
    const cert = await issueNodeCert({ ca: acmeCa, org: 'acme', node: 'n1' });
    expect(refusal(() => peerIdentity(cert.certPem, doubled)).code).toBe('PEER_AMBIGUOUS_CA');
  });

  it('reads URI entries from a SAN as node:crypto prints it', async () => {
    const cert = await issueNodeCert({ ca: acmeCa, org: 'acme', node: 'n1', hosts: ['acme.example'] });
    expect(sanUris(new X509Certificate(cert.certPem).subjectAltName)).toEqual(['conclave://org/acme/node/n1']);
  });
});
