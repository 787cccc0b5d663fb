// Owns starting and stopping the admission floor (bench/lib/admission-floor.ts) as its own process for the
// end-to-end runs: the load generator reaches it as it reaches a node (one target, the org's agent key, its CA).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from '../../src/devcluster/cluster.ts';
import type { LoadTarget } from '../loadgen.ts';

export interface AdmissionFloor {
  pid: number;
  swarm: string;
  targets: LoadTarget[];
  stop(): Promise<void>;
}

export async function startFloor(dir: string, timeoutMs = 60_000): Promise<AdmissionFloor> {
  mkdirSync(dir, { recursive: true });
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'bench/lib/admission-floor.ts', dir], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the admission floor did not start within ${timeoutMs} ms`)), timeoutMs);
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the admission floor exited (${code}) before it listened`));
    });
  });
  const info = JSON.parse(first) as { url: string; caFile: string; agentJwkFile: string; org: string; swarm: string };
  return {
    pid: child.pid!,
    swarm: info.swarm,
    targets: [{ url: info.url, caFile: info.caFile, org: info.org, agentJwkFile: info.agentJwkFile }],
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
