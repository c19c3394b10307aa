// The client side of the wire against MQTT 3.1.1 / 5.0, rule by rule (spec IDs in the test names):
// a fake server decodes what the client sends and answers exactly as each test wants.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { MqttClient, type ClientOptions, type Message, type MqttClientError, type ReasonCodeError } from '../../src/client/index.js';
import type { ConnectPacket, DisconnectPacket, Packet, PubAckLikePacket, PublishPacket, SubscribePacket, UnsubscribePacket } from '../../src/protocol/index.js';
import { startFakeServer, type FakeConnection, type FakeServer } from './helpers.js';
import { delay, eventually } from '../helpers/wait.js';

type Ctx = { after: (fn: () => Promise<void> | void) => void };

const fast: ClientOptions = { reconnect: { initialDelay: 10, maxDelay: 50, jitter: 0 }, connectTimeout: 2000 };

async function withServer(t: Ctx): Promise<FakeServer> {
  const server = await startFakeServer();
  t.after(() => server.close());
  return server;
}

/** A client connected to the fake server, with the server side of that connection. */
async function connected(t: Ctx, server: FakeServer, options: ClientOptions = {}, connack: Parameters<FakeConnection['accept']>[0] = {}) {
  const client = new MqttClient(server.url, { ...fast, ...options });
  t.after(() => client.destroy());
  client.on('error', () => {});
  const done = client.connect();
  const conn = await server.connection(server.connections.length);
  const connect = await conn.accept(connack);
  await done;
  return { client, conn, connect };
}

/** Drops the connection and accepts the client's next one with this CONNACK. */
async function reconnect(client: MqttClient, server: FakeServer, conn: FakeConnection, connack: Parameters<FakeConnection['accept']>[0] = {}) {
  const back = new Promise((r) => client.once('connect', r));
  const n = server.connections.length;
  conn.destroy();
  const conn2 = await server.connection(n);
  const connect = await conn2.accept(connack);
  await back;
  return { conn2, connect };
}

const types = (packets: Packet[]) => packets.map((p) => p.type);

// ------------------------------------------------------------------ session state on reconnect

test('Session Present 0 after reconnect: the client discards its session state: no PUBREL, no DUP PUBLISH [MQTT-3.2.2-5] [MQTT-3.1.2-4]', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { clean: false, sessionExpiry: 60 });
  const q1 = client.publish('s/1', 'one', { qos: 1 });
  const q2 = client.publish('s/2', 'two', { qos: 2 });
  q1.catch(() => {});
  q2.catch(() => {});
  await conn.next(3);
  const p2 = (await conn.next(3)) as PublishPacket;
  conn.send({ type: 5, packetId: p2.packetId! }); // PUBREC: QoS 2 flow now waits for PUBCOMP
  await conn.next(6);
  // the session expired on the server: Session Present 0
  const { conn2 } = await reconnect(client, server, conn, { sessionPresent: false });
  await delay(60);
  const after = conn2.packets.slice();
  assert.equal(after.some((p) => p.type === 6), false, `no PUBREL for a session the server does not have (got ${types(after).join(',')})`);
  for (const p of after.filter((x): x is PublishPacket => x.type === 3)) assert.equal(p.dup, false, 'a message of a new session is not a re-delivery');
  // the QoS 2 message past PUBREC is complete (the server stored it); the QoS 1 one goes out again as a new message
  assert.equal((await q2).reasonCode, 0);
  const again = after.filter((x): x is PublishPacket => x.type === 3);
  assert.deepEqual(
    again.map((p) => [p.topic, p.qos]),
    [['s/1', 1]],
  );
  conn2.send({ type: 4, packetId: again[0]!.packetId! });
  assert.equal((await q1).reasonCode, 0);
});

test('Clean Start 1 on reconnect (default clean: true): nothing of the old session is resent with DUP or PUBREL [MQTT-3.1.2-4]', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server);
  const q1 = client.publish('c/1', 'one', { qos: 1 });
  q1.catch(() => {});
  await conn.next(3);
  const { conn2, connect } = await reconnect(client, server, conn);
  assert.equal(connect.clean, true);
  await delay(60);
  for (const p of conn2.packets.filter((x): x is PublishPacket => x.type === 3)) assert.equal(p.dup, false, 'DUP=1 in a brand new session');
});

