// The sans-I/O MQTT-SN gateway on a fake clock and an in-memory broker core: every flow and timer
// rule of MQTT-SN 1.2 (section numbers cited), with an MQTT 5.0 client on the other side.
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import { encodeSn } from '../../src/mqttsn/codec.js';
import { SnReturnCode, SnType, type SnPacket } from '../../src/mqttsn/packets.js';
import type { PublishPacket } from '../../src/protocol/packets.js';
import type { MemoryConnection } from '../helpers/fake-core.js';
import { BrokerInspector } from '../../src/broker/inspect.js';
import fc from 'fast-check';
import { GatewayHarness, type FakePeer } from './helpers.js';
import { anyPacket, bytes } from './arbitraries.js';

const inspect = (h: GatewayHarness) => new BrokerInspector(h.fake.core);

const connect = (clientId: string, extra: Partial<{ will: boolean; cleanSession: boolean; duration: number }> = {}): SnPacket => ({
  type: SnType.CONNECT,
  will: false,
  cleanSession: true,
  protocolId: 1,
  duration: 60,
  clientId,
  ...extra,
});

function connected(h: GatewayHarness, port: number, clientId: string, extra: Parameters<typeof connect>[1] = {}): FakePeer {
  const peer = h.peer(port);
  peer.send(connect(clientId, extra));
  assert.deepEqual(peer.take(), [{ type: SnType.CONNACK, returnCode: 0 }]);
  return peer;
}

/** An MQTT 5.0 client of the same broker, subscribed to `filter`. */
function mqttSubscriber(h: GatewayHarness, filter: string, qos: 0 | 1 | 2 = 1, clientId = 'dashboard'): MemoryConnection {
  const c = h.fake.connect({ clientId, protocolVersion: 5 });
  c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: filter, qos }] });
  assert.equal(c.take(2)[0]?.type, 2);
  assert.equal(c.take(9).length, 1);
  return c;
}

const publishes = (c: MemoryConnection) => c.take(3) as PublishPacket[];

