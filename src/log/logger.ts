// The process logger: pino JSON lines by default (for log shippers), pino-pretty when a person reads a terminal.
import { pino, type Logger, type LevelWithSilent } from 'pino';
import pretty from 'pino-pretty';

export type { Logger } from 'pino';

export interface LoggerOptions {
  /** Human-readable, colorized lines instead of JSON (the `--pretty` flag). */
  pretty?: boolean;
  /** Default `info`, or LOG_LEVEL from the environment. */
  level?: LevelWithSilent;
  /** Fields on every line, e.g. {org: 'acme'}. */
  base?: Record<string, unknown>;
  /** Where lines go (default stdout); tests pass a stream to capture them. */
  destination?: NodeJS.WritableStream;
}

const LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function levelFromEnv(): LevelWithSilent | undefined {
  const value = process.env.LOG_LEVEL;
  return value && (LEVELS as readonly string[]).includes(value) ? (value as LevelWithSilent) : undefined;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const settings = {
    level: options.level ?? levelFromEnv() ?? 'info',
    base: { pid: process.pid, ...options.base },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (options.pretty) {
    // Synchronous stream, no worker thread: lines appear in order with the process's own output.
    const stream = pretty({
      colorize: options.destination === undefined && Boolean(process.stdout.isTTY),
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname',
      sync: true,
      ...(options.destination ? { destination: options.destination } : {}),
    });
    return pino(settings, stream);
  }
  return options.destination ? pino(settings, options.destination) : pino(settings);
}