test('CONNACK Session Present 1 in answer to Clean Start 1 (5.0): the client closes the connection [MQTT-3.2.2-4]', async (t) => {
  const server = await withServer(t);
  const client = new MqttClient(server.url, { ...fast, reconnect: false });
  t.after(() => client.destroy());
  const attempt = client.connect();
  attempt.catch(() => {});
  const conn = await server.connection(0);
  const c = await conn.accept({ sessionPresent: true });
  assert.equal(c.clean, true);
  await assert.rejects(attempt, (e: MqttClientError) => e.code === 'PROTOCOL_ERROR' && /Session Present 1/.test(e.message));
  await conn.waitClosed(1000);
  assert.deepEqual(
    conn.packets.filter((p): p is DisconnectPacket => p.type === 14).map((d) => d.reasonCode),
    [0x82],
  );
});

test('session present: resent PUBLISHes keep their ids, in the original order, DUP=1; PUBREL resent; then queued ones [MQTT-4.4.0-1] [MQTT-4.6.0-1]', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { clean: false, sessionExpiry: 60, protocolVersion: '3.1.1' });
  const pubs = [client.publish('o/a', 'a', { qos: 1 }), client.publish('o/b', 'b', { qos: 2 }), client.publish('o/c', 'c', { qos: 1 }), client.publish('o/d', 'd', { qos: 2 })];
  const sent: PublishPacket[] = [];
  for (let i = 0; i < 4; i++) sent.push((await conn.next(3)) as PublishPacket);
  conn.send({ type: 5, packetId: sent[3]!.packetId! }); // d past PUBREC
  await conn.next(6);
  const offline = new Promise((r) => client.once('offline', r));
  conn.destroy();
  await offline;
  const queued = client.publish('o/e', 'e', { qos: 1 });
  const conn2 = await server.connection(1);
  const c2 = await conn2.accept({ sessionPresent: true });
  assert.equal(c2.clean, false);
  const again: Packet[] = [];
  for (let i = 0; i < 5; i++) again.push(await conn2.next());
  const publishes = again.filter((p): p is PublishPacket => p.type === 3);
  assert.deepEqual(
    publishes.map((p) => [p.topic, p.packetId, p.dup]),
    [
      ['o/a', sent[0]!.packetId, true],
      ['o/b', sent[1]!.packetId, true],
      ['o/c', sent[2]!.packetId, true],
      ['o/e', publishes[3]!.packetId, false],
    ],
  );
  assert.equal((again.find((p) => p.type === 6) as PubAckLikePacket).packetId, sent[3]!.packetId);
  assert.ok(!sent.slice(0, 3).some((p) => p.packetId === publishes[3]!.packetId), 'ids of unfinished flows are not reused');
  for (const p of publishes) if (p.qos === 1) conn2.send({ type: 4, packetId: p.packetId! });
  conn2.send({ type: 5, packetId: sent[1]!.packetId! });
  await conn2.next(6);
  conn2.send({ type: 7, packetId: sent[1]!.packetId! });
  conn2.send({ type: 7, packetId: sent[3]!.packetId! });
  await Promise.all([...pubs, queued]);
});

test('session present: PUBRELs are resent in the order their PUBRECs came, not the order the PUBLISHes were sent [MQTT-4.6.0-3]', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { clean: false, sessionExpiry: 60, protocolVersion: '3.1.1' });
  const pubs = ['x', 'y', 'z'].map((n) => client.publish(`r/${n}`, n, { qos: 2 }));
  const sent: PublishPacket[] = [];
  for (let i = 0; i < 3; i++) sent.push((await conn.next(3)) as PublishPacket);
  for (const i of [2, 0, 1]) {
    conn.send({ type: 5, packetId: sent[i]!.packetId! });
    await conn.next(6);
  }
  const offline = new Promise((r) => client.once('offline', r));
  conn.destroy();
  await offline;
  const conn2 = await server.connection(1);
  await conn2.accept({ sessionPresent: true });
  const pubrels: number[] = [];
  for (let i = 0; i < 3; i++) pubrels.push(((await conn2.next(6)) as PubAckLikePacket).packetId);
  assert.deepEqual(pubrels, [2, 0, 1].map((i) => sent[i]!.packetId));
  for (const id of pubrels) conn2.send({ type: 7, packetId: id });
  await Promise.all(pubs);
});

test('inbound QoS 2 across a reconnect with the session kept: a DUP resend before PUBREL is acknowledged, not delivered again [MQTT-4.3.3]', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { clean: false, sessionExpiry: 60 });
  const got: Message[] = [];
  client.on('message', (m) => got.push(m));
  const publish: PublishPacket = { type: 3, topic: 'in/q2', payload: Buffer.from('once'), qos: 2, retain: false, dup: false, packetId: 9 };
  conn.send(publish);
  assert.equal(((await conn.next(5)) as PubAckLikePacket).packetId, 9);
  const { conn2 } = await reconnect(client, server, conn, { sessionPresent: true });
  conn2.send({ ...publish, dup: true });
  assert.equal(((await conn2.next(5)) as PubAckLikePacket).packetId, 9, 'PUBREC again');
  conn2.send({ type: 6, packetId: 9 });
  const comp = (await conn2.next(7)) as PubAckLikePacket;
  assert.equal(comp.packetId, 9);
  assert.equal(comp.reasonCode ?? 0, 0, 'the PUBREL is known: Success, not 0x92');
  await delay(20);
  assert.equal(got.length, 1);
});

