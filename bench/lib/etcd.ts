// Owns the etcd side of the side-by-side benchmark: installing etcd from Debian's packages when missing, a CA and
// certificates made with openssl, and a 3-member etcd cluster with mutual TLS on loopback (client and peer), default
// durability (fsync on every WAL commit), started and stopped as child processes.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'undici';
import { freePorts } from '../../src/config/local-federation.ts';
import type { LoadTarget } from '../loadgen.ts';

export interface EtcdCluster {
  dir: string;
  members: { name: string; pid: number; clientUrl: string; child: ChildProcess }[];
  targets: LoadTarget[];
  version: string;
}

function which(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Installs etcd-server and etcd-client with apt-get when `etcd` is not on the PATH; returns `etcd --version`. */
export function ensureEtcd(log: (line: string) => void): string {
  if (!which('etcd')) {
    log('etcd not found: apt-get update && apt-get install -y etcd-server etcd-client');
    execFileSync('apt-get', ['update'], { stdio: 'ignore', timeout: 300_000 });
    execFileSync('apt-get', ['install', '-y', 'etcd-server', 'etcd-client'], { stdio: 'ignore', timeout: 600_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  const out = execFileSync('etcd', ['--version'], { encoding: 'utf8' });
  return /etcd Version:\s*(\S+)/.exec(out)?.[1] ?? out.split('\n')[0]!;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

/** A P-256 CA, one server/peer certificate per member (SAN 127.0.0.1, localhost) and one client certificate. */
function makeCerts(dir: string, names: string[]): void {
  mkdirSync(dir, { recursive: true });
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30', '-subj', '/CN=bench-etcd-ca'], dir);
  const ext = 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n';
  writeFileSync(join(dir, 'ext.cnf'), ext);
  for (const name of [...names, 'client']) {
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '30', '-extfile', 'ext.cnf'], dir);
  }
}

export async function startEtcd(dir: string, size = 3): Promise<EtcdCluster> {
  const version = execFileSync('etcd', ['--version'], { encoding: 'utf8' });
  const names = Array.from({ length: size }, (_, i) => `etcd${i + 1}`);
  const certs = join(dir, 'certs');
  makeCerts(certs, names);
  const ports = await freePorts(size * 2);
  const peerUrl = (i: number) => `https://127.0.0.1:${ports[2 * i + 1]}`;
  const clientUrl = (i: number) => `https://127.0.0.1:${ports[2 * i]}`;
  const initialCluster = names.map((n, i) => `${n}=${peerUrl(i)}`).join(',');
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const members = names.map((name, i) => {
    const args = [
      '--name', name,
      '--data-dir', join(dir, 'data', name),
      '--listen-client-urls', clientUrl(i),
      '--advertise-client-urls', clientUrl(i),
      '--listen-peer-urls', peerUrl(i),
      '--initial-advertise-peer-urls', peerUrl(i),
      '--initial-cluster', initialCluster,
      '--initial-cluster-token', `bench-${process.pid}`,
      '--initial-cluster-state', 'new',
      '--client-cert-auth', '--trusted-ca-file', join(certs, 'ca.crt'),
      '--cert-file', join(certs, `${name}.crt`), '--key-file', join(certs, `${name}.key`),
      '--peer-client-cert-auth', '--peer-trusted-ca-file', join(certs, 'ca.crt'),
      '--peer-cert-file', join(certs, `${name}.crt`), '--peer-key-file', join(certs, `${name}.key`),
      '--log-level', 'warn',
    ];
    const out = openSync(join(dir, 'logs', `${name}.log`), 'a');
    const child = spawn('etcd', args, { stdio: ['ignore', out, out] });
    closeSync(out);
    child.on('error', () => undefined);
    return { name, pid: child.pid ?? 0, clientUrl: clientUrl(i), child };
  });
  const targets: LoadTarget[] = members.map((m) => ({
    url: m.clientUrl,
    caFile: join(certs, 'ca.crt'),
    certFile: join(certs, 'client.crt'),
    keyFile: join(certs, 'client.key'),
  }));
  const cluster: EtcdCluster = { dir, members, targets, version: /etcd Version:\s*(\S+)/.exec(version)?.[1] ?? 'unknown' };
  try {
    await waitEtcdReady(cluster);
  } catch (error) {
    await stopEtcd(cluster);
    throw error;
  }
  return cluster;
}

/** Waits until every member accepts a put through the JSON gateway with the client certificate. */
async function waitEtcdReady(cluster: EtcdCluster, timeoutMs = 60_000): Promise<void> {
  const { readFileSync } = await import('node:fs');
  const t = cluster.targets[0]!;
  const connect = { ca: readFileSync(t.caFile, 'utf8'), cert: readFileSync(t.certFile!, 'utf8'), key: readFileSync(t.keyFile!, 'utf8') };
  const started = Date.now();
  let last = '';
  for (const target of cluster.targets) {
    const client = new Client(target.url, { allowH2: true, connect });
    try {
      for (;;) {
        try {
          const body = JSON.stringify({ key: Buffer.from('bench/ready').toString('base64'), value: Buffer.from('1').toString('base64') });
          const r = await client.request({ method: 'POST', path: '/v3/kv/put', body, headers: { 'content-type': 'application/json' } });
          const text = await r.body.text();
          if (r.statusCode === 200) break;
          last = `${r.statusCode} ${text.slice(0, 200)}`;
        } catch (error) {
          last = (error as Error).message;
        }
        if (Date.now() - started > timeoutMs) throw new Error(`etcd did not become ready in ${timeoutMs / 1000} s: ${last}`);
        await new Promise((done) => setTimeout(done, 300));
      }
    } finally {
      await client.close().catch(() => undefined);
    }
  }
}

export async function stopEtcd(cluster: EtcdCluster): Promise<void> {
  await Promise.all(
    cluster.members.map(
      (m) =>
        new Promise<void>((done) => {
          if (m.child.exitCode !== null || m.child.signalCode !== null) return done();
          const timer = setTimeout(() => m.child.kill('SIGKILL'), 10_000);
          m.child.once('exit', () => {
            clearTimeout(timer);
            done();
          });
          m.child.kill('SIGTERM');
        }),
    ),
  );
}
