// Every validation rule of the decoder produces an MqttProtocolError with the right reason code.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PacketDecoder } from '../../src/protocol/decoder.js';
import { MqttProtocolError } from '../../src/protocol/errors.js';
import type { Packet } from '../../src/protocol/packets.js';
import { decodeOne, expectDecodeError, hex, packet, str } from './helpers.js';

const v3 = { protocolVersion: 3 as const };
const v4 = { protocolVersion: 4 as const };
const v5 = { protocolVersion: 5 as const };
const v4c = { protocolVersion: 4 as const, role: 'client' as const };
const v5c = { protocolVersion: 5 as const, role: 'client' as const };

/** A 3.1.1 / 5.0 CONNECT body from flags and the rest of the body (hex). */
function connect(level: number, flags: number, rest: string, name = 'MQTT'): Buffer {
  return packet(0x10, str(name) + level.toString(16).padStart(2, '0') + flags.toString(16).padStart(2, '0') + '003c' + rest);
}

describe('fixed header', () => {
  it('[MQTT-2.2.2-2] reserved flags of PUBACK must be 0', () => void expectDecodeError(hex('41 02 0001'), v4, 0x81));
  it('[MQTT-3.6.1-1] PUBREL flags must be 0b0010', () => void expectDecodeError(hex('60 02 0001'), v4, 0x81, /PUBREL/));
  it('[MQTT-3.8.1-1] SUBSCRIBE flags must be 0b0010', () =>
    void expectDecodeError(packet(0x80, '0001' + str('a') + '00'), v4, 0x81));
  it('[MQTT-3.10.1-1] UNSUBSCRIBE flags must be 0b0010', () => void expectDecodeError(packet(0xa0, '0001' + str('a')), v4, 0x81));
  it('[MQTT-2.2.2-2] PINGREQ / DISCONNECT flags must be 0', () => {
    expectDecodeError(hex('c1 00'), v4, 0x81);
    expectDecodeError(hex('e8 00'), v5, 0x81);
  });
  it('packet type 0 is reserved', () => void expectDecodeError(hex('00 00'), v4, 0x81));
  it('AUTH (type 15) is reserved in 3.1.1 and 3.1', () => {
    expectDecodeError(hex('f0 00'), v4, 0x81);
    expectDecodeError(hex('f0 00'), v3, 0x81);
    expectDecodeError(hex('f0 00'), {}, 0x81);
  });
  it('[MQTT-3.3.1-4] PUBLISH QoS 3 is malformed', () => void expectDecodeError(packet(0x36, str('t') + '0001'), v4, 0x81, /QoS 3/));
  it('[MQTT-3.3.1-2] PUBLISH QoS 0 with DUP set is malformed', () =>
    void expectDecodeError(packet(0x38, str('t')), v4, 0x81, /DUP/));
  it('remaining length longer than 4 bytes is malformed', () => {
    expectDecodeError(hex('30 ff ff ff ff 01'), v4, 0x81, /4 bytes/);
    // Also when the header arrives byte by byte.
    const d = new PacketDecoder(v4);
    assert.throws(() => {
      for (const byte of hex('30 ff ff ff ff 01')) d.feed(Buffer.from([byte]), () => {});
    }, (e: unknown) => e instanceof MqttProtocolError && e.reasonCode === 0x81);
    // And at every split of the stream in two (a chunk ending right after the fourth length byte once slipped through).
    const bytes = hex('30 83 80 80 80 00 00 01 61');
    for (let cut = 1; cut < bytes.length; cut++) {
      const split = new PacketDecoder(v4);
      const got: unknown[] = [];
      assert.throws(
        () => {
          split.feed(bytes.subarray(0, cut), (p) => got.push(p));
          split.feed(bytes.subarray(cut), (p) => got.push(p));
        },
        (e: unknown) => e instanceof MqttProtocolError && e.reasonCode === 0x81,
        `split at ${cut}`,
      );
      assert.deepEqual(got, [], `split at ${cut}: nothing decoded`);
    }
  });
  it('[MQTT-1.5.5-1] non-minimal remaining length is malformed', () => void expectDecodeError(hex('c0 80 00'), v4, 0x81));
});