// ------------------------------------------------------------------ CONNACK limits

test('Receive Maximum: a QoS 2 flow holds its slot until PUBCOMP, and a refused PUBREC frees it without PUBREL [MQTT-3.3.4-7] [MQTT-4.3.3-4] (4.9)', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, {}, { properties: { receiveMaximum: 1 } });
  const a = client.publish('rm/a', 'a', { qos: 2 });
  const b = client.publish('rm/b', 'b', { qos: 2 });
  const c = client.publish('rm/c', 'c', { qos: 1 });
  const pa = (await conn.next(3)) as PublishPacket;
  conn.send({ type: 5, packetId: pa.packetId! });
  await conn.next(6);
  await delay(30);
  assert.equal(conn.packets.filter((p) => p.type === 3).length, 0, 'b waits while a is past PUBREC but not completed');
  conn.send({ type: 7, packetId: pa.packetId! });
  await a;
  const pb = (await conn.next(3)) as PublishPacket;
  assert.equal(pb.topic, 'rm/b');
  conn.send({ type: 5, packetId: pb.packetId!, reasonCode: 0x97 });
  await assert.rejects(b, (e: ReasonCodeError) => e.reasonCode === 0x97);
  const pc = (await conn.next(3)) as PublishPacket;
  assert.equal(pc.topic, 'rm/c');
  assert.equal(conn.packets.some((p) => p.type === 6), false, 'no PUBREL after a refused PUBREC');
  conn.send({ type: 4, packetId: pc.packetId! });
  await c;
});

test('Receive Maximum of the new connection applies to PUBLISHes resent after reconnect [MQTT-3.3.4-7] (send quota is per connection, 4.9)', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { clean: false, sessionExpiry: 60 }, { properties: { receiveMaximum: 3 } });
  const pubs = [1, 2, 3].map((i) => client.publish(`rr/${i}`, 'x', { qos: 1 }));
  for (const p of pubs) p.catch(() => {});
  for (let i = 0; i < 3; i++) await conn.next(3);
  const { conn2 } = await reconnect(client, server, conn, { sessionPresent: true, properties: { receiveMaximum: 1 } });
  await delay(60);
  assert.equal(conn2.packets.filter((p) => p.type === 3).length, 1, 'at most Receive Maximum (1) unacknowledged PUBLISH');
  // the others follow one by one as PUBACKs free the quota, in their original order, with DUP
  for (let i = 1; i <= 3; i++) {
    const p = (await conn2.next(3)) as PublishPacket;
    assert.deepEqual([p.topic, p.dup], [`rr/${i}`, true]);
    await delay(20);
    assert.equal(conn2.packets.filter((x) => x.type === 3).length, 0, 'still one at a time');
    conn2.send({ type: 4, packetId: p.packetId! });
  }
  await Promise.all(pubs);
});

test('Maximum QoS / Retain Available: a publish queued before the CONNACK is refused locally, not sent above the limit [MQTT-3.2.2-11] [MQTT-3.2.2-14]', async (t) => {
  const server = await withServer(t);
  const client = new MqttClient(server.url, { ...fast });
  t.after(() => client.destroy());
  const q2 = client.publish('mq/q2', 'x', { qos: 2 });
  const retained = client.publish('mq/r', 'x', { retain: true });
  q2.catch(() => {});
  retained.catch(() => {});
  const done = client.connect();
  const conn = await server.connection(0);
  await conn.accept({ properties: { maximumQoS: 1, retainAvailable: 0 } });
  await done;
  await delay(60);
  for (const p of conn.packets.filter((x): x is PublishPacket => x.type === 3)) {
    assert.ok(p.qos <= 1, `PUBLISH QoS ${p.qos} above Maximum QoS 1`);
    assert.equal(p.retain, false, 'RETAIN 1 although Retain Available is 0');
  }
  await assert.rejects(q2, (e: ReasonCodeError) => e.reasonCode === 0x9b);
  await assert.rejects(retained, (e: ReasonCodeError) => e.reasonCode === 0x9a);
});

