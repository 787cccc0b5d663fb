// `conclave audit`: verifies an audit export (a file, stdin, or pulled from a node's API) against the federation
// file alone, with progress on stderr, a summary on stdout, and exit 0 only when everything verifies; or, with
// --inclusion / --index, one entry's inclusion bundle (record, proof, signed checkpoint); or, with --since, that the
// node's newest checkpoint extends one seen before (a log monitor).
import type { Command } from 'commander';
import type { FederationConfig } from '../../config/types.ts';

interface AuditCliOptions {
  federation: string;
  url?: string;
  ca?: string;
  swarm?: string;
  from?: string;
  to?: string;
  requireCertificates?: boolean;
  inclusion?: string;
  index?: string;
  since?: string;
  save?: string;
  verdict?: string;
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
    .option('--inclusion <file>', 'verify one entry\'s inclusion bundle instead of an export: the JSON a node answers to GET /v1/swarms/<swarm>/proofs/inclusion?index=N ("-" reads stdin)')
    .option('--index <n>', 'with --url and --swarm: fetch the inclusion bundle of entry n from the node and verify it')
    .option('--verdict <jwsHash>', 'with --inclusion or --url/--swarm: the entry must carry this verdict (SHA-256 hex of its compact JWS); with --url and no --index, the node is asked which entry holds it')
    .option('--since <checkpoint.json>', 'with --url and --swarm: check that the node\'s newest checkpoint extends this one (signatures, then an RFC 9162 consistency proof between the two signed roots)')
    .option('--save <file>', 'with --since: when it verifies, write the node\'s newest checkpoint here (the --since of the next run)')
    .option('--json', 'print the summary as one JSON object')
    .option('--quiet', 'no progress on stderr')
    .addHelpText(
      'after',
      `
Exit status: 0 when everything verifies, 1 when the export does not (the first bad entry and a stable code are
printed, e.g. CHAIN_BROKEN, BAD_AGENT_SIGNATURE, ROOT_MISMATCH, INCONSISTENT_CHECKPOINTS), 2 when the audit could
not run.

With --inclusion or --index it checks that one entry is in the log: the checkpoint's node signatures (members of
the swarm), the record under the checkpoint's Merkle root, and every agent JWS and the proposer's signature in it;
it prints the verdicts the entry carries. With --since it monitors the log: the node's newest checkpoint must be
signed by members and extend the checkpoint you kept (INCONSISTENT_CHECKPOINTS: the log was rewritten, or shown
differently to you before). Same exit status.

Examples:
  conclave audit --federation federation.yaml reviews.jsonl
  conclave audit --federation federation.yaml --url https://node.acme.example:7002 --ca certs/acme/ca.crt --swarm reviews
  conclave audit --federation federation.yaml --url https://node.acme.example:7002 --ca certs/acme/ca.crt --swarm reviews --index 42
  conclave audit --federation federation.yaml --url https://node.acme.example:7002 --ca certs/acme/ca.crt --swarm reviews --since seen.json --save seen.json`,
    )
    .action(async (exportPath: string | undefined, options: AuditCliOptions) => {
      process.exitCode = await runAudit(exportPath, options);
    });
}