describe('MQTT-SN gateway: connection (spec 6.2, 6.3)', () => {
  it('CONNECT → CONNACK, and the client is an ordinary broker session under its Client ID', () => {
    const h = new GatewayHarness();
    connected(h, 1000, 'sensor-1');
    const client = inspect(h).connection('sensor-1');
    assert.ok(client, 'the broker has a connection for the MQTT-SN client');
    assert.equal(client.remoteAddress, '10.0.0.1:1000');
    assert.equal(client.listener, 'mqttsn:test');
    assert.equal(h.gateway.clientState({ address: '10.0.0.1', port: 1000 }), 'active');
  });

  it('the Will flag starts WILLTOPICREQ / WILLTOPIC / WILLMSGREQ / WILLMSG before CONNACK (6.3)', () => {
    const h = new GatewayHarness();
    const dash = mqttSubscriber(h, 'status/#');
    const peer = h.peer(1000);
    peer.send(connect('sensor-1', { will: true }));
    assert.deepEqual(peer.take(), [{ type: SnType.WILLTOPICREQ }]);
    peer.send({ type: SnType.WILLTOPIC, qos: 1, retain: false, topic: 'status/sensor-1' });
    assert.deepEqual(peer.take(), [{ type: SnType.WILLMSGREQ }]);
    peer.send({ type: SnType.WILLMSG, payload: Buffer.from('offline') });
    assert.deepEqual(peer.take(), [{ type: SnType.CONNACK, returnCode: 0 }]);
    // [MQTT-SN 6.14] nothing heard for 1.5 x Duration: the client is lost and its will goes out
    h.advance(60_000 * 1.5 + 200);
    const [will] = publishes(dash);
    assert.equal(will?.topic, 'status/sensor-1');
    assert.equal(will?.payload.toString(), 'offline');
    assert.equal(h.gateway.stats.lost, 1);
  });

  it('keep alive: a PINGREQ within 1.5 x Duration keeps the client; silence past it loses it (6.14)', () => {
    const h = new GatewayHarness();
    const peer = connected(h, 1000, 'k', { duration: 10 });
    h.advance(14_000);
    peer.send({ type: SnType.PINGREQ });
    assert.deepEqual(peer.take(), [{ type: SnType.PINGRESP }]);
    h.advance(14_900);
    assert.equal(h.gateway.clientState({ address: '10.0.0.1', port: 1000 }), 'active');
    h.advance(300);
    assert.equal(h.gateway.clientState({ address: '10.0.0.1', port: 1000 }), undefined);
    assert.equal(inspect(h).isConnected('k'), false);
  });

  it('the broker\'s maxKeepAlive: the gateway keeps the virtual connection alive with PINGREQs', () => {
    const h = new GatewayHarness({}, { limits: { maxKeepAlive: 10 } });
    connected(h, 1000, 'idle', { duration: 0 });
    h.advance(120_000, 500);
    assert.ok(inspect(h).isConnected('idle'), 'still connected after 12 x the broker\'s keep alive');
  });

  it('DISCONNECT: answered with DISCONNECT, the will is not published, a clean session ends (6.6)', () => {
    const h = new GatewayHarness();
    const dash = mqttSubscriber(h, '#');
    const peer = h.peer(1000);
    peer.send(connect('c', { will: true }));
    peer.send({ type: SnType.WILLTOPIC, qos: 0, retain: false, topic: 'will/c' });
    peer.send({ type: SnType.WILLMSG, payload: Buffer.from('gone') });
    peer.take();
    peer.send({ type: SnType.DISCONNECT });
    assert.deepEqual(peer.take(), [{ type: SnType.DISCONNECT }]);
    assert.deepEqual(publishes(dash), []);
    assert.equal(inspect(h).hasSession('c'), false);
  });

  it('Clean Session 0 keeps subscriptions across connections; 1 removes them', () => {
    const h = new GatewayHarness({}, { limits: { sessionExpiry: 3600 } });
    let peer = connected(h, 1000, 'p', { cleanSession: false });
    peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 1, msgId: 1, topic: { type: 0, name: 'cmd/p' } });
    assert.equal((peer.take()[0] as { returnCode: number }).returnCode, 0);
    peer.send({ type: SnType.DISCONNECT });
    peer.take();
    assert.ok(inspect(h).hasSession('p'), 'the session outlives the connection');
    peer = connected(h, 1001, 'p', { cleanSession: false });
    const mqtt = h.fake.connect({ clientId: 'pub', protocolVersion: 5 });
    mqtt.send({ type: 3, topic: 'cmd/p', payload: Buffer.from('on'), qos: 0, retain: false, dup: false });
    const [reg] = peer.take() as [{ type: number; topicName: string }];
    assert.equal(reg.type, SnType.REGISTER, 'a new connection has no topic ids: the gateway registers the topic');
    assert.equal(reg.topicName, 'cmd/p');
    peer.send({ type: SnType.DISCONNECT });
    peer.take();
    connected(h, 1002, 'p', { cleanSession: true });
    assert.deepEqual(inspect(h).subscribers('cmd/p'), []);
  });

  it('a CONNECT with an unknown protocol id is refused with "not supported"', () => {
    const h = new GatewayHarness();
    const peer = h.peer(1000);
    peer.send({ ...(connect('x') as { type: 0x04 }), protocolId: 2 } as SnPacket);
    assert.deepEqual(peer.take(), [{ type: SnType.CONNACK, returnCode: SnReturnCode.NotSupported }]);
  });

  it('the authenticate hook sees the MQTT-SN Client ID, and a refusal is CONNACK "not supported"', () => {
    const seen: string[] = [];
    const h = new GatewayHarness({}, { hooks: { authenticate: (req) => (seen.push(req.clientId), req.clientId !== 'evil') } });
    connected(h, 1000, 'good');
    const peer = h.peer(1001);
    peer.send(connect('evil'));
    assert.deepEqual(peer.take(), [{ type: SnType.CONNACK, returnCode: SnReturnCode.NotSupported }]);
    assert.deepEqual(seen, ['good', 'evil']);
    assert.equal(h.gateway.clientCount, 1);
  });
});

