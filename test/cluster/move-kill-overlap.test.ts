// Two persistent sessions with the same subscription on node A (a child process): `mover` moves to B while
// `stayer` stays offline on A, a publisher on C publishes to both continuously, and A is SIGKILLed while it
// hands on to B what it reads for the mover (its XADDs into B's inbox held back by hold-handons.ts, so the
// window is open every run: on a live cluster it is one Redis round trip). A went on committing what it queued
// for the stayer meanwhile; the survivor that adopts the stayer replays A's inbox after A's committed read
// position, and B replays it for the mover after the mover's hand-on position (handover-replay.ts). Each
// session must get every message whose PUBACK (QoS 2: PUBCOMP) reached the publisher, none twice but as a DUP
// resend [MQTT-4.3.3-2], in publisher order [MQTT-4.6.0-5]. (Issue 21: "QoS 2 stays exactly once end to end".)
// The second case: both sessions move to B, 300 ms apart, A killed 100 ms after the second kick; B replays
// for each from its own hand-on position, not from the first one's older position (what the second received on
// A meanwhile would come again).
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import mqtt, { Store, type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { noRedis, RedisServer } from '../helpers/redis.js';
import { describeOrSkip } from '../helpers/skip.js';
import { delay, eventually } from '../helpers/wait.js';
import { childNode } from './child-node.js';
import { deliveryFaults, publishing } from './deliveries.js';
import { holdHandOnsEnv } from './hold-handons.js';
import { inbox, startNode, type Ctx, type Node } from './nodes.js';

let prefixes = 0;
const MAX_QUEUED = 20_000;

/** A client of session `clientId` on `port` (5.0, kept 600 s); resolves at its CONNACK, with what it receives. */
async function sessionClient(port: number, clientId: string, options: IClientOptions): Promise<{ client: MqttClient; got: IPublishPacket[]; sessionPresent: boolean }> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, reconnectPeriod: 0, clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 600 }, ...options });
  const got = inbox(client);
  const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  return { client, got, sessionPresent: connack.sessionPresent };
}

type SessionClient = Awaited<ReturnType<typeof sessionClient>>;

/**
 * Node A (a child process whose hand-ons to B can be held back: hold-handons.ts), B and C on `redis`, sessions
 * `names` connected to A and subscribed to `mk/#` at `qos`, and a publisher on C publishing for 150 ms already.
 */
async function cluster(t: Ctx, redis: RedisServer, qos: 1 | 2, names: string[]) {
  const options = { prefix: `moveoverlap${process.pid}x${prefixes++}`, heartbeatTimeout: 3, heartbeatInterval: 100 };
  const a = await childNode(t, redis, 'a', options, { maxQueuedMessages: MAX_QUEUED }, holdHandOnsEnv());
  const b = await startNode(t, redis, 'b', options, { maxQueuedMessages: MAX_QUEUED });
  const c = await startNode(t, redis, 'c', options, { maxQueuedMessages: MAX_QUEUED });
  await eventually(() => b.view().nodes.length === 3 && c.view().nodes.length === 3, 5000, 'B and C to see the three nodes');
  // One client per session: its connections share what it stores (a QoS 2 message is given to the application at PUBREL).
  const stores = names.map(() => ({ incomingStore: new Store({ clean: false }) }));
  const olds = await Promise.all(names.map((name, i) => sessionClient(a.port, name, stores[i]!)));
  for (const old of olds) {
    t.after(() => old.client.end(true));
    await old.client.subscribeAsync('mk/#', { qos });
  }
  await eventually(() => c.view().remoteRoutes === 1, 5000, 'the route of A on C');
  const pub = publishing(await c.mqtt('pub-c', { protocolVersion: 5 }), 'c', qos);
  await delay(150);
  return { a, b, c, stores, olds, pub };
}

/** Each session (its connections' deliveries) got every message acknowledged to `pub`, none twice but as a DUP resend, in order. */
async function checkSessions(pub: { acked: number[] }, sessions: [string, IPublishPacket[][]][]): Promise<void> {
  const want = pub.acked.map((n) => `c:${n}`);
  for (const [name, lists] of sessions) {
    const got = () => new Set(lists.flatMap((list) => list.map((p) => p.payload.toString())));
    await eventually(() => want.every((m) => got().has(m)), 10_000, `every acknowledged message at the ${name} session`).catch(() => {});
    assert.deepEqual(want.filter((m) => !got().has(m)), [], `no acknowledged message missing at the ${name} session`);
  }
  await delay(300);
  for (const [name, lists] of sessions) {
    const { withoutDup, late } = deliveryFaults(lists);
    assert.deepEqual(withoutDup, [], `no message twice at the ${name} session but as the resend of one in flight (${withoutDup.length} were)`);
    assert.deepEqual(late, [], `the publisher's order at the ${name} session`);
  }
}