describe('CONNACK of a 3.1.x server to a 5.0 client', () => {
  it('a 3.1.1-format refusal (return code 1-5, no properties) reads as its 5.0 reason code, not a protocol error', () => {
    const got: unknown[] = [];
    new PacketDecoder({ protocolVersion: 5, role: 'client' }).feed(hex('20 02 00 01'), (p) => got.push(p));
    assert.deepEqual(got, [{ type: 2, sessionPresent: false, reasonCode: 0x84, properties: {} }]);
    const bad: unknown[] = [];
    new PacketDecoder({ protocolVersion: 5, role: 'client' }).feed(hex('20 02 00 04'), (p) => bad.push(p));
    assert.equal((bad[0] as { reasonCode: number }).reasonCode, 0x86);
  });
});

describe('roles', () => {
  it('a server never receives CONNACK, SUBACK, UNSUBACK, PINGRESP', () => {
    expectDecodeError(hex('20 02 00 00'), v4, 0x82, /CONNACK/);
    expectDecodeError(hex('90 03 0001 00'), v4, 0x82);
    expectDecodeError(hex('b0 02 0001'), v4, 0x82);
    expectDecodeError(hex('d0 00'), v4, 0x82);
  });
  it('a client never receives CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ', () => {
    expectDecodeError(connect(4, 2, str('c')), v4c, 0x82, /CONNECT/);
    expectDecodeError(packet(0x82, '0001' + str('a') + '00'), v4c, 0x82);
    expectDecodeError(packet(0xa2, '0001' + str('a')), v4c, 0x82);
    expectDecodeError(hex('c0 00'), v4c, 0x82);
  });
});

describe('CONNECT', () => {
  it('unsupported protocol level → 0x84 with the requested level', () => {
    const err = expectDecodeError(connect(6, 2, str('c')), {}, 0x84);
    assert.equal(err.requestedProtocolLevel, 6);
    assert.equal(err.packetType, 1);
  });
  it('MQIsdp with level 4 and MQTT with level 3 are unsupported (0x84)', () => {
    assert.equal(expectDecodeError(connect(4, 2, str('c'), 'MQIsdp'), {}, 0x84).requestedProtocolLevel, 4);
    assert.equal(expectDecodeError(connect(3, 2, str('c'), 'MQTT'), {}, 0x84).requestedProtocolLevel, 3);
    // A name that is not MQTT at all is no version to answer in: closed without CONNACK [MQTT-3.1.2-1] (0x82).
    expectDecodeError(connect(4, 2, str('c'), 'HTTP'), {}, 0x82);
  });
  it('[MQTT-3.1.2-3] reserved connect flag set is malformed', () => void expectDecodeError(connect(4, 3, str('c')), {}, 0x81));
  it('[MQTT-3.1.2-11] [MQTT-3.1.2-13] will QoS without will flag is malformed', () =>
    void expectDecodeError(connect(4, 0x0a, str('c')), {}, 0x81, /will/));
  it('[MQTT-3.1.2-15] will retain without will flag is malformed', () =>
    void expectDecodeError(connect(4, 0x22, str('c')), {}, 0x81));
  it('[MQTT-3.1.2-14] will QoS 3 is malformed', () =>
    void expectDecodeError(connect(4, 0x1e, str('c') + str('w') + str('x')), {}, 0x81, /QoS 3/));
  it('[MQTT-3.1.2-22] password without user name is malformed in 3.1.1 (allowed in 5.0)', () => {
    expectDecodeError(connect(4, 0x42, str('c') + str('p')), {}, 0x81, /password/);
    const p = decodeOne(connect(5, 0x42, '00' + str('c') + str('p'))) as Extract<Packet, { type: 1 }>;
    assert.deepEqual(p.password, Buffer.from('p'));
  });
  it('[MQTT-1.5.4-2] U+0000 in the client identifier is malformed', () =>
    void expectDecodeError(connect(4, 2, str(Buffer.from([0x61, 0x00]))), {}, 0x81, /U\+0000/));
  it('client identifier running past the end is malformed', () =>
    void expectDecodeError(connect(4, 2, '0005 6162'), {}, 0x81, /client identifier runs past/));
  it('bytes left over after the password are malformed', () =>
    void expectDecodeError(connect(4, 0xc2, str('c') + str('u') + str('p') + '00'), {}, 0x81, /unexpected byte/));
  it('will topic with a wildcard → 0x90', () =>
    void expectDecodeError(connect(4, 0x06, str('c') + str('a/#') + str('x')), {}, 0x90));
  it('5.0 property not allowed in CONNECT (willDelayInterval) → 0x82', () =>
    void expectDecodeError(connect(5, 2, '05 18 00000001' + str('c')), {}, 0x82, /willDelayInterval/));
  it('5.0 property not allowed in will properties (sessionExpiryInterval) → 0x82', () =>
    void expectDecodeError(connect(5, 6, '00' + str('c') + '05 11 00000001' + str('w') + str('x')), {}, 0x82, /will/));
  it('a second CONNECT is decoded (the broker rejects it)', () => {
    const d = new PacketDecoder();
    const out: Packet[] = [];
    d.feed(Buffer.concat([connect(5, 2, '00' + str('a')), connect(5, 2, '00' + str('b'))]), (p) => out.push(p));
    assert.equal(out.length, 2);
    assert.equal(d.protocolVersion, 5);
  });
  it('a first packet other than CONNECT is decoded with 3.1.1 rules and the version stays unknown', () => {
    const d = new PacketDecoder();
    const out: Packet[] = [];
    d.feed(packet(0x30, str('t') + '78'), (p) => out.push(p));
    assert.deepEqual(out, [{ type: 3, topic: 't', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }]);
    assert.equal(d.protocolVersion, undefined);
  });
});