describe('MQTT-SN gateway: topics and PUBLISH (spec 6.5-6.10)', () => {
  it('REGISTER → REGACK with an id; PUBLISH QoS 1 with it reaches an MQTT 5 subscriber and is PUBACKed', () => {
    const h = new GatewayHarness();
    const dash = mqttSubscriber(h, 'sensors/#');
    const peer = connected(h, 1000, 's');
    peer.send({ type: SnType.REGISTER, topicId: 0, msgId: 1, topicName: 'sensors/temp' });
    const [regack] = peer.take() as [{ type: number; topicId: number; msgId: number; returnCode: number }];
    assert.equal(regack.type, SnType.REGACK);
    assert.equal(regack.returnCode, 0);
    assert.notEqual(regack.topicId, 0);
    peer.send({ type: SnType.PUBLISH, dup: false, qos: 1, retain: false, topic: { type: 0, id: regack.topicId }, msgId: 2, payload: Buffer.from('21.5') });
    assert.deepEqual(peer.take(), [{ type: SnType.PUBACK, topicId: regack.topicId, msgId: 2, returnCode: 0 }]);
    const [msg] = publishes(dash);
    assert.equal(msg?.topic, 'sensors/temp');
    assert.equal(msg?.payload.toString(), '21.5');
  });

  it('an unknown topic id is answered with PUBACK "rejected: invalid topic ID", even at QoS 0 (6.10)', () => {
    const h = new GatewayHarness();
    const peer = connected(h, 1000, 's');
    peer.send({ type: SnType.PUBLISH, dup: false, qos: 0, retain: false, topic: { type: 0, id: 77 }, msgId: 0, payload: Buffer.from('x') });
    assert.deepEqual(peer.take(), [{ type: SnType.PUBACK, topicId: 77, msgId: 0, returnCode: SnReturnCode.InvalidTopicId }]);
    peer.send({ type: SnType.PUBLISH, dup: false, qos: 1, retain: false, topic: { type: 1, id: 9 }, msgId: 5, payload: Buffer.from('x') });
    assert.deepEqual(peer.take(), [{ type: SnType.PUBACK, topicId: 9, msgId: 5, returnCode: SnReturnCode.InvalidTopicId }]);
  });

  it('predefined topic ids and short topic names need no REGISTER, both ways', () => {
    const h = new GatewayHarness({ predefinedTopics: { 1: 'sensors/temp' } });
    const dash = mqttSubscriber(h, '#', 0);
    const peer = connected(h, 1000, 's');
    peer.send({ type: SnType.PUBLISH, dup: false, qos: 0, retain: false, topic: { type: 1, id: 1 }, msgId: 0, payload: Buffer.from('a') });
    peer.send({ type: SnType.PUBLISH, dup: false, qos: 0, retain: false, topic: { type: 2, name: 'ab' }, msgId: 0, payload: Buffer.from('b') });
    assert.deepEqual(publishes(dash).map((p) => p.topic), ['sensors/temp', 'ab']);
    peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 0, msgId: 3, topic: { type: 1, id: 1 } });
    peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 0, msgId: 4, topic: { type: 2, name: 'ab' } });
    assert.deepEqual(peer.take(), [
      { type: SnType.SUBACK, qos: 0, topicId: 1, msgId: 3, returnCode: 0 },
      { type: SnType.SUBACK, qos: 0, topicId: 0, msgId: 4, returnCode: 0 },
    ]);
    const mqtt = h.fake.connect({ clientId: 'pub', protocolVersion: 5 });
    mqtt.send({ type: 3, topic: 'sensors/temp', payload: Buffer.from('c'), qos: 0, retain: false, dup: false });
    mqtt.send({ type: 3, topic: 'ab', payload: Buffer.from('d'), qos: 0, retain: false, dup: false });
    const got = peer.take() as { type: number; topic: unknown; payload: Buffer }[];
    assert.deepEqual(got.map((p) => [p.type, p.topic, p.payload.toString()]), [
      [SnType.PUBLISH, { type: 1, id: 1 }, 'c'],
      [SnType.PUBLISH, { type: 2, name: 'ab' }, 'd'],
    ]);
  });

  it('SUBSCRIBE to a name without wildcards returns its topic id; the gateway publishes with it', () => {
    const h = new GatewayHarness();
    const peer = connected(h, 1000, 's');
    peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 1, msgId: 1, topic: { type: 0, name: 'cmd/led' } });
    const [suback] = peer.take() as [{ type: number; topicId: number; qos: number; returnCode: number }];
    assert.equal(suback.type, SnType.SUBACK);
    assert.equal(suback.qos, 1);
    assert.ok(suback.topicId > 0);
    const mqtt = h.fake.connect({ clientId: 'pub', protocolVersion: 5 });
    mqtt.send({ type: 3, topic: 'cmd/led', payload: Buffer.from('on'), qos: 1, retain: false, dup: false, packetId: 9 });
    const [pub] = peer.take() as [{ type: number; topic: { type: number; id: number }; qos: number; msgId: number }];
    assert.equal(pub.type, SnType.PUBLISH);
    assert.deepEqual(pub.topic, { type: 0, id: suback.topicId });
    assert.equal(pub.qos, 1);
    peer.send({ type: SnType.PUBACK, topicId: suback.topicId, msgId: pub.msgId, returnCode: 0 });
  });

  it('a wildcard subscription makes the gateway REGISTER each new topic before PUBLISHing on it (6.7)', () => {
    const h = new GatewayHarness();
    const peer = connected(h, 1000, 's');
    peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 1, msgId: 1, topic: { type: 0, name: 'home/+/temp' } });
    assert.deepEqual(peer.take(), [{ type: SnType.SUBACK, qos: 1, topicId: 0, msgId: 1, returnCode: 0 }]);
    const mqtt = h.fake.connect({ clientId: 'pub', protocolVersion: 5 });
    mqtt.send({ type: 3, topic: 'home/kitchen/temp', payload: Buffer.from('20'), qos: 1, retain: false, dup: false, packetId: 1 });
    mqtt.send({ type: 3, topic: 'home/kitchen/temp', payload: Buffer.from('21'), qos: 0, retain: false, dup: false });
    const [register, ...rest] = peer.take() as [{ type: number; topicId: number; msgId: number; topicName: string }];
    assert.equal(register.type, SnType.REGISTER);
    assert.equal(register.topicName, 'home/kitchen/temp');
    assert.deepEqual(rest, [], 'nothing is published before REGACK');
    peer.send({ type: SnType.REGACK, topicId: register.topicId, msgId: register.msgId, returnCode: 0 });
    const [first] = peer.take() as [{ type: number; topic: unknown; msgId: number; payload: Buffer }];
    assert.equal(first.type, SnType.PUBLISH);
    assert.deepEqual(first.topic, { type: 0, id: register.topicId });
    assert.equal(first.payload.toString(), '20');
    peer.send({ type: SnType.PUBACK, topicId: register.topicId, msgId: first.msgId, returnCode: 0 });
    const [second] = peer.take() as [{ type: number; payload: Buffer }];
    assert.equal(second.payload.toString(), '21', 'the QoS 0 message waited behind the QoS 1 transaction, in order');
  });

  it('QoS 2 both ways: PUBLISH / PUBREC / PUBREL / PUBCOMP (6.11... 5.4.12-5.4.15)', () => {
    const h = new GatewayHarness({ predefinedTopics: { 5: 'q2' } });
    const dash = mqttSubscriber(h, 'q2', 2);
    const peer = connected(h, 1000, 's');
    peer.send({ type: SnType.PUBLISH, dup: false, qos: 2, retain: false, topic: { type: 1, id: 5 }, msgId: 10, payload: Buffer.from('x') });
    assert.deepEqual(peer.take(), [{ type: SnType.PUBREC, msgId: 10 }]);
    peer.send({ type: SnType.PUBREL, msgId: 10 });
    assert.deepEqual(peer.take(), [{ type: SnType.PUBCOMP, msgId: 10 }]);
    assert.equal(publishes(dash).length, 1);
    // and toward the client
    peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 2, msgId: 11, topic: { type: 1, id: 5 } });
    peer.take();
    const mqtt = h.fake.connect({ clientId: 'pub', protocolVersion: 5 });
    mqtt.send({ type: 3, topic: 'q2', payload: Buffer.from('y'), qos: 2, retain: false, dup: false, packetId: 3 });
    const [pub] = peer.take().filter((p) => p.type === SnType.PUBLISH) as [{ msgId: number; qos: number }];
    assert.equal(pub.qos, 2);
    peer.send({ type: SnType.PUBREC, msgId: pub.msgId });
    assert.deepEqual(peer.take(), [{ type: SnType.PUBREL, msgId: pub.msgId }]);
    peer.send({ type: SnType.PUBCOMP, msgId: pub.msgId });
    assert.deepEqual(peer.take(), []);
  });

  it('a retransmitted QoS 1 PUBLISH (DUP) whose PUBACK was lost is acknowledged again, not published twice', () => {
    const h = new GatewayHarness({ predefinedTopics: { 1: 't' } });
    const dash = mqttSubscriber(h, 't');
    const peer = connected(h, 1000, 's');
    const p: SnPacket = { type: SnType.PUBLISH, dup: false, qos: 1, retain: false, topic: { type: 1, id: 1 }, msgId: 42, payload: Buffer.from('once') };
    peer.send(p);
    peer.send({ ...p, dup: true });
    assert.deepEqual(peer.take(), [
      { type: SnType.PUBACK, topicId: 1, msgId: 42, returnCode: 0 },
      { type: SnType.PUBACK, topicId: 1, msgId: 42, returnCode: 0 },
    ]);
    assert.equal(publishes(dash).length, 1);
  });

  it('an ACL refusal is PUBACK "not supported" and SUBACK "not supported"', () => {
    const h = new GatewayHarness({ predefinedTopics: { 1: 'secret' } }, { hooks: { authorizePublish: (_c, m) => m.topic !== 'secret', authorizeSubscribe: (_c, s) => s.topicFilter !== 'secret' } });
    const peer = connected(h, 1000, 's');
    peer.send({ type: SnType.PUBLISH, dup: false, qos: 1, retain: false, topic: { type: 1, id: 1 }, msgId: 1, payload: Buffer.from('x') });
    peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 1, msgId: 2, topic: { type: 1, id: 1 } });
    assert.deepEqual(peer.take(), [
      { type: SnType.PUBACK, topicId: 1, msgId: 1, returnCode: SnReturnCode.NotSupported },
      { type: SnType.SUBACK, qos: 0, topicId: 0, msgId: 2, returnCode: SnReturnCode.NotSupported },
    ]);
  });

  it('UNSUBSCRIBE → UNSUBACK, and nothing more is delivered', () => {
    const h = new GatewayHarness();
    const peer = connected(h, 1000, 's');
    peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 0, msgId: 1, topic: { type: 2, name: 'zz' } });
    peer.send({ type: SnType.UNSUBSCRIBE, msgId: 2, topic: { type: 2, name: 'zz' } });
    assert.deepEqual(peer.take().map((p) => p.type), [SnType.SUBACK, SnType.UNSUBACK]);
    const mqtt = h.fake.connect({ clientId: 'pub', protocolVersion: 5 });
    mqtt.send({ type: 3, topic: 'zz', payload: Buffer.from('y'), qos: 0, retain: false, dup: false });
    assert.deepEqual(peer.take(), []);
  });
});

