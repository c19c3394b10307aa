// Cluster ownership benchmark (issue 21): what the Redis claim costs a CONNECT, how fast a takeover reaches the
// node holding the Client ID, and how fast retained messages replicate and load. Brokers, Redis client and
// load generator in this process, one redis-server on 127.0.0.1 (relative numbers, not a ceiling).
// Run: npm run build && node dist/bench/cluster-owner.js   (BENCH_CONNECTS=2000 BENCH_RETAINED=20000)
import { performance } from 'node:perf_hooks';
import { createBroker } from '../src/server/broker.js';
import { RawClient } from '../test/helpers/raw-client.js';
import { TestCluster } from '../test/cluster/owner/nodes.js';
import { redisMissing, startRedis } from '../test/cluster/owner/redis-server.js';

const CONNECTS = Number(process.env.BENCH_CONNECTS ?? 2000);
const RETAINED = Number(process.env.BENCH_RETAINED ?? 20_000);
const PARALLEL = 20;

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;
const fmt = (xs: number[]) => `p50 ${pct(xs, 50).toFixed(2)} ms, p99 ${pct(xs, 99).toFixed(2)} ms`;

/** CONNECT → CONNACK → DISCONNECT of distinct Client IDs, PARALLEL at a time: rate and latency. */
async function connectRun(port: number, tag: string): Promise<{ rate: number; latencies: number[] }> {
  const latencies: number[] = [];
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next < CONNECTS) {
        const i = next++;
        const t0 = performance.now();
        const { client } = await RawClient.connect(port, { clientId: `${tag}-${i}` });
        latencies.push(performance.now() - t0);
        client.send({ type: 14 } as never);
        client.destroy();
      }
    }),
  );
  return { rate: CONNECTS / ((performance.now() - start) / 1000), latencies };
}

async function main(): Promise<void> {
  const missing = redisMissing();
  if (missing) {
    console.log(`skipped: ${missing}`);
    return;
  }
  const redis = await startRedis();
  const cluster = new TestCluster(redis);
  try {
    const a = await cluster.start('a');
    const b = await cluster.start('b');
    const plain = createBroker({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }], sysInterval: 0 });
    await plain.listen();
    await connectRun(plain.address().port, 'warm'); // warm-up
    const alone = await connectRun(plain.address().port, 'plain');
    const claimed = await connectRun(a.port, 'claimed');
    await plain.close();
    console.log(`CONNECT without cluster: ${alone.rate.toFixed(0)}/s, ${fmt(alone.latencies)}`);
    console.log(`CONNECT with the Redis claim: ${claimed.rate.toFixed(0)}/s, ${fmt(claimed.latencies)}`);

    // Takeover across nodes: CONNECT on b of a Client ID connected on a, until a's client has DISCONNECT 0x8E.
    const takeovers: number[] = [];
    for (let i = 0; i < 200; i++) {
      const { client: old } = await RawClient.connect(a.port, { protocolVersion: 5, clientId: `move-${i}` });
      const t0 = performance.now();
      const { client: fresh } = await RawClient.connect(b.port, { protocolVersion: 5, clientId: `move-${i}` });
      await old.next(14);
      takeovers.push(performance.now() - t0);
      old.destroy();
      fresh.destroy();
    }
    console.log(`takeover across nodes (CONNECT on b until DISCONNECT 0x8E on a): ${fmt(takeovers)}`);

    // Retained: RETAINED topics set on a, until b's replica has them all; then a node that joins loads them.
    const before = Number(/used_memory:(\d+)/.exec(await a.redis.info('memory'))![1]);
    const payload = Buffer.alloc(64, 'x');
    const t0 = performance.now();
    for (let i = 0; i < RETAINED; i++) a.broker.publish(`site/${i % 100}/dev/${i}/state`, payload, { retain: true });
    const looped = performance.now() - t0;
    while ((await a.redis.hlen(`${cluster.prefix}:retained`)) < RETAINED) await new Promise((r) => setTimeout(r, 5));
    const written = performance.now() - t0;
    while (b.broker.inspect.counts().retained < RETAINED) await new Promise((r) => setTimeout(r, 5));
    const replicated = performance.now() - t0;
    console.log(`retained: publish loop ${looped.toFixed(0)} ms, all in Redis after ${written.toFixed(0)} ms`);
    const after = Number(/used_memory:(\d+)/.exec(await a.redis.info('memory'))![1]);
    console.log(`retained: ${RETAINED} set on a, all on b after ${replicated.toFixed(0)} ms (${((RETAINED / replicated) * 1000).toFixed(0)}/s); Redis memory ${((after - before) / RETAINED).toFixed(0)} B per message (64 B payload)`);
    const t1 = performance.now();
    const c = await cluster.start('c');
    console.log(`retained: node c started and loaded ${c.broker.inspect.counts().retained} in ${(performance.now() - t1).toFixed(0)} ms`);
    const t2 = performance.now();
    let matched = 0;
    for (let i = 0; i < 1000; i++) matched += c.broker.inspect.retainedMatching(`site/${i % 100}/dev/+/state`).length;
    console.log(`retained: 1000 wildcard lookups on the local replica (${matched / 1000} matches each): ${((performance.now() - t2) / 1000).toFixed(3)} ms each`);
  } finally {
    await cluster.stop();
    await redis.stop();
  }
}

await main();
