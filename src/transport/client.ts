// The peer client pool: one long-lived HTTP/2 undici Client per member, pinned to that member's CA and org.
// Outgoing messages queue per peer (bounded, oldest dropped) and leave as frames on one long-lived stream per peer
// (POST /peer/v1/stream, no answer per frame), coalesced per turn of the event loop; calls are request/response on
// the same connection. Each peer has exponential backoff with injected jitter and a circuit breaker, so a dead peer
// costs nothing.
//
// The stream is an undici request whose body is an async iterable that this pool feeds: undici pulls the next frame
// only once the HTTP/2 stream accepted the previous one without backpressure, so while the peer reads slowly the
// messages wait in the bounded queue, never in an unbounded write buffer. Two undici limits shape it: a request with
// a streaming body is dispatched only when no other request is in flight on the connection (so a reopening stream
// waits for running calls, and calls queued after it wait with it), and undici cannot end an async iterable it
// gave up on, so every way a stream ends releases the iterator here.
//
// A peer of a version from before streams answers the stream request 404 (no such route): the link then falls back
// to batch mode, one POST /peer/v1/messages per coalesced batch, one in flight at a time, answered 200. Federations
// are run by different organizations that upgrade at different times, so a new node must keep talking to an old one;
// the 404 is an answer (not a failure of the peer), and the stream is asked for again every streamRetryMs, since the
// peer may have been upgraded meanwhile. Both modes build their batches from the queue with the same function and
// share the breaker, the backoff and the counters.
import type { Readable } from 'node:stream';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { pino, type Logger } from 'pino';
import { Client } from 'undici';
import { parseNodeSanUri } from '../pki/certs.ts';
import { sanUris } from '../pki/identity.ts';
import { CALL_CONTENT_TYPE, SWARM_HEADER } from './server.ts';
import {
  BATCH_CONTENT_TYPE,
  BATCH_LIMITS,
  CHANNEL_PATTERN,
  encodeBatch,
  encodeFrame,
  groupOverhead,
  STREAM_CONTENT_TYPE,
  SWARM_ID_PATTERN,
  type BatchGroup,
} from './wire.ts';

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface PeerHealth {
  org: string;
  url: string;
  /** closed: sending normally; open: the peer is skipped until the retry time; half-open: one probe is allowed. */
  state: BreakerState;
  consecutiveFailures: number;
  lastError: string | null;
  /** Milliseconds until the next attempt is allowed (0 when now). */
  retryInMs: number;
  queuedMessages: number;
  /**
   * stream: batches leave as frames of one long-lived stream; batch: the peer does not offer streams (a version
   * from before them), each batch is one POST /peer/v1/messages, and a stream is asked for again every streamRetryMs.
   */
  mode: 'stream' | 'batch';
  /** none: no stream (nothing to send, waiting to retry, or batch mode); opening: asked, no answer yet; open: frames flow. */
  stream: 'none' | 'opening' | 'open';
  /** Batches sent (frames the stream accepted, or in batch mode POSTs answered 200), their messages and bytes. */
  sentBatches: number;
  sentMessages: number;
  sentBytes: number;
  /** Messages dropped: queue full (oldest first), breaker open, lost with a failed stream or batch, or a batch refused. */
  droppedMessages: number;
}

export interface PeerClientPoolOptions {
  /** This node's org (calls to itself are refused). */
  self: string;
  /** This node's TLS certificate and key (PEM): the client certificate presented to every peer. */
  tls: { certPem: string; keyPem: string };
  /** Every member (the own org is skipped): where its node listens and the only CA its server cert may chain to. */
  members: readonly { org: string; peerUrl: string; caPem: string }[];
  logger?: Logger;
  /** Per-peer queue bound (default 10 000 messages); when full the oldest message is dropped and counted. */
  maxQueuedMessages?: number;
  /** Upper bound of one batch (stream frame) (default 4 MiB, at most 16 MiB). */
  maxBatchBytes?: number;
  /** Upper bound of messages in one batch (default 4096). */
  maxMessagesPerBatch?: number;
  /**
   * Time limit for the peer to answer a stream with 200, for a frame to be accepted by the stream (a peer that
   * stops reading fails its stream after this long), and for the answer to a batch in batch mode (default 5000 ms).
   */
  batchTimeoutMs?: number;
  /** Default time limit of a call (default 5000 ms). */
  callTimeoutMs?: number;
  /** Retry delay after n consecutive failures: min(maxMs, baseMs·2^(n-1)) scaled by (0.5 + 0.5·random()). */
  backoff?: { baseMs?: number; maxMs?: number };
  /** Consecutive failures that open the breaker (default 5). */
  breakerThreshold?: number;
  /** Jitter source in [0, 1) (default Math.random; tests inject a fixed one). */
  random?: () => number;
  /** HTTP/2 streams in flight per connection (default 64). */
  maxConcurrentStreams?: number;
  /** HTTP/2 receive window for answers, per stream and per connection (default 4 MiB; undici's: 256 / 512 KiB). */
  receiveWindowBytes?: number;
  /**
   * In batch mode (the peer answered the stream request 404), how long until a stream is asked for again, with the
   * next batch after that time (default 5 minutes): the peer may have been upgraded.
   */
  streamRetryMs?: number;
}