describe('MQTT-SN gateway: retransmission (spec 6.13)', () => {
  it('an unanswered PUBLISH is resent every Tretry with DUP; after Nretry the client is lost and its will published', () => {
    const h = new GatewayHarness({ retryInterval: 2, maxRetries: 3, predefinedTopics: { 1: 't' } });
    const dash = mqttSubscriber(h, 'will/#');
    const peer = h.peer(1000);
    peer.send(connect('s', { will: true, duration: 0 }));
    peer.send({ type: SnType.WILLTOPIC, qos: 0, retain: false, topic: 'will/s' });
    peer.send({ type: SnType.WILLMSG, payload: Buffer.from('lost') });
    peer.take();
    peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 1, msgId: 1, topic: { type: 1, id: 1 } });
    peer.take();
    const mqtt = h.fake.connect({ clientId: 'pub', protocolVersion: 5 });
    mqtt.send({ type: 3, topic: 't', payload: Buffer.from('m'), qos: 1, retain: false, dup: false, packetId: 1 });
    const [first] = peer.take() as [{ dup: boolean }];
    assert.equal(first.dup, false);
    h.advance(1900);
    assert.deepEqual(peer.take(), [], 'nothing before Tretry');
    for (let i = 0; i < 3; i++) {
      h.advance(2000);
      const [again] = peer.take() as [{ type: number; dup: boolean }];
      assert.equal(again?.type, SnType.PUBLISH);
      assert.equal(again?.dup, true);
    }
    assert.deepEqual(publishes(dash), []);
    h.advance(2000);
    assert.equal(h.gateway.clientState({ address: '10.0.0.1', port: 1000 }), undefined);
    assert.deepEqual(publishes(dash).map((p) => p.payload.toString()), ['lost']);
    assert.equal(h.gateway.stats.retransmissions, 3);
  });

  it('an answer after a retransmission completes the transaction', () => {
    const h = new GatewayHarness({ retryInterval: 1, predefinedTopics: { 1: 't' } });
    const peer = connected(h, 1000, 's', { duration: 0 });
    peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 1, msgId: 1, topic: { type: 1, id: 1 } });
    peer.take();
    const mqtt = h.fake.connect({ clientId: 'pub', protocolVersion: 5 });
    mqtt.send({ type: 3, topic: 't', payload: Buffer.from('1'), qos: 1, retain: false, dup: false, packetId: 1 });
    mqtt.send({ type: 3, topic: 't', payload: Buffer.from('2'), qos: 1, retain: false, dup: false, packetId: 2 });
    const [a] = peer.take() as [{ msgId: number; payload: Buffer }];
    assert.equal(a.payload.toString(), '1');
    h.advance(1000);
    const [a2] = peer.take() as [{ msgId: number; dup: boolean }];
    assert.equal(a2.dup, true);
    peer.send({ type: SnType.PUBACK, topicId: 1, msgId: a.msgId, returnCode: 0 });
    const [b] = peer.take() as [{ payload: Buffer }];
    assert.equal(b.payload.toString(), '2', 'the next message follows the acknowledgement');
  });
});

