// Client behaviour under precise control: a fake server on a raw socket decides what to answer,
// when to stay silent and when to drop the connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { MqttClient, connect, ConnackError, TimeoutError, ReasonCodeError, type Message, type MqttClientError } from '../../src/client/index.js';
import type { ClientOptions } from '../../src/client/index.js';
import type { ConnectPacket, PubAckLikePacket, PublishPacket, SubscribePacket } from '../../src/protocol/index.js';
import { startFakeServer, type FakeServer } from './helpers.js';
import { delay, eventually } from '../helpers/wait.js';

const fast: ClientOptions = { reconnect: { initialDelay: 10, maxDelay: 50, jitter: 0 }, connectTimeout: 2000 };

async function withServer(t: { after: (fn: () => Promise<void> | void) => void }): Promise<FakeServer> {
  const server = await startFakeServer();
  t.after(() => server.close());
  return server;
}

/** Starts a client against the server and accepts its first connection. */
async function connected(t: { after: (fn: () => Promise<void> | void) => void }, server: FakeServer, options: ClientOptions = {}, connack = {}) {
  const client = new MqttClient(server.url, { ...fast, ...options });
  t.after(() => client.destroy());
  const done = client.connect();
  const conn = await server.connection(server.connections.length);
  const connect = await conn.accept(connack);
  await done;
  return { client, conn, connect };
}

test('connect timeout: TCP accepted but no CONNACK → the client closes the socket and says so', async (t) => {
  const server = await withServer(t);
  const started = Date.now();
  const attempt = connect(server.url, { connectTimeout: 150 });
  const conn = await server.connection(0);
  await assert.rejects(attempt, (err: MqttClientError) => {
    assert.ok(err instanceof TimeoutError);
    assert.equal(err.code, 'CONNECT_TIMEOUT');
    assert.equal(err.message, 'timed out waiting for CONNACK after 150 ms');
    return true;
  });
  assert.ok(Date.now() - started >= 140);
  await conn.waitClosed();
  assert.equal((await conn.next(1)).type, 1, 'CONNECT was sent');
});

test('keep alive: a silent server is detected dead and the client reconnects', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { keepAlive: 1, pingInterval: 60, pingTimeout: 80 });
  const offline = new Promise<MqttClientError>((r) => client.once('offline', r));
  assert.equal((await conn.next(12, 1000)).type, 12, 'PINGREQ sent when idle');
  // no PINGRESP
  const err = await offline;
  assert.equal(err.code, 'KEEPALIVE_TIMEOUT');
  assert.match(err.message, /no PINGRESP from the server within 80 ms/);
  await conn.waitClosed();
  const reconnected = new Promise((r) => client.once('connect', r));
  const conn2 = await server.connection(1);
  await conn2.accept();
  await reconnected;
  assert.equal(client.connected, true);
});

test('keep alive: answered pings keep the connection up', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { keepAlive: 1, pingInterval: 30, pingTimeout: 60 });
  let offline = false;
  client.on('offline', () => (offline = true));
  for (let i = 0; i < 4; i++) {
    await conn.next(12, 1000);
    conn.send({ type: 13 });
  }
  assert.equal(offline, false);
  assert.equal(client.connected, true);
});

test('QoS 1 publish in flight is resent with DUP and the same packet id after reconnect', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { clean: false, sessionExpiry: 60 });
  const result = client.publish('q/1', 'payload-1', { qos: 1 });
  const first = (await conn.next(3)) as PublishPacket;
  assert.equal(first.dup, false);
  assert.equal(first.qos, 1);
  conn.destroy(); // broken before PUBACK
  const conn2 = await server.connection(1);
  const connect2 = (await conn2.accept({ sessionPresent: true })) as ConnectPacket;
  assert.equal(connect2.clean, false);
  const again = (await conn2.next(3)) as PublishPacket;
  assert.equal(again.dup, true);
  assert.equal(again.packetId, first.packetId);
  assert.equal(again.payload.toString(), 'payload-1');
  conn2.send({ type: 4, packetId: again.packetId! });
  assert.equal((await result).reasonCode, 0);
});

