// Every publish / subscribe / unsubscribe promise can be made to settle: an AbortSignal, a
// timeout per call, or the client-wide operationTimeout, over real sockets to a fake server
// that never answers (or answers late).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MqttClient, type ClientOptions, type MqttClientError } from '../../src/client/index.js';
import type { PublishPacket, SubscribePacket, UnsubscribePacket } from '../../src/protocol/index.js';
import { delay, startFakeServer, type FakeServer } from './helpers.js';

type Ctx = { after: (fn: () => unknown) => void };

async function connected(t: Ctx, options: ClientOptions = {}) {
  const server: FakeServer = await startFakeServer();
  t.after(() => server.close());
  const client = new MqttClient(server.url, { reconnect: { initialDelay: 10, jitter: 0 }, connectTimeout: 2000, ...options });
  t.after(() => client.destroy());
  client.on('error', () => {});
  const done = client.connect();
  const conn = await server.connection(0);
  await conn.accept({ properties: { receiveMaximum: 1 } });
  await done;
  return { server, client, conn };
}

const code = (c: string, re?: RegExp) => (e: MqttClientError) => e.code === c && (re === undefined || re.test(e.message));

test('publish / subscribe / unsubscribe with { timeout }: reject with OPERATION_TIMEOUT when no acknowledgement comes', async (t) => {
  const { client, conn } = await connected(t);
  const started = Date.now();
  await assert.rejects(client.publish('t/1', 'x', { qos: 1, timeout: 80 }), code('OPERATION_TIMEOUT', /^publish to "t\/1" timed out after 80 ms without an acknowledgement$/));
  assert.ok(Date.now() - started < 2000);
  await assert.rejects(client.subscribe('s/#', { qos: 1, timeout: 50 }), code('OPERATION_TIMEOUT', /^subscribe to "s\/#" timed out after 50 ms/));
  await assert.rejects(client.unsubscribe('s/#', { timeout: 50 }), code('OPERATION_TIMEOUT', /^unsubscribe from "s\/#" timed out/));
  assert.equal((await conn.next(3)).type, 3, 'the PUBLISH went out');
});

test('the client-wide operationTimeout applies to every call without its own timeout; a call can set a longer one', async (t) => {
  const { client, conn } = await connected(t, { operationTimeout: 60 });
  await assert.rejects(client.subscribe('a'), code('OPERATION_TIMEOUT', /after 60 ms/));
  const longer = client.subscribe('b', { timeout: 2000 });
  const s1 = (await conn.next(8)) as SubscribePacket;
  const s2 = (await conn.next(8)) as SubscribePacket;
  await delay(100);
  conn.send({ type: 9, packetId: s2.packetId, reasonCodes: [0] });
  assert.deepEqual(await longer, [{ topicFilter: 'b', reasonCode: 0, qos: 0 }]);
  assert.notEqual(s1.packetId, s2.packetId);
  assert.throws(() => new MqttClient('mqtt://h', { operationTimeout: 0 }), code('INVALID_ARGUMENT', /operationTimeout must be a positive number/));
  await assert.rejects(client.publish('x', 'y', { timeout: -1 }), code('INVALID_ARGUMENT', /timeout must be a positive number of milliseconds \(got -1\)/));
});

test('an AbortSignal rejects with ABORTED; an already aborted one sends nothing', async (t) => {
  const { client, conn } = await connected(t);
  const ac = new AbortController();
  const p = client.publish('a/1', 'x', { qos: 1, signal: ac.signal });
  await conn.next(3);
  ac.abort();
  await assert.rejects(p, code('ABORTED', /^publish to "a\/1" aborted$/));
  const gone = new AbortController();
  gone.abort(new Error('user cancelled'));
  await assert.rejects(client.unsubscribe('u', { signal: gone.signal }), code('ABORTED', /unsubscribe from "u" aborted: user cancelled/));
  await delay(30);
  assert.equal(conn.packets.filter((x) => x.type === 10).length, 0, 'no UNSUBSCRIBE sent');
});

test('[MQTT-2.2.1-3] a timed-out publish keeps its packet id and Receive Maximum slot until the late PUBACK, then both are free', async (t) => {
  const { client, conn } = await connected(t);
  await assert.rejects(client.publish('late', 'x', { qos: 1, timeout: 50 }), code('OPERATION_TIMEOUT'));
  const first = (await conn.next(3)) as PublishPacket;
  assert.deepEqual(client.pending, { queued: 0, inflight: 1 }, 'still in flight: the server may acknowledge it');
  // Receive Maximum 1: the next message waits for that slot; while queued it times out and leaves the queue
  await assert.rejects(client.publish('queued', 'y', { qos: 1, timeout: 50 }), code('OPERATION_TIMEOUT'));
  assert.deepEqual(client.pending, { queued: 0, inflight: 1 });
  const next = client.publish('next', 'z', { qos: 1 });
  conn.send({ type: 4, packetId: first.packetId! });
  const second = (await conn.next(3)) as PublishPacket;
  assert.equal(second.topic, 'next', 'the timed-out queued message was never sent');
  conn.send({ type: 4, packetId: second.packetId! });
  assert.deepEqual(await next, { reasonCode: 0 });
  assert.deepEqual(client.pending, { queued: 0, inflight: 0 });
});

test('offline: a queued publish with a timeout settles (the broker never came back); a timed-out SUBSCRIBE is not resent after reconnect', async (t) => {
  const { server, client, conn } = await connected(t, { reconnect: { initialDelay: 200, jitter: 0 } });
  const sub = assert.rejects(client.subscribe('s', { timeout: 60 }), code('OPERATION_TIMEOUT'));
  const first = (await conn.next(8)) as SubscribePacket;
  const offline = new Promise((r) => client.once('offline', r));
  conn.destroy();
  await offline;
  await assert.rejects(client.publish('o', 'x', { qos: 1, timeout: 60 }), code('OPERATION_TIMEOUT', /\(not connected\)/));
  await sub;
  assert.deepEqual(client.pending, { queued: 0, inflight: 0 });
  const conn2 = await server.connection(1);
  await conn2.accept();
  await delay(50);
  assert.equal(conn2.packets.filter((p) => p.type === 8).length, 0, 'the given-up SUBSCRIBE is not sent again');
  const u = client.unsubscribe('x');
  const un = (await conn2.next(10)) as UnsubscribePacket;
  assert.ok(un.packetId > 0 && first.packetId > 0);
  conn2.send({ type: 11, packetId: un.packetId, reasonCodes: [0] });
  await u;
});
