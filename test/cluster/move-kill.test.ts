// A session moving between nodes survives the old node being SIGKILLed in the middle of the move (issue 21:
// "a node killed with SIGKILL loses no message whose acknowledgement reached its publisher"). Node A (a child
// process, so it can be stopped and killed) holds a persistent session; publishers on A and on C publish to it
// continuously; its client moves to B, and A is stopped a moment after it kicked the old connection (before
// it could send its end marker), then killed. Every message whose PUBACK (QoS 2: PUBCOMP) reached its publisher
// must arrive at the session on B, none twice but as a DUP resend, in each publisher's order [MQTT-4.6.0-5].
// What A got for the leaving session was handed on to B's inbox before its publisher was answered
// (handover.ts); what other nodes sent A that A never read is replayed by B from A's inbox (handover-replay.ts).
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import mqtt, { Store, type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { noRedis, RedisServer } from '../helpers/redis.js';
import { describeOrSkip } from '../helpers/skip.js';
import { delay, eventually } from '../helpers/wait.js';
import { childNode } from './child-node.js';
import { deliveryFaults, publishing } from './deliveries.js';
import { inbox, startNode } from './nodes.js';

let prefixes = 0;
/** Room for what B holds back while it waits for A's end marker (PENDINGS_WAIT_MS), none of it dropped for the queue's bound. */
const MAX_QUEUED = 20_000;

const connectTo = (port: number, options: IClientOptions): MqttClient => mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId: 'mover', reconnectPeriod: 0, ...options });

describeOrSkip('cluster: a session move survives the old node being SIGKILLed', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.close();
  });

  for (const [qos, stopAfterMs] of [
    [1, 0],
    [1, 2],
    [1, 6],
    [2, 2],
  ] as const) {
    it(`QoS ${qos}, A stopped ${stopAfterMs} ms after it kicked the old connection, then killed: every acknowledged message of the publishers on A and on C reaches the session on B, none twice without DUP, in publisher order [MQTT-4.6.0-5]`, async (t) => {
      const prefix = `movekill${process.pid}x${prefixes++}`;
      // A is taken for dead after B read its inbox for the session: its adopter deletes that inbox once it
      // replayed it for the sessions A still held (not this one: B holds it). B reads it at most
      // HANDOVER_TIMEOUT_MS + PENDINGS_WAIT_MS + a barrier (4.5 s) after its claim.
      const cluster = { prefix, heartbeatTimeout: 6, heartbeatInterval: 100 };
      const a = await childNode(t, redis, 'a', cluster, { maxQueuedMessages: MAX_QUEUED });
      const b = await startNode(t, redis, 'b', cluster, { maxQueuedMessages: MAX_QUEUED });
      const c = await startNode(t, redis, 'c', cluster, { maxQueuedMessages: MAX_QUEUED });
      await eventually(() => b.view().nodes.length === 3 && c.view().nodes.length === 3, 5000, 'B and C to see the three nodes');
      // One client moving: its connections share what it stores (a QoS 2 message is given to the application at PUBREL).
      const persistent = { clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 }, incomingStore: new Store({ clean: false }) };
      const inboxes: IPublishPacket[][] = [];
      const old = connectTo(a.port, persistent);
      t.after(() => old.end(true));
      inboxes.push(inbox(old));
      await new Promise((resolve, reject) => {
        old.once('connect', resolve);
        old.once('error', reject);
      });
      await old.subscribeAsync('mk/#', { qos });
      await eventually(() => b.view().remoteRoutes === 1 && c.view().remoteRoutes === 1, 5000, 'the route of A on B and C');

      const onA = mqtt.connect(`mqtt://127.0.0.1:${a.port}`, { clientId: 'pub-a', reconnectPeriod: 0, protocolVersion: 5 });
      t.after(() => onA.end(true));
      await new Promise((resolve) => onA.once('connect', resolve));
      onA.on('error', () => {});
      const onC = await c.mqtt('pub-c', { protocolVersion: 5 });
      const pubs = { a: publishing(onA, 'a', qos), c: publishing(onC, 'c', qos) };
      await delay(150);

      // The move: A is stopped `stopAfterMs` after it closed the old connection (it has been kicked and hands
      // on what it gets for the session), before it could hear that B serves the session and send its marker.
      let stoppedAt = 0;
      old.stream.once('close', () => {
        setTimeout(() => {
          a.child.kill('SIGSTOP');
          stoppedAt = Date.now();
        }, stopAfterMs);
      });
      const moved = connectTo(b.port, persistent);
      t.after(() => moved.end(true));
      inboxes.push(inbox(moved));
      const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
        moved.once('connect', resolve);
        moved.once('error', reject);
      });
      assert.ok(stoppedAt > 0, 'A was stopped during the move');
      assert.equal(connack.sessionPresent, true);
      await a.kill('SIGKILL');
      await delay(200); // C goes on publishing, to B now
      await pubs.a.stop();
      await pubs.c.stop();
      assert.ok(pubs.a.acked.length > 0 && pubs.c.acked.length > 0, 'both publishers were answered');

      const key = (p: IPublishPacket) => p.payload.toString();
      const want = [...pubs.a.acked.map((i) => `a:${i}`), ...pubs.c.acked.map((i) => `c:${i}`)];
      const got = () => new Set(inboxes.flatMap((list) => list.map(key)));
      await eventually(() => want.every((m) => got().has(m)), 10_000, 'every acknowledged message at the session').catch(() => {});
      if (process.env.MK_DEBUG !== undefined) console.log('DEBUG', JSON.stringify({ ackedA: [pubs.a.acked[0], pubs.a.acked.at(-1), pubs.a.acked.length], ackedC: [pubs.c.acked[0], pubs.c.acked.at(-1), pubs.c.acked.length], inboxes: inboxes.map((l) => l.map((p) => key(p) + (p.dup ? '*' : '')).join(' ')), missing: want.filter((m) => !got().has(m)).join(' ') }));
      assert.deepEqual(want.filter((m) => !got().has(m)), [], 'no acknowledged message missing');
      await delay(300);
      const { withoutDup, late } = deliveryFaults(inboxes);
      assert.deepEqual(withoutDup, [], 'no message twice but as the resend of one in flight at the move');
      assert.deepEqual(late, [], 'each publisher\'s messages in its order');
      t.diagnostic(`acknowledged: ${pubs.a.acked.length} on A, ${pubs.c.acked.length} on C; handed on to B and kept or delivered: ${b.view().forwarded.relayed === undefined ? '?' : b.view().forwarded.received}`);
    });
  }
});
