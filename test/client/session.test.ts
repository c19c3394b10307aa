// ClientSession, the client's MQTT flow state without I/O: packets and a fake clock in, packets
// and outcomes out. No sockets, no timers, no sleeps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientSession, type Deferred, type Request, type SessionConfig } from '../../src/client/session.js';
import type { MqttClientError } from '../../src/client/errors.js';
import type { ConnackPacket, Packet, PublishPacket, Properties, SubscribePacket } from '../../src/protocol/index.js';
import { PacketType } from '../../src/protocol/index.js';

/** A session wired to recorders, on a clock the test moves. */
function harness(config: Partial<SessionConfig> = {}) {
  let now = 1_000_000;
  const sent: Packet[] = [];
  const failures: MqttClientError[] = [];
  const messages: string[] = [];
  let idle = 0;
  const session = new ClientSession(
    {
      protocolVersion: 5,
      queueWhileOffline: true,
      offlineQueueMax: 100,
      resubscribe: true,
      keepAlive: 10,
      pingInterval: 10_000,
      topicAliasMaximum: 0,
      clock: () => now,
      ...config,
    },
    {
      send: (packet) => sent.push(packet),
      message: (m) => messages.push(m.topic),
      fail: (e) => failures.push(e),
      idle: () => idle++,
      error: () => {},
    },
  );
  const connack = (sessionPresent = false, properties?: Properties): ConnackPacket => ({ type: PacketType.CONNACK, sessionPresent, reasonCode: 0, ...(properties ? { properties } : {}) });
  return {
    session,
    sent,
    failures,
    messages,
    idleCount: () => idle,
    advance: (ms: number) => (now += ms),
    now: () => now,
    connect: (sessionPresent = false, properties?: Properties) => session.connected(connack(sessionPresent, properties)),
    /** Takes what was sent so far. */
    take: () => sent.splice(0),
  };
}

interface Outcome<T> {
  request: Request;
  settled: () => { value?: T; error?: Error } | undefined;
}

function publish(h: ReturnType<typeof harness>, topic: string, qos: 0 | 1 | 2): Outcome<unknown> {
  let result: { value?: unknown; error?: Error } | undefined;
  const deferred: Deferred<unknown> = { resolve: (value) => (result = { value }), reject: (error) => (result = { error }) };
  const request: Request = { kind: 'publish', packet: { type: PacketType.PUBLISH, topic, payload: Buffer.from(topic), qos, retain: false, dup: false }, deferred, offline: false };
  h.session.request(request);
  return { request, settled: () => result };
}

function subscribe(h: ReturnType<typeof harness>, topicFilter: string): Outcome<unknown> {
  let result: { value?: unknown; error?: Error } | undefined;
  const deferred: Deferred<unknown> = { resolve: (value) => (result = { value }), reject: (error) => (result = { error }) };
  const request: Request = { kind: 'subscribe', subscriptions: [{ topicFilter, qos: 1 }], deferred };
  h.session.request(request);
  return { request, settled: () => result };
}

const publishes = (packets: Packet[]) => packets.filter((p): p is PublishPacket => p.type === PacketType.PUBLISH);

// ------------------------------------------------------------------ keep alive

test('keep alive: PINGREQ after the ping interval without sending, none while the client is busy sending', () => {
  const h = harness();
  h.connect();
  assert.equal(h.session.tick(), h.now() + 10_000, 'next check at the end of the interval');
  h.advance(6_000);
  publish(h, 'a', 0); // sending anything counts as activity
  h.take();
  h.advance(6_000);
  assert.equal(h.session.tick(), h.now() + 4_000, 'not due yet: 6 s since the last packet');
  assert.deepEqual(h.take(), []);
  h.advance(4_000);
  h.session.tick();
  assert.deepEqual(h.take(), [{ type: PacketType.PINGREQ }]);
});

test('keep alive: no PINGRESP within the timeout fails the connection with KEEPALIVE_TIMEOUT; a PINGRESP in time keeps it', () => {
  const h = harness({ pingTimeout: 2_000 });
  h.connect();
  h.advance(10_000);
  h.session.tick();
  assert.deepEqual(h.take(), [{ type: PacketType.PINGREQ }]);
  h.advance(1_500);
  h.session.receive({ type: PacketType.PINGRESP });
  h.advance(1_000);
  h.session.tick();
  assert.equal(h.failures.length, 0, "answered in time");
  h.advance(8_500);
  h.session.tick();
  assert.deepEqual(h.take(), [{ type: PacketType.PINGREQ }]);
  h.advance(1_999);
  h.session.tick();
  assert.equal(h.failures.length, 0);
  h.advance(1);
  h.session.tick();
  assert.equal(h.failures.length, 1);
  assert.equal(h.failures[0]!.code, 'KEEPALIVE_TIMEOUT');
  assert.match(h.failures[0]!.message, /no PINGRESP from the server within 2 s/);
});

