// `conclave admin propose|approve|status`: federation changes signed by org admins (switch a swarm's mode, add or
// remove a member, set its policy). A change is committed through the swarm's log and takes effect once enough orgs
// approved it.
import type { Command } from 'commander';

interface ConnectionOptions {
  key: string;
  node: string;
  ca?: string;
  swarm: string;
}

async function post(options: ConnectionOptions, path: string, body: unknown | null): Promise<{ status: number; json: unknown }> {
  const { readFileSync } = await import('node:fs');
  const { Agent, request } = await import('undici');
  const dispatcher = new Agent({ connect: options.ca ? { ca: readFileSync(options.ca, 'utf8') } : {}, allowH2: true });
  try {
    const response = await request(new URL(path, options.node), {
      method: body === null ? 'GET' : 'POST',
      dispatcher,
      ...(body === null ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
    const text = await response.body.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON: show as it came
    }
    return { status: response.statusCode, json };
  } finally {
    await dispatcher.close();
  }
}

async function loadAdminKey(path: string) {
  const { readFileSync } = await import('node:fs');
  const { importPrivateJwk } = await import('../../crypto/ed25519.ts');
  return importPrivateJwk(JSON.parse(readFileSync(path, 'utf8')));
}

async function submitChange(options: ConnectionOptions, id: string, action: import('../../verdict/proposal.ts').AdminAction): Promise<number> {
  const { adminCommand } = await import('../../verdict/admin.ts');
  const key = await loadAdminKey(options.key);
  const command = adminCommand(key, options.swarm, id, action);
  const answer = await post(options, `/v1/swarms/${encodeURIComponent(options.swarm)}/admin`, command);
  console.log(JSON.stringify(answer.json, null, 2));
  return answer.status < 300 ? 0 : 1;
}

function withConnection(command: Command): Command {
  return command
    .requiredOption('--key <file>', "this org's admin key (admin.jwk written by `conclave init`)")
    .requiredOption('--node <url>', "a node's public API, e.g. https://127.0.0.1:8001")
    .option('--ca <file>', "PEM of the CA that issued that node's TLS certificate")
    .requiredOption('--swarm <id>', 'the swarm to change');
}

/** Sends SIGHUP to the node that runs `configPath` and prints the report it writes; 0 when the reload applied. */
async function reloadNode(configPath: string, timeoutMs: number): Promise<number> {
  const { readFileSync, statSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { loadFederation } = await import('../../config/load.ts');
  const { PID_FILE, RELOAD_REPORT_FILE } = await import('../../node/node.ts');
  const config = loadFederation(configPath);
  const pidPath = join(config.node.dataDir, PID_FILE);
  const reportPath = join(config.node.dataDir, RELOAD_REPORT_FILE);
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(pidPath, 'utf8'), 10);
  } catch {
    console.error(`no running node found: ${pidPath} does not exist (is the node started with this file?)`);
    return 1;
  }
  const before = (() => {
    try {
      return statSync(reportPath).mtimeMs + ':' + readFileSync(reportPath, 'utf8');
    } catch {
      return '';
    }
  })();
  try {
    process.kill(pid, 'SIGHUP');
  } catch (error) {
    console.error(`cannot signal pid ${pid} from ${pidPath}: ${(error as Error).message}`);
    return 1;
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    let now = '';
    try {
      now = statSync(reportPath).mtimeMs + ':' + readFileSync(reportPath, 'utf8');
    } catch {
      continue;
    }
    if (now === before) continue;
    const report = JSON.parse(readFileSync(reportPath, 'utf8')) as { ok: boolean; error: string | null; applied: string[]; drift: Record<string, string[]> };
    console.log(JSON.stringify(report, null, 2));
    return report.ok ? 0 : 1;
  }
  console.error(`the node (pid ${pid}) did not report a reload within ${timeoutMs} ms`);
  return 1;
}

export function register(program: Command): void {
  const admin = program.command('admin').description('federation changes approved by org admins: switch mode, add or remove a member, set the policy');
  const propose = admin.command('propose').description('propose a change, signed with your admin key (it counts as your approval); prints its id');
  withConnection(propose.command('set-mode').description("switch the swarm's consensus protocol at a committed index"))
    .requiredOption('--mode <mode>', 'raft or pbft')
    .option('--id <id>', 'the change id (default: random)')
    .action(async (options: ConnectionOptions & { mode: string; id?: string }) => {
      if (options.mode !== 'raft' && options.mode !== 'pbft') {
        console.error('--mode must be raft or pbft');
        process.exitCode = 2;
        return;
      }
      const { newChangeId } = await import('../../verdict/admin.ts');
      process.exitCode = await submitChange(options, options.id ?? newChangeId(), { kind: 'set-mode', mode: options.mode });
    });
  for (const kind of ['add-member', 'remove-member'] as const) {
    withConnection(propose.command(kind).description(kind === 'add-member' ? 'admit an org (its member card must be in the federation file)' : 'remove an org from the swarm'))
      .requiredOption('--org <org>', 'the org')
      .option('--id <id>', 'the change id (default: random)')
      .action(async (options: ConnectionOptions & { org: string; id?: string }) => {
        const { newChangeId } = await import('../../verdict/admin.ts');
        process.exitCode = await submitChange(options, options.id ?? newChangeId(), { kind, org: options.org });
      });
  }
  withConnection(propose.command('set-policy').description("make the swarm's policy and adminPolicy in your federation file the committed ones (the file alone changes nothing)"))
    .requiredOption('--config <file>', 'the federation file whose swarm entry states the new policy')
    .option('--id <id>', 'the change id (default: random)')
    .action(async (options: ConnectionOptions & { config: string; id?: string }) => {
      const { loadFederation } = await import('../../config/load.ts');
      const { newChangeId } = await import('../../verdict/admin.ts');
      const swarm = loadFederation(options.config).swarms.find((s) => s.id === options.swarm);
      if (!swarm) {
        console.error(`${options.config} lists no swarm ${options.swarm}`);
        process.exitCode = 2;
        return;
      }
      process.exitCode = await submitChange(options, options.id ?? newChangeId(), { kind: 'set-policy', policy: swarm.policy, adminPolicy: swarm.adminPolicy });
    });
  withConnection(admin.command('approve').description('approve a change that another org proposed (fetches it from the node, signs it)').argument('<id>', 'the change id'))
    .action(async (id: string, options: ConnectionOptions) => {
      const current = await post(options, `/v1/swarms/${encodeURIComponent(options.swarm)}/admin/${encodeURIComponent(id)}`, null);
      if (current.status !== 200) {
        console.error(JSON.stringify(current.json, null, 2));
        process.exitCode = 1;
        return;
      }
      const change = current.json as { action: import('../../verdict/proposal.ts').AdminAction };
      process.exitCode = await submitChange(options, id, change.action);
    });
  admin
    .command('reload')
    .description(
      "make this org's running node re-read its federation file (SIGHUP to the pid in <dataDir>/conclave.pid): new peer endpoints, CA certs and keys are applied; differences between the file's swarm members and the committed membership are reported, never applied",
    )
    .requiredOption('-c, --config <file>', 'the federation file the node runs with')
    .option('--timeout-ms <ms>', 'how long to wait for the node to report', (v) => Number.parseInt(v, 10), 10_000)
    .action(async (options: { config: string; timeoutMs: number }) => {
      process.exitCode = await reloadNode(options.config, options.timeoutMs);
    });
  admin
    .command('status')
    .description('where a change stands: approvals so far, how many are needed, applied or refused')
    .argument('<id>', 'the change id')
    .requiredOption('--node <url>', "a node's public API")
    .option('--ca <file>', "PEM of the CA that issued that node's TLS certificate")
    .requiredOption('--swarm <id>', 'the swarm')
    .action(async (id: string, options: Omit<ConnectionOptions, 'key'>) => {
      const answer = await post({ ...options, key: '' }, `/v1/swarms/${encodeURIComponent(options.swarm)}/admin/${encodeURIComponent(id)}`, null);
      console.log(JSON.stringify(answer.json, null, 2));
      process.exitCode = answer.status === 200 ? 0 : 1;
    });
}
