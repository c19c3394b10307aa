// A persistent session moving between nodes while messages flow (issue 21: "at QoS 1/2 the hand-over between
// nodes is at least once with duplicates removed"): a publisher on node C sends a steady stream; the
// subscriber's client moves A -> B -> A ... mid-stream. Every acknowledged message arrives; a message comes
// twice only as the resend (DUP) of one in flight at a move [MQTT-4.4.0-1], in publisher order; once the old node let the session
// go, it no longer announces a route for it. (src/cluster/handover.ts; the same with numbers:
// bench/cluster-handover.ts.)
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { Store, type IPublishPacket } from 'mqtt';
import { GRACE_MS } from '../../src/cluster/handover.js';
import { noRedis, RedisServer } from '../helpers/redis.js';
import { describeOrSkip } from '../helpers/skip.js';
import { delay, eventually } from '../helpers/wait.js';
import { childNode } from './child-node.js';
import { startNode, startNodes, type Node } from './nodes.js';

const MOVES = 5;
const MESSAGES = 500;

describeOrSkip('cluster: a session moving between nodes while messages flow', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.close();
  });

  for (const qos of [1, 2] as const) {
    it(`QoS ${qos}: ${MOVES} moves between A and B during ${MESSAGES} messages published on C: every acknowledged one arrives, none twice but as a DUP resend; the old node's route goes`, async (t) => {
      const [a, b, c] = await startNodes(t, redis, ['a', 'b', 'c']);
      // One client moving: its connections share what it stores (a QoS 2 message is given to the application at
      // PUBREL, which may come on the next connection [MQTT-4.3.3]).
      const persistent = { clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 }, incomingStore: new Store({ clean: false }) };
      const inboxes: IPublishPacket[][] = [];
      const first = await a!.session('mover', persistent);
      inboxes.push(first.got);
      let holder = first.client;
      await holder.subscribeAsync('mv/#', { qos });
      await eventually(() => c!.view().remoteRoutes === 1, 3000, 'the route of A on C');

      const pub = await c!.mqtt('steady', { protocolVersion: 5 });
      const acked: number[] = [];
      const publishing = (async () => {
        for (let i = 0; i < MESSAGES; i++) {
          void pub.publishAsync('mv/x', String(i), { qos }).then(() => acked.push(i), () => {});
          if (i % 5 === 4) await delay(2);
        }
      })();
      const nodes: Node[] = [a!, b!];
      for (let m = 1; m <= MOVES; m++) {
        await delay(60);
        const next = await nodes[m % 2]!.session('mover', persistent);
        inboxes.push(next.got);
        holder.end(true);
        holder = next.client;
      }
      await publishing;
      await eventually(() => acked.length === MESSAGES, 10_000, 'every PUBLISH acknowledged');
      const copies = new Map<number, number>();
      const withoutDup: number[] = [];
      await eventually(
        () => {
          copies.clear();
          withoutDup.length = 0;
          for (const got of inboxes) {
            for (const p of got) {
              const n = Number(p.payload.toString());
              const k = (copies.get(n) ?? 0) + 1;
              copies.set(n, k);
              if (k > 1 && !p.dup) withoutDup.push(n);
            }
          }
          return acked.every((n) => copies.has(n));
        },
        10_000,
        'every acknowledged message at the subscriber',
      );
      assert.deepEqual(withoutDup, [], 'no message twice but as the resend of one in flight at a move');
      // Publisher order [MQTT-4.6.0-5]: the first copy of each message, connection after connection, never after
      // a later one (what the old node kept goes into the session before what reached the new node directly).
      const seen = new Set<number>();
      const late: number[] = [];
      let highest = -1;
      for (const got of inboxes) {
        for (const p of got) {
          const n = Number(p.payload.toString());
          if (p.dup || seen.has(n)) continue;
          seen.add(n);
          if (n < highest) late.push(n);
          else highest = n;
        }
      }
      assert.deepEqual(late, [], 'in publisher order');

      // The node the session left last lets it go after the grace, and its route with it.
      const left = nodes[(MOVES + 1) % 2]!;
      const holds = nodes[MOVES % 2]!;
      const localRoutes = (n: Node) => n.view().localRoutes;
      await eventually(() => !left.broker.inspect.hasSession('mover') && localRoutes(left) === 0, GRACE_MS + 3000, 'the old node to let the session and its route go');
      assert.equal(localRoutes(holds), 1);
      await eventually(() => c!.view().remoteRoutes === 1, 3000, 'C to see one route left');
    });
  }

  it('a node that does not answer the old node\'s barrier (stopped) holds its end marker back at most SETTLE_MAX_MS: counted in barriersTimedOut', async (t) => {
    const cluster = { prefix: `barrier${process.pid}`, heartbeatTimeout: 10, heartbeatInterval: 100 };
    const a = await startNode(t, redis, 'a', cluster);
    const b = await startNode(t, redis, 'b', cluster);
    const c = await childNode(t, redis, 'c', cluster);
    await eventually(() => a.view().nodes.length === 3 && b.view().nodes.length === 3, 5000, 'A and B to see the three nodes');
    const persistent = { clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 } };
    const first = await a.session('mover', persistent);
    await first.client.subscribeAsync('bt/#', { qos: 1 });
    assert.equal(a.view().barriersTimedOut, 0);
    c.child.kill('SIGSTOP'); // alive for the others (its heartbeat key lasts 10 s), reading nothing
    await b.session('mover', persistent);
    await eventually(() => a.view().barriersTimedOut === 1, 5000, 'A\'s barrier ended by its limit');
    assert.equal(b.view().barriersTimedOut, 0, 'B asked for none');
  });
});