test('QoS 2 publish: PUBLISH resent with DUP before PUBREC, PUBREL resent after it', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { clean: false, sessionExpiry: 60 });
  const a = client.publish('q/2', 'a', { qos: 2 });
  const b = client.publish('q/2', 'b', { qos: 2 });
  const pa = (await conn.next(3)) as PublishPacket;
  const pb = (await conn.next(3)) as PublishPacket;
  conn.send({ type: 5, packetId: pa.packetId! }); // PUBREC for a only
  const rel = (await conn.next(6)) as PubAckLikePacket;
  assert.equal(rel.packetId, pa.packetId);
  conn.destroy();
  const conn2 = await server.connection(1);
  await conn2.accept({ sessionPresent: true });
  const rel2 = (await conn2.next(6)) as PubAckLikePacket;
  assert.equal(rel2.packetId, pa.packetId, 'PUBREL resent for a');
  const pb2 = (await conn2.next(3)) as PublishPacket;
  assert.equal(pb2.packetId, pb.packetId);
  assert.equal(pb2.dup, true, 'b resent with DUP');
  assert.equal(conn2.packets.filter((p) => p.type === 3).length, 0, 'a is not published again');
  conn2.send({ type: 7, packetId: pa.packetId! });
  assert.equal((await a).reasonCode, 0);
  conn2.send({ type: 5, packetId: pb.packetId! });
  await conn2.next(6);
  conn2.send({ type: 7, packetId: pb.packetId! });
  assert.equal((await b).reasonCode, 0);
});

test('QoS 2 receive is exactly once: a duplicate PUBLISH before PUBREL is not delivered again', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server);
  const got: Message[] = [];
  client.on('message', (m) => got.push(m));
  const publish: PublishPacket = { type: 3, topic: 'in/2', payload: Buffer.from('once'), qos: 2, retain: false, dup: false, packetId: 7 };
  conn.send(publish);
  assert.equal(((await conn.next(5)) as PubAckLikePacket).packetId, 7);
  conn.send({ ...publish, dup: true });
  assert.equal(((await conn.next(5)) as PubAckLikePacket).packetId, 7, 'PUBREC again for the duplicate');
  conn.send({ type: 6, packetId: 7 });
  assert.equal(((await conn.next(7)) as PubAckLikePacket).packetId, 7, 'PUBCOMP');
  conn.send({ ...publish, payload: Buffer.from('next') }); // id 7 is free again: a new message
  await conn.next(5);
  await eventually(() => got.length === 2);
  assert.deepEqual(
    got.map((m) => m.payload.toString()),
    ['once', 'next'],
  );
});

test('resubscribes after reconnect when the session is gone, not when it is present', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { clean: false, sessionExpiry: 60 });
  const sub = client.subscribe(['a/+', 'b/#'], { qos: 1 });
  const s1 = (await conn.next(8)) as SubscribePacket;
  conn.send({ type: 9, packetId: s1.packetId, reasonCodes: [1, 0] });
  assert.deepEqual(await sub, [
    { topicFilter: 'a/+', reasonCode: 1, qos: 1 },
    { topicFilter: 'b/#', reasonCode: 0, qos: 0 },
  ]);
  conn.destroy();
  const conn2 = await server.connection(1);
  await conn2.accept({ sessionPresent: false });
  const filters: string[] = [];
  for (let i = 0; i < 2; i++) {
    const s = (await conn2.next(8)) as SubscribePacket;
    filters.push(...s.subscriptions.map((x) => `${x.topicFilter}@${x.qos}`));
    conn2.send({ type: 9, packetId: s.packetId, reasonCodes: s.subscriptions.map((x) => x.qos) });
  }
  assert.deepEqual(filters.sort(), ['a/+@1', 'b/#@1']);
  conn2.destroy();
  const conn3 = await server.connection(2);
  await conn3.accept({ sessionPresent: true });
  await client.publish('marker', 'x');
  const next = await conn3.next();
  assert.equal(next.type, 3, 'no SUBSCRIBE when the server kept the session');
});