describe('CONNACK', () => {
  it('reserved acknowledge flags are malformed', () => void expectDecodeError(hex('20 02 02 00'), v4c, 0x81));
  it('3.1.1 return code 6 is reserved', () => void expectDecodeError(hex('20 02 00 06'), v4c, 0x81));
  it('3.1.1 CONNACK with extra bytes is malformed', () => void expectDecodeError(hex('20 03 00 00 00'), v4c, 0x81));
  it('5.0 reason code not defined for CONNACK → 0x82', () => void expectDecodeError(hex('20 03 00 10 00'), v5c, 0x82));
  it('5.0 maximumQoS 2 is a protocol error', () => void expectDecodeError(hex('20 05 00 00 02 24 02'), v5c, 0x82, /maximumQoS/));
  it('5.0 retainAvailable 2 is a protocol error', () => void expectDecodeError(hex('20 05 00 00 02 25 02'), v5c, 0x82));
  it('5.0 receiveMaximum 0 is a protocol error', () => void expectDecodeError(hex('20 06 00 00 03 21 0000'), v5c, 0x82, /receiveMaximum/));
  it('5.0 maximumPacketSize 0 is a protocol error', () =>
    void expectDecodeError(hex('20 08 00 00 05 27 00000000'), v5c, 0x82, /maximumPacketSize/));
});