describe('MQTT-SN gateway: sleeping clients (spec 6.14)', () => {
  it('DISCONNECT with a duration: messages are buffered, delivered on PINGREQ with the Client ID, then PINGRESP', () => {
    const h = new GatewayHarness({ predefinedTopics: { 1: 'cmd' } });
    const peer = connected(h, 1000, 'sleepy', { duration: 30 });
    peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 1, msgId: 1, topic: { type: 1, id: 1 } });
    peer.take();
    peer.send({ type: SnType.DISCONNECT, duration: 600 });
    assert.deepEqual(peer.take(), [{ type: SnType.DISCONNECT }]);
    assert.equal(h.gateway.clientState({ address: '10.0.0.1', port: 1000 }), 'asleep');
    const mqtt = h.fake.connect({ clientId: 'pub', protocolVersion: 5 });
    for (let i = 1; i <= 3; i++) mqtt.send({ type: 3, topic: 'cmd', payload: Buffer.from(`q1-${i}`), qos: 1, retain: false, dup: false, packetId: i });
    mqtt.send({ type: 3, topic: 'cmd', payload: Buffer.from('q0'), qos: 0, retain: false, dup: false });
    h.advance(300_000);
    assert.deepEqual(peer.take(), [], 'nothing is sent to a sleeping client, not even retransmissions');
    assert.ok(inspect(h).isConnected('sleepy'), 'asleep within its duration: still connected for the broker');
    peer.send({ type: SnType.PINGREQ, clientId: 'sleepy' });
    const got: string[] = [];
    for (let guard = 0; guard < 10; guard++) {
      const out = peer.take();
      if (out.length === 0) break;
      for (const p of out) {
        if (p.type === SnType.PUBLISH) {
          got.push(p.payload.toString());
          if (p.qos === 1) peer.send({ type: SnType.PUBACK, topicId: 1, msgId: p.msgId, returnCode: 0 });
        } else got.push(SnTypeName(p.type));
      }
    }
    assert.equal(got.at(-1), 'PINGRESP', 'PINGRESP comes after every buffered message');
    assert.deepEqual(got.filter((x) => x.startsWith('q')).sort(), ['q0', 'q1-1', 'q1-2', 'q1-3']);
    assert.equal(h.gateway.clientState({ address: '10.0.0.1', port: 1000 }), 'asleep');
  });

  it('a sleeping client that does not wake within its duration (x 1.5) is lost, and its will published', () => {
    const h = new GatewayHarness();
    const dash = mqttSubscriber(h, 'will/#');
    const peer = h.peer(1000);
    peer.send(connect('z', { will: true, duration: 10 }));
    peer.send({ type: SnType.WILLTOPIC, qos: 0, retain: false, topic: 'will/z' });
    peer.send({ type: SnType.WILLMSG, payload: Buffer.from('bye') });
    peer.take();
    peer.send({ type: SnType.DISCONNECT, duration: 100 });
    h.advance(149_000);
    assert.equal(h.gateway.clientState({ address: '10.0.0.1', port: 1000 }), 'asleep', 'the keep alive of 10 s does not apply while asleep');
    h.advance(1_200);
    assert.equal(h.gateway.clientState({ address: '10.0.0.1', port: 1000 }), undefined);
    assert.deepEqual(publishes(dash).map((p) => p.topic), ['will/z']);
  });

  it('a CONNECT from a sleeping client makes it active again, resuming its session (Clean Session 0)', () => {
    const h = new GatewayHarness({ predefinedTopics: { 1: 'cmd' } }, { limits: { sessionExpiry: 3600 } });
    const peer = connected(h, 1000, 'w', { cleanSession: false });
    peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 1, msgId: 1, topic: { type: 1, id: 1 } });
    peer.send({ type: SnType.DISCONNECT, duration: 60 });
    peer.take();
    const mqtt = h.fake.connect({ clientId: 'pub', protocolVersion: 5 });
    mqtt.send({ type: 3, topic: 'cmd', payload: Buffer.from('while asleep'), qos: 1, retain: false, dup: false, packetId: 1 });
    peer.send(connect('w', { cleanSession: false }));
    const out = peer.take();
    assert.equal(out[0]?.type, SnType.CONNACK);
    const pub = out.find((p) => p.type === SnType.PUBLISH) as { payload: Buffer } | undefined;
    assert.equal(pub?.payload.toString(), 'while asleep');
  });
});

