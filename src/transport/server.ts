// The peer server: fastify 5 over HTTP/2 with mutual TLS. Every request is bound to the calling org by pki/identity
// (pinned CA + SAN) before any route runs; batches of messages are routed to per-channel handlers, and calls
// (request/response) to per-channel responders.
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Http2SecureServer, Http2Session, Http2ServerRequest } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { pino, type Logger } from 'pino';
import { buildPeerTrust, peerIdentity, PeerIdentityError, type PeerIdentity, type PeerTrust } from '../pki/identity.ts';
import { BATCH_CONTENT_TYPE, BATCH_LIMITS, BatchFormatError, CHANNEL_PATTERN, decodeBatch, SWARM_ID_PATTERN } from './wire.ts';

export const CALL_CONTENT_TYPE = 'application/octet-stream';
/** Header naming the swarm of a call. */
export const SWARM_HEADER = 'conclave-swarm';

export type MessagesHandler = (fromOrg: string, swarm: string, messages: Uint8Array[], peer: PeerIdentity, channel: string) => void;
export type RequestHandler = (fromOrg: string, swarm: string, body: Uint8Array, peer: PeerIdentity, channel: string) => Promise<Uint8Array> | Uint8Array;

/** Throw this from a request handler to answer the caller with a specific status and stable code. */
export class PeerReplyError extends Error {
  override readonly name = 'PeerReplyError';
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface PeerServerOptions {
  /** This node's TLS certificate and key (PEM), issued by its org CA. */
  tls: { certPem: string; keyPem: string };
  /** Every member's org and CA: the trust store, and the map from issuing CA to org. */
  members: readonly { org: string; caPem: string }[];
  /** Default 127.0.0.1:0 (a free port; read `port` after start). */
  listen?: { host: string; port: number };
  logger?: Logger;
  /** Largest accepted batch body (default and upper bound: BATCH_LIMITS.maxBytes, 16 MiB). */
  maxBatchBytes?: number;
  /** Largest accepted call body (default 16 MiB). */
  maxCallBytes?: number;
  /** Grace period for open HTTP/2 sessions on close before they are destroyed (default 2000 ms). */
  closeGraceMs?: number;
  /** Clock for certificate validity checks (tests). */
  now?: () => Date;
}

export interface PeerServerStats {
  batchesReceived: number;
  messagesReceived: number;
  /** Messages whose channel had no handler (dropped). */
  messagesUnrouted: number;
  handlerErrors: number;
  callsServed: number;
  /** Refused requests by code (PEER_SAN_MISMATCH, ...). */
  refused: Record<string, number>;
  /** TLS handshakes that failed (no cert, unknown CA, expired cert: TLS refuses those before HTTP). */
  tlsFailures: number;
  /** The same, by OpenSSL reason (e.g. CERT_HAS_EXPIRED, UNABLE_TO_GET_ISSUER_CERT, ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE). */
  tlsFailureReasons: Record<string, number>;
}

declare module 'fastify' {
  interface FastifyRequest {
    peer: PeerIdentity;
  }
}

interface CachedIdentity {
  trust: PeerTrust;
  identity?: PeerIdentity;
  error?: PeerIdentityError;
}

export class PeerServer {
  /** The fastify instance, for peer routes other parts add (every route sits behind the identity hook). */
  readonly fastify: FastifyInstance;
  private trust: PeerTrust;
  private readonly messageHandlers = new Map<string, MessagesHandler>();
  private batchListener: ((fromOrg: string) => void) | null = null;
  private readonly requestHandlers = new Map<string, RequestHandler>();
  private readonly sessions = new Set<Http2Session>();
  private readonly identities = new WeakMap<Http2Session, CachedIdentity>();
  private readonly logger: Logger;
  private readonly now: () => Date;
  private readonly closeGraceMs: number;
  private readonly counters: PeerServerStats = {
    batchesReceived: 0,
    messagesReceived: 0,
    messagesUnrouted: 0,
    handlerErrors: 0,
    callsServed: 0,
    refused: {},
    tlsFailures: 0,
    tlsFailureReasons: {},
  };
  private closing: Promise<void> | null = null;
  /** The certificate presented now and the CA list trusted now (rotation and membership updates replace them). */
  private tlsNow: { certPem: string; keyPem: string };
  private caPems: string[];

