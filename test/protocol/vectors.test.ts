// Hand-checked byte vectors (written from the figures of the 3.1.1 and 5.0 specifications):
// decoding each vector gives the packet, encoding the packet gives the bytes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ProtocolVersion } from '../../src/protocol/constants.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { Packet } from '../../src/protocol/packets.js';
import { decodeOne, hex } from './helpers.js';

interface Vector {
  name: string;
  version: ProtocolVersion;
  /** Role of the decoder that receives it. */
  role: 'server' | 'client';
  bytes: string;
  packet: Packet;
  /** When set, the packet encodes to these bytes instead (short forms). */
  encodesTo?: string;
  /** Decode only (the encoder writes a shorter form for this packet). */
  decodeOnly?: boolean;
  /** Encode only (the packet is not what the decoder returns, e.g. defaults left out). */
  encodeOnly?: boolean;
}

const b = (s: string) => Buffer.from(s);

const vectors: Vector[] = [
  // ---- CONNECT
  {
    name: '3.1.1 CONNECT with will, user name and password (fig. 3.1.2)',
    version: 4,
    role: 'server',
    bytes:
      '10 25 0004 4d515454 04 ee 003c 0003 636964 0003 772f74 0003 627965 0004 75736572 0004 70617373',
    packet: {
      type: 1,
      protocolName: 'MQTT',
      protocolVersion: 4,
      clean: true,
      keepAlive: 60,
      clientId: 'cid',
      username: 'user',
      password: b('pass'),
      will: { topic: 'w/t', payload: b('bye'), qos: 1, retain: true },
    },
  },
  {
    name: '3.1 CONNECT with protocol name MQIsdp, level 3',
    version: 3,
    role: 'server',
    bytes: '10 0f 0006 4d5149736470 03 02 000a 0001 63',
    packet: { type: 1, protocolName: 'MQIsdp', protocolVersion: 3, clean: true, keepAlive: 10, clientId: 'c' },
  },
  {
    name: '5.0 CONNECT with properties and will properties',
    version: 5,
    role: 'server',
    bytes:
      '10 35 0004 4d515454 05 86 001e' +
      ' 0f 11 00000078 21 0014 26 0001 6b 0001 76' +
      ' 0001 63' +
      ' 0e 18 00000005 01 01 03 0004 74657874' +
      ' 0001 77 0001 78 0001 75',
    packet: {
      type: 1,
      protocolName: 'MQTT',
      protocolVersion: 5,
      clean: true,
      keepAlive: 30,
      properties: { sessionExpiryInterval: 120, receiveMaximum: 20, userProperties: [['k', 'v']] },
      clientId: 'c',
      will: {
        topic: 'w',
        payload: b('x'),
        qos: 0,
        retain: false,
        properties: { willDelayInterval: 5, payloadFormatIndicator: 1, contentType: 'text' },
      },
      username: 'u',
    },
  },
  {
    name: '5.0 CONNECT with password and no user name (allowed in 5.0)',
    version: 5,
    role: 'server',
    bytes: '10 13 0004 4d515454 05 40 0000 00 0001 63 0003 707764',
    packet: {
      type: 1,
      protocolName: 'MQTT',
      protocolVersion: 5,
      clean: false,
      keepAlive: 0,
      properties: {},
      clientId: 'c',
      password: b('pwd'),
    },
  },
  // ---- CONNACK
  {
    name: '3.1.1 CONNACK session present, accepted',
    version: 4,
    role: 'client',
    bytes: '20 02 01 00',
    packet: { type: 2, sessionPresent: true, reasonCode: 0 },
  },
  {
    name: '3.1 CONNACK has no Session Present flag: the byte is reserved (the flag came with 3.1.1)',
    version: 3,
    role: 'client',
    bytes: '20 02 00 00',
    packet: { type: 2, sessionPresent: true, reasonCode: 0 },
    encodeOnly: true,
  },
  {
    name: '3.1 CONNACK not authorized',
    version: 3,
    role: 'client',
    bytes: '20 02 00 05',
    packet: { type: 2, sessionPresent: false, reasonCode: 5 },
  },
  {
    name: '5.0 CONNACK with topicAliasMaximum and assignedClientIdentifier',
    version: 5,
    role: 'client',
    bytes: '20 0b 00 00 08 22 000a 12 0002 6964',
    packet: {
      type: 2,
      sessionPresent: false,
      reasonCode: 0,
      properties: { topicAliasMaximum: 10, assignedClientIdentifier: 'id' },
    },
  },
  {
    name: '5.0 CONNACK 0x86 bad user name or password',
    version: 5,
    role: 'client',
    bytes: '20 03 00 86 00',
    packet: { type: 2, sessionPresent: false, reasonCode: 0x86, properties: {} },
  },
  {
    name: '3.1.1 CONNACK from a 5.0 reason code (0x87 → 5 not authorized)',
    version: 4,
    role: 'client',
    bytes: '20 02 00 05',
    packet: { type: 2, sessionPresent: false, reasonCode: 0x87 },
    encodeOnly: true,
  },
  // ---- PUBLISH
  {
    name: '3.1.1 PUBLISH QoS 0',
    version: 4,
    role: 'server',
    bytes: '30 07 0003 612f62 6869',
    packet: { type: 3, topic: 'a/b', payload: b('hi'), qos: 0, retain: false, dup: false },
  },
  {
    name: '3.1.1 PUBLISH QoS 1 retained',
    version: 4,
    role: 'server',
    bytes: '33 09 0003 612f62 000a 6869',
    packet: { type: 3, topic: 'a/b', payload: b('hi'), qos: 1, retain: true, dup: false, packetId: 10 },
  },
  {
    name: '3.1.1 PUBLISH QoS 2 DUP',
    version: 4,
    role: 'client',
    bytes: '3c 09 0003 612f62 1234 6869',
    packet: { type: 3, topic: 'a/b', payload: b('hi'), qos: 2, retain: false, dup: true, packetId: 0x1234 },
  },
  {
    name: '3.1 PUBLISH QoS 1 with empty payload',
    version: 3,
    role: 'server',
    bytes: '32 05 0001 74 0001',
    packet: { type: 3, topic: 't', payload: Buffer.alloc(0), qos: 1, retain: false, dup: false, packetId: 1 },
  },
  {
    name: '5.0 PUBLISH QoS 1 with properties',
    version: 5,
    role: 'server',
    bytes: '32 21 0003 612f62 0001 17 02 0000003c 23 0001 08 0001 72 09 0001 63 26 0001 61 0001 62 6869',
    packet: {
      type: 3,
      topic: 'a/b',
      payload: b('hi'),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 1,
      properties: {
        messageExpiryInterval: 60,
        topicAlias: 1,
        responseTopic: 'r',
        correlationData: b('c'),
        userProperties: [['a', 'b']],
      },
    },
  },
  {
    name: '5.0 PUBLISH from the server with two subscription identifiers (1 and 300)',
    version: 5,
    role: 'client',
    bytes: '30 09 0001 74 05 0b 01 0b ac02',
    packet: {
      type: 3,
      topic: 't',
      payload: Buffer.alloc(0),
      qos: 0,
      retain: false,
      dup: false,
      properties: { subscriptionIdentifier: [1, 300] },
    },
  },
  {
    name: '5.0 PUBLISH with empty topic name and a topic alias',
    version: 5,
    role: 'server',
    bytes: '30 07 0000 03 23 0005 78',
    packet: { type: 3, topic: '', payload: b('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: 5 } },
  },
  // ---- PUBACK, PUBREC, PUBREL, PUBCOMP
  { name: '3.1.1 PUBACK', version: 4, role: 'server', bytes: '40 02 000a', packet: { type: 4, packetId: 10 } },
  { name: '3.1.1 PUBREC', version: 4, role: 'client', bytes: '50 02 000a', packet: { type: 5, packetId: 10 } },
  { name: '3.1.1 PUBREL', version: 4, role: 'server', bytes: '62 02 000a', packet: { type: 6, packetId: 10 } },
  { name: '3.1 PUBCOMP', version: 3, role: 'client', bytes: '70 02 000a', packet: { type: 7, packetId: 10 } },
  {
    name: '5.0 PUBACK short form (remaining length 2 = success, no properties)',
    version: 5,
    role: 'server',
    bytes: '40 02 000a',
    packet: { type: 4, packetId: 10, reasonCode: 0, properties: {} },
  },
  {
    name: '5.0 PUBACK encoded without reasonCode uses the short form',
    version: 5,
    role: 'server',
    bytes: '40 02 000a',
    packet: { type: 4, packetId: 10 },
    encodeOnly: true,
  },
  {
    name: '5.0 PUBREC remaining length 3 (reason, no properties)',
    version: 5,
    role: 'client',
    bytes: '50 03 000a 10',
    packet: { type: 5, packetId: 10, reasonCode: 0x10, properties: {} },
  },
  {
    name: '5.0 PUBACK with reason code and reason string',
    version: 5,
    role: 'client',
    bytes: '40 09 000a 87 05 1f 0002 6e6f',
    packet: { type: 4, packetId: 10, reasonCode: 0x87, properties: { reasonString: 'no' } },
  },
  {
    name: '5.0 PUBACK with explicit success and empty properties',
    version: 5,
    role: 'server',
    bytes: '40 04 000a 00 00',
    packet: { type: 4, packetId: 10, reasonCode: 0, properties: {} },
    decodeOnly: true,
  },
  {
    name: '5.0 PUBREL 0x92 packet identifier not found',
    version: 5,
    role: 'server',
    bytes: '62 03 000a 92',
    packet: { type: 6, packetId: 10, reasonCode: 0x92, properties: {} },
  },
  {
    name: '5.0 PUBCOMP with a user property',
    version: 5,
    role: 'client',
    bytes: '70 0b 000a 00 07 26 0001 61 0001 62',
    packet: { type: 7, packetId: 10, reasonCode: 0, properties: { userProperties: [['a', 'b']] } },
  },
  // ---- SUBSCRIBE / SUBACK
  {
    name: '3.1.1 SUBSCRIBE two filters',
    version: 4,
    role: 'server',
    bytes: '82 0e 0001 0003 612f2b 01 0003 622f23 02',
    packet: {
      type: 8,
      packetId: 1,
      subscriptions: [
        { topicFilter: 'a/+', qos: 1 },
        { topicFilter: 'b/#', qos: 2 },
      ],
    },
  },
  {
    name: '5.0 SUBSCRIBE with subscription identifier and options (no local, RAP, retain handling 2)',
    version: 5,
    role: 'server',
    bytes: '82 09 0002 02 0b 05 0001 78 2d',
    packet: {
      type: 8,
      packetId: 2,
      properties: { subscriptionIdentifier: 5 },
      subscriptions: [{ topicFilter: 'x', qos: 1, noLocal: true, retainAsPublished: true, retainHandling: 2 }],
    },
  },
  {
    name: '3.1.1 SUBACK granted QoS 1 and failure',
    version: 4,
    role: 'client',
    bytes: '90 04 0001 01 80',
    packet: { type: 9, packetId: 1, reasonCodes: [1, 0x80] },
  },
  {
    name: '3.1.1 SUBACK from a 5.0 failure code (0x87 → 0x80)',
    version: 4,
    role: 'client',
    bytes: '90 03 0001 80',
    packet: { type: 9, packetId: 1, reasonCodes: [0x87] },
    encodeOnly: true,
  },
  {
    name: '5.0 SUBACK with reason string',
    version: 5,
    role: 'client',
    bytes: '90 0a 0002 05 1f 0002 6f6b 00 8f',
    packet: { type: 9, packetId: 2, properties: { reasonString: 'ok' }, reasonCodes: [0, 0x8f] },
  },
  // ---- UNSUBSCRIBE / UNSUBACK
  {
    name: '3.1.1 UNSUBSCRIBE two filters',
    version: 4,
    role: 'server',
    bytes: 'a2 0a 0003 0001 61 0003 622f63',
    packet: { type: 10, packetId: 3, topicFilters: ['a', 'b/c'] },
  },
  {
    name: '5.0 UNSUBSCRIBE',
    version: 5,
    role: 'server',
    bytes: 'a2 06 0003 00 0001 61',
    packet: { type: 10, packetId: 3, properties: {}, topicFilters: ['a'] },
  },
  { name: '3.1.1 UNSUBACK', version: 4, role: 'client', bytes: 'b0 02 0003', packet: { type: 11, packetId: 3 } },
  {
    name: '5.0 UNSUBACK with two reason codes',
    version: 5,
    role: 'client',
    bytes: 'b0 05 0003 00 00 11',
    packet: { type: 11, packetId: 3, properties: {}, reasonCodes: [0, 0x11] },
  },
  // ---- PINGREQ / PINGRESP
  { name: '3.1.1 PINGREQ', version: 4, role: 'server', bytes: 'c0 00', packet: { type: 12 } },
  { name: '5.0 PINGREQ', version: 5, role: 'server', bytes: 'c0 00', packet: { type: 12 } },
  { name: '3.1.1 PINGRESP', version: 4, role: 'client', bytes: 'd0 00', packet: { type: 13 } },
  { name: '5.0 PINGRESP', version: 5, role: 'client', bytes: 'd0 00', packet: { type: 13 } },
  // ---- DISCONNECT / AUTH
  { name: '3.1.1 DISCONNECT', version: 4, role: 'server', bytes: 'e0 00', packet: { type: 14 } },
  {
    name: '5.0 DISCONNECT short form (remaining length 0 = normal disconnection)',
    version: 5,
    role: 'server',
    bytes: 'e0 00',
    packet: { type: 14, reasonCode: 0, properties: {} },
  },
  {
    name: '5.0 DISCONNECT with will message, no properties',
    version: 5,
    role: 'server',
    bytes: 'e0 01 04',
    packet: { type: 14, reasonCode: 4, properties: {} },
  },
  {
    name: '5.0 DISCONNECT from the server: use another server',
    version: 5,
    role: 'client',
    bytes: 'e0 08 9c 06 1c 0003 737276',
    packet: { type: 14, reasonCode: 0x9c, properties: { serverReference: 'srv' } },
  },
  {
    name: '5.0 AUTH short form',
    version: 5,
    role: 'client',
    bytes: 'f0 00',
    packet: { type: 15, reasonCode: 0, properties: {} },
  },
  {
    name: '5.0 AUTH continue authentication with method and data',
    version: 5,
    role: 'server',
    bytes: 'f0 0f 18 0d 15 0005 53435241 4d 16 0002 6162',
    packet: {
      type: 15,
      reasonCode: 0x18,
      properties: { authenticationMethod: 'SCRAM', authenticationData: b('ab') },
    },
  },
];

describe('byte vectors', () => {
  for (const v of vectors) {
    if (!v.encodeOnly) {
      it(`decodes ${v.name}`, () => {
        const packet = decodeOne(hex(v.bytes), { protocolVersion: v.version, role: v.role });
        assert.deepStrictEqual(packet, v.packet);
      });
    }
    if (!v.decodeOnly) {
      it(`encodes ${v.name}`, () => {
        assert.equal(encodePacket(v.packet, v.version).toString('hex'), hex(v.encodesTo ?? v.bytes).toString('hex'));
      });
    }
  }

  it('a server decoder without a version takes it from CONNECT (3.1 MQIsdp, 3.1.1, 5.0)', () => {
    for (const v of vectors.filter((x) => x.packet.type === 1)) {
      const out = decodeOne(hex(v.bytes));
      assert.deepStrictEqual(out, v.packet);
    }
  });
});
