// What differs between the three forms of Redis the cluster runs on (one server, a Sentinel group, a Redis
// Cluster) for the commands that are not about one key. On a Sentinel group the connection is to the current
// master, so everything is as on one server. On a Redis Cluster a command without a key goes to any node,
// and a pipeline must stay on one node: the helpers here go to every master, or send one command per key.
// No runtime import of ioredis here (the broker loads it only with `cluster`): a Cluster says `isCluster`.
import type { Cluster, Redis, RedisOptions } from 'ioredis';

function asCluster(redis: Redis | Cluster): Cluster | undefined {
  return (redis as { isCluster?: boolean }).isCluster === true ? (redis as Cluster) : undefined;
}

/**
 * Which Redis this is, as its run_id(s): it changes when Redis restarted (and may have lost its data). On a
 * Redis Cluster, every master's, sorted: one master restarted is a restart (its slots' data may be gone).
 * After a Sentinel failover it is the new master's: a restart too (the replica may lack the last writes).
 */
export async function redisRunId(redis: Redis | Cluster): Promise<string | undefined> {
  const cluster = asCluster(redis);
  const servers: (Redis | Cluster)[] = cluster === undefined ? [redis] : cluster.nodes('master');
  const ids = await Promise.all(servers.map(async (r) => /run_id:(\w+)/.exec(await r.info('server'))?.[1]));
  if (ids.length === 0 || ids.some((id) => id === undefined)) return undefined;
  return ids.sort().join(',');
}

/**
 * SET key value NX for each entry, together: a pipeline on one server or a Sentinel master; one command per
 * key on a Redis Cluster (an ioredis pipeline there must keep to one node's slots).
 */
export async function setEachNX(redis: Redis | Cluster, entries: [key: string, value: string][]): Promise<void> {
  if (entries.length === 0) return;
  if (asCluster(redis) !== undefined) {
    await Promise.all(entries.map(([key, value]) => redis.set(key, value, 'NX')));
    return;
  }
  const pipeline = redis.pipeline();
  for (const [key, value] of entries) pipeline.set(key, value, 'NX');
  await pipeline.exec();
}

/** How long a catch-up that failed waits before it is tried again (Redis may be back before it serves). */
export const CATCH_UP_RETRY_MS = 500;

/**
 * Calls `back` each time Redis is back after an outage (what was missed is caught up there). One server or a
 * Sentinel master: the pub/sub connection `sub` is ready again (ioredis subscribed it again). A Redis Cluster:
 * its pub/sub connection moves to another node by itself and never says so, so the command connection `redis`
 * tells: 'ready' after the whole cluster was lost, '+node' when a node (maybe restarted, without its slots'
 * data) is back in its pool. Calls close together (one per node) are one call, one runs at a time, and one
 * that fails (a Redis Cluster answers CLUSTERDOWN until every node is back) is tried again until it works or
 * `stopped()` says so: no event may come after the last node returns, so a failed catch-up is never left.
 */
export function whenRedisBack(redis: Redis | Cluster, sub: Redis | Cluster, back: () => Promise<void>, stopped: () => boolean, failed: (err: unknown) => void): void {
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let again = false;
  let reported = false;
  const run = async (): Promise<void> => {
    if (stopped()) return;
    if (running) {
      again = true; // once this one ends: what changed meanwhile is caught up too
      return;
    }
    running = true;
    let ok = false;
    try {
      await back();
      ok = true;
      reported = false;
    } catch (err) {
      if (!reported) failed(err); // once per outage, not per retry
      reported = true;
    }
    running = false;
    if (again || !ok) {
      again = false;
      soon(ok ? 0 : CATCH_UP_RETRY_MS);
    }
  };
  const soon = (ms: number) => {
    if (timer !== undefined || stopped()) return;
    timer = setTimeout(() => {
      timer = undefined;
      if (redis.status === 'ready' || asCluster(redis) === undefined) void run();
      else soon(CATCH_UP_RETRY_MS); // not connected yet: its 'ready' may already be past
    }, ms);
    timer.unref();
  };
  if (asCluster(redis) === undefined) {
    sub.on('ready', () => void run());
    return;
  }
  redis.on('ready', () => soon(200));
  redis.on('+node', () => soon(200));
}

/**
 * A second connection like `redis` with `options` for its servers (a Redis Cluster takes them as the options
 * of each node's connection, and `enableOfflineQueue` for itself), not connected yet.
 */
export function duplicateWith(redis: Redis | Cluster, options: RedisOptions): Redis {
  const cluster = asCluster(redis);
  if (cluster === undefined) return (redis as Redis).duplicate({ ...options, lazyConnect: true });
  return cluster.duplicate([], { lazyConnect: true, enableOfflineQueue: options.enableOfflineQueue, redisOptions: { ...cluster.options.redisOptions, ...options } }) as unknown as Redis;
}

/** Every key matching `match` (SCAN; on a Redis Cluster, on every master). */
export async function scanKeys(redis: Redis | Cluster, match: string): Promise<string[]> {
  const cluster = asCluster(redis);
  const servers: Redis[] = cluster === undefined ? [redis as Redis] : cluster.nodes('master');
  const keys: string[] = [];
  for (const server of servers) {
    let cursor = '0';
    do {
      const [next, found] = await server.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      cursor = next;
      for (const key of found) keys.push(key);
    } while (cursor !== '0');
  }
  return keys;
}

/** GET of each key (MGET on one server; one GET per key on a Redis Cluster, the keys being in any slot). */
export function getEach(redis: Redis | Cluster, keys: string[]): Promise<(string | null)[]> {
  if (keys.length === 0) return Promise.resolve([]);
  if (asCluster(redis) === undefined) return redis.mget(keys);
  return Promise.all(keys.map((key) => redis.get(key)));
}
