// A real redis-server for the cluster tests: a free loopback port, a temporary directory, no persistence;
// ready once it answers PING, killed at the end. (The owner helper's copy; the lead merges it with
// test/helpers/redis.ts of the cluster plane.)
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../../helpers/servers.js';

export const REDIS_SERVER = '/usr/bin/redis-server';

/** Why the Redis tests cannot run here, or undefined when they can. */
export function redisMissing(): string | undefined {
  return spawnSync(REDIS_SERVER, ['--version']).status === 0 ? undefined : 'redis-server not installed';
}

export interface RunningRedis {
  port: number;
  url: string;
  /** A new ioredis connection to it (closed by stop()). */
  connect(options?: { lazy?: boolean }): Redis;
  /** Kills the server (SIGKILL); start() brings a new one up on the same port (empty: no persistence). */
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<RunningRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'petrel-redis-'));
  const spawnServer = (): ChildProcess => spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  let proc = spawnServer();
  const clients: Redis[] = [];
  const connect = (options: { lazy?: boolean } = {}): Redis => {
    const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: options.lazy ?? false, maxRetriesPerRequest: 1, retryStrategy: () => 100 });
    redis.on('error', () => {});
    clients.push(redis);
    return redis;
  };
  const probe = connect();
  const ready = async () => {
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        if ((await probe.ping()) === 'PONG') return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline || proc.exitCode !== null) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server did not answer PING on port ${port}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const kill = async () => {
    if (proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
  };
  await ready();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    connect,
    kill,
    async start() {
      proc = spawnServer();
      await ready();
    },
    async stop() {
      for (const c of clients) c.disconnect();
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
