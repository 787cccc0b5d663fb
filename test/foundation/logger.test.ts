// The logger: JSON lines by default, human-readable lines with pretty.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.ts';

function capture(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

describe('createLogger', () => {
  it('writes one JSON object per line by default', async () => {
    const out = capture();
    const logger = createLogger({ destination: out.stream, base: { org: 'acme' } });
    logger.info({ swarm: 'review' }, 'committed');
    await new Promise((resolvePromise) => setImmediate(resolvePromise));
    const line = JSON.parse(out.text().trim());
    expect(line).toMatchObject({ level: 30, org: 'acme', swarm: 'review', msg: 'committed' });
    expect(typeof line.time).toBe('string');
  });

  it('writes readable lines when pretty', async () => {
    const out = capture();
    const logger = createLogger({ pretty: true, destination: out.stream });
    logger.warn('peer unreachable');
    await new Promise((resolvePromise) => setTimeout(resolvePromise, 20));
    expect(out.text()).toMatch(/WARN.*peer unreachable/);
    expect(() => JSON.parse(out.text())).toThrow();
  });

  it('respects the level', async () => {
    const out = capture();
    const logger = createLogger({ level: 'warn', destination: out.stream });
    logger.info('hidden');
    logger.error('shown');
    await new Promise((resolvePromise) => setImmediate(resolvePromise));
    expect(out.text()).not.toMatch(/hidden/);
    expect(out.text()).toMatch(/shown/);
  });
});
