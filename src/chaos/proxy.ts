// Owns the chaos tool's fault-injecting TCP proxies (node:net, loopback): one LinkProxy per directed link A→B
// carries every connection node A opens to node B's peer port, byte for byte (TLS stays end to end), and can
// cut the link (refuse and reset connections, or black-hole them: accept and silently drop every byte), delay
// it (a fixed latency per chunk, order preserved) and heal it. A ProxyMesh holds the links of a whole cluster.
import { createServer, connect, type Server, type Socket } from 'node:net';

/** How a cut link fails: `reset` refuses and resets connections; `blackhole` accepts them and drops every byte. */
export type CutMode = 'reset' | 'blackhole';

export interface LinkState {
  cut: CutMode | null;
  delayMs: number;
}

export interface LinkStats {
  connections: number;
  refused: number;
  bytesForwarded: number;
  bytesDropped: number;
}

/** One direction of one connection: chunks wait `delayMs` each, written in the order they came. */
class DelayedPipe {
  private readonly queue: { due: number; chunk: Buffer }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private waitingDrain = false;

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly link: LinkProxy,
  ) {
    from.on('data', (chunk: Buffer) => this.onData(chunk));
    from.on('end', () => this.whenDrained(() => to.end()));
  }

  private onData(chunk: Buffer): void {
    const state = this.link.state;
    if (state.cut === 'blackhole') {
      this.link.stats.bytesDropped += chunk.length;
      return;
    }
    if (state.delayMs <= 0 && this.queue.length === 0) {
      this.write(chunk);
      return;
    }
    this.queue.push({ due: Date.now() + state.delayMs, chunk });
    this.schedule();
  }

  private write(chunk: Buffer): void {
    if (this.to.destroyed) return;
    this.link.stats.bytesForwarded += chunk.length;
    if (!this.to.write(chunk) && !this.waitingDrain) {
      // Backpressure: stop reading until the other side drains.
      this.waitingDrain = true;
      this.from.pause();
      this.to.once('drain', () => {
        this.waitingDrain = false;
        this.from.resume();
      });
    }
  }

  private schedule(): void {
    if (this.timer || this.queue.length === 0) return;
    const wait = Math.max(0, this.queue[0]!.due - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      const now = Date.now();
      while (this.queue.length && this.queue[0]!.due <= now) {
        const { chunk } = this.queue.shift()!;
        if (this.link.state.cut === 'blackhole') this.link.stats.bytesDropped += chunk.length;
        else this.write(chunk);
      }
      this.schedule();
    }, wait);
    this.timer.unref();
  }

  private whenDrained(then: () => void): void {
    if (this.queue.length === 0) then();
    else {
      // Bounded: the queue empties within the largest delay in it.
      const check = setInterval(() => {
        if (this.queue.length === 0 || this.to.destroyed) {
          clearInterval(check);
          then();
        }
      }, 20);
      check.unref();
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.queue.length = 0;
  }
}

/** A TCP proxy for the directed link `from → to`: listens on 127.0.0.1 (a free port), forwards to `target`. */
export class LinkProxy {
  readonly state: LinkState = { cut: null, delayMs: 0 };
  readonly stats: LinkStats = { connections: 0, refused: 0, bytesForwarded: 0, bytesDropped: 0 };
  private readonly sockets = new Set<Socket>();
  private readonly pipes = new Set<DelayedPipe>();
  private server: Server | null = null;
  private listenPort = 0;

  constructor(
    readonly from: string,
    readonly to: string,
    private readonly target: { host: string; port: number },
  ) {}

  get port(): number {
    return this.listenPort;
  }

  get name(): string {
    return `${this.from}→${this.to}`;
  }

