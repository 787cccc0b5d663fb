// The public REST API (fastify over TLS, HTTP/2 with HTTP/1.1 fallback): verdicts, subjects, the log, proofs,
// exports, status, health and metrics. Every route declares its schemas; every error is {code, message}.
import { Readable } from 'node:stream';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { ApiError, sendError } from './errors.ts';
import { buildOpenApi, collectRoutes } from './openapi.ts';
import type { NodeService, SwarmService } from '../swarm/service.ts';
import { validateCommand } from '../verdict/proposal.ts';

export interface ApiServerOptions {
  node: NodeService;
  tls: { key: string; cert: string } | null;
  logger: Logger | false;
  /** Upper bound on a request body: a verdict JWS is at most 16 KiB. */
  bodyLimit?: number;
  /** How long a POST waits for its verdict to commit before answering 504 (the verdict may still commit). */
  commitTimeoutMs?: number;
}

const errorSchema = {
  type: 'object',
  description: 'an error',
  properties: { code: { type: 'string' }, message: { type: 'string' }, status: { type: 'integer' } },
  required: ['code', 'message'],
};

const voteSchema = {
  type: 'object',
  properties: {
    org: { type: 'string' },
    agent: { type: 'string' },
    verdict: { type: 'string' },
    reason: { type: 'string' },
    iat: { type: 'integer' },
    index: { type: 'integer' },
    jwsHash: { type: 'string' },
  },
};

const subjectSchema = {
  type: ['object', 'null'],
  properties: {
    swarm: { type: 'string' },
    subject: { type: 'string' },
    votes: { type: 'array', items: voteSchema },
    decision: {
      type: ['object', 'null'],
      properties: { value: { type: 'string' }, index: { type: 'integer' }, votes: { type: 'integer' } },
    },
  },
};

const submitResultSchema = {
  type: 'object',
  description: 'the verdict and where it stands',
  properties: {
    status: { type: 'string', enum: ['accepted', 'committed', 'duplicate', 'decided-already', 'rejected'] },
    swarm: { type: 'string' },
    jwsHash: { type: 'string' },
    index: { type: ['integer', 'null'] },
    entryHash: { type: ['string', 'null'] },
    subject: subjectSchema,
    reason: { type: 'string' },
    replies: { type: 'integer' },
  },
};

/** How long a consistent read waits for its barrier before answering 503. */
const CONSISTENT_READ_TIMEOUT_MS = 5000;

const swarmParams = { type: 'object', properties: { swarm: { type: 'string', maxLength: 64 } }, required: ['swarm'] };

function swarmOf(node: NodeService, id: string): SwarmService {
  const swarm = node.swarm(id);
  if (!swarm) throw new ApiError(404, 'UNKNOWN_SWARM', `swarm ${JSON.stringify(id)} is not hosted by this node (hosted: ${node.swarmIds().join(', ') || 'none'})`);
  return swarm;
}

