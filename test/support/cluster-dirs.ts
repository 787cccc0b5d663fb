// Test support: data folders for dev clusters of real node processes, each taken down and removed after the file's
// tests (with every process the cluster helpers started, and their HTTP clients).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { closeClients, downCluster, stopAll } from '../../src/devcluster/cluster.ts';

/** Call at the top of a test file; the returned function makes a fresh cluster folder named after `prefix`. */
export function clusterDirs(): (prefix: string) => string {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) {
      await downCluster(dir).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
    stopAll();
    await closeClients();
  });
  return (prefix) => {
    const dir = mkdtempSync(join(tmpdir(), `conclave-${prefix}-`));
    dirs.push(dir);
    return dir;
  };
}