describe('MQTT-SN gateway: will updates (spec 6.4)', () => {
  it('WILLTOPICUPD and WILLMSGUPD change the will the broker publishes; an empty WILLTOPICUPD removes it', () => {
    const h = new GatewayHarness();
    const dash = mqttSubscriber(h, 'w/#');
    const peer = h.peer(1000);
    peer.send(connect('u', { will: true, duration: 10 }));
    peer.send({ type: SnType.WILLTOPIC, qos: 0, retain: false, topic: 'w/old' });
    peer.send({ type: SnType.WILLMSG, payload: Buffer.from('old') });
    peer.take();
    peer.send({ type: SnType.SUBSCRIBE, dup: false, qos: 0, msgId: 1, topic: { type: 0, name: 'keep/me' } });
    peer.take();
    peer.send({ type: SnType.WILLTOPICUPD, qos: 1, retain: false, topic: 'w/new' });
    assert.deepEqual(peer.take(), [{ type: SnType.WILLTOPICRESP, returnCode: 0 }]);
    peer.send({ type: SnType.WILLMSGUPD, payload: Buffer.from('new') });
    assert.deepEqual(peer.take(), [{ type: SnType.WILLMSGRESP, returnCode: 0 }]);
    assert.deepEqual(publishes(dash), [], 'the old will is not published by the update');
    // the session (and its subscription) survived the update
    const mqtt = h.fake.connect({ clientId: 'pub', protocolVersion: 5 });
    mqtt.send({ type: 3, topic: 'keep/me', payload: Buffer.from('still'), qos: 0, retain: false, dup: false });
    assert.equal(peer.take().filter((p) => p.type === SnType.PUBLISH || p.type === SnType.REGISTER).length, 1);
    h.advance(16_000);
    const wills = publishes(dash);
    assert.deepEqual(wills.map((p) => [p.topic, p.payload.toString()]), [['w/new', 'new']]);
  });

  it('an empty WILLTOPICUPD deletes the will', () => {
    const h = new GatewayHarness();
    const dash = mqttSubscriber(h, 'w/#');
    const peer = h.peer(1000);
    peer.send(connect('u', { will: true, duration: 10 }));
    peer.send({ type: SnType.WILLTOPIC, qos: 0, retain: false, topic: 'w/old' });
    peer.send({ type: SnType.WILLMSG, payload: Buffer.from('old') });
    peer.take();
    peer.send({ type: SnType.WILLTOPICUPD, qos: 0, retain: false, topic: undefined });
    assert.deepEqual(peer.take(), [{ type: SnType.WILLTOPICRESP, returnCode: 0 }]);
    h.advance(16_000);
    assert.deepEqual(publishes(dash), []);
  });
});

