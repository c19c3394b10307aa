// What a cross-node session move costs the moving session (issue 21): a publisher on node C sends QoS 1
// messages at a steady rate to a topic that a persistent session subscribes to; the session's client moves
// between nodes A and B every MOVE_MS. Counts the acknowledged messages the session never got (published in
// the window between the old node letting it go and the new node's routes being seen; docs/cluster.md) and
// duplicates, and how long a move takes (CONNECT on the new node to CONNACK). Three nodes and one
// redis-server on 127.0.0.1, all in this process but Redis.
// Run: npm run build && node dist/bench/cluster-handover.js   (MOVES=20 MOVE_MS=200 RATE=1000; SHOW_ORDER=1
// prints each message that came after a later one, with the connection and its neighbours)
import { performance } from 'node:perf_hooks';
import { noRedis, RedisServer } from '../test/helpers/redis.js';
import { startNodes } from '../test/cluster/nodes.js';
import { SETTLE_MAX_MS } from '../src/cluster/handover.js';

const MOVES = Number(process.env.MOVES ?? 20);
const MOVE_MS = Number(process.env.MOVE_MS ?? 200);
const RATE = Number(process.env.RATE ?? 1000);

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))] ?? NaN;

async function main(): Promise<void> {
  if (noRedis) {
    console.log(`skipped: ${noRedis}`);
    return;
  }
  const redis = await RedisServer.start();
  const cleanups: (() => unknown)[] = [];
  try {
    const [a, b, c] = await startNodes({ after: (fn) => cleanups.push(fn) }, redis, ['a', 'b', 'c']);
    const nodes = [a!, b!];
    /** Copies of each message, and those that came again without DUP (a resend of one in flight has DUP). */
    const received = new Map<number, number>();
    const againWithoutDup = new Set<number>();
    const count = (payload: Buffer, dup: boolean) => {
      const n = Number(payload.toString());
      const k = (received.get(n) ?? 0) + 1;
      received.set(n, k);
      if (k > 1 && !dup) againWithoutDup.add(n);
    };
    const persistent = { clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 3600 } };
    // Each connection's messages are counted from its first packet on (one that comes in the CONNACK's TCP
    // segment is emitted before connectAsync resolves), and until it is closed.
    const inboxes: { payload: Buffer | string; dup: boolean }[][] = [];
    const first = await a!.session('mover', persistent);
    inboxes.push(first.got);
    let holder = first.client;
    await holder.subscribeAsync('h/#', { qos: 1 });
    await delay(200); // the route reaches C

    const pub = await c!.mqtt('steady-publisher');
    const acked: number[] = [];
    let running = true;
    const publishing = (async () => {
      let n = 0;
      const start = performance.now();
      while (running) {
        const due = start + (n * 1000) / RATE;
        const wait = due - performance.now();
        if (wait > 0) await delay(wait);
        const i = n++;
        void pub.publishAsync('h/x', String(i), { qos: 1 }).then(() => acked.push(i), () => {});
      }
    })();

    const moveMs: number[] = [];
    for (let m = 0; m < MOVES; m++) {
      await delay(MOVE_MS);
      const to = nodes[(m + 1) % 2]!;
      const t0 = performance.now();
      const { client: next, got } = await to.session('mover', persistent);
      moveMs.push(performance.now() - t0);
      inboxes.push(got);
      holder.end(true);
      holder = next;
    }
    await delay(MOVE_MS);
    running = false;
    await publishing;
    await delay(1000); // the last acknowledgements and deliveries
    // Publisher order: the first copy of each message, connection after connection; a message that comes after
    // a later one (not a DUP resend) is out of order.
    let highest = -1;
    let outOfOrder = 0;
    for (const got of inboxes) {
      for (const p of got) {
        const n = Number(Buffer.from(p.payload).toString());
        if (!p.dup && !received.has(n)) {
          if (n < highest) {
            outOfOrder++;
            if (process.env.SHOW_ORDER) console.log(`  out of order: ${n} after ${highest}, connection ${inboxes.indexOf(got)} (on ${inboxes.indexOf(got) % 2 === 0 ? 'A' : 'B'}), at ${got.indexOf(p)} of ${got.length}: ${got.slice(Math.max(0, got.indexOf(p) - 5), got.indexOf(p) + 3).map((q) => `${Buffer.from(q.payload).toString()}${q.dup ? 'd' : ''}`).join(' ')}`);
          }
          else highest = n;
        }
        count(Buffer.from(p.payload), p.dup);
      }
    }
    const lost = acked.filter((n) => !received.has(n));
    const duplicates = [...received.values()].filter((k) => k > 1).length;
    console.log(`cluster session moves: ${MOVES} moves A<->B every ${MOVE_MS} ms, QoS 1 publisher on C at ${RATE} msg/s`);
    console.log(`  acknowledged ${acked.length}, received ${received.size} distinct, lost ${lost.length} (${(lost.length / MOVES).toFixed(1)} per move, ${((lost.length / MOVES / RATE) * 1000).toFixed(1)} ms of traffic), duplicates ${duplicates} (${againWithoutDup.size} of them without DUP: not a resend of a message in flight at a move)`);
    console.log(`  out of publisher order: ${outOfOrder} (a message that came after a later one; DUP resends not counted); barriers ended by their ${SETTLE_MAX_MS} ms limit on A, B: ${[a!, b!].map((n) => n.view().barriersTimedOut).join(', ')}`);
    console.log(`  move (CONNECT to CONNACK on the other node): p50 ${pct(moveMs, 50).toFixed(1)} ms, max ${Math.max(...moveMs).toFixed(1)} ms`);
    const f = [a!, b!].map((n) => n.view().forwarded);
    console.log(`  handed on by the node a session left (A, B): ${f.map((x) => x.relayed).join(', ')}; dropped there as already delivered: ${f.map((x) => x.relayDuplicates).join(', ')}`);
    if (lost.length > 0) console.log(`  lost messages: ${lost.slice(0, 20).join(', ')}${lost.length > 20 ? ', ...' : ''}`);
  } finally {
    for (const fn of cleanups.reverse()) await fn();
    await redis.close();
  }
}

await main();
