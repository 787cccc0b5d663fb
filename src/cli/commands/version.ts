// `conclave version`: prints the node version and runtime, for bug reports.
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('version')
    .description('print the Conclave version, Node.js version and platform')
    .action(() => {
      console.log(JSON.stringify({ conclave: '0.1.0', node: process.version, platform: `${process.platform}-${process.arch}` }));
    });
}
