// A TCP proxy on 127.0.0.1 in front of a server (a redis-server of the test's), to lose replies on purpose: while
// replies are held the server's answers are swallowed (what the client sent still reaches the server and runs),
// and cut() then drops the client's connections, as a network that fails between a command and its reply.
import net from 'node:net';

export class TcpProxy {
  private holding = false;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  /** Bytes of replies swallowed while holding. */
  swallowed = 0;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(targetPort: number): Promise<TcpProxy> {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port);
    server.on('connection', (client) => {
      const upstream = net.connect({ port: targetPort, host: '127.0.0.1' });
      const pair: [net.Socket, net.Socket] = [client, upstream];
      proxy.pairs.add(pair);
      const drop = () => {
        proxy.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('data', (d) => upstream.write(d));
      upstream.on('data', (d) => {
        if (proxy.holding) proxy.swallowed += d.length;
        else client.write(d);
      });
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    return proxy;
  }

  /** From now on the server's replies are swallowed (until cut()). */
  holdReplies(): void {
    this.holding = true;
    this.swallowed = 0;
  }

  /** Drops every connection through the proxy (the held replies never arrive); new ones pass as usual. */
  cut(): void {
    for (const [client, upstream] of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
    this.holding = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}
