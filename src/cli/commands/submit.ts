// `conclave submit`: signs a verdict with an agent key (verdict/agent.ts) and posts it to a node's public API over
// TLS trusting the org's CA; prints the node's JSON answer.
import type { Command } from 'commander';

interface SubmitOptions {
  key: string;
  ca?: string;
  node: string;
  swarm: string;
  subject: string;
  verdict: string;
  reason: string;
  org?: string;
  agent?: string;
  iat?: string;
  nonce?: string;
  wait: boolean;
}

export function register(program: Command): void {
  program
    .command('submit')
    .description('sign a verdict with an agent key and submit it to a node; prints the committed entry (or the error) as JSON')
    .requiredOption('--key <file>', 'agent private key, a JWK file (agent.jwk written by `conclave init`)')
    .option('--ca <file>', "PEM of the CA that issued the node's TLS certificate (the org CA); default: the system CAs")
    .requiredOption('--node <url>', "the node's public API, e.g. https://node.acme.example:8443")
    .requiredOption('--swarm <id>', 'swarm id')
    .requiredOption('--subject <subject>', 'what the verdict is about, e.g. github.com/acme/widget/pull/42@9f1c2e')
    .requiredOption('--verdict <value>', "a value allowed by the swarm's policy, e.g. approve")
    .option('--reason <text>', 'why (at most 4096 UTF-8 bytes)', '')
    .option('--org <org>', 'org the agent speaks for (default: the "org" member of the JWK file)')
    .option('--agent <name>', 'agent name (default: the "agent" member of the JWK file, else "conclave-cli")')
    .option('--iat <seconds>', 'issue time, unix seconds (default: now)')
    .option('--nonce <nonce>', 'nonce, 16-64 base64url characters (default: random); reuse it with --iat to resubmit the same verdict')
    .option('--no-wait', 'answer as soon as the node accepted the verdict, before it is committed')
    .action(async (options: SubmitOptions) => {
      process.exitCode = await submit(options);
    });
}

async function submit(options: SubmitOptions): Promise<number> {
  const { readFileSync } = await import('node:fs');
  const { Agent, fetch } = await import('undici');
  const { signVerdict, submitVerdict } = await import('../../verdict/agent.ts');
  const { VerdictError } = await import('../../verdict/format.ts');
  const fail = (code: string, message: string): number => {
    console.error(JSON.stringify({ code, message }));
    return 2;
  };

  let jwk: Record<string, unknown>;
  try {
    jwk = JSON.parse(readFileSync(options.key, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    return fail('BAD_KEY_FILE', `cannot read the JWK in ${options.key}: ${(error as Error).message}`);
  }
  const org = options.org ?? (typeof jwk.org === 'string' ? jwk.org : undefined);
  if (!org) return fail('ORG_REQUIRED', `${options.key} names no org: pass --org`);
  const agent = options.agent ?? (typeof jwk.agent === 'string' ? jwk.agent : 'conclave-cli');
  let iat: number | undefined;
  if (options.iat !== undefined) {
    iat = Number(options.iat);
    if (!Number.isSafeInteger(iat)) return fail('BAD_IAT', '--iat must be an integer number of unix seconds');
  }

  let jws: string;
  try {
    jws = await signVerdict({
      privateJwk: jwk as never,
      swarm: options.swarm,
      subject: options.subject,
      org,
      agent,
      verdict: options.verdict,
      reason: options.reason,
      iat,
      nonce: options.nonce,
    });
  } catch (error) {
    if (error instanceof VerdictError) return fail(error.code, error.message);
    return fail('BAD_KEY_FILE', (error as Error).message);
  }

  let ca: string | undefined;
  if (options.ca) {
    try {
      ca = readFileSync(options.ca, 'utf8');
    } catch (error) {
      return fail('BAD_CA_FILE', `cannot read ${options.ca}: ${(error as Error).message}`);
    }
  }
  const dispatcher = new Agent({ connect: ca ? { ca } : {}, allowH2: true });
  try {
    const result = await submitVerdict({
      nodeUrl: options.node,
      swarm: options.swarm,
      jws,
      wait: options.wait,
      fetch: fetch as never,
      dispatcher,
    });
    console.log(JSON.stringify(result.body, null, 2));
    return result.ok ? 0 : 1;
  } catch (error) {
    const cause = (error as { cause?: { message?: string } }).cause;
    return fail('UNREACHABLE', `cannot reach ${options.node}: ${cause?.message ?? (error as Error).message}`);
  } finally {
    await dispatcher.close();
  }
}