test('Maximum QoS / Retain Available while connected: refused locally (0x9B / 0x9A), the connection stays up', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, {}, { properties: { maximumQoS: 0, retainAvailable: 0 } });
  await assert.rejects(client.publish('x', 'y', { qos: 1 }), (e: ReasonCodeError) => e.reasonCode === 0x9b && /0x9b/i.test(e.message));
  await assert.rejects(client.publish('x', 'y', { retain: true }), (e: ReasonCodeError) => e.reasonCode === 0x9a);
  await client.publish('x', 'ok');
  const p = (await conn.next(3)) as PublishPacket;
  assert.equal(p.qos, 0);
  assert.equal(client.connected, true);
  assert.equal(conn.packets.some((x) => x.type === 14), false);
});

test('Maximum Packet Size: a SUBSCRIBE / UNSUBSCRIBE larger than the server accepts is not sent [MQTT-3.2.2-15]', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, {}, { properties: { maximumPacketSize: 64 } });
  const filter = `big/${'x'.repeat(100)}`;
  const sub = client.subscribe(filter, { qos: 1 });
  const unsub = client.unsubscribe(filter);
  sub.catch(() => {});
  unsub.catch(() => {});
  await delay(60);
  assert.deepEqual(types(conn.packets.filter((p) => p.type === 8 || p.type === 10)), [], 'no oversized SUBSCRIBE / UNSUBSCRIBE on the wire');
  await assert.rejects(sub, (e: MqttClientError) => e.reasonCode === 0x95);
  await assert.rejects(unsub, (e: MqttClientError) => e.reasonCode === 0x95);
});

test('Maximum Packet Size: a resent PUBLISH larger than the new connection allows is not sent [MQTT-3.2.2-15]', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { clean: false, sessionExpiry: 60 });
  const p = client.publish('mps/x', Buffer.alloc(200), { qos: 1 });
  p.catch(() => {});
  await conn.next(3);
  const { conn2 } = await reconnect(client, server, conn, { sessionPresent: true, properties: { maximumPacketSize: 100 } });
  await delay(60);
  assert.equal(conn2.packets.filter((x) => x.type === 3).length, 0, 'a 200-byte PUBLISH to a server that accepts 100');
  await assert.rejects(p, (e: ReasonCodeError) => e.reasonCode === 0x95);
});

/** DISCONNECTs the client handed to the socket (the 'packetsend' event), whether or not they reached the wire. */
function disconnectsSent(client: MqttClient): DisconnectPacket[] {
  const list: DisconnectPacket[] = [];
  client.on('packetsend', (p) => {
    if (p.type === 14) list.push(p as DisconnectPacket);
  });
  return list;
}

test('a packet above the client’s own Maximum Packet Size: DISCONNECT 0x95, PROTOCOL_ERROR', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { reconnect: false, properties: { maximumPacketSize: 100 } });
  const sent = disconnectsSent(client);
  const closed = new Promise<MqttClientError | undefined>((r) => client.once('close', r));
  conn.send({ type: 3, topic: 'big', payload: Buffer.alloc(200), qos: 0, retain: false, dup: false });
  const err = await closed;
  assert.equal(err?.code, 'PROTOCOL_ERROR');
  assert.equal(err?.reasonCode, 0x95);
  assert.deepEqual(
    sent.map((d) => d.reasonCode),
    [0x95],
  );
});

test('protocol error from the server: the DISCONNECT with the reason code reaches the wire before the socket closes (4.13)', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { reconnect: false, properties: { maximumPacketSize: 100 } });
  const closed = new Promise((r) => client.once('close', r));
  conn.send({ type: 3, topic: 'big', payload: Buffer.alloc(200), qos: 0, retain: false, dup: false });
  await closed;
  await conn.waitClosed();
  assert.deepEqual(
    conn.packets.filter((p): p is DisconnectPacket => p.type === 14).map((d) => d.reasonCode),
    [0x95],
  );
});

test('QoS 0 publish "resolves when written": destroy() right after the await does not lose it', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server);
  await client.publish('w/x', 'written');
  client.destroy();
  await conn.waitClosed();
  assert.deepEqual(types(conn.packets), [3]);
});

// ------------------------------------------------------------------ topic aliases

test('the client never sends a Topic Alias of 0 or above the server’s Topic Alias Maximum [MQTT-3.3.2-8] [MQTT-3.3.2-9]', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, {}, { properties: { topicAliasMaximum: 2 } });
  const over = client.publish('ta/x', 'x', { properties: { topicAlias: 3 } });
  over.catch(() => {});
  const zero = client.publish('ta/y', 'y', { properties: { topicAlias: 0 } });
  zero.catch(() => {});
  await delay(60);
  for (const p of conn.packets.filter((x): x is PublishPacket => x.type === 3)) {
    const alias = p.properties?.topicAlias;
    assert.ok(alias === undefined || (alias >= 1 && alias <= 2), `Topic Alias ${String(alias)} sent, server allows 1..2`);
  }
  await assert.rejects(over, (e: ReasonCodeError) => e.reasonCode === 0x94 && /Topic Aliases 1 to 2/.test(e.message));
  await assert.rejects(zero, (e: MqttClientError) => e.code === 'INVALID_ARGUMENT');
  await client.publish('ta/z', 'z', { properties: { topicAlias: 2 } });
  assert.equal(((await conn.next(3)) as PublishPacket).properties?.topicAlias, 2, 'an alias in range goes out');
});