describe('PUBLISH', () => {
  it('[MQTT-1.5.4-1] ill-formed UTF-8 in a topic is malformed', () => {
    expectDecodeError(packet(0x30, str(Buffer.from([0x61, 0xff]))), v4, 0x81, /UTF-8/);
    // Overlong encoding of '/' and an encoded surrogate.
    expectDecodeError(packet(0x30, str(Buffer.from([0xc0, 0xaf]))), v4, 0x81);
    expectDecodeError(packet(0x30, str(Buffer.from([0xed, 0xa0, 0x80]))), v4, 0x81);
  });
  it('[MQTT-1.5.4-2] U+0000 in a topic is malformed', () =>
    void expectDecodeError(packet(0x30, str(Buffer.from([0x61, 0x00, 0x62]))), v4, 0x81, /U\+0000/));
  it('U+FFFD itself is a valid character in a topic', () => {
    const p = decodeOne(packet(0x30, str('a\uFFFDb')), v4) as Extract<Packet, { type: 3 }>;
    assert.equal(p.topic, 'a\uFFFDb');
  });
  it('[MQTT-3.3.2-2] topic name with a wildcard → 0x90', () => {
    expectDecodeError(packet(0x30, str('a/+')), v4, 0x90, /topic name contains a wildcard/);
    expectDecodeError(packet(0x30, str('a/#')), v5, 0x90);
  });
  it('[MQTT-4.7.3-1] empty topic name is a protocol error in 3.1.1', () => void expectDecodeError(packet(0x30, str('')), v4, 0x82));
  it('empty topic name without a topic alias is a protocol error in 5.0', () =>
    void expectDecodeError(packet(0x30, str('') + '00'), v5, 0x82, /topic alias/));
  it('[MQTT-2.2.1-3] QoS 1 with packet identifier 0 is a protocol error', () =>
    void expectDecodeError(packet(0x32, str('t') + '0000'), v4, 0x82, /packet identifier/));
  it('topic length running past the end is malformed', () => void expectDecodeError(hex('30 05 000a 616263'), v4, 0x81));
  it('QoS 1 without room for the packet identifier is malformed', () => void expectDecodeError(packet(0x32, str('t') + '00'), v4, 0x81));
  it('5.0 property length running past the end is malformed', () =>
    void expectDecodeError(packet(0x30, str('t') + '09 23 0001'), v5, 0x81));
  it('5.0 property value running past the property length is malformed', () =>
    void expectDecodeError(packet(0x30, str('t') + '02 23 00 01'), v5, 0x81));
  it('5.0 unknown property identifier → 0x81', () => {
    expectDecodeError(packet(0x30, str('t') + '02 05 00'), v5, 0x81, /0x05/);
    expectDecodeError(packet(0x30, str('t') + '02 80 00'), v5, 0x81);
  });
  it('5.0 property not allowed in PUBLISH (sessionExpiryInterval) → 0x82', () =>
    void expectDecodeError(packet(0x30, str('t') + '05 11 00000001'), v5, 0x82, /sessionExpiryInterval/));
  it('5.0 duplicate topicAlias → 0x82', () =>
    void expectDecodeError(packet(0x30, str('t') + '06 23 0001 23 0002'), v5, 0x82, /more than once/));
  it('5.0 repeated user properties are kept in order', () => {
    const p = decodeOne(packet(0x30, str('t') + '0e 26 0001 61 0001 31 26 0001 61 0001 32'), v5) as Extract<Packet, { type: 3 }>;
    assert.deepEqual(p.properties?.userProperties, [
      ['a', '1'],
      ['a', '2'],
    ]);
  });
  it('5.0 payloadFormatIndicator 2 is a protocol error', () =>
    void expectDecodeError(packet(0x30, str('t') + '02 01 02'), v5, 0x82, /payloadFormatIndicator/));
  it('[MQTT-3.3.4-6] subscriptionIdentifier in a PUBLISH from a client is a protocol error', () =>
    void expectDecodeError(packet(0x30, str('t') + '02 0b 01'), v5, 0x82, /subscriptionIdentifier/));
  it('subscriptionIdentifier 0 is a protocol error', () => void expectDecodeError(packet(0x30, str('t') + '02 0b 00'), v5c, 0x82));
  it('[MQTT-3.3.2-14] responseTopic with a wildcard is a protocol error', () =>
    void expectDecodeError(packet(0x30, str('t') + '06 08' + str('a/#')), v5, 0x82, /responseTopic/));
  it('topicAlias 0 is decoded (the broker answers 0x94)', () => {
    const p = decodeOne(packet(0x30, str('t') + '03 23 0000'), v5) as Extract<Packet, { type: 3 }>;
    assert.equal(p.properties?.topicAlias, 0);
  });
  it('[MQTT-1.5.4-2] U+0000 in a user property is malformed', () =>
    void expectDecodeError(packet(0x30, str('t') + '07 26 0001 00 0001 61'), v5, 0x81));
});

describe('acknowledgements', () => {
  it('PUBACK with packet identifier 0 is a protocol error', () => void expectDecodeError(hex('40 02 0000'), v4, 0x82));
  it('3.1.1 PUBACK with an extra byte is malformed', () => void expectDecodeError(hex('40 03 0001 00'), v4, 0x81));
  it('PUBACK with 1 byte is malformed', () => void expectDecodeError(hex('40 01 00'), v4, 0x81));
  it('5.0 PUBACK reason code not defined for PUBACK → 0x82', () => void expectDecodeError(hex('40 03 0001 05'), v5, 0x82));
  it('5.0 PUBREL reason code 0x10 is not defined for PUBREL → 0x82', () => void expectDecodeError(hex('62 03 0001 10'), v5, 0x82));
  it('5.0 property not allowed in PUBACK (topicAlias) → 0x82', () =>
    void expectDecodeError(hex('40 07 0001 00 03 23 0001'), v5, 0x82, /topicAlias/));
  it('PINGREQ with a body is malformed', () => void expectDecodeError(hex('c0 01 00'), v4, 0x81));
  it('3.1.1 DISCONNECT with a body is malformed', () => void expectDecodeError(hex('e0 01 00'), v4, 0x81));
  it('5.0 DISCONNECT with an undefined reason code → 0x82', () => void expectDecodeError(hex('e0 01 05'), v5, 0x82));
  it('5.0 AUTH with reason 0x04 → 0x82', () => void expectDecodeError(hex('f0 01 04'), v5, 0x82));
  it('3.1.1 UNSUBACK with a reason code is malformed', () => void expectDecodeError(hex('b0 03 0001 00'), v4c, 0x81));
});

