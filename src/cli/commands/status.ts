// `conclave status --node URL --ca CA`: a node's view of its swarms (mode, role, term/view, leader, indexes) and of
// its peers (circuit state), as a table or as JSON.
import type { Command } from 'commander';

interface StatusOptions {
  node: string;
  ca?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('status')
    .description("a node's view of its swarms (mode, role, term or view, leader, commit and applied index) and of its peers")
    .requiredOption('--node <url>', "the node's public API, e.g. https://127.0.0.1:8001")
    .option('--ca <file>', "PEM of the CA that issued the node's TLS certificate (the org CA)")
    .option('--json', 'print the raw JSON answer')
    .action(async (options: StatusOptions) => {
      const { readFileSync } = await import('node:fs');
      const { Agent, request } = await import('undici');
      const dispatcher = new Agent({ connect: options.ca ? { ca: readFileSync(options.ca, 'utf8') } : {}, allowH2: true });
      try {
        const response = await request(new URL('/v1/status', options.node), { dispatcher });
        const body = (await response.body.json()) as {
          org: string;
          federation: string;
          swarms: { swarm: string; mode: string; role: string; term: number; leader: string | null; commitIndex: number; appliedIndex: number; members: string[] }[];
          peers: { org: string; state: string; consecutiveFailures: number }[];
        };
        if (options.json) {
          console.log(JSON.stringify(body, null, 2));
          return;
        }
        console.log(`node of ${body.org} in federation ${body.federation}`);
        console.log(`  ${'swarm'.padEnd(16)} ${'mode'.padEnd(5)} ${'role'.padEnd(10)} ${'term'.padEnd(6)} ${'leader'.padEnd(12)} ${'commit'.padEnd(8)} applied  members`);
        for (const s of body.swarms) {
          console.log(`  ${s.swarm.padEnd(16)} ${s.mode.padEnd(5)} ${s.role.padEnd(10)} ${String(s.term).padEnd(6)} ${String(s.leader ?? '-').padEnd(12)} ${String(s.commitIndex).padEnd(8)} ${String(s.appliedIndex).padEnd(8)} ${s.members.join(',')}`);
        }
        for (const p of body.peers) console.log(`  peer ${p.org.padEnd(12)} link ${p.state}${p.consecutiveFailures ? ` (${p.consecutiveFailures} failures)` : ''}`);
      } catch (error) {
        console.error(`cannot read ${options.node}/v1/status: ${(error as Error).message}`);
        process.exitCode = 2;
      } finally {
        await dispatcher.close();
      }
    });
}
