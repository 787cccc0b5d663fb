// The peer server: fastify 5 over HTTP/2 with mutual TLS. Every request is bound to the calling org by pki/identity
// (pinned CA + SAN) before any route runs; batches of messages are routed to per-channel handlers, and calls
// (request/response) to per-channel responders. Batches arrive on each peer's long-lived stream
// (POST /peer/v1/stream: length-prefixed frames, no per-batch answer, the sender re-identified at every frame) or,
// from older peers, one per request (POST /peer/v1/messages).
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { constants as h2, type Http2SecureServer, type Http2Session, type Http2ServerRequest, type ServerHttp2Stream } from 'node:http2';
import type { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { pino, type Logger } from 'pino';
import { buildPeerTrust, peerIdentity, PeerIdentityError, type PeerIdentity, type PeerTrust } from '../pki/identity.ts';
import {
  BATCH_CONTENT_TYPE,
  BATCH_LIMITS,
  BatchFormatError,
  CHANNEL_PATTERN,
  decodeBatch,
  FrameReader,
  FrameTooLargeError,
  STREAM_CONTENT_TYPE,
  SWARM_ID_PATTERN,
  type BatchGroup,
} from './wire.ts';

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
  /**
   * HTTP/2 receive window, per stream and per connection (default 4 MiB; the protocol's default is 64 KiB). A peer
   * stream can have this much in flight before the sender must wait for this node to read.
   */
  receiveWindowBytes?: number;
  /**
   * A session without traffic for this long is closed (default 72 s, fastify's default), unless it carries a peer
   * stream: then it is pinged, and destroyed only when the peer does not answer within the same time.
   */
  idleSessionMs?: number;
  /**
   * For compatibility tests only (default true): false leaves POST /peer/v1/stream unregistered, so it is answered
   * 404 NOT_FOUND as by a node of a version from before streams, whose peers must fall back to one POST per batch.
   */
  offerStreams?: boolean;
}