/** A bare TCP server: answers the first CONNECT with CONNACK (5.0) and records every byte the client sends after it. */
async function rawServer(t: Ctx): Promise<{ url: string; after: () => Buffer }> {
  let after = Buffer.alloc(0);
  const sockets: net.Socket[] = [];
  const srv = net.createServer((s) => {
    sockets.push(s);
    let connected = false;
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      if (connected) {
        after = Buffer.concat([after, d]);
        return;
      }
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf[1]!) {
        connected = true;
        after = buf.subarray(2 + buf[1]!);
        s.write(Buffer.from([0x20, 0x03, 0x00, 0x00, 0x00])); // CONNACK Success, no properties
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => srv.close(() => r()));
  });
  return { url: `mqtt://127.0.0.1:${(srv.address() as net.AddressInfo).port}`, after: () => after };
}

test('a PUBLISH from the client never carries a Subscription Identifier [MQTT-3.3.4-6]', async (t) => {
  const raw = await rawServer(t);
  const client = new MqttClient(raw.url, { ...fast, reconnect: false });
  t.after(() => client.destroy());
  await client.connect();
  const p = client.publish('si/x', 'x', { properties: { subscriptionIdentifier: 5 } });
  p.catch(() => {});
  await delay(60);
  assert.equal(raw.after().length, 0, `the client wrote ${raw.after().length} bytes (a PUBLISH with Subscription Identifier)`);
  await assert.rejects(p, (e: MqttClientError) => e.code === 'INVALID_ARGUMENT' && /subscriptionIdentifier/.test(e.message));
});

test('Topic Alias 0 or above the client’s Topic Alias Maximum: DISCONNECT with 0x94 Topic Alias invalid (3.3.4)', async (t) => {
  for (const alias of [0, 6]) {
    const server = await withServer(t);
    const { client, conn } = await connected(t, server, { properties: { topicAliasMaximum: 5 } });
    const sent = disconnectsSent(client);
    const offline = new Promise<MqttClientError>((r) => client.once('offline', r));
    conn.send({ type: 3, topic: 'a/b', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: alias } });
    const err = await offline;
    assert.deepEqual(
      sent.map((d) => d.reasonCode),
      [0x94],
      `alias ${alias}`,
    );
    assert.equal(err.reasonCode, 0x94);
  }
});

test('unknown Topic Alias with an empty topic: DISCONNECT 0x82; aliases do not survive a reconnect [MQTT-3.3.2-7]', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { properties: { topicAliasMaximum: 5 } });
  const got: string[] = [];
  client.on('message', (m) => got.push(m.topic));
  conn.send({ type: 3, topic: 'alias/t', payload: Buffer.from('1'), qos: 0, retain: false, dup: false, properties: { topicAlias: 1 } });
  await eventually(() => got.length === 1);
  const { conn2 } = await reconnect(client, server, conn);
  const sent = disconnectsSent(client);
  const offline = new Promise<MqttClientError>((r) => client.once('offline', r));
  conn2.send({ type: 3, topic: '', payload: Buffer.from('2'), qos: 0, retain: false, dup: false, properties: { topicAlias: 1 } });
  assert.match((await offline).message, /unknown Topic Alias 1/);
  assert.deepEqual(
    sent.map((d) => d.reasonCode),
    [0x82],
  );
  assert.deepEqual(got, ['alias/t']);
});

// ------------------------------------------------------------------ keep alive

test('Server Keep Alive with keepAlive 0: a PINGRESP 50 ms later still counts (the PINGRESP timeout is not 1 ms)', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { keepAlive: 0 }, { properties: { serverKeepAlive: 1 } });
  assert.equal(client.connack?.keepAlive, 1);
  let lost: MqttClientError | undefined;
  client.on('offline', (e) => (lost = e));
  await conn.next(12, 1600);
  await delay(50);
  conn.send({ type: 13 });
  await delay(50);
  assert.equal(lost, undefined, `connection declared dead: ${lost?.message}`);
});