describe('MQTT-SN gateway: without a connection (spec 6.1, 6.8, 5.5)', () => {
  it('PUBLISH QoS -1 to a predefined id or a short name is published without a connection', () => {
    const h = new GatewayHarness({ predefinedTopics: { 7: 'sensors/door' } });
    const dash = mqttSubscriber(h, '#', 0);
    const peer = h.peer(2000);
    peer.send({ type: SnType.PUBLISH, dup: false, qos: -1, retain: false, topic: { type: 1, id: 7 }, msgId: 0, payload: Buffer.from('open') });
    peer.send({ type: SnType.PUBLISH, dup: false, qos: -1, retain: true, topic: { type: 2, name: 'dr' }, msgId: 0, payload: Buffer.from('1') });
    peer.send({ type: SnType.PUBLISH, dup: false, qos: -1, retain: false, topic: { type: 1, id: 8 }, msgId: 0, payload: Buffer.from('unknown id') });
    assert.deepEqual(publishes(dash).map((p) => [p.topic, p.payload.toString()]), [['sensors/door', 'open'], ['dr', '1']]);
    assert.deepEqual(peer.take(), [], 'QoS -1 is never answered');
    assert.equal(h.gateway.stats.qosMinus1Published, 2);
    assert.equal(inspect(h).retained('dr')?.payload.toString(), '1');
  });

  it('QoS -1 messages go through the hooks under the gateway\'s own Client ID (ACL, authenticate)', () => {
    const h = new GatewayHarness({ predefinedTopics: { 7: 'open/x', 8: 'closed/x' }, qosMinus1ClientId: 'sn-qos-1' }, {
      hooks: { authorizePublish: (client, m) => client.clientId === 'sn-qos-1' && m.topic.startsWith('open/') },
    });
    const dash = mqttSubscriber(h, '#', 0);
    const peer = h.peer(2000);
    for (const id of [7, 8]) peer.send({ type: SnType.PUBLISH, dup: false, qos: -1, retain: false, topic: { type: 1, id }, msgId: 0, payload: Buffer.from('v') });
    assert.deepEqual(publishes(dash).map((p) => p.topic), ['open/x']);
    assert.ok(inspect(h).isConnected('sn-qos-1'));

    const refused = new GatewayHarness({ predefinedTopics: { 7: 'open/x' } }, { hooks: { authenticate: () => false } });
    refused.peer(2000).send({ type: SnType.PUBLISH, dup: false, qos: -1, retain: false, topic: { type: 1, id: 7 }, msgId: 0, payload: Buffer.from('v') });
    assert.equal(refused.gateway.stats.qosMinus1Published, 0);
    assert.equal(refused.gateway.stats.undeliverable, 1);
  });

  it('SEARCHGW is answered with GWINFO carrying the gateway id, no larger than the request', () => {
    const h = new GatewayHarness({ gatewayId: 9 });
    const peer = h.peer(2000);
    const size = peer.send({ type: SnType.SEARCHGW, radius: 1 });
    const [gwinfo] = peer.takeRaw();
    assert.ok(gwinfo!.length <= size);
    assert.deepEqual(peer.take(), []);
    assert.equal(gwinfo![1], SnType.GWINFO);
    assert.equal(gwinfo![2], 9);
    // a connected client searching is answered too
    const client = connected(h, 2001, 'searcher');
    client.send({ type: SnType.SEARCHGW, radius: 1 });
    assert.deepEqual(client.take(), [{ type: SnType.GWINFO, gwId: 9 }]);
  });

  it('ADVERTISE is broadcast every advertiseInterval with the gateway id and the interval', () => {
    const h = new GatewayHarness({ gatewayId: 3, advertiseInterval: 60 });
    h.advance(100);
    h.advance(59_000);
    h.advance(2_000);
    assert.equal(h.broadcasts.length, 2);
    assert.deepEqual(h.broadcasts[0], encodeSn({ type: SnType.ADVERTISE, gwId: 3, duration: 60 }));
  });

  it('forwarder encapsulation: each wireless node is its own client; answers are encapsulated for it (5.5)', () => {
    const h = new GatewayHarness();
    const nodeA = h.peer(3000, Buffer.from('0a', 'hex'));
    const nodeB = h.peer(3000, Buffer.from('0b', 'hex'));
    nodeA.send(connect('node-a'));
    nodeB.send(connect('node-b'));
    const raw = h.sent.map((d) => d.datagram);
    assert.equal(raw.length, 2);
    assert.ok(raw.every((d) => d[1] === SnType.ENCAPSULATED));
    assert.deepEqual(nodeA.take(), [{ type: SnType.CONNACK, returnCode: 0 }]);
    assert.ok(inspect(h).isConnected('node-a') && inspect(h).isConnected('node-b'));
    assert.equal(inspect(h).connection('node-b')?.remoteAddress, '10.0.0.1:3000/0b');
    assert.equal(h.gateway.clientCount, 2);
  });
});