export interface PeerServerStats {
  batchesReceived: number;
  messagesReceived: number;
  /** Messages whose channel had no handler (dropped). */
  messagesUnrouted: number;
  handlerErrors: number;
  callsServed: number;
  /** POST /peer/v1/messages requests (one batch each: older peers and tools). */
  batchRequests: number;
  /** Peer streams accepted (POST /peer/v1/stream), and those open now. */
  streamsOpened: number;
  streamsOpen: number;
  /** Idle sessions kept because they carry a peer stream and the peer answered a ping. */
  idleStreamPings: number;
  /** Peer streams this node ended with an error, by code (STREAM_FRAME_TOO_LARGE, BATCH_MALFORMED, PEER_UNKNOWN_CA, ...). */
  streamErrors: Record<string, number>;
  /** Refused requests, and streams refused at a frame, by code (PEER_SAN_MISMATCH, ...). */
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

/** One open peer stream: its request (for re-identification) and how to end it with an error. */
interface OpenStream {
  request: FastifyRequest;
  session: Http2Session;
  fail: (code: string, message: string) => void;
  end: () => void;
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
  private readonly streams = new Set<OpenStream>();
  private readonly maxBatchBytes: number;
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
    batchRequests: 0,
    streamsOpened: 0,
    streamsOpen: 0,
    streamErrors: {},
    idleStreamPings: 0,
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
    this.maxBatchBytes = maxBatchBytes;
    const window = options.receiveWindowBytes ?? 4 * 1024 * 1024;
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
        // The stream window, advertised in SETTINGS; the connection window is raised per session below.
        settings: { initialWindowSize: window },
      },
      // Replaced by the idle-session watch below: fastify's closes an idle session even while it carries a peer
      // stream (node counts neither an open stream nor PINGs as activity), and undici fails the stream on the
      // GOAWAY. requestTimeout and connectionTimeout stay 0 (off), so they never cut a stream either.
      http2SessionTimeout: 0,
      loggerInstance: this.logger.child({ component: 'peer-server' }),
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: Math.max(maxBatchBytes, maxCallBytes),
    }) as unknown as FastifyInstance;
    const app = this.fastify;

    const idleSessionMs = options.idleSessionMs ?? 72_000;
    this.http2Server.on('session', (session: Http2Session) => {
      this.sessions.add(session);
      session.setTimeout(idleSessionMs, () => this.idleSession(session, idleSessionMs));
      session.once('connect', () => {
        try {
          session.setLocalWindowSize(window);
        } catch {
          // the session closed meanwhile
        }
      });
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
    // A stream's body is never buffered whole: the route reads its frames as they arrive.
    app.addContentTypeParser(STREAM_CONTENT_TYPE, (_request, payload, done) => done(null, payload));

    app.setErrorHandler((error: Error & { statusCode?: number; code?: string }, request, reply) => {
      const answer = peerErrorAnswer(error, request.url);
      if (answer.status >= 500) this.logger.error({ err: error }, 'peer route failed');
      return reply.code(answer.status).send({ code: answer.code, message: answer.message });
    });
    app.setNotFoundHandler((request, reply) => reply.code(404).send({ code: 'NOT_FOUND', message: `no peer route ${request.method} ${request.url}` }));

    app.get('/peer/v1/whoami', async (request) => ({ org: request.peer.org, node: request.peer.node }));

    app.post('/peer/v1/messages', { bodyLimit: maxBatchBytes }, async (request, reply) => this.receiveBatch(request, reply));

    if (options.offerStreams ?? true) app.post('/peer/v1/stream', async (request, reply) => this.serveStream(request, reply));

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
    // Open streams are re-identified at every frame anyway; ending the refused ones now tells their senders at once.
    for (const open of this.streams) {
      const result = this.identify(open.request);
      if (result.error) open.fail(result.error.code, result.error.message);
    }
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
    return {
      ...this.counters,
      streamErrors: { ...this.counters.streamErrors },
      refused: { ...this.counters.refused },
      tlsFailureReasons: { ...this.counters.tlsFailureReasons },
    };
  }

  /** Stops accepting connections, lets in-flight requests finish (up to closeGraceMs), then closes. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // Open peer streams would hold their sessions open until the grace ends: end them now (their senders reconnect
      // elsewhere or back off), then close the sessions.
      for (const open of this.streams) open.end();
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

  /** A session had no traffic for a while: closed, unless a peer stream rides on it and the peer answers a ping. */
  private idleSession(session: Http2Session, idleSessionMs: number): void {
    if (session.closed || session.destroyed) return;
    if (![...this.streams].some((open) => open.session === session)) return void session.close();
    const deadline = setTimeout(() => session.destroy(), idleSessionMs).unref();
    try {
      session.ping((error) => {
        clearTimeout(deadline);
        if (error) return void session.destroy();
        this.counters.idleStreamPings++;
        // Re-armed with its listener: node registers a timeout callback with once(), and the ack is no activity.
        if (!session.closed && !session.destroyed) session.setTimeout(idleSessionMs, () => this.idleSession(session, idleSessionMs));
      });
    } catch {
      clearTimeout(deadline);
      session.destroy();
    }
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
    this.counters.batchRequests++;
    let groups;
    try {
      groups = decodeBatch(new Uint8Array(request.body.buffer, request.body.byteOffset, request.body.byteLength));
    } catch (error) {
      if (error instanceof BatchFormatError) return reply.code(400).send({ code: 'BATCH_MALFORMED', message: error.message });
      throw error;
    }
    return reply.code(200).send(this.dispatchBatch(request.peer, groups));
  }

  /** Hands one decoded batch to the channels' handlers (both routes). */
  private dispatchBatch(peer: PeerIdentity, groups: BatchGroup[]): { accepted: number; unrouted: number } {
    this.counters.batchesReceived++;
    this.batchListener?.(peer.org);
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
        handler(peer.org, group.swarm, group.messages, peer, group.channel);
        accepted += group.messages.length;
      } catch (error) {
        this.counters.handlerErrors++;
        this.logger.error({ err: error, channel: group.channel, swarm: group.swarm, from: peer.org }, 'messages handler threw');
      }
    }
    this.counters.messagesUnrouted += unrouted;
    return { accepted, unrouted };
  }

  /**
   * A peer's stream: 200 at once, then every frame of the request body is decoded and dispatched as it completes;
   * nothing is answered per frame. The sender is re-identified at every frame (a removed member or an expired
   * certificate is cut off mid-stream). A bad frame ends the stream with an error: the reason as a JSON body, then
   * RST_STREAM, so the sender drops what it has in flight and reconnects with backoff; the node stays up.
   */
  private async serveStream(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const payload = request.body as Readable | undefined;
    const stream = (request.raw as unknown as Http2ServerRequest).stream as ServerHttp2Stream | undefined;
    if (!payload || typeof payload.on !== 'function' || !stream) {
      return void reply.code(415).send({ code: 'STREAM_CONTENT_TYPE', message: `send the stream as ${STREAM_CONTENT_TYPE}` });
    }
    reply.hijack();
    stream.respond({ ':status': 200, 'content-type': STREAM_CONTENT_TYPE });
    this.counters.streamsOpened++;
    this.counters.streamsOpen++;
    const reader = new FrameReader(this.maxBatchBytes);
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      this.counters.streamsOpen--;
      this.streams.delete(open);
      payload.off('data', onData);
      payload.resume(); // discard whatever still arrives until the stream closes
    };
    const open: OpenStream = {
      request,
      session: stream.session!,
      fail: (code, message) => {
        if (done) return;
        finish();
        this.counters.streamErrors[code] = (this.counters.streamErrors[code] ?? 0) + 1;
        this.logger.warn({ code, from: request.peer.org, remote: request.ip }, `peer stream ended: ${message}`);
        if (stream.destroyed) return;
        // The reason first (the sender's lastError shows it), then the reset: we read nothing more of this stream.
        stream.end(JSON.stringify({ code, message }), () => stream.close(h2.NGHTTP2_CANCEL));
      },
      end: () => {
        if (done) return;
        finish();
        if (!stream.destroyed) stream.close(h2.NGHTTP2_NO_ERROR);
      },
    };
    const onData = (chunk: Buffer): void => {
      try {
        for (const frame of reader.push(chunk)) {
          if (done) return;
          const identified = this.identify(request);
          if (identified.error) {
            const { code, message } = identified.error;
            this.counters.refused[code] = (this.counters.refused[code] ?? 0) + 1;
            return open.fail(code, message);
          }
          this.dispatchBatch(identified.identity!, decodeBatch(frame));
        }
      } catch (error) {
        if (error instanceof FrameTooLargeError) return open.fail('STREAM_FRAME_TOO_LARGE', error.message);
        if (error instanceof BatchFormatError) return open.fail('BATCH_MALFORMED', error.message);
        // Not the peer's fault (a batch listener threw): this stream ends, the node stays up.
        this.logger.error({ err: error, from: request.peer.org }, 'peer stream dispatch failed');
        return open.fail('STREAM_INTERNAL', (error as Error).message);
      }
    };
    this.streams.add(open);
    payload.on('data', onData);
    // The sender ended its side (closing or shutting down): end ours, which completes the stream.
    payload.once('end', () => {
      finish();
      if (!stream.destroyed && !stream.writableEnded) stream.end();
    });
    stream.once('close', finish);
    payload.once('error', finish);
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

