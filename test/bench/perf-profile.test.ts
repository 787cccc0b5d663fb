// The perf-based profile of `bench --profile --perf` (bench/lib/perf-profile.ts): `perf script` output parsed into
// samples and summarised per process main thread by leaf frame — kinds (JIT tiers, V8 builtins, crypto, kernel...)
// and the top leaf symbols. Runs on a fixed text: perf itself is not needed for this test.
import { describe, expect, it } from 'vitest';
import { leafKind, parsePerfScript, summarizeThread } from '../../bench/lib/perf-profile.ts';

const SCRIPT = [
  '100/100 ',
  '\t         1d2627 fe_mul (/usr/bin/node)',
  '\t         1d4664 ge_double_scalarmult_vartime (/usr/bin/node)',
  '',
  '100/100 ',
  '\t    7f01a2b3c4 JS:*parseVerdictJws file:///work/main/src/verdict/format.ts:1:8788 (/tmp/perf-100.map)',
  '\t    7f01a2b3d5 JS:^submitVerdict file:///work/main/src/swarm/verdict-swarm.ts:1:16760 (/tmp/perf-100.map)',
  '',
  '100/100 ',
  '\t    7f01a2b3e6 JS:^submitVerdict file:///work/main/src/swarm/verdict-swarm.ts:1:16760 (/tmp/perf-100.map)',
  '',
  '100/100 ',
  '\t         a3f36f Builtins_LoadIC (/usr/bin/node)',
  '',
  '100/107 ',
  '\tffffffff8225fd65 pvm_irq_enable ([kernel.kallsyms])',
  '\t         a44de1 non-virtual thunk to node::crypto::DeriveBitsJob<node::crypto::SignTraits>::DoThreadPoolWork() (/usr/bin/node)',
  '',
  '200/200 ',
  '\t         5f00aa rocksdb::MemTable::Add(unsigned long, rocksdb::ValueType) (/work/main/node_modules/@nxtedition/rocksdb/prebuilds/linux-x64/@nxtedition+rocksdb.node)',
  '',
].join('\n');

describe('perf script summary', () => {
  it('parses samples with pid, tid and frames (symbols with spaces and parentheses included)', () => {
    const samples = parsePerfScript(SCRIPT);
    expect(samples).toHaveLength(6);
    expect(samples[0]).toEqual({ pid: 100, tid: 100, frames: [{ symbol: 'fe_mul', dso: '/usr/bin/node' }, { symbol: 'ge_double_scalarmult_vartime', dso: '/usr/bin/node' }] });
    expect(samples[4]!.tid).toBe(107);
    expect(samples[4]!.frames[1]!.symbol).toBe('non-virtual thunk to node::crypto::DeriveBitsJob<node::crypto::SignTraits>::DoThreadPoolWork()');
    expect(samples[5]!.frames[0]!.symbol).toBe('rocksdb::MemTable::Add(unsigned long, rocksdb::ValueType)');
  });

  it('classifies leaf frames by kind of code', () => {
    expect(leafKind({ symbol: 'JS:*parseVerdictJws file:///x.ts:1:2', dso: '/tmp/perf-1.map' })).toBe('js-optimized');
    expect(leafKind({ symbol: 'JS:^submitVerdict file:///x.ts:1:2', dso: '/tmp/perf-1.map' })).toBe('js-baseline');
    expect(leafKind({ symbol: 'JS:~load node:internal/x:1:2', dso: '/tmp/perf-1.map' })).toBe('js-interpreted');
    expect(leafKind({ symbol: 'Builtins_LoadIC', dso: '/usr/bin/node' })).toBe('v8-builtins');
    expect(leafKind({ symbol: 'fe_mul', dso: '/usr/bin/node' })).toBe('crypto (Ed25519, SHA)');
    expect(leafKind({ symbol: 'pvm_irq_enable', dso: '[kernel.kallsyms]' })).toBe('kernel');
    expect(leafKind({ symbol: 'rocksdb::MemTable::Add(unsigned long)', dso: '/x/@nxtedition+rocksdb.node' })).toBe('rocksdb');
    expect(leafKind({ symbol: '__memmove_avx512_unaligned_erms', dso: '/usr/lib/x86_64-linux-gnu/libc.so.6' })).toBe('libc (memcpy, malloc, syscalls)');
  });

  it('summarises the main thread of one process: its share, kinds and top leaves, other processes left out', () => {
    const summary = summarizeThread(parsePerfScript(SCRIPT), 100);
    expect(summary.samples).toBe(4);
    expect(summary.mainThreadPercentOfProcess).toBe(80);
    const byKind = (list: { kind: string; percent: number }[]) => [...list].sort((a, b) => a.kind.localeCompare(b.kind));
    expect(byKind(summary.byKind)).toEqual(
      byKind([
        { kind: 'js-baseline', percent: 25 },
        { kind: 'crypto (Ed25519, SHA)', percent: 25 },
        { kind: 'js-optimized', percent: 25 },
        { kind: 'v8-builtins', percent: 25 },
      ]),
    );
    expect(summary.topLeaves[0]).toMatchObject({ percent: 25 });
    expect(summary.topLeaves.map((l) => l.symbol)).toContain('JS:*parseVerdictJws src/verdict/format.ts:1:8788');
    expect(summary.topLeaves.every((l) => !l.symbol.startsWith('rocksdb'))).toBe(true);
  });
});
