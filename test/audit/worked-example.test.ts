// Keeps docs/audit-format.md honest: its worked example must be exactly what the code produces, and must verify.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { verifyExport } from '../../src/audit/verifier.ts';
import { leafHash, nodeHash } from '../../src/audit/merkle.ts';
import { recordLeaf } from '../../src/audit/chain.ts';
import { fromHex, toHex } from '../../src/crypto/encoding.ts';
import { buildWorkedExample, describeWorkedExample } from './worked-example.ts';
import { streamOf } from './fixtures.ts';

const doc = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'audit-format.md');

describe('docs/audit-format.md worked example', () => {
  it('is exactly what the code produces (regenerate with npx tsx test/audit/worked-example.ts)', async () => {
    const text = readFileSync(doc, 'utf8');
    const section = /<!-- worked-example:begin -->\n([\s\S]*)\n<!-- worked-example:end -->/.exec(text);
    expect(section, 'worked-example markers in docs/audit-format.md').not.toBeNull();
    expect(section![1]).toBe(describeWorkedExample(await buildWorkedExample()));
  });

  it('follows the definitions by hand and verifies end to end', async () => {
    const ex = await buildWorkedExample();
    const [l1, l2, l3] = ex.records.map((r) => leafHash(recordLeaf(r)));
    expect(ex.roots[1]).toBe(toHex(nodeHash(l1!, l2!)));
    expect(ex.roots[2]).toBe(toHex(nodeHash(nodeHash(l1!, l2!), l3!)));
    expect(ex.inclusion).toEqual([toHex(l1!), toHex(l3!)]);
    expect(ex.consistency).toEqual([toHex(l3!)]);
    expect(fromHex(ex.roots[2]!).length).toBe(32);
    const summary = await verifyExport(streamOf(ex.lines), { federation: ex.federation });
    expect(summary.failure).toBeNull();
    expect(summary).toMatchObject({ entries: 3, decisions: 1, decisionsCompared: 1, checkpoints: 2, consistencyProofs: 1 });
  });
});