test('Server Keep Alive 0 switches PINGREQ off; keep alive sent in CONNECT as given', async (t) => {
  const server = await withServer(t);
  const { conn, connect } = await connected(t, server, { keepAlive: 1 }, { properties: { serverKeepAlive: 0 } });
  assert.equal(connect.keepAlive, 1);
  await delay(1300);
  assert.equal(conn.packets.some((p) => p.type === 12), false);
});

// ------------------------------------------------------------------ SUBACK / UNSUBACK / DISCONNECT

test('3.1.1 SUBACK 0x80 for one of two filters: rejects, with the per-filter results; the good filter is kept for resubscribe', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { protocolVersion: '3.1.1' });
  const sub = client.subscribe(['ok/#', 'bad/#'], { qos: 2 });
  const s = (await conn.next(8)) as SubscribePacket;
  conn.send({ type: 9, packetId: s.packetId, reasonCodes: [1, 0x80] });
  await assert.rejects(sub, (e: ReasonCodeError & { results?: unknown }) => {
    assert.equal(e.reasonCode, 0x80);
    assert.match(e.message, /subscribe to "bad\/#" failed: 0x80/);
    assert.deepEqual(e.results, [
      { topicFilter: 'ok/#', reasonCode: 1, qos: 1 },
      { topicFilter: 'bad/#', reasonCode: 0x80 },
    ]);
    return true;
  });
  const { conn2 } = await reconnect(client, server, conn, { sessionPresent: false });
  const again = (await conn2.next(8)) as SubscribePacket;
  assert.deepEqual(
    again.subscriptions.map((x) => x.topicFilter),
    ['ok/#'],
  );
  await delay(30);
  assert.equal(conn2.packets.some((p) => p.type === 8), false, 'bad/# is not resubscribed');
});

test('resubscribe without a session keeps the 5.0 subscription options and properties', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server);
  const sub = client.subscribe('opt/#', { qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2, properties: { subscriptionIdentifier: 7, userProperties: [['a', 'b']] } });
  const s = (await conn.next(8)) as SubscribePacket;
  conn.send({ type: 9, packetId: s.packetId, reasonCodes: [2] });
  await sub;
  const { conn2 } = await reconnect(client, server, conn, { sessionPresent: false });
  const again = (await conn2.next(8)) as SubscribePacket;
  assert.deepEqual(again.subscriptions, s.subscriptions);
  assert.deepEqual(again.properties, { subscriptionIdentifier: 7, userProperties: [['a', 'b']] });
  assert.notEqual(again.packetId, 0);
});

test('5.0 UNSUBACK: per-filter codes (0x11 is a success); a failure code rejects in words', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server);
  const u1 = client.unsubscribe(['a', 'b']);
  const x1 = (await conn.next(10)) as UnsubscribePacket;
  assert.deepEqual(x1.topicFilters, ['a', 'b']);
  conn.send({ type: 11, packetId: x1.packetId, reasonCodes: [0x00, 0x11] });
  assert.deepEqual(await u1, [
    { topicFilter: 'a', reasonCode: 0 },
    { topicFilter: 'b', reasonCode: 0x11 },
  ]);
  const u2 = client.unsubscribe('c');
  const x2 = (await conn.next(10)) as UnsubscribePacket;
  conn.send({ type: 11, packetId: x2.packetId, reasonCodes: [0x87] });
  await assert.rejects(u2, (e: ReasonCodeError) => e.reasonCode === 0x87 && /unsubscribe from "c" failed: 0x87 Not authorized/.test(e.message));
});

test('server DISCONNECT: the client answers nothing, reports the reason in words, and stops for Session taken over', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server);
  const disconnects: DisconnectPacket[] = [];
  client.on('disconnect', (d) => disconnects.push(d));
  const closed = new Promise<MqttClientError | undefined>((r) => client.once('close', r));
  conn.send({ type: 14, reasonCode: 0x8e });
  const err = await closed;
  assert.equal(err?.message, 'the server closed the connection: 0x8e Session taken over');
  assert.equal(disconnects[0]?.reasonCode, 0x8e);
  await conn.waitClosed();
  assert.deepEqual(types(conn.packets), [], 'no DISCONNECT back');
  await delay(50);
  assert.equal(server.connections.length, 1, 'no reconnect');
});

// ------------------------------------------------------------------ end()