test('keep alive: a Server Keep Alive shortens the interval; 0 turns keep alive off', () => {
  const h = harness();
  assert.equal(h.connect(false, { serverKeepAlive: 3 }), 3);
  assert.equal(h.session.tick(), h.now() + 3_000);
  const off = harness();
  assert.equal(off.connect(false, { serverKeepAlive: 0 }), 0);
  assert.equal(off.session.tick(), Infinity);
});

// ------------------------------------------------------------------ flows across connections

test('[MQTT-4.4.0-1] a kept session resends unacknowledged PUBLISH with DUP and the same packet id, and PUBREL for QoS 2 past PUBREC', () => {
  const h = harness();
  h.connect();
  const a = publish(h, 'a', 1);
  const b = publish(h, 'b', 2);
  const [pa, pb] = publishes(h.take());
  assert.equal(pa!.dup, false);
  h.session.receive({ type: PacketType.PUBREC, packetId: pb!.packetId! });
  assert.deepEqual(h.take(), [{ type: PacketType.PUBREL, packetId: pb!.packetId! }]);
  h.session.disconnected(lost());
  h.connect(true);
  const again = h.take();
  assert.deepEqual(again[0], { type: PacketType.PUBREL, packetId: pb!.packetId! }, 'PUBREL first, for the flow past PUBREC');
  const resent = publishes(again);
  assert.equal(resent.length, 1, 'the QoS 2 message past PUBREC is not published again');
  assert.equal(resent[0]!.topic, 'a');
  assert.equal(resent[0]!.dup, true, 'DUP set on the resent PUBLISH');
  assert.equal(resent[0]!.packetId, pa!.packetId, 'same packet id');
  h.session.receive({ type: PacketType.PUBACK, packetId: pa!.packetId! });
  h.session.receive({ type: PacketType.PUBCOMP, packetId: pb!.packetId! });
  assert.deepEqual(a.settled(), { value: { reasonCode: 0 } });
  assert.ok(b.settled() && !b.settled()!.error);
});

test('[MQTT-3.2.2-5] Session Present 0: unfinished messages go again as new ones (no DUP), subscriptions are made again', () => {
  const h = harness();
  h.connect();
  subscribe(h, 's/#');
  const sub = h.take()[0] as SubscribePacket;
  h.session.receive({ type: PacketType.SUBACK, packetId: sub.packetId, reasonCodes: [1] });
  publish(h, 'a', 1);
  h.take();
  h.session.disconnected(lost());
  h.connect(false);
  const out = h.take();
  assert.deepEqual(
    out.map((p) => p.type),
    [PacketType.SUBSCRIBE, PacketType.PUBLISH],
    'resubscribe first, then the message',
  );
  assert.equal((out[1] as PublishPacket).dup, false);
});

// ------------------------------------------------------------------ packet identifiers

test('[MQTT-2.2.1-3] a packet id in use is not reused until its flow ends, then it is free again', () => {
  const h = harness();
  h.connect();
  publish(h, 'a', 1);
  publish(h, 'b', 2);
  subscribe(h, 'c');
  const ids = h.take().map((p) => (p as { packetId: number }).packetId);
  assert.equal(new Set(ids).size, 3, `three different ids: ${ids.join()}`);
  // QoS 2: the id stays in use after PUBREC, until PUBCOMP
  h.session.receive({ type: PacketType.PUBREC, packetId: ids[1]! });
  h.take();
  for (let i = 0; i < 10; i++) publish(h, `x${i}`, 1);
  const more = publishes(h.take()).map((p) => p.packetId!);
  for (const id of ids) assert.ok(!more.includes(id), `id ${id} still in use was not handed out again`);
  h.session.receive({ type: PacketType.PUBCOMP, packetId: ids[1]! });
  assert.equal(h.session.pending.inflight, 12);
});

test('[MQTT-2.2.1-3] a request given up on (timeout, abort) keeps its packet id until the server acknowledges it; a queued one takes none', () => {
  const h = harness();
  h.connect(false, { receiveMaximum: 1 });
  const sent = publish(h, 'a', 1);
  const queued = publish(h, 'b', 1);
  const [pa] = publishes(h.take());
  assert.deepEqual(h.session.pending, { queued: 1, inflight: 1 });
  h.session.cancel(queued.request, new Error('timed out'));
  assert.equal(queued.settled()?.error?.message, 'timed out');
  assert.deepEqual(h.session.pending, { queued: 0, inflight: 1 }, 'the queued one left the queue');
  h.session.cancel(sent.request, new Error('aborted'));
  assert.equal(sent.settled()?.error?.message, 'aborted');
  assert.deepEqual(h.session.pending, { queued: 0, inflight: 1 }, 'the sent one still holds its id and its Receive Maximum slot');
  const c = publish(h, 'c', 1);
  assert.deepEqual(publishes(h.take()), [], 'Receive Maximum 1 is still taken');
  // the late PUBACK ends the flow: the id is free, the slot too, and the next message goes
  h.session.receive({ type: PacketType.PUBACK, packetId: pa!.packetId! });
  const [pc] = publishes(h.take());
  assert.equal(pc!.topic, 'c');
  assert.equal(h.session.pending.inflight, 1);
  h.session.receive({ type: PacketType.PUBACK, packetId: pc!.packetId! });
  assert.deepEqual(c.settled(), { value: { reasonCode: 0 } });
  assert.deepEqual(h.session.pending, { queued: 0, inflight: 0 });
});

