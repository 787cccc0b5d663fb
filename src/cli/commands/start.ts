// `conclave start --config federation.yaml`: runs this org's node until SIGTERM or SIGINT, then stops cleanly.
import { setFlagsFromString } from 'node:v8';
import { InvalidArgumentError, type Command } from 'commander';

/** How long a clean stop may take after SIGTERM / SIGINT before the process exits anyway. */
const STOP_DEADLINE_MS = 15_000;

/**
 * The old generation may grow to (1 + this/100) x the live heap before a full collection. V8's adaptive default lets
 * a busy node hold ~2-3x its live heap: measured (`npm run bench -- --only memory --verdicts 150000`, raft-3, 64 in
 * flight) a live heap of 47 MB in a 135 MB heap, RSS 333-401 MB per node at 150k verdicts; with 25: heap used 55-66
 * MB, RSS 269-284 MB, and 691 verdicts/s instead of 620 (more frequent but smaller collections, and buffers freed
 * sooner: the malloc heap fell from ~122 to ~61 MB). Read by V8 at every limit computation, so setting it at start works.
 */
export const DEFAULT_HEAP_GROWING_PERCENT = 25;

export function parseHeapGrowingPercent(value: string): number {
  const percent = /^\d{1,4}$/.test(value) ? Number(value) : Number.NaN;
  if (!(percent >= 0 && percent <= 1000)) {
    throw new InvalidArgumentError(`--heap-growing-percent must be an integer from 0 (V8's adaptive default) to 1000, got ${value}`);
  }
  return percent;
}

export function register(program: Command): void {
  program
    .command('start')
    .description("run this org's node: peer port (mutual TLS, HTTP/2) and public API, every swarm it is a member of")
    .requiredOption('-c, --config <file>', 'the federation file (federation.yaml)')
    .option('--pretty', 'human-readable logs instead of JSON lines')
    .option('--tick-ms <ms>', 'milliseconds per Raft tick (election timeout is 10-20 ticks)', (v) => Number.parseInt(v, 10))
    .option('--no-relay', "neither relay verdicts to the Raft leader or PBFT primary nor take relayed ones (rolling upgrade from a version without relaying)")
    .option(
      '--heap-growing-percent <n>',
      "V8 old-generation growth before a full GC, in % of the live heap (0 = V8's adaptive default; lower = smaller RSS)",
      parseHeapGrowingPercent,
      DEFAULT_HEAP_GROWING_PERCENT,
    )
    .action(async (options: { config: string; pretty?: boolean; tickMs?: number; relay: boolean; heapGrowingPercent: number }) => {
      if (options.heapGrowingPercent > 0) setFlagsFromString(`--heap-growing-percent=${options.heapGrowingPercent}`);
      const { createLogger } = await import('../../log/logger.ts');
      const { ConclaveNode } = await import('../../node/node.ts');
      const { FederationError } = await import('../../config/errors.ts');
      const logger = createLogger({ pretty: options.pretty ?? false });
      let node;
      try {
        node = new ConclaveNode({ configPath: options.config, logger, ...(options.tickMs ? { tickMs: options.tickMs } : {}), ...(options.relay ? {} : { relayVerdicts: false }) });
      } catch (error) {
        if (error instanceof FederationError) {
          console.error(error.message);
          process.exit(2);
        }
        throw error;
      }
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'stopping');
        // A stop that hangs (a peer that never answers, a stuck disk) must not keep the process: everything
        // acknowledged is already synced, so exiting loses nothing.
        setTimeout(() => {
          logger.error({ signal, afterMs: STOP_DEADLINE_MS }, 'stopping took too long; exiting now');
          process.exit(1);
        }, STOP_DEADLINE_MS).unref();
        await node.stop();
        process.exit(0);
      };
      // A rejection nobody handled (seen from undici on an HTTP/2 GOAWAY) must not take the node down: log it loudly.
      process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled promise rejection'));
      process.on('SIGTERM', () => void stop('SIGTERM'));
      process.on('SIGINT', () => void stop('SIGINT'));
      // Re-read the federation file (conclave admin reload sends this): keys, CAs, endpoints; membership drift reported.
      process.on('SIGHUP', () => {
        if (!stopping) node.reload();
      });
      try {
        await node.start();
      } catch (error) {
        logger.fatal({ err: error }, 'node failed to start');
        await node.stop().catch(() => undefined);
        process.exit(1);
      }
    });
}