test('end({ sessionExpiry }) after CONNECT with Session Expiry 0: no non-zero Session Expiry in DISCONNECT [MQTT-3.14.2-2]', async (t) => {
  const server = await withServer(t);
  const { client, conn, connect } = await connected(t, server);
  assert.equal(connect.properties?.sessionExpiryInterval, undefined);
  await assert.rejects(client.end({ sessionExpiry: 60 }), (e: MqttClientError) => e.code === 'INVALID_ARGUMENT' && /needs a Session Expiry in CONNECT/.test(e.message));
  const d = conn.packets.find((p): p is DisconnectPacket => p.type === 14);
  assert.ok(!d || !d.properties?.sessionExpiryInterval, `DISCONNECT with Session Expiry ${String(d?.properties?.sessionExpiryInterval)}`);
  assert.equal(client.connected, true, 'refused locally: the client stays connected');
  await client.end({ sessionExpiry: 0 });
  assert.equal(((await conn.next(14)) as DisconnectPacket).properties?.sessionExpiryInterval, 0);
});

test('end({ sessionExpiry }) after CONNECT with a Session Expiry: DISCONNECT carries the new value', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { clean: false, sessionExpiry: 10 });
  await client.end({ sessionExpiry: 3600 });
  assert.equal(((await conn.next(14)) as DisconnectPacket).properties?.sessionExpiryInterval, 3600);
});

test('end() waits for PUBCOMP of QoS 2 and for publishes held back by Receive Maximum before DISCONNECT', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, {}, { properties: { receiveMaximum: 1 } });
  const a = client.publish('e/a', 'a', { qos: 2 });
  const b = client.publish('e/b', 'b', { qos: 1 });
  const ended = client.end();
  const pa = (await conn.next(3)) as PublishPacket;
  conn.send({ type: 5, packetId: pa.packetId! });
  await conn.next(6);
  conn.send({ type: 7, packetId: pa.packetId! });
  const pb = (await conn.next(3)) as PublishPacket;
  assert.equal(conn.packets.some((p) => p.type === 14), false);
  conn.send({ type: 4, packetId: pb.packetId! });
  await Promise.all([a, b]);
  assert.equal((await conn.next(14)).type, 14);
  await ended;
});

// ------------------------------------------------------------------ CONNECT

test('nothing is sent before CONNECT, nor before CONNACK: early publish / subscribe wait for the connection', async (t) => {
  const server = await withServer(t);
  const client = new MqttClient(server.url, { ...fast });
  t.after(() => client.destroy());
  const pub = client.publish('early/x', 'x', { qos: 1 });
  const sub = client.subscribe('early/#');
  const done = client.connect();
  const conn = await server.connection(0);
  await conn.next(1);
  await delay(40);
  assert.deepEqual(types(conn.packets), [], 'nothing between CONNECT and CONNACK');
  conn.send({ type: 2, sessionPresent: false, reasonCode: 0 });
  await done;
  const p = (await conn.next(3)) as PublishPacket;
  conn.send({ type: 4, packetId: p.packetId! });
  const s = (await conn.next(8)) as SubscribePacket;
  conn.send({ type: 9, packetId: s.packetId, reasonCodes: [0] });
  await Promise.all([pub, sub]);
});

/** The raw bytes of the first packet a client sends to a bare TCP server (then the server hangs up). */
async function rawConnect(t: Ctx, options: ClientOptions): Promise<Buffer> {
  let resolveBytes!: (b: Buffer) => void;
  const bytes = new Promise<Buffer>((r) => (resolveBytes = r));
  const srv = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      // one byte of remaining length is enough for these small CONNECTs
      if (buf.length >= 2 && buf.length >= 2 + buf[1]!) {
        resolveBytes(buf);
        s.destroy();
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => srv.close(() => r())));
  const client = new MqttClient(`mqtt://127.0.0.1:${(srv.address() as net.AddressInfo).port}`, { reconnect: false, connectTimeout: 2000, ...options });
  t.after(() => client.destroy());
  client.connect().catch(() => {});
  return bytes;
}

test('MQTT 3.1 CONNECT bytes: MQIsdp, level 3, flags, keep alive, Client ID, will, user name, password', async (t) => {
  const bytes = await rawConnect(t, {
    protocolVersion: '3.1',
    clientId: 'c31',
    keepAlive: 30,
    username: 'u',
    password: 'p',
    will: { topic: 'w', payload: 'bye', qos: 1, retain: true },
  });
  // prettier-ignore
  const expected = Buffer.from([
    0x10, 31,
    0x00, 0x06, ...Buffer.from('MQIsdp'), 0x03,
    0x80 | 0x40 | 0x20 | (1 << 3) | 0x04 | 0x02, // user, password, will retain, will QoS 1, will, clean
    0x00, 30,
    0x00, 0x03, ...Buffer.from('c31'),
    0x00, 0x01, ...Buffer.from('w'),
    0x00, 0x03, ...Buffer.from('bye'),
    0x00, 0x01, ...Buffer.from('u'),
    0x00, 0x01, ...Buffer.from('p'),
  ]);
  assert.deepEqual(bytes, expected);
});