describe('SUBSCRIBE / UNSUBSCRIBE / SUBACK', () => {
  it('[MQTT-3.8.3-3] SUBSCRIBE without topic filters is a protocol error', () => {
    expectDecodeError(hex('82 02 0001'), v4, 0x82, /no topic filter/);
    expectDecodeError(hex('82 03 0001 00'), v5, 0x82);
  });
  it('[MQTT-3.10.3-2] UNSUBSCRIBE without topic filters is a protocol error', () => {
    expectDecodeError(hex('a2 02 0001'), v4, 0x82);
    expectDecodeError(hex('a2 03 0001 00'), v5, 0x82);
  });
  it('[MQTT-2.2.1-3] SUBSCRIBE with packet identifier 0 is a protocol error', () =>
    void expectDecodeError(packet(0x82, '0000' + str('a') + '00'), v4, 0x82));
  it('[MQTT-3.8.3-4] 3.1.1 subscription options with reserved bits are malformed', () =>
    void expectDecodeError(packet(0x82, '0001' + str('a') + '04'), v4, 0x81, /reserved/));
  it('[MQTT-3.8.3-4] subscription QoS 3 is malformed', () => {
    expectDecodeError(packet(0x82, '0001' + str('a') + '03'), v4, 0x81);
    expectDecodeError(packet(0x82, '0001 00' + str('a') + '03'), v5, 0x81);
  });
  it('[MQTT-3.8.3-5] 5.0 subscription options with reserved bits are malformed', () =>
    void expectDecodeError(packet(0x82, '0001 00' + str('a') + '40'), v5, 0x81));
  it('5.0 retain handling 3 is malformed', () =>
    void expectDecodeError(packet(0x82, '0001 00' + str('a') + '30'), v5, 0x81, /retain handling/));
  it('topic filter missing its options byte is malformed', () => void expectDecodeError(packet(0x82, '0001' + str('a')), v4, 0x81));
  it('filter syntax is left to the broker: "a/#/b" decodes', () => {
    const p = decodeOne(packet(0x82, '0001' + str('a/#/b') + '00'), v4) as Extract<Packet, { type: 8 }>;
    assert.equal(p.subscriptions[0]!.topicFilter, 'a/#/b');
  });
  it('5.0 two subscription identifiers in SUBSCRIBE → 0x82', () =>
    void expectDecodeError(packet(0x82, '0001 04 0b 01 0b 02' + str('a') + '00'), v5, 0x82));
  it('5.0 subscription identifier 0 in SUBSCRIBE → 0x82', () =>
    void expectDecodeError(packet(0x82, '0001 02 0b 00' + str('a') + '00'), v5, 0x82));
  it('[MQTT-3.9.3-2] 3.1.1 SUBACK return code 3 is malformed', () => void expectDecodeError(hex('90 03 0001 03'), v4c, 0x81));
  it('5.0 SUBACK reason code 0x11 is not defined for SUBACK → 0x82', () => void expectDecodeError(hex('90 04 0001 00 11'), v5c, 0x82));
});

describe('decoder state', () => {
  it('after an error the decoder keeps failing', () => {
    const d = new PacketDecoder(v4);
    assert.throws(() => d.feed(hex('00 00'), () => {}), MqttProtocolError);
    assert.throws(() => d.feed(hex('c0 00'), () => {}), MqttProtocolError);
  });
  it('valid packets before an invalid one are delivered', () => {
    const d = new PacketDecoder(v4);
    const out: Packet[] = [];
    assert.throws(() => d.feed(hex('c0 00 c0 00 00 00'), (p) => out.push(p)), MqttProtocolError);
    assert.equal(out.length, 2);
  });
});
