// The `conclave` command line: builds the commander program from every module in cli/commands/.
// Each command module exports `register(program)` and imports its heavy dependencies lazily inside its action,
// so `conclave --help` stays fast.
import { Command } from 'commander';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface CommandModule {
  register(program: Command): void;
}

async function buildProgram(): Promise<Command> {
  const program = new Command();
  program
    .name('conclave')
    .description('Conclave: a federated consensus node for AI-agent swarms (Raft and PBFT over mutual-TLS HTTP/2)')
    .version('0.1.0')
    .showHelpAfterError();
  const commandsDir = join(dirname(fileURLToPath(import.meta.url)), 'commands');
  const files = readdirSync(commandsDir)
    .filter((name) => name.endsWith('.ts') && !name.endsWith('.d.ts'))
    .sort();
  for (const file of files) {
    const module = (await import(pathToFileURL(join(commandsDir, file)).href)) as Partial<CommandModule>;
    if (typeof module.register === 'function') module.register(program);
  }
  return program;
}

const program = await buildProgram();
await program.parseAsync(process.argv);