describe('MQTT-SN gateway: hostile input', () => {
  it('malformed and oversize datagrams are dropped and counted, nothing answered', () => {
    const h = new GatewayHarness({ maxMessageSize: 100 });
    const peer = h.peer(4000);
    peer.send(Buffer.from([0x05, 0x16]));
    peer.send(Buffer.from([0x02, 0x99]));
    peer.send(Buffer.from([0x03, 0xfe, 0x00]));
    peer.send(Buffer.alloc(101, 0x01));
    assert.equal(h.gateway.stats.malformed, 3);
    assert.equal(h.gateway.stats.oversize, 1);
    assert.deepEqual(peer.take(), []);
  });

  it('before a connection no answer is larger than its request (no amplification)', () => {
    const h = new GatewayHarness({ predefinedTopics: { 1: 't' } });
    const peer = h.peer(4000);
    const requests: SnPacket[] = [
      { type: SnType.PINGREQ },
      { type: SnType.PINGREQ, clientId: 'x' },
      { type: SnType.SUBSCRIBE, dup: false, qos: 1, msgId: 1, topic: { type: 2, name: 'ab' } },
      { type: SnType.REGISTER, topicId: 0, msgId: 1, topicName: 'a' },
      { type: SnType.PUBLISH, dup: false, qos: 1, retain: false, topic: { type: 1, id: 1 }, msgId: 1, payload: Buffer.alloc(0) },
      { type: SnType.SEARCHGW, radius: 0 },
      connect('a', { will: true }),
    ];
    for (const r of requests) {
      const size = peer.send(r);
      for (const answer of peer.takeRaw()) assert.ok(answer.length <= size, `answer of ${answer.length} octets to a request of ${size}`);
    }
  });

  it('CONNECTs from one address beyond connectRatePerAddress per second are dropped', () => {
    const h = new GatewayHarness({ connectRatePerAddress: 5 });
    for (let port = 1; port <= 8; port++) h.peer(port).send(connect(`c${port}`));
    assert.equal(h.gateway.clientCount, 5);
    assert.equal(h.gateway.stats.rateLimited, 3);
    h.advance(1000);
    h.peer(9).send(connect('c9'));
    assert.equal(h.gateway.clientCount, 6);
  });

  it('half-open clients (will exchange unfinished) are capped, and time out after connectTimeout', () => {
    const h = new GatewayHarness({ maxHalfOpen: 3, connectRatePerAddress: 1000 }, { limits: { connectTimeout: 5000 } });
    for (let port = 1; port <= 5; port++) h.peer(port).send(connect(`c${port}`, { will: true }));
    assert.equal(h.gateway.clientCount, 3);
    h.advance(5200);
    assert.equal(h.gateway.clientCount, 0);
  });
});

describe('MQTT-SN gateway: random traffic (property test)', () => {
  it('any sequence of messages, junk and time from a few peers never throws, and every client ends once the traffic stops', () => {
    // A CONNECT with Duration 0 has no keep alive (as MQTT's 0): such a client is never lost to silence, so the
    // property below ("every client ends") holds for clients with a keep alive; they get one of at least 1 s.
    const withKeepAlive = anyPacket.map((p) => ((p as { type: number }).type === 4 && (p as { duration?: number }).duration === 0 ? { ...p, duration: 1 } : p));
    const step = fc.oneof(
      { arbitrary: fc.record({ peer: fc.integer({ min: 0, max: 3 }), packet: withKeepAlive }), weight: 6 },
      { arbitrary: fc.record({ peer: fc.integer({ min: 0, max: 3 }), junk: bytes(40) }), weight: 1 },
      { arbitrary: fc.record({ ms: fc.integer({ min: 1, max: 20_000 }) }), weight: 1 },
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const h = new GatewayHarness({ predefinedTopics: { 1: 'a/b' }, retryInterval: 1, maxRetries: 2 }, { limits: { connectTimeout: 2000 } });
        const dash = h.fake.connect({ clientId: 'dash', protocolVersion: 5 });
        dash.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: '#', qos: 2 }] });
        const peers = [0, 1, 2, 3].map((i) => h.peer(5000 + i, i === 3 ? Buffer.from([7]) : undefined));
        for (const s of steps) {
          if ('ms' in s) h.advance(s.ms, 500);
          else if ('junk' in s) peers[s.peer]!.send(s.junk);
          else peers[s.peer]!.send(s.packet);
        }
        // Silence: every client is lost within 1.5 x 65535 s (the longest keep alive or sleep).
        h.advance(65_535 * 1500 + 1000, 60_000);
        assert.equal(h.gateway.clientCount, 0);
        assert.ok(inspect(h).isConnected('dash'));
      }),
      { numRuns: 300 },
    );
  });
});

describe('MQTT-SN gateway: takeover with MQTT', () => {
  it('an MQTT client with the same Client ID takes the session over; the MQTT-SN client gets DISCONNECT', () => {
    const h = new GatewayHarness();
    const peer = connected(h, 1000, 'shared-id');
    const mqtt = h.fake.connect({ clientId: 'shared-id', protocolVersion: 5 });
    assert.equal(mqtt.take(2).length, 1);
    assert.deepEqual(peer.take(), [{ type: SnType.DISCONNECT }]);
    assert.equal(h.gateway.clientCount, 0);
    // and back: the MQTT-SN client takes it from the MQTT one
    connected(h, 1000, 'shared-id');
    assert.equal(mqtt.closed, true);
  });
});

function SnTypeName(type: number): string {
  return Object.entries(SnType).find(([, v]) => v === type)?.[0] ?? String(type);
}
