// End-to-end tests of `conclave audit` as a process: a real federation on disk (conclave init per org), an export
// file and the same export pulled over HTTPS from a stand-in node; exit codes and the printed first failure.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadFederation } from '../../src/config/load.ts';
import { writeLocalFederation, type LocalFederation } from '../../src/config/local-federation.ts';
import { importPrivateJwk, type PrivateJwk } from '../../src/crypto/ed25519.ts';
import { buildLog, exportText, lineOf, SWARM, type TestFederation } from './fixtures.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', join(repoRoot, 'src', 'cli', 'main.ts'), 'audit', ...args], { cwd: repoRoot }, (error, stdout, stderr) => {
      done({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('conclave audit (process)', () => {
  let dir: string;
  let local: LocalFederation;
  let fedPath: string;
  let good: string;
  let bad: string;
  let server: Server;
  let serverUrl: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'conclave-audit-cli-'));
    local = await writeLocalFederation({
      dir,
      orgs: ['acme', 'globex', 'initech', 'umbrella'],
      federation: 'test-fed',
      swarm: { id: SWARM, mode: 'raft', policy: { values: ['approve', 'request-changes', 'reject'], quorum: 'majority', rule: 'majority', fallback: 'request-changes' } },
    });
    fedPath = local.orgs[0]!.configPath;
    const config = loadFederation(fedPath);
    const key = (path: string) => importPrivateJwk(JSON.parse(readFileSync(path, 'utf8')) as PrivateJwk);
    const fed: TestFederation = {
      config,
      swarm: config.swarms.find((s) => s.id === SWARM)!,
      orgs: local.orgs.map((o) => ({ org: o.org, nodeKey: key(o.files.nodeSigningKey), agentKey: key(o.files.agentKey), adminKey: key(o.files.adminKey) })),
    };
    const built = buildLog(fed, { entries: 60, checkpointEvery: 20 });
    const lines = await exportText(built, { withProofs: true });
    good = join(dir, 'good.jsonl');
    writeFileSync(good, lines.map((l) => `${l}\n`).join(''));
    const at = lines.findIndex((l) => (JSON.parse(l) as { type: string }).type === 'decision');
    const decision = JSON.parse(lines[at]!) as { value: string };
    const tampered = [...lines];
    tampered[at] = lineOf({ ...decision, value: decision.value === 'approve' ? 'reject' : 'approve' });
    bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, tampered.map((l) => `${l}\n`).join(''));

    const certDir = local.orgs[0]!.certDir;
    server = createServer({ cert: readFileSync(join(certDir, 'node.crt')), key: readFileSync(join(certDir, 'node.key')) }, (req, res) => {
      if (req.url === `/v1/swarms/${SWARM}/export`) {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.end(readFileSync(good));
      } else {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"code":"NOT_FOUND","message":"no such swarm"}');
      }
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
    const address = server.address() as { port: number };
    serverUrl = `https://127.0.0.1:${address.port}`;
  });

  afterAll(async () => {
    await new Promise<void>((done) => (server ? server.close(() => done()) : done()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('exits 0 and prints the summary when everything verifies', async () => {
    const result = await runCli(['--federation', fedPath, good]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/entries verified\s+60/);
    expect(result.stdout).toMatch(/checkpoints verified 3/);
    expect(result.stdout).toMatch(/OK: everything verifies/);
  });

  it('exits 1 and names the first bad entry and its code', async () => {
    const result = await runCli(['--federation', fedPath, '--json', bad]);
    expect(result.code).toBe(1);
    const summary = JSON.parse(result.stdout) as { ok: boolean; failure: { code: string; index: number } };
    expect(summary.ok).toBe(false);
    expect(summary.failure.code).toBe('DECISION_MISMATCH');
  });

  it('pulls the export from a node over HTTPS, trusting the given CA', async () => {
    const result = await runCli(['--federation', fedPath, '--url', serverUrl, '--ca', join(local.orgs[0]!.certDir, 'ca.crt'), '--swarm', SWARM]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/OK: everything verifies/);
  });

  it('exits 2 when the audit cannot run (unknown swarm on the node, missing file)', async () => {
    const unknown = await runCli(['--federation', fedPath, '--url', serverUrl, '--ca', join(local.orgs[0]!.certDir, 'ca.crt'), '--swarm', 'nope']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/404/);
    const missing = await runCli(['--federation', fedPath, join(dir, 'missing.jsonl')]);
    expect(missing.code).toBe(2);
  });
});
