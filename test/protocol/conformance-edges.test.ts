// The codec-level conformance edges of issue 24 (defect 5), at the decoder and over a real socket:
// an empty Response Topic, zero-length (or invalid) 3.1.1 SUBSCRIBE / UNSUBSCRIBE filters, and a CONNECT
// whose protocol name is not MQTT.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConnackPacket, DisconnectPacket, Packet } from '../../src/protocol/packets.js';
import { connectBytes, packet, publishBytes, setup, str } from '../helpers/harness.js';
import { decodeOne, expectDecodeError } from './helpers.js';

const v4 = { protocolVersion: 4 as const };
const v5 = { protocolVersion: 5 as const };
const b = (bytes: number[]) => Buffer.from(bytes);

/** 5.0 PUBLISH QoS 0 on `a` with the given property bytes. */
const publishWithProps = (props: number[]) => packet(0x30, [...str('a'), props.length, ...props, ...Buffer.from('x')]);
/** 5.0 CONNECT with a will (topic w, payload x) whose properties are `props`. */
const connectWithWillProps = (props: number[], clientId = 'edge-will') =>
  connectBytes({ level: 5, flags: 0x06, clientId, payload: [props.length, ...props, ...str('w'), ...str('x')] });
const subscribeBytes = (filter: string) => packet(0x82, [0, 1, ...str(filter), 0]);
const unsubscribeBytes = (...filters: string[]) => packet(0xa2, [0, 1, ...filters.flatMap((f) => str(f))]);
const EMPTY_RESPONSE_TOPIC = [0x08, 0, 0];

describe('conformance edges at the decoder', () => {
  it('[MQTT-4.7.3-1] an empty Response Topic in a PUBLISH is a protocol error (0x82)', () => {
    expectDecodeError(publishWithProps(EMPTY_RESPONSE_TOPIC), v5, 0x82, /responseTopic is empty/);
    assert.equal(((decodeOne(publishWithProps([0x08, ...str('r')]), v5) as { properties: { responseTopic: string } }).properties.responseTopic), 'r');
  });

  it('[MQTT-4.7.3-1] an empty Response Topic in a will is a protocol error (0x82)', () => {
    expectDecodeError(connectWithWillProps(EMPTY_RESPONSE_TOPIC), {}, 0x82, /responseTopic is empty/);
    decodeOne(connectWithWillProps([0x08, ...str('r')]));
  });

  it('[MQTT-4.7.3-1] [MQTT-4.8.0-1] a 3.1.1 SUBSCRIBE with a zero-length filter is a protocol error; 5.0 decodes it (SUBACK 0x8F answers)', () => {
    expectDecodeError(subscribeBytes(''), v4, 0x82, /topic filter is empty/);
    expectDecodeError(subscribeBytes(''), { protocolVersion: 3 }, 0x82);
    const p5 = packet(0x82, [0, 1, 0, ...str(''), 0]);
    assert.equal((decodeOne(p5, v5) as { subscriptions: { topicFilter: string }[] }).subscriptions[0]!.topicFilter, '');
  });

  it('[MQTT-4.7.3-1] [MQTT-4.7.1-1] a 3.1.1 UNSUBSCRIBE filter is checked: empty or invalid is a protocol error', () => {
    expectDecodeError(unsubscribeBytes(''), v4, 0x82, /empty/);
    expectDecodeError(unsubscribeBytes('a/b', 'a/#/b'), v4, 0x82, /not a valid topic filter/);
    expectDecodeError(unsubscribeBytes('a+'), v4, 0x82);
    assert.deepEqual((decodeOne(unsubscribeBytes('a/+/#', '#', '$share/g/x'), v4) as { topicFilters: string[] }).topicFilters, ['a/+/#', '#', '$share/g/x']);
  });

  it('[MQTT-3.1.2-1] a CONNECT whose protocol name is not MQTT is a protocol error with no level to answer in; a known name at another level stays 0x84 [MQTT-3.1.2-2]', () => {
    const e = expectDecodeError(connectBytes({ name: 'MQTX', level: 4 }), {}, 0x82, /is not MQTT/);
    assert.equal(e.requestedProtocolLevel, undefined);
    expectDecodeError(connectBytes({ name: 'mqtt', level: 4 }), {}, 0x82);
    expectDecodeError(connectBytes({ name: 'MQTT', level: 6 }), {}, 0x84);
    expectDecodeError(connectBytes({ name: 'MQIsdp', level: 4 }), {}, 0x84);
  });
});

