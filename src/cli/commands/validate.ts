// `conclave validate`: checks a federation file and prints OK or every problem (path: what to do), exit 1 if any.
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('validate')
    .description('check a federation file; prints OK or every problem with its path and a fix')
    .requiredOption('-c, --config <file>', 'federation file (YAML)')
    .option('--json', 'print the result as JSON ({ok, problems} or the loaded configuration summary)')
    .action(async (options: { config: string; json?: boolean }) => {
      const { loadFederation, FederationError } = await import('../../config/load.ts');
      try {
        const config = loadFederation(options.config);
        const summary = {
          ok: true,
          federation: config.federation,
          node: { org: config.node.org, name: config.node.name ?? null },
          members: config.members.map((member) => member.org),
          swarms: config.swarms.map((swarm) => ({ id: swarm.id, mode: swarm.mode, members: swarm.members })),
        };
        if (options.json) console.log(JSON.stringify(summary));
        else
          console.log(
            `OK ${config.sourcePath}: federation ${config.federation}, node ${config.node.org}/${config.node.name ?? '?'}, ` +
              `${config.members.length} members, swarms ${config.swarms.map((s) => `${s.id} (${s.mode}, ${s.members.length} orgs)`).join(', ') || 'none'}`,
          );
      } catch (error) {
        if (!(error instanceof FederationError)) throw error;
        if (options.json) console.log(JSON.stringify({ ok: false, file: error.file, problems: error.problems }));
        else console.error(error.message);
        process.exitCode = 1;
      }
    });
}
