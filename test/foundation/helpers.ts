// Shared fixtures for the foundation tests: temporary folders, orgs made by initOrg, and a raw HTTP/2 client that
// reports exactly what the TLS layer and the server answered (one request, or a peer stream fed chunk by chunk).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type ClientHttp2Session } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initOrg, type InitOrgResult } from '../../src/pki/init.ts';

export function tempDir(prefix = 'conclave-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestOrg {
  org: string;
  init: InitOrgResult;
  caPem: string;
  caKeyPem: string;
  certPem: string;
  keyPem: string;
}

export async function makeOrg(dir: string, org: string): Promise<TestOrg> {
  const init = await initOrg({ org, outDir: join(dir, org) });
  return {
    org,
    init,
    caPem: readFileSync(init.files.caCert, 'utf8'),
    caKeyPem: readFileSync(init.files.caKey, 'utf8'),
    certPem: readFileSync(init.files.nodeCert, 'utf8'),
    keyPem: readFileSync(init.files.nodeKey, 'utf8'),
  };
}

export interface RawAnswer {
  alpn: string | false | undefined;
  status: number;
  body: string;
}

/** GET/POST over node:http2 with the given client certificate (or none); rejects when TLS refuses. */
export async function rawRequest(options: {
  url: string;
  ca: string;
  cert?: string;
  key?: string;
  path: string;
  method?: string;
  body?: Uint8Array;
  headers?: Record<string, string>;
}): Promise<RawAnswer> {
  const session: ClientHttp2Session = connect(options.url, {
    ca: options.ca,
    ...(options.cert ? { cert: options.cert, key: options.key } : {}),
    minVersion: 'TLSv1.3',
  });
  try {
    return await new Promise<RawAnswer>((resolvePromise, reject) => {
      session.once('error', reject);
      const stream = session.request({ ':path': options.path, ':method': options.method ?? 'GET', ...options.headers });
      stream.once('error', reject);
      let status = 0;
      const chunks: Buffer[] = [];
      stream.on('response', (headers) => {
        status = Number(headers[':status']);
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        if (status === 0) reject(new Error('stream ended without a response'));
        else resolvePromise({ alpn: session.alpnProtocol, status, body: Buffer.concat(chunks).toString('utf8') });
      });
      stream.end(options.body ? Buffer.from(options.body) : undefined);
    });
  } finally {
    session.destroy();
  }
}

export interface RawStreamEnd {
  status: number;
  /** What the server wrote on the answer (a stream's error reason, as JSON). */
  body: string;
  /** RST_STREAM code of the stream's end (0 when it ended cleanly). */
  rstCode: number;
}

/**
 * Opens POST /peer/v1/stream over node:http2 with a member's certificate, writes `chunks` one by one (each its own
 * write, so frames can straddle them), leaves its side open, and resolves when the server ends the stream.
 */
export async function rawStream(options: { url: string; ca: string; cert: string; key: string; chunks: Uint8Array[] }): Promise<RawStreamEnd> {
  const session: ClientHttp2Session = connect(options.url, { ca: options.ca, cert: options.cert, key: options.key, minVersion: 'TLSv1.3' });
  try {
    return await new Promise<RawStreamEnd>((resolvePromise, reject) => {
      session.once('error', reject);
      const stream = session.request({ ':path': '/peer/v1/stream', ':method': 'POST', 'content-type': 'application/vnd.conclave.stream.v1' });
      let status = 0;
      const chunks: Buffer[] = [];
      stream.on('response', (headers) => {
        status = Number(headers[':status']);
        for (const chunk of options.chunks) stream.write(Buffer.from(chunk));
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', () => undefined); // the reset is reported through rstCode
      stream.once('close', () => resolvePromise({ status, body: Buffer.concat(chunks).toString('utf8'), rstCode: stream.rstCode ?? 0 }));
    });
  } finally {
    session.destroy();
  }
}