test('a SUBSCRIBE given up on is not sent again after a reconnect, and its id is released', () => {
  const h = harness();
  h.connect();
  const s = subscribe(h, 'gone/#');
  h.take();
  h.session.cancel(s.request, new Error('aborted'));
  h.session.disconnected(lost());
  assert.deepEqual(h.session.pending, { queued: 0, inflight: 0 });
  h.connect(true);
  assert.deepEqual(h.take(), []);
});

// ------------------------------------------------------------------ Receive Maximum

test('[MQTT-4.9.0-2] no more QoS 1/2 PUBLISH in flight than the server\'s Receive Maximum; QoS 0 and order kept', () => {
  const h = harness();
  h.connect(false, { receiveMaximum: 2 });
  const out = [publish(h, 'q1', 1), publish(h, 'q2', 2), publish(h, 'q3', 1), publish(h, 'q0', 0)];
  let sent = publishes(h.take());
  assert.deepEqual(
    sent.map((p) => p.topic),
    ['q1', 'q2'],
    'the third QoS 1 waits; the QoS 0 after it waits too, to keep the order',
  );
  h.session.receive({ type: PacketType.PUBACK, packetId: sent[0]!.packetId! });
  sent = publishes(h.take());
  assert.deepEqual(
    sent.map((p) => p.topic),
    ['q3', 'q0'],
  );
  assert.ok(out[3]!.settled(), 'QoS 0 resolved once written');
  // a kept session: the quota starts again, resends come first [MQTT-4.6.0-1]
  h.session.disconnected(lost());
  h.connect(true, { receiveMaximum: 1 });
  const resent = publishes(h.take());
  assert.equal(resent.length, 1, 'one resend within Receive Maximum 1');
  assert.equal(resent[0]!.dup, true);
});

// ------------------------------------------------------------------ inbound

test('[MQTT-4.3.3-9] an incoming QoS 2 message is delivered once however often it comes before PUBREL; PUBREL gets PUBCOMP', () => {
  const h = harness();
  h.connect();
  const p: PublishPacket = { type: PacketType.PUBLISH, topic: 'in', payload: Buffer.from('x'), qos: 2, retain: false, dup: false, packetId: 7 };
  h.session.receive(p);
  h.session.receive({ ...p, dup: true });
  assert.deepEqual(h.messages, ['in']);
  assert.deepEqual(h.take(), [
    { type: PacketType.PUBREC, packetId: 7 },
    { type: PacketType.PUBREC, packetId: 7 },
  ]);
  h.session.receive({ type: PacketType.PUBREL, packetId: 7 });
  assert.deepEqual(h.take(), [{ type: PacketType.PUBCOMP, packetId: 7 }]);
  h.session.receive({ type: PacketType.PUBREL, packetId: 7 });
  assert.deepEqual(h.take(), [{ type: PacketType.PUBCOMP, packetId: 7, reasonCode: 0x92 }], '5.0: 0x92 for an id not known');
});

test('a second CONNACK is a protocol error: DISCONNECT 0x82 and the connection fails', () => {
  const h = harness();
  h.connect();
  h.session.receive({ type: PacketType.CONNACK, sessionPresent: false, reasonCode: 0 });
  assert.deepEqual(h.take(), [{ type: PacketType.DISCONNECT, reasonCode: 0x82 }]);
  assert.equal(h.failures[0]?.code, 'PROTOCOL_ERROR');
});

test('offline: publishes queue up to offlineQueueMax, SUBSCRIBE waits; idle once everything is acknowledged', () => {
  const h = harness({ offlineQueueMax: 1 });
  const a = publish(h, 'a', 1);
  const b = publish(h, 'b', 1);
  assert.equal(b.settled()?.error?.message, 'offline queue full (1 messages): publish dropped');
  assert.equal(a.settled(), undefined);
  h.connect();
  const [pa] = publishes(h.take());
  const before = h.idleCount();
  h.session.receive({ type: PacketType.PUBACK, packetId: pa!.packetId! });
  assert.ok(h.idleCount() > before, 'idle reported');
});

function lost(): MqttClientError {
  return Object.assign(new Error('connection lost'), { code: 'ECONNRESET' }) as unknown as MqttClientError;
}
