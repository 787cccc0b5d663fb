// Owns the static check of docker-compose.yml (no Docker engine here): services, volumes, ports, healthchecks,
// the Dockerfile, every file a service mounts exists or is created by scripts/compose-setup.ts (run for real into a
// temp dir), and the federation files agree with the services (peer URLs, ports, members, node certificate names).
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFederation } from '../../src/config/load.ts';
import { API_PORT, COMPOSE_ORGS, CONTAINER, HOST_API_PORTS, NODE_FILES, PEER_PORT } from '../../scripts/compose-setup.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const SETUP_PREFIX = './certs/compose/'; // what the compose file mounts from; the setup script's default output

interface Mount {
  type: string;
  source: string;
  target: string;
  read_only?: boolean;
}

const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as any;
const services = compose.services as Record<string, any>;

describe('docker-compose.yml', () => {
  let out: string;

  beforeAll(() => {
    out = join(mkdtempSync(join(tmpdir(), 'conclave-compose-')), 'compose');
    // The documented command, run as a process (the docs say: npx tsx scripts/compose-setup.ts).
    const result = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'compose-setup.ts'), '--out', out], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 110_000,
    });
    if (result.status !== 0) throw new Error(`compose-setup failed (${result.status}): ${result.stdout}\n${result.stderr}`);
  }, 120_000);

  afterAll(() => {
    if (out) rmSync(resolve(out, '..'), { recursive: true, force: true });
  });

  /** A bind source as it will exist on the host: from the setup output, or a file of the repository. */
  function hostPath(source: string): string {
    if (source.startsWith(SETUP_PREFIX)) return join(out, source.slice(SETUP_PREFIX.length));
    return resolve(ROOT, source);
  }

  it('has one service per org, each built from the Dockerfile and started with its federation file', () => {
    expect(Object.keys(services).sort()).toEqual([...COMPOSE_ORGS].sort());
    for (const [name, service] of Object.entries(services)) {
      expect(service.build, name).toEqual({ context: '.', dockerfile: 'Dockerfile' });
      expect(existsSync(join(ROOT, service.build.context, service.build.dockerfile))).toBe(true);
      expect(service.command, name).toEqual(['start', '--config', CONTAINER.federation]);
      expect(service.hostname ?? name, name).toBe(name);
      expect(service.networks, name).toEqual(['federation']);
      const test = (service.healthcheck.test as string[]).join(' ');
      expect(test, name).toContain('/healthz');
      expect(test, name).toContain(`port: ${API_PORT}`);
      expect(test, name).toContain(`${CONTAINER.certs}/ca.crt`);
    }
    expect(Object.keys(compose.networks)).toEqual(['federation']);
  });

  it('publishes each API on its own host port and nothing else', () => {
    const hostPorts = new Set<number>();
    for (const [name, service] of Object.entries(services)) {
      expect(service.ports, name).toHaveLength(1);
      const [host, container] = String(service.ports[0]).split(':').map(Number);
      expect(container, name).toBe(API_PORT);
      expect(host, name).toBe(HOST_API_PORTS[name]);
      expect(hostPorts.has(host!), `host port ${host} used twice`).toBe(false);
      hostPorts.add(host!);
    }
  });

  it('gives every service its own read-only certs and federation file and its own data volume', () => {
    const sources = new Set<string>();
    for (const [name, service] of Object.entries(services)) {
      const mounts = service.volumes as Mount[];
      const byTarget = new Map(mounts.map((m) => [m.target, m]));
      expect([...byTarget.keys()].sort(), name).toEqual([CONTAINER.certs, CONTAINER.data, CONTAINER.federation].sort());

      const federation = byTarget.get(CONTAINER.federation)!;
      expect(federation, name).toMatchObject({ type: 'bind', source: `${SETUP_PREFIX}${name}/federation.yaml`, read_only: true });
      const certs = byTarget.get(CONTAINER.certs)!;
      expect(certs, name).toMatchObject({ type: 'bind', source: `${SETUP_PREFIX}${name}/node`, read_only: true });
      const data = byTarget.get(CONTAINER.data)!;
      expect(data, name).toMatchObject({ type: 'volume', source: `${name}-data` });
      expect(Object.keys(compose.volumes)).toContain(data.source);
      for (const m of mounts) {
        expect(sources.has(m.source), `${m.source} mounted twice`).toBe(false);
        sources.add(m.source);
      }
    }
    expect(Object.keys(compose.volumes).sort()).toEqual(COMPOSE_ORGS.map((org) => `${org}-data`).sort());
  });

  it('mounts only files that exist once the setup script ran, and no private key the node does not need', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const m of service.volumes as Mount[]) {
        if (m.type !== 'bind') continue;
        const path = hostPath(m.source);
        expect(existsSync(path), `${name}: ${m.source} → ${path}`).toBe(true);
        if (m.target === CONTAINER.federation) expect(statSync(path).isFile()).toBe(true);
        if (m.target === CONTAINER.certs) {
          expect(statSync(path).isDirectory()).toBe(true);
          for (const file of NODE_FILES) expect(existsSync(join(path, file)), `${name}: ${file}`).toBe(true);
          // The CA key and the agent/admin keys stay on the host.
          for (const file of ['ca.key', 'agent.jwk', 'admin.jwk']) expect(existsSync(join(path, file)), `${name}: ${file}`).toBe(false);
        }
      }
    }
  });

  it('has federation files consistent with the services', () => {
    const docs = Object.fromEntries(
      Object.keys(services).map((name) => [name, parse(readFileSync(hostPath(`${SETUP_PREFIX}${name}/federation.yaml`), 'utf8')) as any]),
    );
    const reference = docs[COMPOSE_ORGS[0]];
    for (const [name, doc] of Object.entries(docs)) {
      // Its own node section.
      expect(doc.node.org, name).toBe(name);
      expect(doc.node.peer.listen, name).toBe(`0.0.0.0:${PEER_PORT}`);
      expect(doc.node.api.listen, name).toBe(`0.0.0.0:${API_PORT}`);
      expect(doc.node.dataDir, name).toBe(CONTAINER.data);
      for (const path of [doc.node.tls.cert, doc.node.tls.key, doc.node.tls.ca, doc.node.signingKey]) {
        expect(path.startsWith(`${CONTAINER.certs}/`), `${name}: ${path}`).toBe(true);
        expect(existsSync(join(hostPath(`${SETUP_PREFIX}${name}/node`), path.slice(CONTAINER.certs.length + 1))), `${name}: ${path}`).toBe(true);
      }
      // Every service is a member, reachable at its service name, and nothing else is.
      expect(doc.members.map((m: any) => m.org).sort(), name).toEqual(Object.keys(services).sort());
      for (const member of doc.members) {
        expect(member.peerUrl, name).toBe(`https://${member.org}:${PEER_PORT}`);
        expect(member.apiUrl, name).toBe(`https://${member.org}:${API_PORT}`);
        expect(Object.keys(services)).toContain(new URL(member.peerUrl).hostname);
      }
      expect(doc.swarms[0].members.sort(), name).toEqual(Object.keys(services).sort());
      // Same federation everywhere: only the node section differs.
      expect(doc.members, name).toEqual(reference.members);
      expect(doc.swarms, name).toEqual(reference.swarms);
      expect(doc.federation, name).toBe(reference.federation);
    }
  });

  it("issues each node a certificate for its service name, from its own org's CA", () => {
    for (const name of Object.keys(services)) {
      const nodeDir = hostPath(`${SETUP_PREFIX}${name}/node`);
      const cert = new X509Certificate(readFileSync(join(nodeDir, 'node.crt')));
      const ca = new X509Certificate(readFileSync(join(nodeDir, 'ca.crt')));
      expect(cert.subjectAltName, name).toContain(`DNS:${name}`);
      expect(cert.checkIssued(ca), name).toBe(true);
      expect(cert.verify(ca.publicKey), name).toBe(true);
    }
  });

  it('passes full validation as each container will read it', () => {
    for (const name of Object.keys(services)) {
      const nodeDir = hostPath(`${SETUP_PREFIX}${name}/node`);
      const text = readFileSync(hostPath(`${SETUP_PREFIX}${name}/federation.yaml`), 'utf8')
        .replaceAll(`${CONTAINER.certs}/`, `${nodeDir}/`)
        .replace(`dataDir: ${CONTAINER.data}`, `dataDir: ${join(out, 'check-data')}`);
      const file = join(out, `${name}-host.yaml`);
      writeFileSync(file, text);
      const config = loadFederation(file);
      expect(config.node.org).toBe(name);
      expect(config.members).toHaveLength(COMPOSE_ORGS.length);
    }
  });

  it('builds the image the way the docs say, and keeps keys and dependencies out of the build context', () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^FROM node:20-slim$/m);
    expect(dockerfile).toMatch(/^RUN npm ci\b/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "bin\/conclave\.js"\]$/m);
    expect(dockerfile).toContain(`CMD ["start", "--config", "${CONTAINER.federation}"]`);
    expect(dockerfile).toMatch(new RegExp(`^EXPOSE .*\\b${PEER_PORT}\\b.*\\b${API_PORT}\\b`, 'm'));
    for (const copied of [...dockerfile.matchAll(/^COPY (.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/))) {
      expect(existsSync(join(ROOT, copied)), `COPY ${copied}`).toBe(true);
    }
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const entry of ['certs', 'node_modules', 'data', '.git']) expect(ignored).toContain(entry);
  });
});