  private constructor(options: PeerServerOptions) {
    this.logger = options.logger ?? pino({ level: 'silent' });
    this.now = options.now ?? (() => new Date());
    this.closeGraceMs = options.closeGraceMs ?? 2000;
    this.trust = buildPeerTrust(options.members);
    this.tlsNow = options.tls;
    this.caPems = options.members.map((member) => member.caPem);
    const maxBatchBytes = Math.min(options.maxBatchBytes ?? BATCH_LIMITS.maxBytes, BATCH_LIMITS.maxBytes);
    const maxCallBytes = options.maxCallBytes ?? 16 * 1024 * 1024;

    this.fastify = Fastify({
      http2: true,
      https: {
        allowHTTP1: false,
        key: options.tls.keyPem,
        cert: options.tls.certPem,
        ca: options.members.map((member) => member.caPem),
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.3',
      },
      loggerInstance: this.logger.child({ component: 'peer-server' }),
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: Math.max(maxBatchBytes, maxCallBytes),
    }) as unknown as FastifyInstance;
    const app = this.fastify;

    this.http2Server.on('session', (session: Http2Session) => {
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
    });
    this.http2Server.on('tlsClientError', (error: Error & { code?: string }, socket: TLSSocket) => {
      this.counters.tlsFailures++;
      const reason = error.code ?? error.message;
      this.counters.tlsFailureReasons[reason] = (this.counters.tlsFailureReasons[reason] ?? 0) + 1;
      this.logger.warn({ remote: socket.remoteAddress, err: { code: error.code, message: error.message } }, 'peer TLS handshake refused');
    });

    app.decorateRequest('peer', null as unknown as PeerIdentity);
    app.addHook('onRequest', async (request, reply) => {
      const result = this.identify(request);
      if (result.error) {
        const { code, message } = result.error;
        this.counters.refused[code] = (this.counters.refused[code] ?? 0) + 1;
        this.logger.warn({ code, remote: request.ip, url: request.url }, `peer refused: ${message}`);
        return reply.code(403).send({ code, message });
      }
      request.peer = result.identity!;
    });

    app.removeAllContentTypeParsers();
    app.addContentTypeParser([BATCH_CONTENT_TYPE, CALL_CONTENT_TYPE], { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

    app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, _request, reply) => {
      const statusCode = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
      if (statusCode >= 500) this.logger.error({ err: error }, 'peer route failed');
      return reply.code(statusCode).send({ code: error.code ?? 'INTERNAL', message: error.message });
    });
    app.setNotFoundHandler((request, reply) => reply.code(404).send({ code: 'NOT_FOUND', message: `no peer route ${request.method} ${request.url}` }));

    app.get('/peer/v1/whoami', async (request) => ({ org: request.peer.org, node: request.peer.node }));

    app.post('/peer/v1/messages', { bodyLimit: maxBatchBytes }, async (request, reply) => this.receiveBatch(request, reply));

    app.post<{ Params: { channel: string } }>('/peer/v1/call/:channel', { bodyLimit: maxCallBytes }, async (request, reply) =>
      this.serveCall(request, reply),
    );
  }

  /** Creates the server and starts listening. */
  static async start(options: PeerServerOptions): Promise<PeerServer> {
    const server = new PeerServer(options);
    const listen = options.listen ?? { host: '127.0.0.1', port: 0 };
    await server.fastify.listen({ host: listen.host, port: listen.port });
    return server;
  }

  private get http2Server(): Http2SecureServer {
    return this.fastify.server as unknown as Http2SecureServer;
  }

  get port(): number {
    const address = this.fastify.server.address();
    if (address === null || typeof address === 'string') throw new Error('peer server is not listening');
    return address.port;
  }

  get url(): string {
    const address = this.fastify.server.address();
    if (address === null || typeof address === 'string') throw new Error('peer server is not listening');
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `https://${host}:${address.port}`;
  }

  /**
   * Routes batched messages of `channel` (any swarm) to `handler`. One handler per channel. A handler registered
   * as "family.*" receives every channel "family.<anything>" without a handler of its own (e.g. "raft.e3").
   */
  onMessages(channel: string, handler: MessagesHandler): void {
    if (!CHANNEL_PATTERN.test(channel.replace(/\.\*$/, ''))) throw new Error(`invalid channel ${JSON.stringify(channel)}`);
    if (this.messageHandlers.has(channel)) throw new Error(`a messages handler for channel ${channel} is already registered`);
    this.messageHandlers.set(channel, handler);
  }

  /** Called once per well-formed batch from an identified peer, whatever its channels (node liveness listens). */
  onPeerBatch(listener: (fromOrg: string) => void): void {
    this.batchListener = listener;
  }

  /** Answers calls on `channel` (POST /peer/v1/call/<channel>). One responder per channel. */
  onRequest(channel: string, handler: RequestHandler): void {
    if (!CHANNEL_PATTERN.test(channel.replace(/\.\*$/, ''))) throw new Error(`invalid channel ${JSON.stringify(channel)}`);
    if (this.requestHandlers.has(channel)) throw new Error(`a request handler for channel ${channel} is already registered`);
    this.requestHandlers.set(channel, handler);
  }

  /**
   * Replaces the trusted members (after a committed membership change): new TLS handshakes use the new CA list,
   * and every request, on old connections too, is identified against the new trust.
   */
  updateMembers(members: readonly { org: string; caPem: string }[]): void {
    this.trust = buildPeerTrust(members);
    this.caPems = members.map((member) => member.caPem);
    this.http2Server.setSecureContext({
      key: this.tlsNow.keyPem,
      cert: this.tlsNow.certPem,
      ca: this.caPems,
      minVersion: 'TLSv1.3',
    });
  }

