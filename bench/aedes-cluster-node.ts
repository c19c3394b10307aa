// One node of an Aedes cluster, for bench:cluster's side-by-side run: Aedes 1.x on a plain TCP listener
// (TCP_NODELAY, like the other brokers in the benchmarks), with `mqemitter-redis` (every message goes through
// Redis pub/sub to every node) and `aedes-persistence-redis` (sessions, subscriptions, retained messages and
// QoS 1 queues in Redis): Aedes' documented way to cluster.
//
//   node dist/bench/aedes-cluster-node.js --port 1883 --redis-port 6379 [--id NAME]
//
// Prints "aedes-cluster-node listening on 127.0.0.1:PORT" once both Redis connections and the listener are up;
// SIGTERM / SIGINT close it (and exit after 2 s at the latest).
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';

const require = createRequire(import.meta.url);

function portOption(name: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    console.error(`aedes-cluster-node: --${name} must be a port number (1-65535), got ${JSON.stringify(value)}`);
    process.exit(2);
  }
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { port: { type: 'string' }, 'redis-port': { type: 'string' }, id: { type: 'string' } } });
  const port = portOption('port', values.port);
  const redisPort = portOption('redis-port', values['redis-port']);
  const redis = { host: '127.0.0.1', port: redisPort, family: 4 };

  // Both packages are CommonJS factories; aedes-persistence-redis ships no types.
  const mqemitterRedis = require('mqemitter-redis') as (opts: object) => { state: EventEmitter; subConn: EventEmitter };
  const persistenceRedis = require('aedes-persistence-redis') as (opts: object) => unknown;
  const { Aedes } = await import('aedes');
  const mq = mqemitterRedis(redis);
  // mqemitter-redis re-emits Redis connection errors on `state`; unheard, they would crash the process when
  // Redis restarts. A deployment logs them (once per outage here) and lets ioredis reconnect.
  let down = false;
  const onError = (err: Error) => {
    if (!down) console.error(`aedes-cluster-node ${port}: Redis: ${err.message}`);
    down = true;
  };
  mq.state.on('error', onError);
  mq.subConn.on('ready', () => (down = false));
  // The persistence's own connection, made here only to hear its errors the same way (ioredis prints every
  // reconnection attempt's error when nobody listens).
  const conn = new Redis(redis);
  conn.on('error', onError);
  const aedes = await Aedes.createBroker({ id: values.id, mq, persistence: persistenceRedis({ conn }) });

  const server = createServer({ noDelay: true }, aedes.handle as (socket: Socket) => void);
  server.on('error', (err) => {
    console.error(`aedes-cluster-node: listener on 127.0.0.1:${port}: ${err.message}`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => console.log(`aedes-cluster-node listening on 127.0.0.1:${port} (Redis 127.0.0.1:${redisPort}) pid ${process.pid}`));

  const stop = () => {
    server.close();
    aedes.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

await main();
