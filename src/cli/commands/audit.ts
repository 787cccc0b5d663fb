// `conclave audit`: verifies an audit export (a file, stdin, or pulled from a node's API) against the federation
// file alone, with progress on stderr, a summary on stdout, and exit 0 only when everything verifies.
import type { Command } from 'commander';

interface AuditCliOptions {
  federation: string;
  url?: string;
  ca?: string;
  swarm?: string;
  from?: string;
  to?: string;
  requireCertificates?: boolean;
  json?: boolean;
  quiet?: boolean;
}

/** Exit codes: 0 verified, 1 the export does not verify, 2 the audit could not run (usage, file, network). */
export const AUDIT_EXIT = { ok: 0, failed: 1, error: 2 } as const;

export function register(program: Command): void {
  program
    .command('audit')
    .description(
      'verify an audit export offline: hash chain, every agent JWS and node proposal signature, Merkle roots against signed checkpoints, checkpoint consistency, and every decision recomputed from the verdicts',
    )
    .argument('[export]', 'JSON Lines export file (docs/audit-format.md); "-" reads stdin')
    .requiredOption('--federation <file>', 'the federation file (federation.yaml): the only thing trusted')
    .option('--url <url>', "pull the export from a node's public API: GET <url>/v1/swarms/<swarm>/export")
    .option('--ca <file>', 'PEM CA certificate(s) to trust for --url (e.g. the org\'s ca.crt)')
    .option('--swarm <id>', 'the swarm to pull with --url')
    .option('--from <index>', 'with --url: first index to export (default 1; decisions are recomputed only from 1)')
    .option('--to <index>', 'with --url: last index to export (default: the latest)')
    .option('--require-certificates', 'pbft checkpoints must carry a PBFT quorum of member signatures (a commit certificate)')
    .option('--json', 'print the summary as one JSON object')
    .option('--quiet', 'no progress on stderr')
    .addHelpText(
      'after',
      `
Exit status: 0 when everything verifies, 1 when the export does not (the first bad entry and a stable code are
printed, e.g. CHAIN_BROKEN, BAD_AGENT_SIGNATURE, ROOT_MISMATCH, INCONSISTENT_CHECKPOINTS), 2 when the audit could
not run.

Examples:
  conclave audit --federation federation.yaml reviews.jsonl
  conclave audit --federation federation.yaml --url https://node.acme.example:7002 --ca certs/acme/ca.crt --swarm reviews`,
    )
    .action(async (exportPath: string | undefined, options: AuditCliOptions) => {
      process.exitCode = await runAudit(exportPath, options);
    });
}

async function runAudit(exportPath: string | undefined, options: AuditCliOptions): Promise<number> {
  const { loadFederation } = await import('../../config/load.ts');
  const { verifyExport } = await import('../../audit/verifier.ts');
  if ((exportPath === undefined) === (options.url === undefined)) {
    console.error('conclave audit: give either an export file or --url (with --swarm), not both');
    return AUDIT_EXIT.error;
  }
  let federation;
  try {
    federation = loadFederation(options.federation);
  } catch (error) {
    console.error(`conclave audit: ${(error as Error).message}`);
    return AUDIT_EXIT.error;
  }

  let source: AsyncIterable<Uint8Array | string>;
  let label: string;
  try {
    if (options.url !== undefined) {
      ({ source, label } = await pullExport(options));
    } else if (exportPath === '-') {
      source = process.stdin;
      label = 'stdin';
    } else {
      const { createReadStream } = await import('node:fs');
      const { access } = await import('node:fs/promises');
      await access(exportPath!);
      source = createReadStream(exportPath!);
      label = exportPath!;
    }
  } catch (error) {
    console.error(`conclave audit: ${(error as Error).message}`);
    return AUDIT_EXIT.error;
  }

  const started = performance.now();
  let lastPrint = started;
  const progress = (p: { entries: number; lastIndex: number; to: number | null }): void => {
    const now = performance.now();
    if (p.entries % 10_000 !== 0 && now - lastPrint < 1000) return;
    lastPrint = now;
    const rate = Math.round(p.entries / ((now - started) / 1000));
    const of = p.to !== null ? ` of ${p.to}` : '';
    process.stderr.write(`audit: entry ${p.lastIndex}${of} — ${p.entries} verified, ${rate} entries/s\n`);
  };

  let summary;
  try {
    summary = await verifyExport(source, {
      federation,
      requireCertificates: options.requireCertificates === true,
      progressEvery: 1000,
      ...(options.quiet ? {} : { onProgress: progress }),
    });
  } catch (error) {
    console.error(`conclave audit: reading ${label} failed: ${(error as Error).message}`);
    return AUDIT_EXIT.error;
  }
  const seconds = (performance.now() - started) / 1000;

  if (options.json) {
    console.log(JSON.stringify({ ...summary, source: label, seconds: Number(seconds.toFixed(3)) }));
  } else {
    const range = summary.from !== null ? ` entries ${summary.from}..${summary.to}` : '';
    console.log(`audit of ${label}: federation ${summary.federation ?? '?'}, swarm ${summary.swarm ?? '?'}${range}`);
    console.log(`  entries verified     ${summary.entries} (${summary.verdicts} verdicts, ${summary.rejectedVerdicts} refused by the policy when applied)`);
    console.log(`  subjects             ${summary.decisionsRecomputed ? summary.subjects : 'not recomputed (the export starts after index 1)'}`);
    console.log(`  decisions            ${summary.decisions} recomputed, ${summary.decisionsCompared} compared with the export`);
    console.log(`  checkpoints verified ${summary.checkpoints} (${summary.certificates} pbft commit certificates), ${summary.consistencyProofs} consistency proofs`);
    if (summary.root) console.log(`  Merkle root          ${summary.root}`);
    console.log(`  time                 ${seconds.toFixed(2)} s`);
    if (summary.failure) {
      const f = summary.failure;
      const where = f.index !== null ? `entry ${f.index}` : 'export';
      console.log(`FAILED at ${where}: ${f.code}: ${f.message}`);
    } else {
      console.log('OK: everything verifies');
    }
  }
  return summary.ok ? AUDIT_EXIT.ok : AUDIT_EXIT.failed;
}

async function pullExport(options: AuditCliOptions): Promise<{ source: AsyncIterable<Uint8Array>; label: string }> {
  if (!options.swarm) throw new Error('--url needs --swarm');
  const { Agent, request } = await import('undici');
  const { readFile } = await import('node:fs/promises');
  const base = new URL(options.url!);
  const url = new URL(`${base.pathname.replace(/\/$/, '')}/v1/swarms/${encodeURIComponent(options.swarm)}/export`, base);
  if (options.from !== undefined) url.searchParams.set('from', String(parseIndex(options.from, '--from')));
  if (options.to !== undefined) url.searchParams.set('to', String(parseIndex(options.to, '--to')));
  const ca = options.ca !== undefined ? await readFile(options.ca, 'utf8') : undefined;
  const dispatcher = new Agent({ connect: ca !== undefined ? { ca } : {}, bodyTimeout: 0 });
  const response = await request(url, { dispatcher, headers: { accept: 'application/x-ndjson' } });
  if (response.statusCode !== 200) {
    const text = (await response.body.text()).slice(0, 500);
    throw new Error(`GET ${url.href} answered ${response.statusCode}: ${text}`);
  }
  return { source: response.body, label: url.href };
}

function parseIndex(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${flag} must be an integer >= 1, got ${JSON.stringify(text)}`);
  return n;
}