test('offline queue: publishes made offline are sent on reconnect, in order, up to the bound', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { offlineQueueMax: 2, reconnect: { initialDelay: 150, jitter: 0 } });
  const offline = new Promise((r) => client.once('offline', r));
  conn.destroy();
  await offline;
  assert.equal(client.connected, false);
  const p1 = client.publish('o/1', 'one', { qos: 1 });
  const p2 = client.publish('o/2', 'two');
  await assert.rejects(client.publish('o/3', 'three'), (e: MqttClientError) => e.code === 'OFFLINE_QUEUE_FULL' && /offline queue full \(2 messages\)/.test(e.message));
  const conn2 = await server.connection(1);
  await conn2.accept();
  const a = (await conn2.next(3)) as PublishPacket;
  const b = (await conn2.next(3)) as PublishPacket;
  assert.deepEqual([a.topic, b.topic], ['o/1', 'o/2']);
  assert.equal(a.dup, false);
  conn2.send({ type: 4, packetId: a.packetId! });
  await p1;
  await p2;
});

test('queueWhileOffline=false rejects publishes while offline', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { queueWhileOffline: false, reconnect: { initialDelay: 1000 } });
  const offline = new Promise((r) => client.once('offline', r));
  conn.destroy();
  await offline;
  await assert.rejects(client.publish('x', 'y'), /not connected/);
});

test('v5 CONNACK limits: Receive Maximum, Maximum Packet Size, Maximum QoS, assigned Client ID, Server Keep Alive', async (t) => {
  const server = await withServer(t);
  const { client, conn, connect: c } = await connected(
    t,
    server,
    { clientId: '', keepAlive: 60 },
    { properties: { receiveMaximum: 1, maximumPacketSize: 64, maximumQoS: 1, assignedClientIdentifier: 'assigned-42', serverKeepAlive: 1 } },
  );
  assert.equal(c.clientId, '');
  assert.equal(c.keepAlive, 60);
  assert.equal(client.clientId, 'assigned-42');
  assert.equal(client.connack?.clientId, 'assigned-42');
  assert.equal(client.connack?.keepAlive, 1);
  const p1 = client.publish('r/1', 'a', { qos: 1 });
  const p2 = client.publish('r/2', 'b', { qos: 1 });
  const first = (await conn.next(3)) as PublishPacket;
  await delay(30);
  assert.equal(conn.packets.filter((p) => p.type === 3).length, 0, 'second publish waits for the first PUBACK');
  conn.send({ type: 4, packetId: first.packetId! });
  const second = (await conn.next(3)) as PublishPacket;
  assert.equal(second.topic, 'r/2');
  conn.send({ type: 4, packetId: second.packetId! });
  await Promise.all([p1, p2]);
  await assert.rejects(client.publish('big', Buffer.alloc(100)), (e: ReasonCodeError) => e.reasonCode === 0x95 && /0x95 Packet too large/.test(e.message));
  await assert.rejects(client.publish('q2', 'x', { qos: 2 }), (e: ReasonCodeError) => e.reasonCode === 0x9b);
  // Server Keep Alive 1 s overrides our 60 s: a PINGREQ comes within ~1 s
  assert.equal((await conn.next(12, 1600)).type, 12);
  // reconnects with the assigned Client ID
  conn.destroy();
  const conn2 = await server.connection(1);
  assert.equal((await conn2.accept()).clientId, 'assigned-42');
});

