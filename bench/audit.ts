// Benchmark of the offline auditor: builds an export of 100,000+ real entries (agent JWS verdicts in node-signed
// proposals, checkpoints, decisions, consistency proofs) and times verifyExport over it. Prints JSON; no assertion.
import { verifyExport } from '../src/audit/verifier.ts';
import { buildLog, exportText, makeFederation, streamOf } from '../test/audit/fixtures.ts';

const entries = Number(process.env.AUDIT_BENCH_ENTRIES ?? 100_000);
const batch = Number(process.env.AUDIT_BENCH_BATCH ?? 1);

const buildStarted = performance.now();
const fed = makeFederation(['acme', 'globex', 'initech', 'umbrella'], 'raft');
const built = buildLog(fed, { entries, checkpointEvery: 1000, batch });
const lines = await exportText(built, { withProofs: true });
const buildSeconds = (performance.now() - buildStarted) / 1000;
const bytes = lines.reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);

const started = performance.now();
const summary = await verifyExport(streamOf(lines, 64 * 1024), { federation: fed.config });
const seconds = (performance.now() - started) / 1000;
if (!summary.ok) {
  console.error(JSON.stringify(summary.failure));
  process.exitCode = 1;
}
console.log(
  JSON.stringify({
    bench: 'audit',
    entries: summary.entries,
    verdicts: summary.verdicts,
    checkpoints: summary.checkpoints,
    decisions: summary.decisions,
    exportBytes: bytes,
    ok: summary.ok,
    seconds: Number(seconds.toFixed(3)),
    entriesPerSecond: Math.round(summary.entries / seconds),
    verdictsPerSecond: Math.round(summary.verdicts / seconds),
    buildSeconds: Number(buildSeconds.toFixed(3)),
  }),
);