export async function createApiServer(options: ApiServerOptions): Promise<FastifyInstance> {
  const { node } = options;
  const commitTimeoutMs = options.commitTimeoutMs ?? 30_000;
  // Fastify's own request logging writes two info lines per request, synchronously, on the event loop: at hundreds
  // of verdicts per second that is a measurable share of a node's CPU and of its disk. One debug line per answered
  // request instead (LOG_LEVEL=debug); failures (5xx) are logged at error by sendError.
  const common = { ...(options.logger ? { loggerInstance: options.logger } : {}), bodyLimit: options.bodyLimit ?? 64 * 1024, logController: new LogController({ disableRequestLogging: true }) };
  const app = (options.tls
    ? // Idle client sessions stay open 10 minutes (a GOAWAY on idle trips undici clients); shutdown closes them at once.
    Fastify({ http2: true, http2SessionTimeout: 600_000, forceCloseConnections: true, https: { allowHTTP1: true, key: options.tls.key, cert: options.tls.cert }, ...common } as any)
    : Fastify(common)) as unknown as FastifyInstance;
  const logger = options.logger;
  if (logger) {
    app.addHook('onResponse', async (request, reply) => {
      if (logger.isLevelEnabled('debug')) {
        request.log.debug({ method: request.method, url: request.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 }, 'request answered');
      }
    });
  }
  const routes = collectRoutes(app);

  app.setErrorHandler((error, request, reply) => sendError(request, reply, error));
  app.setNotFoundHandler((request, reply) =>
    sendError(request, reply, new ApiError(404, 'NOT_FOUND', `no route ${request.method} ${request.url}; see /docs`)),
  );
  // A bare compact JWS may be posted as application/jose, as RFC 7515 registers it.
  app.addContentTypeParser(['application/jose', 'text/plain'], { parseAs: 'string' }, (_request, body, done) => {
    done(null, { jws: String(body).trim() });
  });

  app.post(
    '/v1/swarms/:swarm/verdicts',
    {
      schema: {
        summary: 'submit a signed verdict (compact JWS)',
        description: 'Answers once the verdict is committed and applied on this node, or on acceptance with ?wait=false.',
        tags: ['verdicts'],
        params: swarmParams,
        querystring: { type: 'object', properties: { wait: { type: 'boolean', default: true } } },
        body: { type: 'object', properties: { jws: { type: 'string', minLength: 1, maxLength: 16384 } }, required: ['jws'], additionalProperties: false },
        response: { 200: submitResultSchema, 202: submitResultSchema, '4xx': errorSchema, '5xx': errorSchema },
      },
    },
    async (request, reply) => {
      const { swarm: swarmId } = request.params as { swarm: string };
      const { wait } = request.query as { wait: boolean };
      const { jws } = request.body as { jws: string };
      const result = await swarmOf(node, swarmId).submitVerdict(jws, { wait, timeoutMs: commitTimeoutMs });
      return reply.code(result.status === 'accepted' ? 202 : 200).send(result);
    },
  );

  app.get(
    '/v1/swarms/:swarm/verdicts/:jwsHash',
    {
      schema: {
        summary: 'where a verdict is: its log entry (index, entry hash) and its subject now, by jwsHash',
        description:
          'jwsHash is the SHA-256 (lowercase hex) of the compact JWS, as the submit answer gives it. 404 VERDICT_NOT_FOUND ' +
          'for a verdict this node has not applied (refused ones are never recorded). The index is what ' +
          '/proofs/inclusion takes. With consistent=true the node first applies everything committed before the request ' +
          '(as for subjects): a 404 then means the verdict was not committed when asked.',
        tags: ['verdicts'],
        params: {
          type: 'object',
          properties: { swarm: swarmParams.properties.swarm, jwsHash: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
          required: ['swarm', 'jwsHash'],
        },
        querystring: { type: 'object', properties: { consistent: { type: 'boolean', default: false } } },
        response: { 200: submitResultSchema, '4xx': errorSchema, '5xx': errorSchema },
      },
    },
    async (request) => {
      const { swarm, jwsHash } = request.params as { swarm: string; jwsHash: string };
      const { consistent } = request.query as { consistent: boolean };
      const target = swarmOf(node, swarm);
      if (consistent) await target.readBarrier(Math.min(commitTimeoutMs, CONSISTENT_READ_TIMEOUT_MS));
      return target.verdict(jwsHash);
    },
  );

  app.post(
    '/v1/swarms/:swarm/admin',
    {
      schema: {
        summary: 'submit an admin change (switch mode, add or remove a member, set the policy) with one or more admin approvals',
        description:
          'Body: a log command {v:1, type:"admin", swarm, id, action, approvals:[JWS]}. Approvals of one id accumulate across ' +
          'submissions; the change takes effect once the swarm admin policy is met. Only approvals that verify here are ' +
          'proposed, each named with its org (approvers; a client-sent list is replaced). Answers with where the change stands.',
        tags: ['admin'],
        params: swarmParams,
        body: { type: 'object', required: ['v', 'type', 'swarm', 'id', 'action', 'approvals'] },
      },
    },
    async (request) => {
      const { swarm: swarmId } = request.params as { swarm: string };
      const swarm = swarmOf(node, swarmId);
      // The kind first: a verdicts or noop command here is a wrong route, not a malformed admin command.
      const type = (request.body as { type?: unknown }).type;
      if (type !== 'admin') throw new ApiError(400, 'NOT_AN_ADMIN_COMMAND', `this route takes admin commands only (type "admin"), not ${JSON.stringify(type)}; verdicts go to POST /v1/swarms/${swarmId}/verdicts`);
      const command = validateCommand(request.body);
      if (command.type !== 'admin') throw new ApiError(400, 'NOT_AN_ADMIN_COMMAND', 'this route takes admin commands only');
      return swarm.submitAdmin(command, commitTimeoutMs);
    },
  );

  app.get(
    '/v1/swarms/:swarm/admin/:id',
    {
      schema: {
        summary: 'where an admin change stands: pending (with approvals so far and how many are needed), applied or refused',
        tags: ['admin'],
        params: { type: 'object', properties: { swarm: { type: 'string' }, id: { type: 'string' } }, required: ['swarm', 'id'] },
      },
    },
    async (request) => {
      const { swarm: swarmId, id } = request.params as { swarm: string; id: string };
      const change = swarmOf(node, swarmId).adminChange(id);
      if (!change) throw new ApiError(404, 'UNKNOWN_CHANGE', `no admin change ${JSON.stringify(id)} was committed in swarm ${swarmId}`);
      return change;
    },
  );

  app.get(
    '/v1/swarms/:swarm/subjects/*',
    {
      schema: {
        summary: "a subject's verdicts so far and its decision, if any",
        description:
          'As this node has applied the log. With consistent=true, a linearizable read: the node first applies everything ' +
          'committed before the request (raft ReadIndex: the leader confirms its quorum; pbft: the read indexes of 2f+1 ' +
          'replicas); 503 NO_QUORUM when too few answer in time (a node cut off), 503 NOT_APPLIED when this node does not ' +
          'apply that far in time.',
        tags: ['verdicts'],
        params: { type: 'object', properties: { swarm: { type: 'string' }, '*': { type: 'string' } }, required: ['swarm'] },
        querystring: { type: 'object', properties: { consistent: { type: 'boolean', default: false } } },
        response: { 200: subjectSchema, '4xx': errorSchema, '5xx': errorSchema },
      },
    },
    async (request) => {
      const params = request.params as { swarm: string; '*': string };
      const { consistent } = request.query as { consistent: boolean };
      const subjectId = params['*'];
      const swarm = swarmOf(node, params.swarm);
      if (!subjectId) throw new ApiError(400, 'INVALID_REQUEST', 'name a subject: /v1/swarms/{swarm}/subjects/{subject}');
      if (consistent) await swarm.readBarrier(Math.min(commitTimeoutMs, CONSISTENT_READ_TIMEOUT_MS));
      const subject = swarm.subject(subjectId);
      if (!subject) throw new ApiError(404, 'UNKNOWN_SUBJECT', `no verdict on subject ${JSON.stringify(subjectId)} in swarm ${params.swarm} yet`);
      return subject;
    },
  );

  app.get(
    '/v1/swarms/:swarm/log',
    {
      schema: {
        summary: 'committed log entries, oldest first',
        tags: ['log'],
        params: swarmParams,
        querystring: {
          type: 'object',
          properties: { from: { type: 'integer', minimum: 1, default: 1 }, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
        },
      },
    },
    async (request) => {
      const { swarm } = request.params as { swarm: string };
      const { from, limit } = request.query as { from: number; limit: number };
      return { swarm, entries: await swarmOf(node, swarm).log(from, limit) };
    },
  );

  app.get(
    '/v1/swarms/:swarm/checkpoints',
    {
      schema: {
        summary: 'signed checkpoints (tree size, root, node signatures), ascending by size',
        description:
          'Without `from`: the newest `limit` checkpoints. With `from`: those of size >= from, at most `limit`; ' +
          '`next` is the `from` of the following page (null at the end).',
        tags: ['audit'],
        params: swarmParams,
        querystring: {
          type: 'object',
          properties: { from: { type: 'integer', minimum: 0 }, limit: { type: 'integer', minimum: 1, maximum: 10000, default: 1000 } },
        },
      },
    },
    async (request) => {
      const { swarm } = request.params as { swarm: string };
      const { from, limit } = request.query as { from?: number; limit: number };
      const checkpoints = await swarmOf(node, swarm).checkpoints(from === undefined ? { limit } : { from, limit });
      const next = from !== undefined && checkpoints.length === limit ? checkpoints.at(-1)!.size + 1 : null;
      return { swarm, checkpoints, next };
    },
  );

  app.get(
    '/v1/swarms/:swarm/proofs/inclusion',
    {
      schema: {
        summary: 'RFC 6962 inclusion proof of one entry in the tree of a given size (default: latest checkpoint)',
        description:
          'Without `size`: under the latest signed checkpoint, so the answer (record, proof, checkpoint) is a bundle that ' +
          '`conclave audit --inclusion` verifies offline; 409 NOT_YET_CHECKPOINTED for an entry newer than it (retry after ' +
          'the next checkpoint). With `size`: the proof in that tree, and `checkpoint` only if one was signed at that size.',
        tags: ['audit'],
        params: swarmParams,
        querystring: { type: 'object', properties: { index: { type: 'integer', minimum: 1 }, size: { type: 'integer', minimum: 1 } }, required: ['index'] },
      },
    },
    async (request) => {
      const { swarm } = request.params as { swarm: string };
      const { index, size } = request.query as { index: number; size?: number };
      return swarmOf(node, swarm).inclusionProof(index, size ?? null);
    },
  );

  app.get(
    '/v1/swarms/:swarm/proofs/consistency',
    {
      schema: {
        summary: 'RFC 6962 consistency proof between two tree sizes',
        tags: ['audit'],
        params: swarmParams,
        querystring: { type: 'object', properties: { from: { type: 'integer', minimum: 0 }, to: { type: 'integer', minimum: 0 } }, required: ['from', 'to'] },
      },
    },
    async (request) => {
      const { swarm } = request.params as { swarm: string };
      const { from, to } = request.query as { from: number; to: number };
      return swarmOf(node, swarm).consistencyProof(from, to);
    },
  );

  app.get(
    '/v1/swarms/:swarm/export',
    {
      schema: {
        summary: 'the log (or a range) as JSON Lines with its checkpoints: everything `conclave audit` needs',
        tags: ['audit'],
        params: swarmParams,
        querystring: { type: 'object', properties: { from: { type: 'integer', minimum: 1, default: 1 }, to: { type: 'integer', minimum: 1 } } },
      },
    },
    async (request, reply) => {
      const { swarm: swarmId } = request.params as { swarm: string };
      const { from, to } = request.query as { from: number; to?: number };
      const swarm = swarmOf(node, swarmId);
      const lines = swarm.exportLines(from, to ?? null);
      async function* stream(): AsyncGenerator<string> {
        for await (const line of lines) yield `${line}\n`;
      }
      return reply.type('application/x-ndjson').send(Readable.from(stream()));
    },
  );

  app.get(
    '/v1/swarms/:swarm/status',
    { schema: { summary: "this node's view of one swarm", tags: ['status'], params: swarmParams } },
    async (request) => swarmOf(node, (request.params as { swarm: string }).swarm).status(),
  );

  app.get('/v1/status', { schema: { summary: 'this node: org, swarms with role, term, leader, indexes, peers', tags: ['status'] } }, async () => ({
    org: node.org,
    federation: node.federation,
    swarms: node.swarmIds().map((id) => node.swarm(id)!.status()),
    peers: node.peerHealth(),
  }));

  app.get('/healthz', { schema: { summary: 'the process is up', tags: ['status'] } }, async () => ({ ok: true }));
  app.get('/readyz', { schema: { summary: 'every swarm knows a leader / primary and storage is open', tags: ['status'] } }, async (_request, reply) => {
    const ready = node.ready();
    return reply.code(ready ? 200 : 503).send({ ready });
  });
  app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['status'] } }, async (_request, reply) =>
    reply.type(node.metricsContentType).send(await node.metricsText()),
  );
  let openApi: Record<string, unknown> | null = null;
  const docs = async () => (openApi ??= buildOpenApi(routes, { title: 'Conclave node API', version: '1' }));
  app.get('/docs', { schema: { hide: true } }, docs);
  app.get('/docs/openapi.json', { schema: { hide: true } }, docs);
  return app;
}
