// `conclave submit` end to end: a real process signs with agent.jwk and posts over TLS trusting only the given CA.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyVerdict } from '../../src/verdict/verify.ts';
import { exportPrivateJwk, makeFederation, makeSwarm } from './fixtures.ts';

const fed = makeFederation(['acme']);
const swarm = makeSwarm('s1', ['acme']);
const dir = mkdtempSync(join(tmpdir(), 'conclave-submit-'));
const root = new URL('../..', import.meta.url).pathname;
let server: Server;
let url = '';
const received: { url: string; body: string }[] = [];
let answer: { status: number; body: unknown } = { status: 200, body: {} };

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), 'submit', ...args], { cwd: root }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=acme CA');
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'node.key', '-out', 'node.csr', '-subj', '/CN=node');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl('x509', '-req', '-in', 'node.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'node.crt', '-days', '2', '-extfile', 'san.ext');
  writeFileSync(join(dir, 'agent.jwk'), JSON.stringify(exportPrivateJwk(fed.keys.acme!.agent)));
  writeFileSync(join(dir, 'agent-with-org.jwk'), JSON.stringify({ ...exportPrivateJwk(fed.keys.acme!.agent), org: 'acme', agent: 'ci-bot' }));
  server = createServer({ key: readFileSync(join(dir, 'node.key')), cert: readFileSync(join(dir, 'node.crt')) }, (req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      received.push({ url: req.url ?? '', body });
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

const base = () => ['--ca', join(dir, 'ca.crt'), '--node', url, '--swarm', 's1', '--subject', 'github.com/acme/widget/pull/42@9f1c2e', '--verdict', 'approve'];

describe('conclave submit', () => {
  it('signs with agent.jwk, posts {"jws"} over TLS trusting --ca, and prints the JSON answer', async () => {
    answer = { status: 200, body: { status: 'committed', index: 3, entryHash: 'ab' } };
    received.length = 0;
    const result = await run([...base(), '--key', join(dir, 'agent.jwk'), '--org', 'acme', '--reason', 'LGTM']);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(JSON.parse(result.stdout)).toEqual(answer.body);
    expect(received).toHaveLength(1);
    expect(received[0]!.url).toBe('/v1/swarms/s1/verdicts');
    const { jws } = JSON.parse(received[0]!.body) as { jws: string };
    const verified = verifyVerdict(jws, { keyring: fed.keyring, swarms: [swarm], expectedSwarm: 's1', now: Math.floor(Date.now() / 1000) });
    expect(verified.payload).toMatchObject({ org: 'acme', agent: 'conclave-cli', verdict: 'approve', reason: 'LGTM' });
  });

  it('takes org and agent from the JWK file when it carries them; --no-wait adds ?wait=false; a 4xx exits 1', async () => {
    answer = { status: 422, body: { code: 'VALUE_NOT_ALLOWED', message: 'no' } };
    received.length = 0;
    const result = await run([...base(), '--key', join(dir, 'agent-with-org.jwk'), '--no-wait']);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout)).toEqual(answer.body);
    expect(received[0]!.url).toBe('/v1/swarms/s1/verdicts?wait=false');
    const { jws } = JSON.parse(received[0]!.body) as { jws: string };
    expect(verifyVerdict(jws, { keyring: fed.keyring, swarms: [swarm] }).payload).toMatchObject({ org: 'acme', agent: 'ci-bot' });
  });

  it('refuses locally, with a code, when the org is unknown or the payload is invalid; without the CA the TLS link fails', async () => {
    const [noOrg, badNonce, untrusted] = await Promise.all([
      run([...base(), '--key', join(dir, 'agent.jwk')]),
      run([...base(), '--key', join(dir, 'agent.jwk'), '--org', 'acme', '--nonce', 'short']),
      run([...base().slice(2), '--key', join(dir, 'agent.jwk'), '--org', 'acme']), // no --ca
    ]);
    expect(noOrg.code).toBe(2);
    expect(JSON.parse(noOrg.stderr)).toMatchObject({ code: 'ORG_REQUIRED' });
    expect(JSON.parse(badNonce.stderr)).toMatchObject({ code: 'PAYLOAD_INVALID' });
    expect(untrusted.code).toBe(2);
    expect(JSON.parse(untrusted.stderr)).toMatchObject({ code: 'UNREACHABLE' });
  });
});