describeOrSkip('cluster: sessions with overlapping subscriptions, one moving, on a node SIGKILLed mid-hand-on', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.close();
  });

  for (const qos of [1, 2] as const) {
    it(`QoS ${qos}: the adopted session and the moved one each get every acknowledged message once (DUP resends aside), in publisher order [MQTT-4.3.3-2] [MQTT-4.6.0-5]`, async (t) => {
      // The stayer goes offline on A (having received the first messages), the mover stays connected there.
      const { a, b, c, stores, olds, pub } = await cluster(t, redis, qos, ['stayer', 'mover']);
      await olds[0]!.client.endAsync();
      const [stayerStore, moverStore] = [stores[0]!, stores[1]!];
      const old = olds[1]!;

      // From now on what A hands on to B never reaches Redis; A goes on reading its inbox and committing.
      a.child.kill('SIGUSR2');
      let killed: Promise<void> | undefined;
      old.client.stream.once('close', () => {
        // A kicked the mover: it hands on for it what it reads (held back) while it commits the stayer's copies.
        killed = delay(300).then(() => a.kill('SIGKILL'));
      });
      const moved = await sessionClient(b.port, 'mover', moverStore);
      t.after(() => moved.client.end(true));
      assert.equal(moved.sessionPresent, true);
      assert.ok(killed !== undefined, 'A kicked the old connection');
      await killed;

      // A seen dead: B or C adopts the stayer and replays A's inbox for it.
      let adopter: Node | undefined;
      await eventually(() => (adopter = [b, c].find((n) => n.broker.inspect.hasSession('stayer'))) !== undefined, 10_000, 'a survivor to adopt the stayer');
      await delay(300); // C goes on publishing, to the adopter and B now
      await pub.stop();
      assert.ok(pub.acked.length > 0, 'the publisher was answered');
      const back = await sessionClient(adopter!.port, 'stayer', stayerStore);
      t.after(() => back.client.end(true));

      await checkSessions(pub, [
        ['mover', [old.got, moved.got]],
        ['stayer', [olds[0]!.got, back.got]],
      ]);
      t.diagnostic(`acknowledged ${pub.acked.length}; the stayer got ${olds[0]!.got.length} on A and ${back.got.length} after, the mover ${old.got.length} on A and ${moved.got.length} on B`);
    });
  }

  for (const qos of [1, 2] as const) {
    it(`QoS ${qos}: two sessions move off A one after the other, A SIGKILLed before it could hand on to B: each gets every acknowledged message once (DUP resends aside), in publisher order [MQTT-4.3.3-2] [MQTT-4.6.0-5]`, async (t) => {
      const names = ['first', 'second'];
      const { a, b, stores, olds, pub } = await cluster(t, redis, qos, names);

      // What A hands on to B from now on never reaches Redis. The first session moves; 300 ms later (the second
      // one receiving on A meanwhile, A handing on for the first) the second one; A is killed 100 ms after that.
      a.child.kill('SIGUSR2');
      const kicked = (i: number) => new Promise<void>((resolve) => olds[i]!.client.stream.once('close', () => resolve()));
      const moving: Promise<SessionClient>[] = [];
      for (const i of [0, 1]) {
        const kick = kicked(i);
        moving.push(sessionClient(b.port, names[i]!, stores[i]!));
        await kick;
        await delay(i === 0 ? 300 : 100);
      }
      await a.kill('SIGKILL');
      const moved = await Promise.all(moving);
      for (const m of moved) {
        t.after(() => m.client.end(true));
        assert.equal(m.sessionPresent, true);
      }
      await delay(300); // C goes on publishing, to B now
      await pub.stop();
      assert.ok(pub.acked.length > 0, 'the publisher was answered');
      await checkSessions(
        pub,
        names.map((name, i) => [name, [olds[i]!.got, moved[i]!.got]]),
      );
      t.diagnostic(`acknowledged ${pub.acked.length}; first: ${olds[0]!.got.length} on A, ${moved[0]!.got.length} on B; second: ${olds[1]!.got.length} on A, ${moved[1]!.got.length} on B`);
    });
  }
});
