// Owns `conclave demo` (`npm run demo`): three orgs' keys and certs in a temp folder, three real node processes
// over loopback mutual TLS, one signed verdict per org on a sample pull request, the decision as every node
// reports it, the exported log verified by `conclave audit`, and a clean stop (or --keep to leave it running).
import type { Command } from 'commander';

export const DEMO_ORGS = ['acme', 'globex', 'initech'] as const;
export const DEMO_SWARM = 'reviews';
export const DEMO_SUBJECT = 'github.com/acme/widget/pull/42@9f1c2e';
/** Two approve, one asks for changes: the majority decides `approve`. */
export const DEMO_VERDICTS: Record<(typeof DEMO_ORGS)[number], { verdict: string; reason: string }> = {
  acme: { verdict: 'approve', reason: 'tests pass; the change is small and well covered' },
  globex: { verdict: 'request-changes', reason: 'please add a migration note to the changelog' },
  initech: { verdict: 'approve', reason: 'no security-relevant change found' },
};

interface DemoOptions {
  keep?: boolean;
  dir?: string;
  tickMs?: number;
}

export function register(program: Command): void {
  program
    .command('demo')
    .description('run a whole local federation: 3 orgs, 3 node processes, signed verdicts, the decision on every node, the offline audit')
    .option('--keep', 'leave the nodes running at the end and print their URLs')
    .option('--dir <dir>', 'a new or empty folder to work in (default: a fresh temporary folder, removed at the end)')
    .option('--tick-ms <ms>', 'milliseconds per Raft tick', (v) => Number.parseInt(v, 10))
    .action(async (options: DemoOptions) => {
      process.exitCode = await runDemo(options);
    });
}

