// `conclave init`: creates an org's CA, node TLS cert, node/agent/admin Ed25519 keys and prints its member card.
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('init')
    .description("create an org's CA, node TLS certificate, node/agent/admin keys, and print its member card")
    .requiredOption('--org <org>', 'org id (lowercase letters, digits, dashes)')
    .option('--out <dir>', 'folder to create (must not exist or be empty)', undefined)
    .option('--node <name>', 'node name in the certificate SAN', 'node1')
    .option('--days <n>', 'node certificate validity in days', '365')
    .option('--host <name...>', 'extra DNS names / IP addresses the node is reached at (localhost, 127.0.0.1 are always in)')
    .option('--peer-url <url>', 'peer URL written into the member card')
    .option('--api-url <url>', 'API URL written into the member card')
    .addHelpText(
      'after',
      '\nWrites DIR/{ca.crt, ca.key, node.crt, node.key, node-signing.jwk, agent.jwk, admin.jwk, member-card.yaml};\n' +
        'private keys get mode 0600. The member card (public parts only) is printed on stdout.\n' +
        'Example: conclave init --org acme --out certs/acme --host acme.example.com',
    )
    .action(async (options: { org: string; out?: string; node: string; days: string; host?: string[]; peerUrl?: string; apiUrl?: string }) => {
      const { initOrg, InitError } = await import('../../pki/init.ts');
      const days = Number(options.days);
      try {
        const result = await initOrg({
          org: options.org,
          outDir: options.out ?? `certs/${options.org}`,
          node: options.node,
          days,
          hosts: options.host ?? [],
          ...(options.peerUrl ? { peerUrl: options.peerUrl } : {}),
          ...(options.apiUrl ? { apiUrl: options.apiUrl } : {}),
        });
        process.stderr.write(`created ${result.dir} for org ${result.org} (node ${result.node}); private keys are mode 0600\n`);
        process.stdout.write(result.cardYaml);
      } catch (error) {
        if (error instanceof InitError) {
          process.stderr.write(`conclave init: ${error.message}\n`);
          process.exitCode = 1;
          return;
        }
        throw error;
      }
    });
}