  async start(host = '127.0.0.1'): Promise<number> {
    const server = createServer({ pauseOnConnect: false, noDelay: true }, (client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', () => undefined);
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy: no TCP address');
    this.server = server;
    this.listenPort = address.port;
    return this.listenPort;
  }

  private accept(client: Socket): void {
    client.on('error', () => undefined);
    if (this.state.cut === 'reset') {
      this.stats.refused++;
      client.resetAndDestroy();
      return;
    }
    this.stats.connections++;
    const upstream = connect({ host: this.target.host, port: this.target.port, noDelay: true });
    upstream.on('error', () => undefined);
    this.sockets.add(client);
    this.sockets.add(upstream);
    const forward = new DelayedPipe(client, upstream, this);
    const backward = new DelayedPipe(upstream, client, this);
    this.pipes.add(forward);
    this.pipes.add(backward);
    const close = () => {
      forward.stop();
      backward.stop();
      this.pipes.delete(forward);
      this.pipes.delete(backward);
      this.sockets.delete(client);
      this.sockets.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', close);
    upstream.on('close', close);
  }

  /** Cuts the link: `reset` also resets every open connection; `blackhole` keeps them open and silent. */
  cut(mode: CutMode = 'reset'): void {
    this.state.cut = mode;
    if (mode === 'reset') this.resetConnections();
  }

  delay(ms: number): void {
    this.state.delayMs = Math.max(0, ms);
  }

  /**
   * Back to a clean link. Connections that were black-holed have lost bytes in the middle of a TLS stream: they
   * are reset so both ends reconnect (as a real network would after a long outage, through TCP timeouts).
   */
  heal(): void {
    const wasBlackhole = this.state.cut === 'blackhole';
    this.state.cut = null;
    this.state.delayMs = 0;
    if (wasBlackhole) this.resetConnections();
  }

  get faulty(): boolean {
    return this.state.cut !== null || this.state.delayMs > 0;
  }

  private resetConnections(): void {
    for (const socket of [...this.sockets]) {
      if (!socket.destroyed) socket.resetAndDestroy();
    }
  }

  async close(): Promise<void> {
    this.resetConnections();
    for (const pipe of this.pipes) pipe.stop();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** Every directed link between the nodes of a cluster: `link(a, b)` carries a's connections to b. */
export class ProxyMesh {
  private readonly links = new Map<string, LinkProxy>();

  private constructor(readonly orgs: string[]) {}

  /** Starts one proxy per ordered pair of orgs; `peerPorts` are the nodes' real peer ports. */
  static async start(orgs: string[], peerPorts: Record<string, number>, host = '127.0.0.1'): Promise<ProxyMesh> {
    const mesh = new ProxyMesh(orgs);
    try {
      for (const from of orgs) {
        for (const to of orgs) {
          if (from === to) continue;
          const port = peerPorts[to];
          if (port === undefined) throw new Error(`proxy mesh: no peer port for ${to}`);
          const link = new LinkProxy(from, to, { host, port });
          await link.start(host);
          mesh.links.set(`${from}\n${to}`, link);
        }
      }
    } catch (error) {
      await mesh.close();
      throw error;
    }
    return mesh;
  }

  link(from: string, to: string): LinkProxy {
    const link = this.links.get(`${from}\n${to}`);
    if (!link) throw new Error(`proxy mesh: no link ${from}→${to}`);
    return link;
  }

  all(): LinkProxy[] {
    return [...this.links.values()];
  }

  /** Cuts every link between `side` and the rest of the cluster, in the given directions. */
  isolate(side: string[], options: { mode?: CutMode; inbound?: boolean; outbound?: boolean } = {}): LinkProxy[] {
    const cut: LinkProxy[] = [];
    const inSide = new Set(side);
    for (const link of this.all()) {
      const outbound = inSide.has(link.from) && !inSide.has(link.to);
      const inbound = !inSide.has(link.from) && inSide.has(link.to);
      if ((outbound && options.outbound !== false) || (inbound && options.inbound !== false)) {
        link.cut(options.mode ?? 'reset');
        cut.push(link);
      }
    }
    return cut;
  }

  healAll(): void {
    for (const link of this.all()) link.heal();
  }

  async close(): Promise<void> {
    await Promise.all(this.all().map((link) => link.close()));
  }
}
