// Owns `conclave dev-cluster up | down | restart | kill | status`: a local cluster of real node processes for
// development, scripts and tests, described by DIR/cluster.json (the library is src/devcluster/cluster.ts).
import type { Command } from 'commander';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`expected a positive whole number, got ${value}`);
  return n;
}

async function run(action: () => Promise<void>): Promise<void> {
  const { closeClients } = await import('../../devcluster/cluster.ts');
  try {
    await action();
  } catch (error) {
    console.error(`conclave dev-cluster: ${(error as Error).message}`);
    process.exitCode = 1;
  } finally {
    await closeClients();
  }
}

export function register(program: Command): void {
  const devCluster = program
    .command('dev-cluster')
    .description('a local cluster of real node processes on loopback (mutual TLS, RocksDB) for development and tests')
    .addHelpText(
      'after',
      `
DIR/cluster.json describes the running cluster for scripts:
  {"mode", "swarm", "nodes": [{"org", "pid", "peerUrl", "apiUrl", "dataDir", "orgDir", "federationFile"}]}
orgDir is the org's \`conclave init\` output (ca.crt to trust its API, agent.jwk to sign verdicts); node logs are in
DIR/logs/<org>.log.

Examples:
  conclave dev-cluster up --orgs 3 --mode raft --dir /tmp/cc
  conclave dev-cluster status --dir /tmp/cc
  conclave dev-cluster kill --dir /tmp/cc --org globex
  conclave dev-cluster restart --dir /tmp/cc --org globex
  conclave dev-cluster down --dir /tmp/cc`,
    );

  devCluster
    .command('up')
    .description('create N orgs (keys, certs, federation files) in DIR, start one node each, wait until all are ready')
    .option('--orgs <n>', 'how many orgs (acme, globex, initech, umbrella, ...)', positiveInt, 3)
    .option('--mode <mode>', 'consensus mode of the swarm: raft or pbft (pbft needs at least 4 orgs)', 'raft')
    .requiredOption('--dir <dir>', 'a new or empty folder for everything')
    .option('--swarm <id>', 'swarm id', 'reviews')
    .option('--tick-ms <ms>', 'milliseconds per Raft tick for every node', positiveInt)
    .option('--timeout <seconds>', 'how long to wait for every node to be ready', positiveInt, 120)
    .option('--json', 'print cluster.json instead of a table')
    .action(async (options: { orgs: number; mode: string; dir: string; swarm: string; tickMs?: number; timeout: number; json?: boolean }) =>
      run(async () => {
        const { upCluster } = await import('../../devcluster/cluster.ts');
        if (options.mode !== 'raft' && options.mode !== 'pbft') throw new Error(`--mode must be raft or pbft, got ${options.mode}`);
        const info = await upCluster({
          orgs: options.orgs,
          mode: options.mode,
          dir: options.dir,
          swarm: options.swarm,
          ...(options.tickMs === undefined ? {} : { tickMs: options.tickMs }),
          readyTimeoutMs: options.timeout * 1000,
          stopOnExit: false,
          onProgress: options.json ? undefined : (line) => console.log(line),
        });
        if (options.json) {
          console.log(JSON.stringify(info, null, 2));
          return;
        }
        console.log(`cluster up: ${info.nodes.length} nodes, swarm ${info.swarm} (${info.mode})`);
        for (const node of info.nodes) console.log(`  ${node.org.padEnd(10)} pid ${String(node.pid).padEnd(7)} api ${node.apiUrl}  peer ${node.peerUrl}`);
        console.log(`described in ${options.dir}/cluster.json; stop with: conclave dev-cluster down --dir ${options.dir}`);
      }),
    );

  devCluster
    .command('down')
    .description('stop every node of the cluster (SIGTERM, then SIGKILL after --timeout)')
    .requiredOption('--dir <dir>', 'the cluster folder')
    .option('--timeout <seconds>', 'how long each node gets to stop cleanly', positiveInt, 30)
    .action(async (options: { dir: string; timeout: number }) =>
      run(async () => {
        const { downCluster } = await import('../../devcluster/cluster.ts');
        const { killed } = await downCluster(options.dir, { timeoutMs: options.timeout * 1000 });
        console.log(killed.length ? `cluster down (SIGKILL needed for: ${killed.join(', ')})` : 'cluster down');
      }),
    );

  devCluster
    .command('restart')
    .description("start one org's node again (after it was killed) with its data; waits until /healthz answers")
    .requiredOption('--dir <dir>', 'the cluster folder')
    .requiredOption('--org <org>', 'the org whose node to start')
    .option('--ready', 'also wait until the node knows a leader (/readyz)')
    .option('--timeout <seconds>', 'how long to wait', positiveInt, 120)
    .action(async (options: { dir: string; org: string; ready?: boolean; timeout: number }) =>
      run(async () => {
        const { restartNode } = await import('../../devcluster/cluster.ts');
        const node = await restartNode(options.dir, options.org, { timeoutMs: options.timeout * 1000, stopOnExit: false, waitReady: options.ready === true });
        console.log(`${node.org} restarted: pid ${node.pid}, api ${node.apiUrl}`);
      }),
    );

  devCluster
    .command('kill')
    .description("send a signal to one org's node (default SIGKILL; SIGSTOP / SIGCONT pause and resume it)")
    .requiredOption('--dir <dir>', 'the cluster folder')
    .requiredOption('--org <org>', 'the org whose node to signal')
    .option('--signal <signal>', 'SIGKILL, SIGTERM, SIGSTOP or SIGCONT', 'SIGKILL')
    .action(async (options: { dir: string; org: string; signal: string }) =>
      run(async () => {
        const { killNode } = await import('../../devcluster/cluster.ts');
        const sig = options.signal.toUpperCase().startsWith('SIG') ? options.signal.toUpperCase() : `SIG${options.signal.toUpperCase()}`;
        if (!['SIGKILL', 'SIGTERM', 'SIGSTOP', 'SIGCONT'].includes(sig)) throw new Error(`--signal must be SIGKILL, SIGTERM, SIGSTOP or SIGCONT, got ${options.signal}`);
        await killNode(options.dir, options.org, sig as NodeJS.Signals);
        console.log(`${options.org}: ${sig} sent`);
      }),
    );

  devCluster
    .command('status')
    .description('every node: process, role, term, leader, commit index')
    .requiredOption('--dir <dir>', 'the cluster folder')
    .option('--json', 'print the statuses as JSON')
    .action(async (options: { dir: string; json?: boolean }) =>
      run(async () => {
        const { clusterStatus, readCluster } = await import('../../devcluster/cluster.ts');
        const info = readCluster(options.dir);
        const statuses = await clusterStatus(options.dir);
        if (options.json) {
          console.log(JSON.stringify({ mode: info.mode, swarm: info.swarm, nodes: statuses }, null, 2));
          return;
        }
        console.log(`swarm ${info.swarm} (${info.mode}), ${info.nodes.length} nodes`);
        console.log(`  ${'org'.padEnd(10)} ${'pid'.padEnd(7)} ${'process'.padEnd(8)} ${'role'.padEnd(10)} ${'term'.padEnd(5)} ${'leader'.padEnd(10)} ${'commit'.padEnd(7)} api`);
        for (const s of statuses) {
          const swarm = (s.status?.swarms as any[] | undefined)?.find((w) => w.swarm === info.swarm);
          const cell = (v: unknown, width: number) => String(v ?? '-').padEnd(width);
          console.log(
            `  ${cell(s.org, 10)} ${cell(s.pid, 7)} ${cell(s.running ? 'running' : 'stopped', 8)} ${cell(swarm?.role, 10)} ${cell(swarm?.term, 5)} ${cell(swarm?.leader, 10)} ${cell(swarm?.commitIndex, 7)} ${s.apiUrl}${s.running && s.error ? `  (${s.error})` : ''}`,
          );
        }
        if (statuses.some((s) => !s.running)) process.exitCode = 3;
      }),
    );
}
