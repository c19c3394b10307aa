// fast-check generators of MQTT-SN messages, for the codec's and the gateway's property tests.
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { SnType, type SnPacket } from '../../src/mqttsn/packets.js';

export const u8 = fc.integer({ min: 0, max: 255 });
const u16 = fc.integer({ min: 0, max: 0xffff });
const msgId = fc.integer({ min: 1, max: 0xffff });
const qos012 = fc.constantFrom<0 | 1 | 2>(0, 1, 2);
const text = fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' });
export const bytes = (max = 300) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));
const shortName = fc.constantFrom('ab', 'x1', '/a', 'é');
const subscribeTopic = fc.oneof(
  text.map((name) => ({ type: 0 as const, name })),
  u16.map((id) => ({ type: 1 as const, id })),
  shortName.map((name) => ({ type: 2 as const, name })),
);

/** Every message type with random fields, in its decoded shape. */
export const anyPacket: fc.Arbitrary<SnPacket> = fc.oneof(
  fc.record({ type: fc.constant(SnType.ADVERTISE), gwId: u8, duration: u16 }),
  fc.record({ type: fc.constant(SnType.SEARCHGW), radius: u8 }),
  fc.record({ type: fc.constant(SnType.GWINFO), gwId: u8 }),
  fc.record({ type: fc.constant(SnType.GWINFO), gwId: u8, gwAdd: bytes(20).filter((b) => b.length > 0) }),
  fc.record({ type: fc.constant(SnType.CONNECT), will: fc.boolean(), cleanSession: fc.boolean(), protocolId: fc.constant(1), duration: u16, clientId: text }),
  fc.record({ type: fc.constantFrom(SnType.CONNACK, SnType.WILLTOPICRESP, SnType.WILLMSGRESP), returnCode: u8 }),
  fc.record({ type: fc.constantFrom(SnType.WILLTOPICREQ, SnType.WILLMSGREQ, SnType.PINGRESP) }),
  fc.record({ type: fc.constantFrom(SnType.WILLTOPIC, SnType.WILLTOPICUPD), qos: qos012, retain: fc.boolean(), topic: text }),
  fc.record({ type: fc.constantFrom(SnType.WILLTOPIC, SnType.WILLTOPICUPD), qos: fc.constant(0 as const), retain: fc.constant(false), topic: fc.constant(undefined) }),
  fc.record({ type: fc.constantFrom(SnType.WILLMSG, SnType.WILLMSGUPD), payload: bytes() }),
  fc.record({ type: fc.constant(SnType.REGISTER), topicId: u16, msgId, topicName: text }),
  fc.record({ type: fc.constantFrom(SnType.REGACK, SnType.PUBACK), topicId: u16, msgId: u16, returnCode: u8 }),
  fc
    .record({
      type: fc.constant(SnType.PUBLISH),
      dup: fc.boolean(),
      qos: fc.constantFrom<-1 | 0 | 1 | 2>(-1, 0, 1, 2),
      retain: fc.boolean(),
      topic: fc.oneof(u16.map((id) => ({ type: 0 as const, id })), u16.map((id) => ({ type: 1 as const, id })), shortName.map((name) => ({ type: 2 as const, name }))),
      msgId,
      payload: bytes(600),
    })
    .filter((p) => !(p.qos === -1 && p.topic.type === 0)),
  fc.record({ type: fc.constantFrom(SnType.PUBCOMP, SnType.PUBREC, SnType.PUBREL, SnType.UNSUBACK), msgId: u16 }),
  fc.record({ type: fc.constant(SnType.SUBSCRIBE), dup: fc.boolean(), qos: qos012, msgId, topic: subscribeTopic }),
  fc.record({ type: fc.constant(SnType.SUBACK), qos: qos012, topicId: u16, msgId: u16, returnCode: u8 }),
  fc.record({ type: fc.constant(SnType.UNSUBSCRIBE), msgId, topic: subscribeTopic }),
  fc.record({ type: fc.constant(SnType.PINGREQ) }),
  fc.record({ type: fc.constant(SnType.PINGREQ), clientId: text }),
  fc.record({ type: fc.constant(SnType.DISCONNECT) }),
  fc.record({ type: fc.constant(SnType.DISCONNECT), duration: u16 }),
) as fc.Arbitrary<SnPacket>;