test('MQTT 3.1.1 CONNECT bytes: level 4, Clean Session 0, will QoS 2 without retain, UTF-8 user name, binary password', async (t) => {
  const bytes = await rawConnect(t, {
    protocolVersion: '3.1.1',
    clientId: 'id',
    clean: false,
    keepAlive: 0,
    username: 'é',
    password: Buffer.from([0x00, 0xff]),
    will: { topic: 't', qos: 2 },
  });
  // prettier-ignore
  const expected = Buffer.from([
    0x10, 27,
    0x00, 0x04, ...Buffer.from('MQTT'), 0x04,
    0x80 | 0x40 | (2 << 3) | 0x04,
    0x00, 0x00,
    0x00, 0x02, ...Buffer.from('id'),
    0x00, 0x01, ...Buffer.from('t'),
    0x00, 0x00,
    0x00, 0x02, 0xc3, 0xa9,
    0x00, 0x02, 0x00, 0xff,
  ]);
  assert.deepEqual(bytes, expected);
});

test('CONNECT credentials: 5.0 sends a password without a user name; 3.1.1 refuses it before opening a socket [MQTT-3.1.2-22]', async (t) => {
  const server = await withServer(t);
  const { connect } = await connected(t, server, { password: 'secret' });
  assert.equal(connect.username, undefined);
  assert.deepEqual(connect.password, Buffer.from('secret'));
  const before = server.connections.length;
  const client = new MqttClient(server.url, { ...fast, protocolVersion: '3.1.1', password: 'secret', reconnect: false });
  await assert.rejects(client.connect(), (e: MqttClientError) => e.code === 'INVALID_ARGUMENT' && /password without a username/.test(e.message));
  await delay(30);
  assert.equal(server.connections.length, before, 'no socket opened');
});

test('5.0 CONNECT: will properties, Session Expiry and CONNECT properties decoded as sent', async (t) => {
  const server = await withServer(t);
  const { connect } = await connected(t, server, {
    clean: false,
    sessionExpiry: 120,
    properties: { receiveMaximum: 10, topicAliasMaximum: 4, userProperties: [['k', 'v']] },
    will: { topic: 'w/x', payload: Buffer.from([1, 2]), qos: 1, retain: true, properties: { willDelayInterval: 5, contentType: 'bin' } },
  });
  assert.equal((connect as ConnectPacket).clean, false);
  assert.deepEqual(connect.properties, { sessionExpiryInterval: 120, receiveMaximum: 10, topicAliasMaximum: 4, userProperties: [['k', 'v']] });
  assert.equal(connect.will?.topic, 'w/x');
  assert.deepEqual(connect.will?.payload, Buffer.from([1, 2]));
  assert.equal(connect.will?.qos, 1);
  assert.equal(connect.will?.retain, true);
  assert.deepEqual(connect.will?.properties, { willDelayInterval: 5, contentType: 'bin' });
});

// ------------------------------------------------------------------ ordering

test('ordering: QoS 0, 1 and 2 messages to one topic go out in publish order, also behind Receive Maximum [4.6]', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, {}, { properties: { receiveMaximum: 1 } });
  const all = [0, 1, 2, 0, 1, 0, 2].map((qos, i) => client.publish('ord/x', String(i), { qos: qos as 0 | 1 | 2 }));
  const seen: string[] = [];
  while (seen.length < 7) {
    const p = (await conn.next(3)) as PublishPacket;
    seen.push(p.payload.toString());
    if (p.qos === 1) conn.send({ type: 4, packetId: p.packetId! });
    if (p.qos === 2) {
      conn.send({ type: 5, packetId: p.packetId! });
      await conn.next(6);
      conn.send({ type: 7, packetId: p.packetId! });
    }
  }
  assert.deepEqual(seen, ['0', '1', '2', '3', '4', '5', '6']);
  await Promise.all(all);
});

test('resubscribe after a reconnect without session goes out before the resent PUBLISHes, as documented', async (t) => {
  const server = await withServer(t);
  const { client, conn } = await connected(t, server, { clean: false, sessionExpiry: 60 });
  const sub = client.subscribe('rs/#', { qos: 1 });
  const s = (await conn.next(8)) as SubscribePacket;
  conn.send({ type: 9, packetId: s.packetId, reasonCodes: [1] });
  await sub;
  const p = client.publish('rs/x', 'x', { qos: 1 });
  p.catch(() => {});
  await conn.next(3);
  const { conn2 } = await reconnect(client, server, conn, { sessionPresent: false });
  const first = await conn2.next();
  assert.equal(first.type, 8, `first packet after CONNACK is type ${first.type}`);
});
