// A node killed with SIGKILL loses no message whose acknowledgement reached its publisher, also while its
// sessions pass to the survivor that adopts them: until the survivor serves them, the other nodes keep the dead
// node's routes and go on sending into its inbox (replayed by the survivor); then each drops them and marks the
// inbox, and the survivor holds the sessions' messages until it has read every mark (src/cluster/adoption.ts,
// adoption-hold.ts, ClusterPlane.switchDead). Publishers on both survivors publish throughout the death.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { IClientOptions, IPublishPacket, MqttClient } from 'mqtt';
import { noRedis, RedisServer } from '../helpers/redis.js';
import { describeOrSkip } from '../helpers/skip.js';
import { delay, eventually } from '../helpers/wait.js';
import { childNode, offlineSession } from './child-node.js';
import { inbox, startNode, type Node } from './nodes.js';

let prefixes = 0;

const v5 = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 600 } };
const v311 = { protocolVersion: 4 as const, clean: false };
/** Room in the adopted sessions' queues for everything published during the test. */
const roomy = { maxQueuedMessages: 1_000_000 };

/**
 * Publishes `tag-0`, `tag-1`, ... at QoS 1 on `topic`, `window` at a time, until `stop()`; resolves with the
 * payloads whose PUBACK arrived, in publish order.
 */
async function flood(client: MqttClient, topic: string, tag: string, stop: () => boolean, window = 4): Promise<string[]> {
  const acked: (string | undefined)[] = [];
  let next = 0;
  const one = async (): Promise<void> => {
    while (!stop()) {
      const i = next++;
      const payload = `${tag}-${i}`;
      try {
        await client.publishAsync(topic, payload, { qos: 1 });
        acked[i] = payload;
      } catch {
        // refused (not acknowledged): not counted
      }
    }
  };
  await Promise.all(Array.from({ length: window }, one));
  return acked.filter((p): p is string => p !== undefined);
}

/** The payloads of `got` from publisher `tag`, with whether each came with DUP. */
function from(got: IPublishPacket[], tag: string): { payload: string; dup: boolean }[] {
  return got.map((p) => ({ payload: p.payload.toString(), dup: p.dup })).filter((p) => p.payload.startsWith(`${tag}-`));
}

function checkPublisher(got: IPublishPacket[], tag: string, acked: string[], session: string): void {
  const received = from(got, tag);
  const payloads = new Set(received.map((r) => r.payload));
  const missing = acked.filter((p) => !payloads.has(p));
  assert.deepEqual(missing, [], `${session}: no message of ${tag} whose PUBACK reached it is missing (${acked.length} acknowledged)`);
  const fresh = received.filter((r) => !r.dup).map((r) => r.payload);
  assert.equal(new Set(fresh).size, fresh.length, `${session}: no message of ${tag} twice without DUP`);
  const numbers = fresh.map((p) => Number(p.slice(tag.length + 1)));
  const outOfOrder = numbers.filter((n, i) => i > 0 && n < numbers[i - 1]!);
  assert.deepEqual(outOfOrder, [], `${session}: ${tag}'s messages in its order [MQTT-4.6.0-5]`);
}