/** A call or probe that did not get an answer from the peer, or got a refusal. `code` is stable. */
export class PeerCallError extends Error {
  override readonly name = 'PeerCallError';
  constructor(
    readonly org: string,
    readonly code: string,
    message: string,
    readonly statusCode: number | null = null,
  ) {
    super(message);
  }
}

interface Queued {
  swarm: string;
  channel: string;
  message: Uint8Array;
}

/** One stream to a peer, from the request until it ends. */
interface PeerStream {
  /** The peer answered 200: frames are handed out only then, so a refused stream has sent nothing. */
  established: boolean;
  /** undici waits for the next frame. */
  pull: ((result: IteratorResult<Buffer, undefined>) => void) | null;
  /** The frame handed to undici that the stream has not yet accepted (undici asks for the next one when it has). */
  unconfirmed: { messages: number; bytes: number; at: number } | null;
  /** This pool ends the stream (close, removal): its end is not a failure of the peer. */
  ending: boolean;
  /** The stream has ended, one way or another; nothing more happens to it. */
  settled: boolean;
  /** What the peer wrote on the answer before ending it (its reason, as JSON). */
  reason: string;
  abort: AbortController;
  watchdog: NodeJS.Timeout | null;
}

interface Link {
  org: string;
  url: string;
  caPem: string;
  client: Client;
  queue: Queued[];
  queueHead: number;
  /** How batches leave: see PeerHealth.mode. */
  mode: 'stream' | 'batch';
  /** Batch mode: a stream is asked for again with the first batch from this time on. */
  streamRetryAt: number;
  stream: PeerStream | null;
  /** Batch mode: a POST /peer/v1/messages is waiting for its answer (one at a time per link, in queue order). */
  batchInFlight: boolean;
  flushScheduled: boolean;
  timer: NodeJS.Timeout | null;
  state: BreakerState;
  probeInFlight: boolean;
  consecutiveFailures: number;
  lastError: string | null;
  retryAt: number;
  sentBatches: number;
  sentMessages: number;
  sentBytes: number;
  droppedMessages: number;
  idle: (() => void)[];
}

export class PeerClientPool {
  private readonly links = new Map<string, Link>();
  private readonly logger: Logger;
  private readonly random: () => number;
  private readonly maxQueued: number;
  private readonly maxBatchBytes: number;
  private readonly maxMessagesPerBatch: number;
  private readonly batchTimeoutMs: number;
  private readonly callTimeoutMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly breakerThreshold: number;
  private readonly streamRetryMs: number;
  private closed = false;