const types = (ps: Packet[]) => ps.map((p) => p.type);

describe('conformance edges over a socket', () => {
  it('[MQTT-4.7.3-1] 5.0: a PUBLISH with an empty Response Topic gets DISCONNECT 0x82 and is not delivered', async (t) => {
    const h = await setup(t);
    const sub = await h.subscriber('a', 0, { protocolVersion: 5 });
    const { client } = await h.connect({ protocolVersion: 5, clientId: 'pub-empty-rt' });
    client.sendBytes(publishWithProps(EMPTY_RESPONSE_TOPIC));
    const d = (await client.next(14)) as DisconnectPacket;
    assert.equal(d.reasonCode, 0x82);
    await client.waitClosed();
    assert.deepEqual(await sub.collect(150, 3), []);
  });

  it('[MQTT-4.7.3-1] [MQTT-4.13.1-1] 5.0: a CONNECT whose will has an empty Response Topic gets CONNACK 0x82, then the close', async (t) => {
    const h = await setup(t);
    const c = await h.open(5);
    c.sendBytes(connectWithWillProps(EMPTY_RESPONSE_TOPIC));
    await c.waitClosed();
    // Closing is required [MQTT-3.1.4-1]; a 5.0 client is told why first.
    const connack = c.packets.find((p): p is ConnackPacket => p.type === 2);
    assert.equal(connack?.reasonCode, 0x82);
    assert.equal(h.events.clientConnected.length, 0);
  });

  it('[MQTT-4.7.3-1] [MQTT-4.8.0-1] 3.1.1: a SUBSCRIBE with a zero-length filter closes the connection (no SUBACK)', async (t) => {
    const h = await setup(t);
    const c = await h.connected({ clientId: 'sub-empty' });
    c.sendBytes(subscribeBytes(''));
    await c.waitClosed();
    assert.ok(!types(c.packets).includes(9));
  });

  it('[MQTT-4.7.3-1] [MQTT-4.8.0-1] 3.1.1: an UNSUBSCRIBE with a zero-length or invalid filter closes the connection (no UNSUBACK)', async (t) => {
    const h = await setup(t);
    for (const filters of [[''], ['ok', 'a/#/b']]) {
      const c = await h.connected({ clientId: `unsub-${filters.length}` });
      c.sendBytes(unsubscribeBytes(...filters));
      await c.waitClosed();
      assert.ok(!types(c.packets).includes(11), `no UNSUBACK for ${JSON.stringify(filters)}`);
    }
    const ok = await h.connected({ clientId: 'unsub-ok' });
    ok.sendBytes(unsubscribeBytes('a/+/#'));
    assert.equal((await ok.next(11)).type, 11);
  });

  it('[MQTT-3.1.2-1] 3.1.1: a CONNECT with a wrong protocol name gets no CONNACK, only the close (as Mosquitto); a wrong level still gets 0x01 [MQTT-3.1.2-2]', async (t) => {
    const h = await setup(t);
    const c = await h.open(4);
    c.sendBytes(connectBytes({ name: 'MQTX', level: 4, clientId: 'wrong-name' }));
    await c.waitClosed();
    assert.deepEqual(types(c.packets), []);
    const old = await h.open(4);
    old.sendBytes(connectBytes({ name: 'MQIsdp', level: 4, clientId: 'wrong-level' }));
    assert.equal(((await old.next(2)) as ConnackPacket).reasonCode, 1);
  });
});
