// Owns CPU profiles taken with Linux perf for the benchmark (`bench --profile --perf`): recording the nodes during
// the measured window and summarising, per node, where its JavaScript thread spent CPU.
//
// Why perf beside V8's --cpu-prof: the V8 profiler samples wall time — on a loaded 2-core machine a descheduled
// node's samples land on whatever JavaScript was running, and a write(2) stuck behind another process's fsync looks
// like JavaScript work. perf's cpu-clock event samples only a thread that is on a CPU. Node writes /tmp/perf-PID.map
// (NODE_OPTIONS=--perf-basic-prof) so JIT frames have names: "JS:*fn" is TurboFan code, "JS:^fn" Sparkplug baseline,
// "JS:~fn" interpreted. Only the leaf frame is used: node's C++ has no frame pointers, so deeper frames of a
// sample in C++ are unreliable.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

export interface PerfSample {
  pid: number;
  tid: number;
  /** Innermost first. */
  frames: { symbol: string; dso: string }[];
}

/** Parses `perf script -F pid,tid,ip,sym,dso` output: a line "pid/tid", then one line per frame, a blank line. */
export function parsePerfScript(text: string): PerfSample[] {
  const samples: PerfSample[] = [];
  let current: PerfSample | null = null;
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (current) samples.push(current);
      current = null;
      continue;
    }
    const head = /^\s*(\d+)\/(\d+)\s*$/.exec(line);
    if (head) {
      if (current) samples.push(current);
      current = { pid: Number(head[1]), tid: Number(head[2]), frames: [] };
      continue;
    }
    if (!current) continue;
    const frame = /^\s*[0-9a-f]+\s+(.*)\s+\((.*)\)\s*$/.exec(line);
    if (frame) current.frames.push({ symbol: frame[1]!, dso: frame[2]! });
  }
  if (current) samples.push(current);
  return samples;
}

/** What kind of code a leaf frame is. */
export function leafKind(frame: { symbol: string; dso: string }): string {
  const { symbol, dso } = frame;
  if (dso.includes('kernel')) return 'kernel';
  if (symbol.startsWith('JS:*')) return 'js-optimized';
  if (symbol.startsWith('JS:^')) return 'js-baseline';
  if (symbol.startsWith('JS:~')) return 'js-interpreted';
  if (symbol.startsWith('JS:')) return 'js-other';
  if (symbol.startsWith('Builtins_')) return 'v8-builtins';
  if (/^(fe_|ge_|x25519|ED25519|ed25519|slide)/.test(symbol) || /^sha(256|512)_block/.test(symbol)) return 'crypto (Ed25519, SHA)';
  if (/^(SSL_|ssl|tls|EVP_|aes|gcm|OPENSSL_|CRYPTO_)/i.test(symbol)) return 'openssl (TLS)';
  if (/nghttp2|Http2/.test(symbol)) return 'http2 (native)';
  if (dso.includes('rocksdb')) return 'rocksdb';
  if (/ZSTD_|LZ4_/.test(symbol)) return 'compression';
  if (dso.includes('libc.so') || dso.includes('ld-linux')) return 'libc (memcpy, malloc, syscalls)';
  if (/v8::internal::(Heap|Scavenger|MarkCompact|Marking|Sweeper|Evacuat)/.test(symbol)) return 'v8-gc';
  if (symbol.startsWith('v8::') || symbol.startsWith('node::') || symbol.startsWith('uv_') || symbol.startsWith('napi_')) return 'node/v8 runtime';
  return 'other';
}

export interface PerfThreadSummary {
  samples: number;
  /** Share of the process's samples on its JavaScript thread (the rest: libuv pool, GC helpers, RocksDB threads). */
  mainThreadPercentOfProcess: number;
  byKind: { kind: string; percent: number }[];
  topLeaves: { symbol: string; dso: string; percent: number }[];
}

/** Leaf-frame summary of a process's main thread (tid = pid); percentages of that thread's samples. */
export function summarizeThread(samples: PerfSample[], pid: number, top = 20): PerfThreadSummary {
  const ofProcess = samples.filter((s) => s.pid === pid && s.frames.length > 0);
  const mine = ofProcess.filter((s) => s.tid === pid);
  const n = mine.length || 1;
  const kinds = new Map<string, number>();
  const leaves = new Map<string, { symbol: string; dso: string; count: number }>();
  for (const sample of mine) {
    const leaf = sample.frames[0]!;
    const kind = leafKind(leaf);
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    const dso = leaf.dso.split('/').at(-1)!;
    const symbol = leaf.symbol.replace(/ file:\/\/\S*\/(src\/\S+)/, ' $1').slice(0, 120);
    const key = `${symbol}\u0000${dso}`;
    const entry = leaves.get(key) ?? { symbol, dso, count: 0 };
    entry.count++;
    leaves.set(key, entry);
  }
  const pct = (count: number) => Math.round((1000 * count) / n) / 10;
  return {
    samples: mine.length,
    mainThreadPercentOfProcess: Math.round((1000 * mine.length) / (ofProcess.length || 1)) / 10,
    byKind: [...kinds.entries()].sort((a, b) => b[1] - a[1]).map(([kind, count]) => ({ kind, percent: pct(count) })),
    topLeaves: [...leaves.values()]
      .sort((a, b) => b.count - a.count)
      .slice(0, top)
      .map((e) => ({ symbol: e.symbol, dso: e.dso, percent: pct(e.count) })),
  };
}

/** True when `perf record` can sample here (the binary exists and the kernel lets this user use cpu-clock). */
export function perfAvailable(): { ok: boolean; why?: string } {
  const probe = spawnSync('perf', ['record', '-e', 'cpu-clock', '-o', '/dev/null', '--', 'true'], { encoding: 'utf8' });
  if (probe.error) return { ok: false, why: `perf not runnable: ${probe.error.message} (apt-get install linux-perf)` };
  if (probe.status !== 0) return { ok: false, why: `perf record failed: ${(probe.stderr ?? '').trim().split('\n').slice(-2).join(' ')}` };
  return { ok: true };
}

/** Starts sampling the given processes (all their threads, with call chains); stop() ends it and waits for the file. */
export function startPerfRecord(pids: number[], file: string, hz = 499): { stop(): Promise<void> } {
  const child: ChildProcess = spawn('perf', ['record', '-e', 'cpu-clock', '-F', String(hz), '-g', '-p', pids.join(','), '-o', file], { stdio: 'ignore' });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  return {
    async stop() {
      child.kill('SIGINT');
      await Promise.race([exited, new Promise((done) => setTimeout(done, 30_000))]);
    },
  };
}

/** Reads a perf.data file back as samples (symbols from the processes' /tmp/perf-PID.map files). */
export function readPerfData(file: string): PerfSample[] {
  const out = spawnSync('perf', ['script', '-i', file, '-F', 'pid,tid,ip,sym,dso'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (out.status !== 0) throw new Error(`perf script failed: ${(out.stderr ?? '').slice(-300)}`);
  return parsePerfScript(out.stdout);
}
