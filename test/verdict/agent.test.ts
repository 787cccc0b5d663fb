// The portable agent helper: noble signatures are byte-identical to node:crypto's, and node:crypto, the node's
// verifier and jose all accept its JWS; submitVerdict posts exactly {"jws": ...} and reports the answer.
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { compactVerify, importJWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { verifyBytes } from '../../src/crypto/ed25519.ts';
import { fromBase64Url, utf8 } from '../../src/crypto/encoding.ts';
import { agentKeyId, signVerdict, submitVerdict } from '../../src/verdict/agent.ts';
import { VerdictError } from '../../src/verdict/format.ts';
import { verifyVerdict } from '../../src/verdict/verify.ts';
import { exportPrivateJwk, makeFederation, makeSwarm, NOW, signWith } from './fixtures.ts';

const fed = makeFederation(['acme', 'globex']);
const swarm = makeSwarm('s1', ['acme', 'globex']);
const acme = fed.keys.acme!.agent;
const fields = {
  swarm: 's1',
  subject: 'github.com/acme/widget/pull/42@9f1c2e',
  org: 'acme',
  agent: 'reviewer-1',
  verdict: 'approve',
  reason: 'tests pass; naïve → ok',
  iat: NOW,
  nonce: 'n0nce-0123456789abcdef',
};

describe('signVerdict (noble) against node:crypto and jose', () => {
  it('produces the same bytes as node:crypto signing the same input', async () => {
    const jws = await signVerdict({ privateJwk: exportPrivateJwk(acme), ...fields });
    expect(jws).toBe(signWith(acme, { v: 1, ...fields }));
  });

  it('node:crypto, the node verifier and jose all verify it', async () => {
    const jws = await signVerdict({ privateJwk: exportPrivateJwk(acme), ...fields });
    const [h, p, s] = jws.split('.') as [string, string, string];
    expect(verifyBytes(acme, utf8(`${h}.${p}`), fromBase64Url(s))).toBe(true);
    expect(verifyVerdict(jws, { keyring: fed.keyring, swarms: [swarm], expectedSwarm: 's1', now: NOW }).payload).toEqual({ v: 1, ...fields });
    const { payload, protectedHeader } = await compactVerify(jws, await importJWK({ ...acme.publicJwk }, 'EdDSA'));
    expect(protectedHeader).toEqual({ alg: 'EdDSA', kid: acme.kid, typ: 'conclave-verdict+jws' });
    expect(JSON.parse(new TextDecoder().decode(payload))).toEqual({ v: 1, ...fields });
  });

  it('without kid in the JWK it uses the RFC 7638 thumbprint; without nonce/iat it makes them', async () => {
    const { kid: _kid, ...jwk } = exportPrivateJwk(acme);
    expect(agentKeyId(jwk)).toBe(acme.kid);
    const jws = await signVerdict({ privateJwk: jwk, ...fields, iat: undefined, nonce: undefined });
    const parsed = verifyVerdict(jws, { keyring: fed.keyring, swarms: [swarm], now: Math.floor(Date.now() / 1000) });
    expect(parsed.header.kid).toBe(acme.kid);
    expect(parsed.payload.nonce).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it('refuses to sign an invalid payload or a JWK whose d does not match x', async () => {
    await expect(signVerdict({ privateJwk: exportPrivateJwk(acme), ...fields, subject: '' })).rejects.toThrow(VerdictError);
    const other = exportPrivateJwk(fed.keys.globex!.agent);
    await expect(signVerdict({ privateJwk: { ...exportPrivateJwk(acme), d: other.d }, ...fields })).rejects.toThrow(/does not match/);
  });

  it('agent.ts imports nothing from node: and uses no Buffer (it must run in browsers)', () => {
    for (const file of ['agent.ts', 'format.ts']) {
      const source = readFileSync(new URL(`../../src/verdict/${file}`, import.meta.url), 'utf8');
      expect(source).not.toMatch(/from ['"]node:|Buffer\.|\.\.\/crypto\//);
    }
  });
});

describe('submitVerdict', () => {
  async function withServer(
    answer: (req: IncomingMessage, body: string) => { status: number; body: unknown },
    run: (url: string, seen: { method?: string; url?: string; type?: string; body?: string }) => Promise<void>,
  ): Promise<void> {
    const seen: { method?: string; url?: string; type?: string; body?: string } = {};
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        Object.assign(seen, { method: req.method, url: req.url, type: req.headers['content-type'], body });
        const out = answer(req, body);
        res.writeHead(out.status, { 'content-type': 'application/json' }).end(JSON.stringify(out.body));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      await run(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, seen);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  }

  it('POSTs {"jws"} as JSON to /v1/swarms/{swarm}/verdicts and returns the answer', async () => {
    await withServer(
      () => ({ status: 200, body: { status: 'committed', index: 7 } }),
      async (url, seen) => {
        const result = await submitVerdict({ nodeUrl: url, swarm: 'code review', jws: 'a.b.c' });
        expect(result).toEqual({ ok: true, status: 200, body: { status: 'committed', index: 7 } });
        expect(seen).toEqual({ method: 'POST', url: '/v1/swarms/code%20review/verdicts', type: 'application/json', body: '{"jws":"a.b.c"}' });
      },
    );
  });

  it('wait: false adds ?wait=false; an error answer keeps its code and message', async () => {
    await withServer(
      () => ({ status: 401, body: { code: 'BAD_SIGNATURE', message: 'nope' } }),
      async (url, seen) => {
        const result = await submitVerdict({ nodeUrl: url, swarm: 's1', jws: 'a.b.c', wait: false });
        expect(seen.url).toBe('/v1/swarms/s1/verdicts?wait=false');
        expect(result).toMatchObject({ ok: false, status: 401, code: 'BAD_SIGNATURE', message: 'nope' });
      },
    );
  });
});

describe('docs/verdicts.md worked example', () => {
  it('recomputes the example JWS and jwsHash from the RFC 8032 test key', async () => {
    const { fromHex } = await import('../../src/crypto/encoding.ts');
    const { jwsHashOf } = await import('../../src/verdict/verify.ts');
    const d = fromHex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
    const jwk = { kty: 'OKP' as const, crv: 'Ed25519' as const, x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo', d: Buffer.from(d).toString('base64url') };
    const kid = agentKeyId(jwk);
    expect(kid).toBe('kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k');
    const jws = await signVerdict({
      privateJwk: { ...jwk, kid },
      swarm: 'code-review',
      subject: 'github.com/acme/widget/pull/42@9f1c2e',
      org: 'acme',
      agent: 'reviewer-1',
      verdict: 'approve',
      reason: 'Tests pass; the change is small.',
      iat: 1760000000,
      nonce: 'q1w2e3r4t5y6u7i8o9p0aA',
    });
    const doc = readFileSync(new URL('../../docs/verdicts.md', import.meta.url), 'utf8');
    expect(doc).toContain(`\n${jws}\n`);
    expect(doc).toContain(jwsHashOf(jws));
    expect(doc).toContain(`one line, ${jws.length} bytes`);
  });
});