async function runAudit(exportPath: string | undefined, options: AuditCliOptions): Promise<number> {
  const { loadFederation } = await import('../../config/load.ts');
  const { verifyExport } = await import('../../audit/verifier.ts');
  const inclusion = options.inclusion !== undefined || options.index !== undefined || options.verdict !== undefined;
  const sources = [exportPath !== undefined, options.url !== undefined, options.inclusion !== undefined].filter(Boolean).length;
  const needsUrl = options.index !== undefined || options.since !== undefined || (options.verdict !== undefined && options.inclusion === undefined);
  if (sources !== 1 || (needsUrl && options.url === undefined) || ((options.index !== undefined || options.verdict !== undefined) && options.since !== undefined) || (options.save !== undefined && options.since === undefined)) {
    console.error('conclave audit: give one of an export file, --url (with --swarm; with --index for one entry, or --since [--save] to monitor) or --inclusion FILE');
    return AUDIT_EXIT.error;
  }
  let federation;
  try {
    federation = loadFederation(options.federation);
  } catch (error) {
    console.error(`conclave audit: ${(error as Error).message}`);
    return AUDIT_EXIT.error;
  }
  if (inclusion) return auditInclusion(federation, options);
  if (options.since !== undefined) return monitor(federation, options);

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

/** GET `path` (with `query`) of the swarm on the node at --url, trusting --ca; anything but a 200 is an error. */
async function fromNode(options: AuditCliOptions, path: string, query: Record<string, string>, accept: string): Promise<{ body: AsyncIterable<Uint8Array> & { text(): Promise<string> }; label: string }> {
  if (!options.swarm) throw new Error('--url needs --swarm');
  const { Agent, request } = await import('undici');
  const { readFile } = await import('node:fs/promises');
  const base = new URL(options.url!);
  const url = new URL(`${base.pathname.replace(/\/$/, '')}/v1/swarms/${encodeURIComponent(options.swarm)}/${path}`, base);
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  const ca = options.ca !== undefined ? await readFile(options.ca, 'utf8') : undefined;
  const dispatcher = new Agent({ connect: ca !== undefined ? { ca } : {}, bodyTimeout: 0 });
  const response = await request(url, { dispatcher, headers: { accept } });
  if (response.statusCode !== 200) {
    const text = (await response.body.text()).slice(0, 500);
    throw new Error(`GET ${url.href} answered ${response.statusCode}: ${text}`);
  }
  return { body: response.body, label: url.href };
}

async function pullExport(options: AuditCliOptions): Promise<{ source: AsyncIterable<Uint8Array>; label: string }> {
  const query: Record<string, string> = {};
  if (options.from !== undefined) query.from = String(parseIndex(options.from, '--from'));
  if (options.to !== undefined) query.to = String(parseIndex(options.to, '--to'));
  const { body, label } = await fromNode(options, 'export', query, 'application/x-ndjson');
  return { source: body, label };
}

/** --inclusion FILE or --url/--swarm/--index: one entry's inclusion bundle, checked and described. */
async function auditInclusion(federation: FederationConfig, options: AuditCliOptions): Promise<number> {
  const { checkInclusionBundle } = await import('../../audit/verifier.ts');
  let text: string;
  let label: string;
  try {
    if (options.verdict !== undefined && !/^[0-9a-f]{64}$/.test(options.verdict)) throw new Error('--verdict takes a jwsHash: 64 lowercase hex digits (SHA-256 of the compact JWS)');
    if (options.url !== undefined) {
      let index = options.index !== undefined ? parseIndex(options.index, '--index') : null;
      if (index === null) {
        const found = await fromNode(options, `verdicts/${options.verdict!}`, {}, 'application/json');
        index = (JSON.parse(await found.body.text()) as { index: number }).index;
      }
      const { body, label: url } = await fromNode(options, 'proofs/inclusion', { index: String(index) }, 'application/json');
      text = await body.text();
      label = url;
    } else if (options.inclusion === '-') {
      const { text: readAll } = await import('node:stream/consumers');
      text = await readAll(process.stdin);
      label = 'stdin';
    } else {
      const { readFile } = await import('node:fs/promises');
      text = await readFile(options.inclusion!, 'utf8');
      label = options.inclusion!;
    }
  } catch (error) {
    console.error(`conclave audit: ${(error as Error).message}`);
    return AUDIT_EXIT.error;
  }
  let bundle: unknown;
  try {
    bundle = JSON.parse(text);
  } catch (error) {
    bundle = undefined;
    console.error(`conclave audit: ${label} is not JSON: ${(error as Error).message}`);
  }
  let check = checkInclusionBundle(bundle, federation); // not JSON: MALFORMED_BUNDLE
  if (check.ok && options.verdict !== undefined && !check.entry?.verdicts?.some((v) => v.jwsHash === options.verdict)) {
    check = { ...check, ok: false, failure: { code: 'VERDICT_NOT_IN_ENTRY', index: check.index, line: null, message: `entry ${check.index} does not carry the verdict ${options.verdict}` } };
  }
  if (options.json) {
    console.log(JSON.stringify({ ...check, source: label }));
  } else {
    console.log(`inclusion of ${check.index !== null ? `entry ${check.index}` : 'an entry'} of swarm ${check.swarm ?? '?'} (${label})`);
    if (check.size !== null) console.log(`  tree                 size ${check.size}, root ${check.root}`);
    if (check.signers.length) console.log(`  checkpoint signed by ${check.signers.join(', ')}${check.certificate ? ' (a pbft commit certificate)' : ''}`);
    const entry = check.entry;
    if (entry?.kind === 'verdicts') {
      console.log(`  entry                ${entry.verdicts!.length} verdict(s) proposed by ${entry.proposer}:`);
      for (const v of entry.verdicts!) console.log(`    ${v.verdict} ${v.subject} by ${v.org}/${v.agent} (jwsHash ${v.jwsHash})`);
    } else if (entry?.kind === 'admin') {
      console.log(`  entry                admin command ${entry.action} (its approvals are judged by a full audit)`);
    } else if (entry) {
      console.log(`  entry                ${entry.kind}`);
    }
    if (check.failure) console.log(`FAILED: ${check.failure.code}: ${check.failure.message}`);
    else console.log(`OK: the entry${options.verdict !== undefined ? ', with verdict ' + options.verdict + ',' : ''} is in the log under a checkpoint signed by member nodes`);
  }
  return check.ok ? AUDIT_EXIT.ok : AUDIT_EXIT.failed;
}

function parseIndex(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${flag} must be an integer >= 1, got ${JSON.stringify(text)}`);
  return n;
}

/** --since: the node's newest checkpoint extends the one kept from before; --save keeps the new one when it does. */
async function monitor(federation: FederationConfig, options: AuditCliOptions): Promise<number> {
  const { checkCheckpointConsistency } = await import('../../audit/verifier.ts');
  const { readFile, writeFile, rename } = await import('node:fs/promises');
  let older: { size?: unknown; root?: unknown };
  let newer: { size?: unknown; root?: unknown } | undefined;
  let proof: unknown;
  let label: string;
  try {
    const kept = JSON.parse(await readFile(options.since!, 'utf8')) as { checkpoint?: unknown; checkpoints?: unknown[] } & Record<string, unknown>;
    // A bare checkpoint, an inclusion bundle ({checkpoint}) or a checkpoints page ({checkpoints: [...]}, the newest).
    older = (kept.checkpoint ?? (Array.isArray(kept.checkpoints) ? kept.checkpoints.at(-1) : kept)) as typeof older;
    const page = await fromNode(options, 'checkpoints', { limit: '1' }, 'application/json');
    label = page.label;
    newer = (JSON.parse(await page.body.text()) as { checkpoints: (typeof older)[] }).checkpoints[0];
    if (!newer) throw new Error(`${page.label}: the node has no checkpoint yet`);
    if (typeof older?.size !== 'number' || typeof newer.size !== 'number') throw new Error(`${options.since} holds no checkpoint (a JSON object with size and root)`);
    if (newer.size < older.size) throw new Error(`the node's newest checkpoint (size ${newer.size}) is older than yours (size ${older.size}): it is behind; ask another member`);
    const answer = await fromNode(options, 'proofs/consistency', { from: String(older.size), to: String(newer.size) }, 'application/json');
    proof = (JSON.parse(await answer.body.text()) as { proof?: unknown }).proof;
  } catch (error) {
    console.error(`conclave audit: ${(error as Error).message}`);
    return AUDIT_EXIT.error;
  }
  const check = checkCheckpointConsistency(older, newer, proof, federation, { requireCertificates: options.requireCertificates === true });
  if (check.ok && options.save !== undefined) {
    const temp = `${options.save}.tmp`;
    await writeFile(temp, `${JSON.stringify(newer)}\n`);
    await rename(temp, options.save);
  }
  if (options.json) {
    console.log(JSON.stringify({ ...check, source: label, saved: check.ok ? (options.save ?? null) : null }));
  } else {
    console.log(`monitor of swarm ${options.swarm} (${label})`);
    if (check.older) console.log(`  kept checkpoint      size ${check.older.size}, root ${check.older.root}, signed by ${check.older.signers.join(', ')}`);
    if (check.newer) console.log(`  newest checkpoint    size ${check.newer.size}, root ${check.newer.root}, signed by ${check.newer.signers.join(', ')}${check.newer.certificate ? ' (a pbft commit certificate)' : ''}`);
    if (check.failure) console.log(`FAILED: ${check.failure.code}: ${check.failure.message}`);
    else console.log(`OK: the newest checkpoint extends the kept one${options.save !== undefined ? ` (saved to ${options.save})` : ''}`);
  }
  return check.ok ? AUDIT_EXIT.ok : AUDIT_EXIT.failed;
}
