// The public API's error shape: a stable `code`, an HTTP status and a message a person can act on.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface CodedError {
  code: string;
  status: number;
  message: string;
}

function isCoded(error: unknown): error is CodedError {
  const e = error as Partial<CodedError> | null;
  return !!e && typeof e.code === 'string' && typeof e.status === 'number' && e.status >= 400 && e.status < 600;
}

/** Fastify's own codes, renamed to ours so clients never depend on the framework. */
const FASTIFY_CODES: Record<string, { status: number; code: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'BODY_TOO_LARGE' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'BAD_CONTENT_LENGTH' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'MALFORMED_JSON' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'MALFORMED_JSON' },
};

export function errorBody(error: unknown): { status: number; code: string; message: string } {
  if (isCoded(error)) return { status: error.status, code: error.code, message: error.message };
  const fastifyError = error as Partial<FastifyError>;
  if (fastifyError.validation) {
    return { status: 400, code: 'INVALID_REQUEST', message: fastifyError.message ?? 'invalid request' };
  }
  if (typeof fastifyError.code === 'string' && FASTIFY_CODES[fastifyError.code]) {
    const mapped = FASTIFY_CODES[fastifyError.code]!;
    return { ...mapped, message: fastifyError.message ?? mapped.code };
  }
  if (error instanceof SyntaxError) return { status: 400, code: 'MALFORMED_JSON', message: `malformed JSON body: ${error.message}` };
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode < 500) {
    return { status: fastifyError.statusCode, code: 'BAD_REQUEST', message: fastifyError.message ?? 'bad request' };
  }
  return { status: 500, code: 'INTERNAL', message: 'internal error; see the node log' };
}

export function sendError(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  const body = errorBody(error);
  if (body.status >= 500) request.log.error({ err: error }, 'request failed');
  return reply.code(body.status).type('application/json').send(body);
}