async function runDemo(options: DemoOptions): Promise<number> {
  const { mkdtempSync, readFileSync, rmSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join, resolve } = await import('node:path');
  const { spawn } = await import('node:child_process');
  const cluster = await import('../../devcluster/cluster.ts');
  const { signVerdict } = await import('../../verdict/agent.ts');

  const started = performance.now();
  const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;
  const say = (line: string) => console.log(`[${elapsed().padStart(6)}] ${line}`);
  const ownDir = options.dir === undefined;
  const dir = resolve(options.dir ?? mkdtempSync(join(tmpdir(), 'conclave-demo-')));
  const clusterDir = ownDir ? join(dir, 'cluster') : dir;
  let up = false;

  // Ctrl-C stops the nodes rather than orphaning them.
  const onSignal = () => {
    cluster.stopAll();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    console.log(`Conclave demo: 3 orgs (${DEMO_ORGS.join(', ')}), one raft swarm "${DEMO_SWARM}", working in ${dir}`);
    const info = await cluster.upCluster({
      orgs: [...DEMO_ORGS],
      mode: 'raft',
      dir: clusterDir,
      swarm: DEMO_SWARM,
      // All three orgs must speak, and the majority of their verdicts decides.
      policy: { values: ['approve', 'request-changes', 'reject'], quorum: 'all', rule: 'majority' },
      ...(options.tickMs ? { tickMs: options.tickMs } : {}),
      readyTimeoutMs: 120_000,
      stopOnExit: !options.keep,
      onProgress: say,
    });
    up = true;
    const leader = await cluster.waitFor(() => cluster.currentLeader(clusterDir), { timeoutMs: 60_000, what: 'a leader a majority of nodes agree on' });
    say(`all ${info.nodes.length} nodes ready over mutual-TLS HTTP/2; ${leader} leads swarm ${DEMO_SWARM}`);

    say(`each org's agent signs a verdict on ${DEMO_SUBJECT} and submits it to its own org's node`);
    for (const node of info.nodes) {
      const org = node.org as (typeof DEMO_ORGS)[number];
      const jwk = JSON.parse(readFileSync(join(node.orgDir, 'agent.jwk'), 'utf8'));
      const { verdict, reason } = DEMO_VERDICTS[org];
      const jws = await signVerdict({ privateJwk: jwk, swarm: DEMO_SWARM, subject: DEMO_SUBJECT, org, agent: `${org}-review-bot`, verdict, reason });
      // The same signed verdict may be posted again after a transient failure (a leader change on a loaded
      // machine): the swarm commits it once and answers `duplicate` to the repeat.
      const body = await cluster.waitFor(
        async () => {
          const response = await cluster.apiFetch(node, `/v1/swarms/${DEMO_SWARM}/verdicts`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ jws }),
            timeoutMs: 60_000,
          });
          const answer = (await response.json()) as any;
          if (response.status === 200 && (answer.status === 'committed' || answer.status === 'duplicate')) return answer;
          const message = `HTTP ${response.status} ${JSON.stringify(answer)}`;
          if (response.status >= 500) throw new Error(message); // transient: try again
          throw new cluster.StopWaiting(`${org}'s verdict was not committed: ${message}`);
        },
        { timeoutMs: 90_000, what: `${org}'s verdict to be committed`, intervalMs: 1000 },
      );
      const votes = body.subject?.votes?.length ?? '?';
      const decided = body.subject?.decision ? `, decision: ${body.subject.decision.value}` : '';
      say(`  ${org.padEnd(8)} ${verdict.padEnd(16)} → ${org}'s node: committed at index ${body.index} (${votes}/3 votes${decided})`);
    }

    const views = await cluster.waitFor(
      async () => {
        const all = await Promise.all(info.nodes.map((node) => cluster.apiJson(node, `/v1/swarms/${DEMO_SWARM}/subjects/${DEMO_SUBJECT}`)));
        return all.every((view) => view.decision) ? all : null;
      },
      { timeoutMs: 60_000, what: 'every node to report the decision' },
    );
    say(`the decision on ${DEMO_SUBJECT}, as each node reports it:`);
    console.log(`    ${'node'.padEnd(9)} ${'decision'.padEnd(10)} ${'at index'.padEnd(9)} votes`);
    for (const [i, node] of info.nodes.entries()) {
      const view = views[i];
      const votes = (view.votes as { org: string; verdict: string }[]).map((v) => `${v.org}=${v.verdict}`).join(' ');
      console.log(`    ${node.org.padEnd(9)} ${String(view.decision.value).padEnd(10)} ${String(view.decision.index).padEnd(9)} ${votes}`);
    }
    const distinct = new Set(views.map((view) => JSON.stringify(view.decision)));
    if (distinct.size !== 1) throw new Error(`the nodes disagree on the decision: ${[...distinct].join(' vs ')}`);
    if (views[0].decision.value !== 'approve') throw new Error(`expected the majority to decide approve, got ${views[0].decision.value}`);
    say(`all ${info.nodes.length} nodes agree: ${views[0].decision.value}`);

    const exporter = info.nodes[0]!;
    // The leader checkpoints the grown log within seconds and every node co-signs the same root.
    const applied = (await cluster.apiJson(exporter, `/v1/swarms/${DEMO_SWARM}/status`)).appliedIndex as number;
    const checkpoint = await cluster.waitFor(
      async () => {
        const list = (await cluster.apiJson(exporter, `/v1/swarms/${DEMO_SWARM}/checkpoints`)).checkpoints as { size: number; signatures: { org: string }[] }[];
        return list.find((cp) => cp.size >= applied && cp.signatures.length === info.nodes.length) ?? null;
      },
      { timeoutMs: 60_000, what: 'a checkpoint of the log signed by every node' },
    );
    say(`checkpoint of the log at size ${checkpoint.size}, signed by ${checkpoint.signatures.map((sig) => sig.org).join(', ')}`);
    const exportFile = join(dir, `${DEMO_SWARM}-export.jsonl`);
    const exportResponse = await cluster.apiFetch(exporter, `/v1/swarms/${DEMO_SWARM}/export`);
    const exportText = await exportResponse.text();
    if (exportResponse.status !== 200) throw new Error(`export from ${exporter.org} answered ${exportResponse.status}: ${exportText.slice(0, 300)}`);
    writeFileSync(exportFile, exportText);
    const lines = exportText.split('\n').filter((line) => line.trim()).length;
    say(`exported the log from ${exporter.org}'s node: ${lines} lines → ${exportFile}`);

    say(`auditing it offline with only ${exporter.org}'s federation file: conclave audit --federation ${exporter.federationFile} ${exportFile}`);
    const audit = await runChild(spawn, cluster.CONCLAVE_BIN, ['audit', '--quiet', '--federation', exporter.federationFile, exportFile]);
    for (const line of audit.stdout.trimEnd().split('\n')) console.log(`    ${line}`);
    if (audit.stderr.trim()) for (const line of audit.stderr.trimEnd().split('\n')) console.log(`    ${line}`);
    if (audit.code !== 0) throw new Error(`conclave audit exited with ${audit.code}`);
    say('the audit verifies');

    if (options.keep) {
      console.log('');
      console.log('The nodes keep running:');
      for (const node of info.nodes) console.log(`  ${node.org.padEnd(8)} ${node.apiUrl}   (trust ${join(node.orgDir, 'ca.crt')})`);
      console.log(`  e.g. curl --cacert ${join(info.nodes[0]!.orgDir, 'ca.crt')} ${info.nodes[0]!.apiUrl}/v1/status`);
      console.log(`Stop them with: npx conclave dev-cluster down --dir ${clusterDir}`);
      return 0;
    }
    say('stopping the nodes');
    const { killed } = await cluster.downCluster(clusterDir);
    up = false;
    if (killed.length) throw new Error(`nodes did not stop cleanly on SIGTERM: ${killed.join(', ')}`);
    if (ownDir) rmSync(dir, { recursive: true, force: true });
    say(`done in ${elapsed()}`);
    return 0;
  } catch (error) {
    console.error(`demo failed: ${(error as Error).message}`);
    if (up) {
      await cluster.downCluster(clusterDir, { timeoutMs: 10_000 }).catch(() => cluster.stopAll());
    }
    console.error(`(files and node logs kept in ${dir})`);
    return 1;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await cluster.closeClients();
  }
}

function runChild(
  spawn: typeof import('node:child_process').spawn,
  bin: string,
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}