  /** Certificate rotation: new handshakes are answered with this certificate and key; open sessions keep theirs. */
  updateTls(tls: { certPem: string; keyPem: string }): void {
    this.tlsNow = tls;
    this.http2Server.setSecureContext({ key: tls.keyPem, cert: tls.certPem, ca: this.caPems, minVersion: 'TLSv1.3' });
  }

  stats(): PeerServerStats {
    return { ...this.counters, refused: { ...this.counters.refused }, tlsFailureReasons: { ...this.counters.tlsFailureReasons } };
  }

  /** Stops accepting connections, lets in-flight requests finish (up to closeGraceMs), then closes. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const session of this.sessions) session.close();
      const force = setTimeout(() => {
        for (const session of this.sessions) session.destroy();
      }, this.closeGraceMs);
      force.unref();
      try {
        await this.fastify.close();
      } finally {
        clearTimeout(force);
      }
    })();
    return this.closing;
  }

  private identify(request: FastifyRequest): { identity?: PeerIdentity; error?: PeerIdentityError } {
    const session = (request.raw as unknown as Http2ServerRequest).stream?.session;
    const socket = session?.socket as TLSSocket | undefined;
    if (!session || !socket || typeof socket.getPeerCertificate !== 'function') {
      return { error: new PeerIdentityError('PEER_NO_CERT', 'not a TLS connection') };
    }
    const cached = this.identities.get(session);
    const now = this.now();
    if (cached && cached.trust === this.trust) {
      if (cached.error) return { error: cached.error };
      if (cached.identity && now.getTime() <= cached.identity.validTo.getTime()) return { identity: cached.identity };
    }
    let entry: CachedIdentity;
    try {
      entry = { trust: this.trust, identity: peerIdentity(socket.getPeerCertificate(true), this.trust, now) };
    } catch (error) {
      if (!(error instanceof PeerIdentityError)) throw error;
      entry = { trust: this.trust, error };
    }
    this.identities.set(session, entry);
    return entry;
  }

  private async receiveBatch(request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    if (!(request.body instanceof Buffer)) {
      return reply.code(415).send({ code: 'BATCH_CONTENT_TYPE', message: `send the batch as ${BATCH_CONTENT_TYPE}` });
    }
    let groups;
    try {
      groups = decodeBatch(new Uint8Array(request.body.buffer, request.body.byteOffset, request.body.byteLength));
    } catch (error) {
      if (error instanceof BatchFormatError) return reply.code(400).send({ code: 'BATCH_MALFORMED', message: error.message });
      throw error;
    }
    this.counters.batchesReceived++;
    this.batchListener?.(request.peer.org);
    let accepted = 0;
    let unrouted = 0;
    for (const group of groups) {
      this.counters.messagesReceived += group.messages.length;
      const handler = this.messageHandlers.get(group.channel) ?? this.messageHandlers.get(familyOf(group.channel));
      if (!handler) {
        unrouted += group.messages.length;
        continue;
      }
      try {
        handler(request.peer.org, group.swarm, group.messages, request.peer, group.channel);
        accepted += group.messages.length;
      } catch (error) {
        this.counters.handlerErrors++;
        this.logger.error({ err: error, channel: group.channel, swarm: group.swarm, from: request.peer.org }, 'messages handler threw');
      }
    }
    this.counters.messagesUnrouted += unrouted;
    return reply.code(200).send({ accepted, unrouted });
  }

  private async serveCall(request: FastifyRequest<{ Params: { channel: string } }>, reply: FastifyReply): Promise<unknown> {
    const { channel } = request.params;
    const swarm = request.headers[SWARM_HEADER];
    if (typeof swarm !== 'string' || !SWARM_ID_PATTERN.test(swarm)) {
      return reply.code(400).send({ code: 'CALL_BAD_SWARM', message: `header ${SWARM_HEADER} must name a swarm id` });
    }
    const handler = this.requestHandlers.get(channel) ?? this.requestHandlers.get(familyOf(channel));
    if (!handler) return reply.code(404).send({ code: 'CALL_NO_HANDLER', message: `this node answers no calls on channel ${channel}` });
    const body = request.body instanceof Buffer ? new Uint8Array(request.body.buffer, request.body.byteOffset, request.body.byteLength) : new Uint8Array(0);
    try {
      const answer = await handler(request.peer.org, swarm, body, request.peer, channel);
      this.counters.callsServed++;
      return reply.code(200).header('content-type', CALL_CONTENT_TYPE).send(Buffer.from(answer.buffer, answer.byteOffset, answer.byteLength));
    } catch (error) {
      if (error instanceof PeerReplyError) return reply.code(error.statusCode).send({ code: error.code, message: error.message });
      this.counters.handlerErrors++;
      this.logger.error({ err: error, channel, swarm, from: request.peer.org }, 'request handler threw');
      return reply.code(500).send({ code: 'CALL_HANDLER_FAILED', message: (error as Error).message });
    }
  }
}

/** The wildcard key of a channel: "raft.e3" → "raft.*". */
function familyOf(channel: string): string {
  const dot = channel.indexOf('.');
  return dot < 0 ? channel : `${channel.slice(0, dot)}.*`;
}