/**
 * The answer to an error thrown before or inside a peer route. Fastify's own refusals (a body of another content type,
 * over the route's limit, with a bad length) get this transport's stable codes, named for the route — peers of other
 * versions and operators read codes, never the framework's.
 */
function peerErrorAnswer(error: Error & { statusCode?: number; code?: string }, url: string): { status: number; code: string; message: string } {
  const route = url.startsWith('/peer/v1/messages') ? 'batch' : url.startsWith('/peer/v1/stream') ? 'stream' : url.startsWith('/peer/v1/call/') ? 'call' : null;
  if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    if (route === 'batch') return { status: 415, code: 'BATCH_CONTENT_TYPE', message: `send the batch as ${BATCH_CONTENT_TYPE}` };
    if (route === 'stream') return { status: 415, code: 'STREAM_CONTENT_TYPE', message: `send the stream as ${STREAM_CONTENT_TYPE}` };
    if (route === 'call') return { status: 415, code: 'CALL_CONTENT_TYPE', message: `send the call body as ${CALL_CONTENT_TYPE}` };
    return { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: error.message };
  }
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    const code = route === 'batch' ? 'BATCH_TOO_LARGE' : route === 'call' ? 'CALL_TOO_LARGE' : 'BODY_TOO_LARGE';
    return { status: 413, code, message: error.message };
  }
  if (error.code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH') return { status: 400, code: 'BAD_CONTENT_LENGTH', message: error.message };
  const status = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
  const own = error.code && !error.code.startsWith('FST_') ? error.code : null;
  return { status, code: own ?? (status >= 500 ? 'INTERNAL' : 'BAD_REQUEST'), message: error.message };
}
