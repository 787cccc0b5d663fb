// Owns process measurements for the benchmarks (Linux /proc): CPU time of a pid from /proc/<pid>/stat, RSS from
// /proc/<pid>/status, the load average, and fsync counting by attaching strace to a process for a short window.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

export interface CpuSample {
  pid: number;
  /** user + system CPU seconds so far (all threads). */
  cpuSeconds: number;
  /** Seconds its threads spent runnable but waiting for a CPU (sum of /proc/<pid>/task/<tid>/schedstat field 2). */
  runQueueSeconds: number | null;
  /** performance.now() when sampled. */
  at: number;
}

export function cpuSample(pid: number): CpuSample | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is state (field 3); utime is field 14, stime field 15
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return { pid, cpuSeconds: (utime + stime) / TICKS_PER_SECOND, runQueueSeconds: runQueueSeconds(pid), at: performance.now() };
  } catch {
    return null;
  }
}

function runQueueSeconds(pid: number): number | null {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1]);
      } catch {
        // thread gone
      }
    }
    return ns / 1e9;
  } catch {
    return null;
  }
}

/**
 * Time the process's threads waited for a CPU while runnable, as % of the window (100 = one thread always waiting):
 * how much the machine's load starved it.
 */
export function runQueuePercent(a: CpuSample | null, b: CpuSample | null): number | null {
  if (!a || !b || b.at <= a.at || a.runQueueSeconds === null || b.runQueueSeconds === null) return null;
  return Math.round(((b.runQueueSeconds - a.runQueueSeconds) / ((b.at - a.at) / 1000)) * 1000) / 10;
}

/** CPU % of one core between two samples (100 = one core busy all the time). */
export function cpuPercent(a: CpuSample | null, b: CpuSample | null): number | null {
  if (!a || !b || b.at <= a.at) return null;
  return Math.round(((b.cpuSeconds - a.cpuSeconds) / ((b.at - a.at) / 1000)) * 1000) / 10;
}

/** Resident set size in MB, or null when the process is gone. */
export function rssMb(pid: number): number | null {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Math.round(Number(match[1]) / 102.4) / 10 : null;
  } catch {
    return null;
  }
}

export function loadAverage(): number[] {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
  } catch {
    return [];
  }
}

export interface FsyncProbe {
  /** Stops strace and returns fsync + fdatasync calls seen in the window (null when strace could not attach). */
  stop(): Promise<{ fsyncs: number | null; seconds: number; error?: string }>;
}

/**
 * Attaches `strace -f -c -e trace=fsync,fdatasync` to a pid (every thread). ptrace slows the traced process while
 * attached, so callers use a short window after the measured one.
 */
export function probeFsyncs(pid: number, outFile: string): FsyncProbe {
  const started = performance.now();
  let error = '';
  const child = spawn('strace', ['-f', '-c', '-o', outFile, '-e', 'trace=fsync,fdatasync', '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.on('data', (chunk: Buffer) => (error += chunk.toString()));
  const exited = new Promise<void>((done) => {
    child.once('exit', () => done());
    child.once('error', (e) => {
      error += e.message;
      done();
    });
  });
  return {
    async stop() {
      const seconds = (performance.now() - started) / 1000;
      child.kill('SIGINT');
      await Promise.race([exited, new Promise((done) => setTimeout(done, 5000))]);
      try {
        const text = readFileSync(outFile, 'utf8');
        let fsyncs = 0;
        for (const line of text.split('\n')) {
          const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)\s*$/.exec(line);
          if (m) fsyncs += Number(m[1]);
        }
        return { fsyncs, seconds };
      } catch {
        return { fsyncs: null, seconds, error: error.trim().split('\n').slice(-2).join(' ') || 'no strace output' };
      }
    },
  };
}
