// The ownership tests' view of a real redis-server: the shared one of test/helpers/redis.ts (a free loopback
// port, a temporary directory, no persistence, ready once it answers PING), plus ioredis connections to it that
// go with it.
import { Redis } from 'ioredis';
import { noRedis, RedisServer } from '../../helpers/redis.js';

/** Why the Redis tests cannot run here, or undefined when they can. */
export function redisMissing(): string | undefined {
  return noRedis === false ? undefined : noRedis;
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
  const server = await RedisServer.start();
  const clients: Redis[] = [];
  return {
    port: server.port,
    url: server.url,
    connect(options = {}) {
      const redis = new Redis({ port: server.port, host: '127.0.0.1', lazyConnect: options.lazy ?? false, maxRetriesPerRequest: 1, retryStrategy: () => 100 });
      redis.on('error', () => {});
      clients.push(redis);
      return redis;
    },
    kill: () => server.stop(),
    start: () => server.restart(),
    async stop() {
      for (const c of clients) c.disconnect();
      await server.close();
    },
  };
}
