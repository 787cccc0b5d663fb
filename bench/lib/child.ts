// Owns running benchmark pieces as child processes: `node --import tsx <script>` with a time limit, collecting
// stdout JSON lines, and forwarding stderr markers ({"event": ...}) to a callback as they arrive.
import { spawn } from 'node:child_process';
import { REPO_ROOT } from '../../src/devcluster/cluster.ts';

export interface ChildResult {
  code: number | null;
  lines: Record<string, unknown>[];
  stderr: string;
  seconds: number;
}

export function runScript(
  script: string,
  args: string[],
  options: { timeoutMs: number; env?: Record<string, string>; onEvent?: (event: string) => void; nodeArgs?: string[] },
): Promise<ChildResult> {
  const started = performance.now();
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', script, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let errLine = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      const text = chunk.toString();
      err += text;
      errLine += text;
      let nl: number;
      while ((nl = errLine.indexOf('\n')) >= 0) {
        const line = errLine.slice(0, nl);
        errLine = errLine.slice(nl + 1);
        if (line.startsWith('{"event"')) {
          try {
            options.onEvent?.((JSON.parse(line) as { event: string }).event);
          } catch {
            // not a marker
          }
        }
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      const lines: Record<string, unknown>[] = [];
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          lines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not JSON
        }
      }
      resolvePromise({ code, lines, stderr: err.slice(-2000), seconds: (performance.now() - started) / 1000 });
    });
  });
}
