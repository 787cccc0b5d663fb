// `npm run sim -- --core raft|pbft ...`: dispatches to the deterministic simulator of one consensus core.
const argv = process.argv.slice(2);
const coreIndex = argv.indexOf('--core');
const core = coreIndex >= 0 ? argv[coreIndex + 1] : 'raft';
const rest = coreIndex >= 0 ? [...argv.slice(0, coreIndex), ...argv.slice(coreIndex + 2)] : argv;

if (core !== 'raft' && core !== 'pbft') {
  console.error(`unknown --core ${String(core)}: use raft or pbft`);
  process.exit(2);
}
const simulator = core === 'raft' ? await import('./raft/main.ts') : await import('./pbft/main.ts');
process.exitCode = await simulator.main(rest);
