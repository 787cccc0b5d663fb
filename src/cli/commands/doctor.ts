// `conclave doctor --config F` (owned by the membership feature): checks a federation file's certificates (chain,
// expiry, 30-day warning), this node's TLS and signing keys, mutual-TLS reachability of every peer and the node keys
// peers sign with. Prints one line per finding (or JSON); exits 1 on any error, 2 when the file does not load.
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('doctor')
    .description("check a federation file: certificates' chains and expiry, this node's keys, mTLS reachability of each peer, peers' keys")
    .requiredOption('-c, --config <file>', 'the federation file (federation.yaml)')
    .option('--offline', 'skip the checks that contact peers')
    .option('--timeout-ms <ms>', 'time limit per peer check', (v) => Number.parseInt(v, 10), 5000)
    .option('--json', 'print the report as JSON')
    .action(async (options: { config: string; offline?: boolean; timeoutMs: number; json?: boolean }) => {
      const { loadFederation } = await import('../../config/load.ts');
      const { runDoctor } = await import('../../pki/doctor.ts');
      let config;
      try {
        config = loadFederation(options.config);
      } catch (error) {
        console.error((error as Error).message);
        process.exitCode = 2;
        return;
      }
      const report = await runDoctor(config, { offline: options.offline ?? false, timeoutMs: options.timeoutMs });
      if (options.json) console.log(JSON.stringify(report, null, 2));
      else {
        for (const finding of report.findings) console.log(`${finding.level.toUpperCase().padEnd(5)} ${finding.subject.padEnd(20)} ${finding.message}`);
        console.log(`${report.ok ? 'OK' : 'FAILED'}: ${report.errors} error(s), ${report.warnings} warning(s)`);
      }
      process.exitCode = report.ok ? 0 : 1;
    });
}
