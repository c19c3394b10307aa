// A redis-server of the test's own: on a free loopback port, in a temp dir, nothing saved to disk; waited
// for (PING), stopped (and restartable on the same port) by the test, killed when the test process exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freePort } from './servers.js';
import { delay } from './wait.js';
import { killWithTest } from './children.js';

/** The redis-server binary (REDIS_SERVER=/path chooses another), if installed. */
export const REDIS_SERVER: string | undefined = (() => {
  if (process.env.REDIS_SERVER !== undefined) return existsSync(process.env.REDIS_SERVER) ? process.env.REDIS_SERVER : undefined;
  const candidates = ['/usr/bin/redis-server', '/usr/local/bin/redis-server', ...(process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, 'redis-server'))];
  return candidates.find((p) => existsSync(p));
})();

/** A reason to skip, when redis-server is missing. */
export const noRedis: string | false = REDIS_SERVER === undefined ? 'redis-server not installed' : false;


/** One answer to one command in RESP, on a connection of its own (no client library needed). */
export function redisCommand(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let data = '';
    s.setEncoding('utf8');
    s.once('error', reject);
    s.on('data', (chunk) => {
      data += chunk;
      if (respEnd(data, 0) === data.length) {
        s.destroy();
        resolve(data);
      }
    });
    s.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  });
}

/** Where the RESP value starting at `i` ends, or -1 when it is not all there yet (bulk lengths count bytes: ASCII assumed). */
function respEnd(text: string, i: number): number {
  const eol = text.indexOf('\r\n', i);
  if (eol < 0) return -1;
  const kind = text[i];
  if (kind === '$') {
    const len = Number(text.slice(i + 1, eol));
    if (len < 0) return eol + 2;
    return text.length >= eol + 2 + len + 2 ? eol + 2 + len + 2 : -1;
  }
  if (kind === '*') {
    let at = eol + 2;
    for (let n = Number(text.slice(i + 1, eol)); n > 0; n--) {
      at = respEnd(text, at);
      if (at < 0) return -1;
    }
    return at;
  }
  return eol + 2;
}

export class RedisServer {
  private process: ChildProcess | undefined;
  readonly dir = mkdtempSync(join(tmpdir(), 'petrel-redis-'));

  private constructor(
    readonly port: number,
    /** AOF with fsync on every write: what Redis acknowledged survives its restart (else it comes back empty). */
    private readonly persistent: boolean,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts one on a free port and waits until it answers PING. */
  static async start(options: { persistent?: boolean } = {}): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), options.persistent ?? false);
    await server.restart();
    return server;
  }

  /** Starts it again on the same port (after stop()): empty unless persistent. */
  async restart(): Promise<void> {
    if (REDIS_SERVER === undefined) throw new Error('redis-server not installed');
    const p = spawn(REDIS_SERVER, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', this.persistent ? 'yes' : 'no', '--appendfsync', 'always', '--dir', this.dir, '--loglevel', 'warning'], { stdio: 'ignore' });
    this.process = p;
    killWithTest(p);
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        if ((await redisCommand(this.port, 'PING')).startsWith('+PONG')) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline || p.exitCode !== null) throw new Error(`redis-server did not start on port ${this.port}`);
      await delay(20);
    }
  }

  /** Kills it (SIGKILL: what is in it is gone) and waits until it is gone. */
  async stop(): Promise<void> {
    const p = this.process;
    this.process = undefined;
    if (p === undefined || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