describeOrSkip('cluster: a dead node\'s sessions pass to a survivor without a gap', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.close();
  });

  it('publishers on both survivors through the SIGKILL: every acknowledged message reaches the adopted sessions (3.1.1 and 5.0), once, in order', async (t) => {
    const prefix = `switch${process.pid}x${prefixes++}`;
    const cluster = { prefix, heartbeatTimeout: 1, heartbeatInterval: 100 };
    const d = await childNode(t, redis, 'd', cluster);
    const a = await startNode(t, redis, 'a', cluster, roomy);
    const p = await startNode(t, redis, 'p', cluster, roomy);
    await eventually(() => a.view().nodes.length === 3 && p.view().nodes.length === 3, 5000, 'every node to see the others');
    await offlineSession(d.port, 'asleep5', 'w/#', v5);
    await offlineSession(d.port, 'asleep3', 'w/+', v311);
    // Subscribers of the same topics on the survivors: a message goes to D's inbox and to them, so the adopter
    // gets it both from the replay and directly once the sessions are served there.
    for (const n of [a, p]) await (await n.mqtt(`watch-${n.name}`)).subscribeAsync('w/#', { qos: 1 });
    await eventually(() => a.view().remoteRoutes === 3 && p.view().remoteRoutes === 3, 5000, 'the routes of D and the other survivor on A and P');
    const pubA = await a.mqtt('pub-a');
    const pubP = await p.mqtt('pub-p', { protocolVersion: 5 });
    let stopped = false;
    const floods = Promise.all([flood(pubA, 'w/a', 'a', () => stopped), flood(pubP, 'w/p', 'p', () => stopped)]);
    await delay(200);
    await d.kill('SIGKILL');
    let adopter: Node | undefined;
    await eventually(() => (adopter = [a, p].find((n) => n.broker.inspect.hasSession('asleep5'))) !== undefined, 8000, 'a survivor to adopt the sessions');
    // Publishing goes on past the switch.
    await delay(500);
    stopped = true;
    const [ackedA, ackedP] = await floods;
    assert.ok(ackedA.length > 100 && ackedP.length > 100, `both publishers published throughout (${ackedA.length}, ${ackedP.length})`);
    const sessions: [string, IClientOptions][] = [
      ['asleep5', v5],
      ['asleep3', v311],
    ];
    for (const [clientId, options] of sessions) {
      const { sessionPresent, got } = await adopter!.session(clientId, options);
      assert.equal(sessionPresent, true, `${clientId}: adopted with its session`);
      const total = ackedA.length + ackedP.length;
      await eventually(() => got.length >= total, 10_000, `${clientId}: the ${total} acknowledged messages (${got.length} so far)`);
      await delay(200);
      checkPublisher(got, 'a', ackedA, clientId);
      checkPublisher(got, 'p', ackedP, clientId);
    }
    // The dead node's routes are gone from both survivors once the adopter served its sessions.
    await eventually(() => a.view().remoteRoutes + p.view().remoteRoutes === 3, 5000, 'D\'s routes dropped');
  });

  it('a session online on the node when it dies: nothing acknowledged is missing between what its client had and what it gets on the survivor', async (t) => {
    const prefix = `switch${process.pid}x${prefixes++}`;
    const cluster = { prefix, heartbeatTimeout: 1, heartbeatInterval: 100 };
    const d = await childNode(t, redis, 'd', cluster);
    const a = await startNode(t, redis, 'a', cluster, roomy);
    await eventually(() => a.view().nodes.length === 2, 5000, 'A to see D');
    const { default: mqtt } = await import('mqtt');
    const live = await mqtt.connectAsync(`mqtt://127.0.0.1:${d.port}`, { clientId: 'awake', reconnectPeriod: 0, ...v5 });
    live.on('error', () => {});
    t.after(() => live.end(true));
    const before = inbox(live);
    await live.subscribeAsync('w/#', { qos: 1 });
    await eventually(() => a.view().remoteRoutes === 1, 5000, 'the route of D on A');
    const pub = await a.mqtt('pub-a');
    let stopped = false;
    const acked = flood(pub, 'w/a', 'a', () => stopped);
    await delay(200);
    await d.kill('SIGKILL');
    await eventually(() => a.broker.inspect.hasSession('awake'), 8000, 'A to adopt the session');
    await delay(300);
    stopped = true;
    const ackedA = await acked;
    const { got } = await a.session('awake', v5);
    const missing = () => {
      const have = new Set([...before, ...got].map((m) => m.payload.toString()));
      return ackedA.filter((m) => !have.has(m));
    };
    await eventually(() => missing().length === 0, 10_000, `the ${ackedA.length} acknowledged messages between the two connections`).catch(() => {
      assert.deepEqual(missing(), [], 'no acknowledged message missing');
    });
    // In order on the survivor (its first delivery of each).
    const fresh = got.filter((m) => !m.dup).map((m) => Number(m.payload.toString().slice(2)));
    assert.deepEqual(
      fresh.filter((n, i) => i > 0 && n < fresh[i - 1]!),
      [],
      'in publisher order on the survivor',
    );
  });
});