  constructor(private readonly options: PeerClientPoolOptions) {
    this.logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'peer-client' });
    this.random = options.random ?? Math.random;
    this.maxQueued = options.maxQueuedMessages ?? 10_000;
    this.maxBatchBytes = Math.min(options.maxBatchBytes ?? 4 * 1024 * 1024, BATCH_LIMITS.maxBytes);
    this.maxMessagesPerBatch = Math.min(options.maxMessagesPerBatch ?? 4096, BATCH_LIMITS.maxMessages);
    this.batchTimeoutMs = options.batchTimeoutMs ?? 5000;
    this.callTimeoutMs = options.callTimeoutMs ?? 5000;
    this.backoffBaseMs = options.backoff?.baseMs ?? 50;
    this.backoffMaxMs = options.backoff?.maxMs ?? 10_000;
    this.breakerThreshold = options.breakerThreshold ?? 5;
    this.streamRetryMs = options.streamRetryMs ?? 5 * 60_000;
    this.updateMembers(options.members);
  }

  /** Certificate rotation: every link reconnects presenting the new client certificate (queued messages are dropped). */
  updateTls(tls: { certPem: string; keyPem: string }): void {
    (this.options as { tls: PeerClientPoolOptions['tls'] }).tls = tls;
    const members = [...this.links.values()].map((link) => ({ org: link.org, peerUrl: link.url, caPem: link.caPem }));
    this.updateMembers([]);
    this.updateMembers(members);
  }

  /** Adds, removes or re-pins peers (after a committed membership change). Unchanged peers keep their connection. */
  updateMembers(members: readonly { org: string; peerUrl: string; caPem: string }[]): void {
    const wanted = new Map(members.filter((member) => member.org !== this.options.self).map((member) => [member.org, member]));
    for (const [org, link] of this.links) {
      const member = wanted.get(org);
      if (!member || member.peerUrl !== link.url || member.caPem !== link.caPem) {
        this.links.delete(org);
        this.dropQueue(link);
        if (link.timer) clearTimeout(link.timer);
        if (link.stream) this.streamEnded(link, link.stream, 'the peer link was removed', true);
        void link.client.close().catch(() => undefined);
      }
    }
    for (const [org, member] of wanted) {
      if (!this.links.has(org)) this.links.set(org, this.createLink(org, member.peerUrl, member.caPem));
    }
  }

  /**
   * Queues messages for `toOrg`; they leave in the next frame of its stream (or batch, in batch mode). Never blocks and never throws for a slow or dead
   * peer: when the breaker is open the messages are dropped (consensus protocols retransmit), when the queue is
   * full the oldest are dropped. Throws only for programming errors (unknown org, bad ids, oversized message).
   */
  send(toOrg: string, swarm: string, channel: string, messages: readonly Uint8Array[]): void {
    const link = this.link(toOrg);
    if (!SWARM_ID_PATTERN.test(swarm)) throw new Error(`invalid swarm id ${JSON.stringify(swarm)}`);
    if (!CHANNEL_PATTERN.test(channel)) throw new Error(`invalid channel ${JSON.stringify(channel)}`);
    const limit = this.maxBatchBytes - 8 - groupOverhead({ swarm, channel }) - 4;
    for (const message of messages) {
      if (message.length > limit) throw new RangeError(`a ${message.length}-byte message exceeds the ${limit}-byte batch payload limit`);
    }
    if (this.closed || (link.state === 'open' && Date.now() < link.retryAt)) {
      link.droppedMessages += messages.length;
      return;
    }
    for (const message of messages) link.queue.push({ swarm, channel, message });
    const excess = link.queue.length - link.queueHead - this.maxQueued;
    if (excess > 0) {
      link.queueHead += excess;
      link.droppedMessages += excess;
    }
    this.scheduleFlush(link);
  }

  /** Sends `body` to `toOrg`'s responder for `channel` and returns its answer. Throws PeerCallError. */
  async call(toOrg: string, swarm: string, channel: string, body: Uint8Array, options: { timeoutMs?: number } = {}): Promise<Uint8Array> {
    if (!SWARM_ID_PATTERN.test(swarm)) throw new Error(`invalid swarm id ${JSON.stringify(swarm)}`);
    if (!CHANNEL_PATTERN.test(channel)) throw new Error(`invalid channel ${JSON.stringify(channel)}`);
    const link = this.link(toOrg);
    const { statusCode, bytes } = await this.request(link, {
      method: 'POST',
      path: `/peer/v1/call/${channel}`,
      headers: { 'content-type': CALL_CONTENT_TYPE, [SWARM_HEADER]: swarm },
      body,
      timeoutMs: options.timeoutMs ?? this.callTimeoutMs,
    });
    if (statusCode === 200) return bytes;
    throw this.replyError(link, statusCode, bytes);
  }

  /** Asks `toOrg`'s node who it thinks we are (GET /peer/v1/whoami): a cheap end-to-end check of the link. */
  async whoami(toOrg: string, options: { timeoutMs?: number } = {}): Promise<{ org: string; node: string }> {
    const link = this.link(toOrg);
    const { statusCode, bytes } = await this.request(link, { method: 'GET', path: '/peer/v1/whoami', timeoutMs: options.timeoutMs ?? this.callTimeoutMs });
    if (statusCode !== 200) throw this.replyError(link, statusCode, bytes);
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as { org: string; node: string };
  }

  /** The orgs this pool has a link to (every member but this node's own org). */
  peers(): string[] {
    return [...this.links.keys()];
  }

  health(): PeerHealth[] {
    const now = Date.now();
    return [...this.links.values()].map((link) => ({
      org: link.org,
      url: link.url,
      state: link.state,
      consecutiveFailures: link.consecutiveFailures,
      lastError: link.lastError,
      retryInMs: Math.max(0, link.retryAt - now),
      queuedMessages: link.queue.length - link.queueHead,
      mode: link.mode,
      stream: link.stream === null ? 'none' : link.stream.established ? 'open' : 'opening',
      sentBatches: link.sentBatches,
      sentMessages: link.sentMessages,
      sentBytes: link.sentBytes,
      droppedMessages: link.droppedMessages,
    }));
  }

  /**
   * Resolves when every queue is empty and every frame was accepted by its stream, or in batch mode every batch was
   * answered (or the peer's queue was dropped, or its stream or batch failed: what it held is counted as dropped).
   */
  async flush(): Promise<void> {
    await Promise.all(
      [...this.links.values()].map(
        (link) =>
          new Promise<void>((resolvePromise) => {
            if (this.isIdle(link)) resolvePromise();
            else link.idle.push(resolvePromise);
          }),
      ),
    );
  }

  /**
   * Stops accepting messages, gives queued frames (batches, in batch mode) up to `graceMs` to leave, ends every stream
   * (the peer sees its end and completes it), then closes every connection (destroyed when it does not close within
   * `graceMs`).
   */
  async close(graceMs = 2000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const link of this.links.values()) {
      // A batch-mode link sends on as before (pump), unless it waits out a backoff.
      if (link.stream || (link.mode === 'batch' && !link.timer)) continue;
      // No stream on its way: what waits for one (a backoff, a first connection) is dropped now.
      if (link.timer) clearTimeout(link.timer);
      link.timer = null;
      this.dropQueue(link);
    }
    const grace = new Promise<void>((resolvePromise) => setTimeout(resolvePromise, graceMs).unref());
    await Promise.race([this.flush(), grace]);
    await Promise.all(
      [...this.links.values()].map(async (link) => {
        if (link.timer) clearTimeout(link.timer);
        this.dropQueue(link);
        if (link.stream) this.endStream(link.stream);
        const closing = link.client.close().catch(() => undefined);
        const forced = await Promise.race([closing.then(() => false), new Promise<boolean>((done) => setTimeout(() => done(true), graceMs).unref())]);
        if (forced) await link.client.destroy().catch(() => undefined);
      }),
    );
  }

  private link(org: string): Link {
    const link = this.links.get(org);
    if (!link) throw new Error(org === this.options.self ? `${org} is this node's own org` : `unknown peer org ${JSON.stringify(org)}`);
    return link;
  }

  private createLink(org: string, url: string, caPem: string): Link {
    const window = this.options.receiveWindowBytes ?? 4 * 1024 * 1024;
    const client = new Client(url, {
      allowH2: true,
      maxConcurrentStreams: this.options.maxConcurrentStreams ?? 64,
      pipelining: this.options.maxConcurrentStreams ?? 64,
      keepAliveTimeout: 60_000,
      keepAliveMaxTimeout: 600_000,
      initialWindowSize: window,
      connectionWindowSize: window,
      connect: {
        ca: caPem, // only this member's CA: a server certificate from any other CA is refused
        cert: this.options.tls.certPem,
        key: this.options.tls.keyPem,
        minVersion: 'TLSv1.3',
        ALPNProtocols: ['h2'],
        checkServerIdentity: (hostname: string, cert: PeerCertificate) => {
          const hostError = checkServerIdentity(hostname, cert);
          if (hostError) return hostError;
          const named = sanUris(cert.subjectaltname).map((uri) => parseNodeSanUri(uri)).filter((value) => value !== null);
          if (named.length !== 1 || named[0]!.org !== org) {
            return new Error(`PEER_SAN_MISMATCH: the server at ${url} is not a node of org ${org} (its certificate names ${named.map((n) => n!.org).join(', ') || 'no conclave node'})`);
          }
          return undefined;
        },
      },
    });
    client.on('connectionError', (_origin, _targets, error) => {
      this.logger.debug({ peer: org, err: { message: error.message } }, 'peer connection failed');
    });
    return {
      org,
      url,
      caPem,
      client,
      queue: [],
      queueHead: 0,
      mode: 'stream',
      streamRetryAt: 0,
      stream: null,
      batchInFlight: false,
      flushScheduled: false,
      timer: null,
      state: 'closed',
      probeInFlight: false,
      consecutiveFailures: 0,
      lastError: null,
      retryAt: 0,
      sentBatches: 0,
      sentMessages: 0,
      sentBytes: 0,
      droppedMessages: 0,
      idle: [],
    };
  }

  private isIdle(link: Link): boolean {
    return link.queue.length === link.queueHead && !link.stream?.unconfirmed && !link.batchInFlight;
  }

  private notifyIdle(link: Link): void {
    if (!this.isIdle(link)) return;
    const waiting = link.idle.splice(0);
    for (const resolvePromise of waiting) resolvePromise();
  }

  private dropQueue(link: Link): void {
    link.droppedMessages += link.queue.length - link.queueHead;
    link.queue = [];
    link.queueHead = 0;
    this.notifyIdle(link);
  }

  private scheduleFlush(link: Link): void {
    if (link.flushScheduled || link.timer) return;
    link.flushScheduled = true;
    // setImmediate: every send() of this turn of the event loop lands in the same frame.
    setImmediate(() => {
      link.flushScheduled = false;
      this.pump(link);
    });
  }

  private backoffDelay(failures: number): number {
    const raw = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** Math.min(failures - 1, 30));
    return Math.round(raw * (0.5 + 0.5 * this.random()));
  }

  /** Whether a request may go now; moves open → half-open when the retry time has come. */
  private admit(link: Link): boolean {
    const now = Date.now();
    if (link.state === 'closed') return true;
    if (link.state === 'open') {
      if (now < link.retryAt) return false;
      link.state = 'half-open';
    }
    if (link.probeInFlight) return false;
    link.probeInFlight = true;
    return true;
  }

  private onSuccess(link: Link): void {
    if (link.state !== 'closed') this.logger.info({ peer: link.org }, 'peer reachable again: circuit closed');
    link.state = 'closed';
    link.probeInFlight = false;
    link.consecutiveFailures = 0;
    link.retryAt = 0;
    if (link.queue.length > link.queueHead) this.scheduleFlush(link); // messages that waited for a probe
  }

  private onFailure(link: Link, error: string): void {
    link.consecutiveFailures++;
    link.lastError = error;
    link.probeInFlight = false;
    link.retryAt = Date.now() + this.backoffDelay(link.consecutiveFailures);
    const opens = link.state === 'half-open' || link.consecutiveFailures >= this.breakerThreshold;
    if (opens) {
      if (link.state === 'closed') {
        this.logger.warn({ peer: link.org, failures: link.consecutiveFailures, err: error }, 'peer unreachable: circuit open');
      }
      link.state = 'open';
      this.dropQueue(link); // stale by the time the peer is back; the protocols retransmit what still matters
    }
  }

  /**
   * Moves queued messages on: hands a frame to a stream that waits for one, or (after backoff) opens a stream or, in
   * batch mode, posts the next batch (a stream again once streamRetryAt has come).
   */
  private pump(link: Link): void {
    if (this.links.get(link.org) !== link) return this.notifyIdle(link);
    const stream = link.stream;
    if (stream) {
      if (stream.established && stream.pull && link.queue.length > link.queueHead) this.handOut(link, stream);
      return this.notifyIdle(link);
    }
    if (link.batchInFlight) return; // its answer pumps again: one batch at a time keeps the queue's order
    if (link.queue.length === link.queueHead) return this.notifyIdle(link);
    const now = Date.now();
    const waitUntil = link.state === 'open' || link.consecutiveFailures > 0 ? link.retryAt : 0;
    // Closing: no new stream, and no waiting out a backoff, for what was not on its way; batch mode sends on.
    if (this.closed && (link.mode === 'stream' || now < waitUntil)) return this.dropQueue(link);
    if (now < waitUntil) {
      link.timer ??= setTimeout(() => {
        link.timer = null;
        this.pump(link);
      }, waitUntil - now);
      link.timer.unref();
      return;
    }
    if (!this.admit(link)) return; // a probe call is in flight: its outcome schedules the next attempt
    if (link.mode === 'batch' && (this.closed || now < link.streamRetryAt)) return void this.postBatch(link);
    this.openStream(link);
  }

  /** Asks the peer for a stream; it carries frames from its 200 until it fails or this pool ends it. */
  private openStream(link: Link): void {
    const stream: PeerStream = { established: false, pull: null, unconfirmed: null, ending: false, settled: false, reason: '', abort: new AbortController(), watchdog: null };
    link.stream = stream;
    const frames: AsyncIterable<Buffer> = {
      [Symbol.asyncIterator]: () => ({
        next: () => this.nextFrame(link, stream),
        // undici stops iterating only when the stream failed: the request's error reports that (below).
        return: async () => ({ done: true, value: undefined }),
      }),
    };
    link.client
      .request({
        method: 'POST',
        path: '/peer/v1/stream',
        headers: { 'content-type': STREAM_CONTENT_TYPE },
        body: frames as unknown as Readable, // undici takes async iterables as bodies (its types say Readable only)
        headersTimeout: this.batchTimeoutMs,
        bodyTimeout: 0, // the answer stays silent while all goes well: idleness is not a failure
        signal: stream.abort.signal,
      })
      .then(async (response) => {
        if (response.statusCode !== 200) {
          const text = Buffer.from(await response.body.arrayBuffer()).toString('utf8').slice(0, 300);
          if (response.statusCode === 404) return this.streamsNotOffered(link, stream, text);
          return this.streamEnded(link, stream, `HTTP ${response.statusCode}: ${text}`);
        }
        stream.established = true;
        if (link.stream === stream) {
          if (link.mode === 'batch') this.logger.info({ peer: link.org }, 'peer offers streams again: sending on a stream');
          link.mode = 'stream';
          this.onSuccess(link);
          this.pump(link);
        }
        // The answer carries nothing until the peer ends the stream, and then only its reason.
        for await (const chunk of response.body) stream.reason = (stream.reason + String(chunk)).slice(0, 500);
        this.streamEnded(link, stream, 'the peer ended the stream');
      })
      .catch((error: unknown) => {
        const err = error as Error & { code?: string; cause?: Error & { code?: string } };
        this.streamEnded(link, stream, `${err.code ?? err.cause?.code ?? err.name}: ${err.message}`);
      });
  }

  /** undici asks for the next frame: the previous one was accepted by the stream. */
  private nextFrame(link: Link, stream: PeerStream): Promise<IteratorResult<Buffer, undefined>> {
    if (stream.unconfirmed) {
      link.sentBatches++;
      link.sentMessages += stream.unconfirmed.messages;
      link.sentBytes += stream.unconfirmed.bytes;
      stream.unconfirmed = null;
    }
    if (stream.settled || stream.ending) {
      this.notifyIdle(link);
      return Promise.resolve({ done: true, value: undefined });
    }
    return new Promise((resolvePromise) => {
      stream.pull = resolvePromise;
      // Messages queued in an earlier turn leave now; those of this turn wait for its end (the scheduled pump).
      if (stream.established && link.queue.length > link.queueHead && !link.flushScheduled) this.handOut(link, stream);
      else this.notifyIdle(link);
    });
  }

  /**
   * The stream request was answered 404: the peer is of a version without the stream route. Nothing was sent on it
   * (frames wait for a 200), so the queue is intact and leaves in batches from now on. The answer proves the peer
   * alive: a success for the breaker, not a failure.
   */
  private streamsNotOffered(link: Link, stream: PeerStream, answer: string): void {
    const current = link.stream === stream;
    this.streamEnded(link, stream, 'the peer does not offer streams', true);
    if (!current || this.links.get(link.org) !== link) return;
    if (link.mode === 'stream') this.logger.info({ peer: link.org, answer }, 'peer does not offer streams: sending batches');
    else this.logger.debug({ peer: link.org }, 'peer still does not offer streams');
    link.mode = 'batch';
    link.streamRetryAt = Date.now() + this.streamRetryMs;
    this.onSuccess(link); // schedules the queued messages
  }

  /**
   * Takes one batch from the head of the queue, within the batch limits (both modes: a stream frame or a batch
   * POST carries the same groups). The queue must not be empty.
   */
  private takeBatch(link: Link): { groups: BatchGroup[]; count: number } {
    const groups: BatchGroup[] = [];
    let size = 8;
    let count = 0;
    while (link.queueHead < link.queue.length && count < this.maxMessagesPerBatch) {
      const next = link.queue[link.queueHead]!;
      let group = groups[groups.length - 1];
      const extra = 4 + next.message.length + (group && group.swarm === next.swarm && group.channel === next.channel ? 0 : groupOverhead(next));
      if (count > 0 && size + extra > this.maxBatchBytes) break;
      if (!group || group.swarm !== next.swarm || group.channel !== next.channel) {
        if (groups.length === BATCH_LIMITS.maxGroups) break;
        group = { swarm: next.swarm, channel: next.channel, messages: [] };
        groups.push(group);
      }
      group.messages.push(next.message);
      size += extra;
      count++;
      link.queueHead++;
    }
    if (link.queueHead === link.queue.length) {
      link.queue = [];
      link.queueHead = 0;
    } else if (link.queueHead > 1024 && link.queueHead * 2 > link.queue.length) {
      link.queue = link.queue.slice(link.queueHead);
      link.queueHead = 0;
    }
    return { groups, count };
  }

  /** Builds one frame from the head of the queue and gives it to the waiting stream. */
  private handOut(link: Link, stream: PeerStream): void {
    const { groups, count } = this.takeBatch(link);
    const frame = encodeFrame(groups);
    const now = Date.now();
    stream.unconfirmed = { messages: count, bytes: frame.length, at: now };
    // A peer that stops reading leaves the frame unaccepted: after batchTimeoutMs the stream is given up.
    stream.watchdog ??= setTimeout(() => this.checkStall(link, stream), this.batchTimeoutMs).unref();
    const pull = stream.pull!;
    stream.pull = null;
    pull({ done: false, value: Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength) });
  }

  private checkStall(link: Link, stream: PeerStream): void {
    stream.watchdog = null;
    if (stream.settled || !stream.unconfirmed) return;
    const waited = Date.now() - stream.unconfirmed.at;
    if (waited >= this.batchTimeoutMs) {
      this.streamEnded(link, stream, `PEER_TIMEOUT: a frame waited ${waited} ms for the stream to accept it (the peer does not read)`);
    } else {
      stream.watchdog = setTimeout(() => this.checkStall(link, stream), this.batchTimeoutMs - waited).unref();
    }
  }

  /** Ends a stream gracefully: no more frames (the one in flight still goes), the peer then completes it. */
  private endStream(stream: PeerStream): void {
    stream.ending = true;
    const pull = stream.pull;
    stream.pull = null;
    pull?.({ done: true, value: undefined });
  }

  /**
   * A stream is over: the peer ended or refused it, the connection failed, it stalled, or this pool ended it
   * (`ours`, or `ending` set before). A frame not yet accepted is counted as dropped; unless ours, the end is a
   * failure of the peer (backoff, breaker), and queued messages open a new stream when the backoff allows.
   */
  private streamEnded(link: Link, stream: PeerStream, detail: string, ours = false): void {
    if (stream.settled) return;
    stream.settled = true;
    if (stream.watchdog) clearTimeout(stream.watchdog);
    stream.watchdog = null;
    if (link.stream === stream) link.stream = null;
    if (stream.unconfirmed) {
      link.droppedMessages += stream.unconfirmed.messages;
      stream.unconfirmed = null;
    }
    const pull = stream.pull;
    stream.pull = null;
    pull?.({ done: true, value: undefined });
    stream.abort.abort(); // resets the HTTP/2 stream if it is still open
    const expected = ours || stream.ending || this.closed || this.links.get(link.org) !== link;
    if (!expected) {
      const why = stream.reason ? `${detail}: ${stream.reason}` : detail;
      this.logger.debug({ peer: link.org, err: why }, 'peer stream ended');
      this.onFailure(link, why);
      if (link.queue.length > link.queueHead) this.scheduleFlush(link);
    }
    this.notifyIdle(link);
  }

  /**
   * Batch mode: posts one batch from the head of the queue (POST /peer/v1/messages, answered 200 {accepted,
   * unrouted}) and pumps again with its answer. Failures (transport, timeout, 403, 502-504) are the breaker's, as a
   * failed stream's; any other refusal drops the batch with a warning (the peer would refuse it again).
   */
  private async postBatch(link: Link): Promise<void> {
    const { groups, count } = this.takeBatch(link);
    const body = encodeBatch(groups);
    link.batchInFlight = true;
    try {
      const { statusCode, bytes } = await this.request(link, {
        method: 'POST',
        path: '/peer/v1/messages',
        headers: { 'content-type': BATCH_CONTENT_TYPE },
        body,
        timeoutMs: this.batchTimeoutMs,
        admitted: true,
      });
      const answer = Buffer.from(bytes).toString('utf8').slice(0, 200);
      if (statusCode === 200) {
        link.sentBatches++;
        link.sentMessages += count;
        link.sentBytes += body.length;
      } else {
        link.droppedMessages += count;
        // A failure status is the breaker's to report (as a failed stream is); any other is this batch's refusal.
        if (isFailureStatus(statusCode)) this.logger.debug({ peer: link.org, status: statusCode, answer }, 'peer batch failed');
        else this.logger.warn({ peer: link.org, status: statusCode, answer }, 'peer refused a batch');
      }
    } catch {
      link.droppedMessages += count; // already recorded as a failure of the peer by request()
    } finally {
      link.batchInFlight = false;
    }
    if (link.queue.length > link.queueHead) this.scheduleFlush(link);
    else this.notifyIdle(link);
  }

  /**
   * One HTTP/2 request on the peer's connection, accounted to its breaker: transport failures, timeouts, 403
   * (the peer refuses our identity) and 5xx other than a handler's own failure count as failures. `admitted`: the
   * pool's own batch, already admitted by pump (and sent during close's grace too).
   */
  private async request(
    link: Link,
    request: { method: 'GET' | 'POST'; path: string; headers?: Record<string, string>; body?: Uint8Array; timeoutMs: number; admitted?: boolean },
  ): Promise<{ statusCode: number; bytes: Uint8Array }> {
    if (this.closed && !request.admitted) throw new PeerCallError(link.org, 'PEER_POOL_CLOSED', 'the peer client pool is closed');
    if (!request.admitted && !this.admit(link)) {
      throw new PeerCallError(
        link.org,
        'PEER_CIRCUIT_OPEN',
        `peer ${link.org} is unreachable (circuit ${link.state}, retry in ${Math.max(0, link.retryAt - Date.now())} ms; last error: ${link.lastError ?? 'none'})`,
      );
    }
    let response;
    try {
      response = await link.client.request({
        method: request.method,
        path: request.path,
        headers: request.headers ?? {},
        body: request.body ? Buffer.from(request.body.buffer, request.body.byteOffset, request.body.byteLength) : null,
        idempotent: true, // lets undici multiplex POSTs on the HTTP/2 connection
        signal: AbortSignal.timeout(request.timeoutMs),
      });
      const bytes = new Uint8Array(await response.body.arrayBuffer());
      if (isFailureStatus(response.statusCode)) this.onFailure(link, `HTTP ${response.statusCode}: ${Buffer.from(bytes).toString('utf8').slice(0, 200)}`);
      else this.onSuccess(link);
      return { statusCode: response.statusCode, bytes };
    } catch (error) {
      const err = error as Error & { code?: string; cause?: Error & { code?: string } };
      const timedOut = err.name === 'TimeoutError' || err.cause?.name === 'TimeoutError';
      const code = timedOut ? 'PEER_TIMEOUT' : 'PEER_UNREACHABLE';
      const detail = timedOut ? `no answer within ${request.timeoutMs} ms` : `${err.code ?? err.cause?.code ?? err.name}: ${err.message}`;
      this.onFailure(link, detail);
      throw new PeerCallError(link.org, code, `peer ${link.org} (${link.url}): ${detail}`);
    }
  }

  private replyError(link: Link, statusCode: number, bytes: Uint8Array): PeerCallError {
    let code = `HTTP_${statusCode}`;
    let message = Buffer.from(bytes).toString('utf8').slice(0, 500);
    try {
      const parsed = JSON.parse(message) as { code?: unknown; message?: unknown };
      if (typeof parsed.code === 'string') code = parsed.code;
      if (typeof parsed.message === 'string') message = parsed.message;
    } catch {
      // not JSON: keep the raw text
    }
    return new PeerCallError(link.org, code, `peer ${link.org} answered ${statusCode}: ${message}`, statusCode);
  }
}

/** Answers that count as a failure of the peer: it refuses our identity (403), or it or its proxy is down (502-504). */
function isFailureStatus(statusCode: number): boolean {
  return statusCode === 403 || statusCode === 502 || statusCode === 503 || statusCode === 504;
}
