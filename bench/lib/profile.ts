// Owns reading V8 CPU profiles (`node --cpu-prof` .cpuprofile files) for the benchmark report: self time by
// function (top N) and by area (a src/ folder, a node_modules package, node internals, GC, idle).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
}

function area(url: string, name: string): string {
  if (name === '(garbage collector)') return 'gc';
  if (name === '(idle)') return 'idle';
  if (name === '(program)') return 'program (native, outside JS)';
  if (!url) return 'native/builtin';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/');
  const src = /\/src\/([^/]+)\//.exec(url);
  if (src) return `src/${src[1]}`;
  return url.replace(/^file:\/\//, '').split('/').slice(-2).join('/');
}

export interface ProfileSummary {
  file: string;
  seconds: number;
  busyPercent: number;
  topFunctions: { fn: string; at: string; selfPercent: number }[];
  byArea: { area: string; selfPercent: number }[];
}

export function summarizeProfile(file: string, top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const total = profile.nodes.reduce((n, node) => n + (node.hitCount ?? 0), 0) || 1;
  const byFn = new Map<string, { fn: string; at: string; hits: number }>();
  const byArea = new Map<string, number>();
  let idle = 0;
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (!hits) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const fn = functionName || '(anonymous)';
    if (fn === '(idle)') idle += hits;
    // tsx-compiled files report line 0 (no source maps in the profile): then only the file is shown
    const at = url ? `${url.replace(/^file:\/\/.*?\/(src|node_modules)\//, '$1/')}${lineNumber > 0 ? `:${lineNumber + 1}` : ''}` : '';
    const key = `${fn}@${at}`;
    const entry = byFn.get(key) ?? { fn, at, hits: 0 };
    entry.hits += hits;
    byFn.set(key, entry);
    const a = area(url, fn);
    byArea.set(a, (byArea.get(a) ?? 0) + hits);
  }
  const pct = (h: number) => Math.round((h / total) * 1000) / 10;
  return {
    file,
    seconds: Math.round((profile.endTime - profile.startTime) / 1e4) / 100,
    busyPercent: pct(total - idle),
    topFunctions: [...byFn.values()]
      .filter((e) => e.fn !== '(idle)')
      .sort((a, b) => b.hits - a.hits)
      .slice(0, top)
      .map((e) => ({ fn: e.fn, at: e.at, selfPercent: pct(e.hits) })),
    byArea: [...byArea.entries()]
      .filter(([a]) => a !== 'idle')
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([a, hits]) => ({ area: a, selfPercent: pct(hits) })),
  };
}

export function profilesIn(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.cpuprofile'))
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}