test('server DISCONNECT: the reason code and reason string are reported in words', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { reconnect: false });
  const closed = new Promise<MqttClientError | undefined>((r) => client.once('close', r));
  conn.send({ type: 14, reasonCode: 0x98, properties: { reasonString: 'kicked by the admin' } });
  const err = await closed;
  assert.equal(err?.code, 'SERVER_DISCONNECT');
  assert.equal(err?.reasonCode, 0x98);
  assert.equal(err?.message, 'the server closed the connection: 0x98 Administrative action: kicked by the admin');
  assert.equal(client.closed, true);
});

test('CONNACK refusal: v5 reason code and 3.1.1 return code by name', async (t) => {
  const server = await withServer(t);
  const a = connect(server.url, { ...fast });
  await (await server.connection(0)).accept({ reasonCode: 0x87, properties: { reasonString: 'tenant suspended' } });
  await assert.rejects(a, (e: ConnackError) => {
    assert.ok(e instanceof ConnackError);
    assert.equal(e.message, 'connection refused by the server: 0x87 Not authorized: tenant suspended');
    return true;
  });
  const b = connect(server.url, { ...fast, protocolVersion: '3.1.1' });
  await (await server.connection(1)).accept({ reasonCode: 4 });
  await assert.rejects(b, /connection refused by the server: 0x04 Bad user name or password/);
});

test('server closing before CONNACK is reported with a hint', async (t) => {
  const server = await withServer(t);
  const a = connect(server.url, { ...fast });
  const conn = await server.connection(0);
  await conn.next(1);
  conn.destroy();
  await assert.rejects(a, (e: MqttClientError) => e.code === 'CONNECTION_CLOSED' && /closed by the server before CONNACK/.test(e.message) && /mqtts/.test(e.hint ?? ''));
});

test('a failure reason code in PUBACK / SUBACK rejects with it', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server);
  const pub = client.publish('deny/me', 'x', { qos: 1 });
  const p = (await conn.next(3)) as PublishPacket;
  conn.send({ type: 4, packetId: p.packetId!, reasonCode: 0x87, properties: { reasonString: 'ACL' } });
  await assert.rejects(pub, (e: ReasonCodeError) => e.reasonCode === 0x87 && e.message === 'publish to "deny/me" failed: 0x87 Not authorized: ACL');
  const sub = client.subscribe('secret/#', { qos: 1 });
  const s = (await conn.next(8)) as SubscribePacket;
  conn.send({ type: 9, packetId: s.packetId, reasonCodes: [0x87] });
  await assert.rejects(sub, /subscribe to "secret\/#" failed: 0x87 Not authorized/);
});

test('end() waits for acknowledgements, then sends DISCONNECT; destroy() sends nothing', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server);
  const pub = client.publish('e/1', 'x', { qos: 1 });
  const ended = client.end();
  const p = (await conn.next(3)) as PublishPacket;
  await delay(20);
  assert.equal(conn.packets.some((x) => x.type === 14), false, 'no DISCONNECT before the PUBACK');
  conn.send({ type: 4, packetId: p.packetId! });
  await pub;
  assert.equal((await conn.next(14)).type, 14);
  await ended;
  assert.equal(client.closed, true);

  const second = await connected(t, server);
  second.client.destroy();
  await second.conn.waitClosed();
  assert.equal(second.conn.packets.some((x) => x.type === 14), false);
});

test('a client closed while connecting rejects and does not keep the process busy', async (t) => {
  const server = await withServer(t);
  const client = new MqttClient(server.url, { connectTimeout: 10_000 });
  const attempt = client.connect();
  await server.connection(0);
  await client.end();
  await assert.rejects(attempt, /closed while connecting/);
});

test('a packet the client cannot decode drops the connection with a protocol error', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { reconnect: false });
  const closed = new Promise<MqttClientError | undefined>((r) => client.once('close', r));
  conn.socket.write(Buffer.from([0x00, 0x00])); // packet type 0 is reserved
  const err = await closed;
  assert.equal(err?.code, 'PROTOCOL_ERROR');
});

test('unreachable port: ECONNREFUSED in words', async () => {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  await assert.rejects(connect(`mqtt://127.0.0.1:${port}`), (e: MqttClientError) => {
    assert.equal(e.code, 'ECONNREFUSED');
    assert.equal(e.message, `connection refused: nothing listens on 127.0.0.1:${port} (ECONNREFUSED)`);
    return true;
  });
});

test('topic aliases from the server (5.0) are resolved when the client allows them', async (t) => {
  const server = await withServer(t);
  const { client, conn, connect: c } = await connected(t, server, { properties: { topicAliasMaximum: 5 } });
  assert.equal(c.properties?.topicAliasMaximum, 5);
  const got: string[] = [];
  client.on('message', (m) => got.push(`${m.topic}=${m.payload.toString()}`));
  conn.send({ type: 3, topic: 'alias/long/topic', payload: Buffer.from('1'), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } });
  conn.send({ type: 3, topic: '', payload: Buffer.from('2'), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } });
  await eventually(() => got.length === 2);
  assert.deepEqual(got, ['alias/long/topic=1', 'alias/long/topic=2']);
  const closed = new Promise<MqttClientError>((r) => client.once('offline', r));
  conn.send({ type: 3, topic: '', payload: Buffer.from('3'), qos: 0, retain: false, dup: false, properties: { topicAlias: 4 } });
  assert.match((await closed).message, /unknown Topic Alias 4/);
});

test('a Topic Alias above the Topic Alias Maximum the client announced (or 0) is a protocol error', async (t) => {
  for (const alias of [6, 0]) {
    const server = await withServer(t);
    const { client, conn } = await connected(t, server, { properties: { topicAliasMaximum: 5 } });
    const closed = new Promise<MqttClientError>((r) => client.once('offline', r));
    conn.send({ type: 3, topic: 'a/b', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: alias } });
    assert.match((await closed).message, new RegExp(`Topic Alias ${alias} outside 1\\.\\.5`));
  }
});

test('DNS failure is explained', async () => {
  await assert.rejects(connect('mqtt://no-such-host.invalid', { connectTimeout: 5000 }), (e: MqttClientError) => {
    assert.ok(e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN', e.code);
    assert.match(e.message, /DNS lookup .*"no-such-host\.invalid"/);
    return true;
  });
});

test('end() from an offline listener stops reconnecting', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { reconnect: { initialDelay: 5, jitter: 0 } });
  let reconnects = 0;
  client.on('reconnect', () => reconnects++);
  client.once('offline', () => void client.end());
  conn.destroy();
  await new Promise((r) => client.once('close', r));
  await delay(40);
  assert.equal(reconnects, 0);
  assert.equal(server.connections.length, 1);
  assert.equal(client.closed, true);
});

test('any packet but CONNACK first is a protocol error [MQTT-3.2.0-1]; the client only closes (no DISCONNECT)', async (t) => {
  const server = await withServer(t);
  for (const [i, [packet, name]] of ([
    [{ type: 13 }, 'PINGRESP'],
    [{ type: 9, packetId: 1, reasonCodes: [0] }, 'SUBACK'],
    [{ type: 15, reasonCode: 0x18 }, 'AUTH \\(enhanced authentication'],
  ] as const).entries()) {
    const attempt = connect(server.url, { ...fast, reconnect: false });
    const conn = await server.connection(i);
    await conn.next(1);
    conn.send(packet as Parameters<typeof conn.send>[0]);
    await assert.rejects(attempt, (e: MqttClientError) => {
      assert.equal(e.code, 'PROTOCOL_ERROR');
      assert.match(e.message, new RegExp(`^protocol error: the server did not answer CONNECT with CONNACK: it sent ${name}`));
      return true;
    });
    await conn.waitClosed();
    assert.deepEqual(conn.packets.map((p) => p.type), [], 'nothing after CONNECT (no DISCONNECT)');
  }
});
