// MQTT encoder: one typed packet in, one Buffer out, for a given protocol version.
//
// Every packet is sized first and then written into one Buffer allocated with the exact size
// (no concatenation of pieces). Strings are written with Buffer#write after measuring them
// with Buffer.byteLength.
import { Buffer } from 'node:buffer';
import { MAX_VARIABLE_BYTE_INTEGER, type ProtocolVersion, v5ConnackToV3 } from './constants.js';
import { MqttProtocolError } from './errors.js';
import type {
  ConnackPacket,
  ConnectPacket,
  Packet,
  Properties,
  PubAckLikePacket,
  PublishPacket,
  SubackPacket,
  SubscribePacket,
  UnsubackPacket,
  UnsubscribePacket,
} from './packets.js';
import { PROPERTY_BY_NAME } from './properties.js';
import { PACKET_NAMES, PROPERTY_PLACE_MASK, WILL_PLACE, placeName, varintSize, writeVarint } from './codec-util.js';

type Writable = { utf8Write(s: string, offset: number, length: number): number };
const utf8Write = (Buffer.prototype as unknown as Writable).utf8Write;

// Small packets are carved out of a shared slab (like Node's Buffer pool, but larger, so
// fan-out encoding allocates an ArrayBuffer every ~60 packets of 1 KiB instead of every ~7).
// A live packet keeps its slab (SLAB_SIZE bytes) alive, as with Node's pool.
const SLAB_SIZE = 64 * 1024;
const SLAB_MAX_PACKET = 4 * 1024;
/**
 * The slab's memory itself: a view made from it costs less than Buffer#subarray, which reads the slab's
 * `buffer` and `byteOffset` through loads that V8's optimising compiler leaves generic (a LoadIC call each).
 */
let slab = Buffer.allocUnsafeSlow(SLAB_SIZE).buffer;
let slabUsed = 0;

/** An uninitialized Buffer of exactly `size` bytes. */
function allocOut(size: number): Buffer {
  if (size > SLAB_MAX_PACKET) return Buffer.allocUnsafe(size);
  if (slabUsed + size > SLAB_SIZE) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE).buffer;
    slabUsed = 0;
  }
  const buf = Buffer.from(slab, slabUsed, size);
  slabUsed = (slabUsed + size + 7) & ~7;
  return buf;
}

function fail(type: number, message: string, code = 0x82): MqttProtocolError {
  return new MqttProtocolError(code, `cannot encode ${PACKET_NAMES[type]}: ${message}`, { packetType: type });
}

/** Byte length of a UTF-8 string field, checked against the 65535 limit. */
function strLen(type: number, s: string, what: string): number {
  if (typeof s !== 'string') throw fail(type, `${what} is not a string`);
  const n = s.length === 0 ? 0 : Buffer.byteLength(s, 'utf8');
  if (n > 65535) throw fail(type, `${what} is longer than 65535 bytes`);
  return n;
}

function binLen(type: number, b: Buffer, what: string): number {
  if (!(b instanceof Uint8Array)) throw fail(type, `${what} is not a Buffer`);
  if (b.length > 65535) throw fail(type, `${what} is longer than 65535 bytes`);
  return b.length;
}

function checkInt(type: number, v: unknown, max: number, what: string, min = 0): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw fail(type, `${what} must be an integer from ${min} to ${max}, got ${String(v)}`);
  }
  return v;
}

function checkPacketId(type: number, id: unknown): number {
  return checkInt(type, id, 65535, 'packetId', 1);
}

function writeString(buf: Buffer, off: number, s: string): number {
  const n = s.length === 0 ? 0 : utf8Write.call(buf, s, off + 2, buf.length - off - 2);
  buf[off] = n >> 8;
  buf[off + 1] = n & 0xff;
  return off + 2 + n;
}

function writeBinary(buf: Buffer, off: number, b: Buffer): number {
  buf[off] = b.length >> 8;
  buf[off + 1] = b.length & 0xff;
  buf.set(b, off + 2);
  return off + 2 + b.length;
}

function writeU16(buf: Buffer, off: number, v: number): number {
  buf[off] = v >> 8;
  buf[off + 1] = v & 0xff;
  return off + 2;
}

// --- properties ------------------------------------------------------------------------------

/**
 * Size in bytes of the properties (without the property length prefix), validating each
 * value and that `place` (packet type or WILL_PLACE) allows it.
 */
function propertiesSize(type: number, props: Properties | undefined, place: number): number {
  if (props === undefined) return 0;
  let size = 0;
  for (const key in props) {
    const value = (props as Record<string, unknown>)[key];
    if (value === undefined) continue;
    const def = PROPERTY_BY_NAME.get(key as keyof Properties);
    if (def === undefined) throw fail(type, `unknown property ${key}`);
    if ((PROPERTY_PLACE_MASK[def.id]! & (1 << place)) === 0) {
      throw fail(type, `property ${key} is not allowed in ${placeName(place)}`);
    }
    switch (def.type) {
      case 'byte':
        checkInt(type, value, 255, key);
        size += 2;
        break;
      case 'twoByteInteger':
        checkInt(type, value, 65535, key);
        size += 3;
        break;
      case 'fourByteInteger':
        checkInt(type, value, 0xffffffff, key);
        size += 5;
        break;
      case 'variableByteInteger': {
        const list = typeof value === 'number' ? [value] : (value as number[]);
        if (place !== 3 && list.length > 1) throw fail(type, `${key} may appear only once`);
        for (const v of list) size += 1 + varintSize(checkInt(type, v, MAX_VARIABLE_BYTE_INTEGER, key, 1));
        break;
      }
      case 'utf8String':
        size += 3 + strLen(type, value as string, key);
        break;
      case 'utf8StringPair':
        for (const [k, v] of value as [string, string][]) size += 5 + strLen(type, k, key) + strLen(type, v, key);
        break;
      case 'binaryData':
        size += 3 + binLen(type, value as Buffer, key);
        break;
    }
  }
  return size;
}

/** Writes properties whose size was computed by propertiesSize (length prefix included). */
function writeProperties(buf: Buffer, off: number, props: Properties | undefined, size: number): number {
  off = writeVarint(buf, off, size);
  if (props === undefined || size === 0) return off;
  for (const key in props) {
    const value = (props as Record<string, unknown>)[key];
    if (value === undefined) continue;
    const def = PROPERTY_BY_NAME.get(key as keyof Properties)!;
    const id = def.id;
    switch (def.type) {
      case 'byte':
        buf[off++] = id;
        buf[off++] = value as number;
        break;
      case 'twoByteInteger':
        buf[off++] = id;
        off = writeU16(buf, off, value as number);
        break;
      case 'fourByteInteger':
        buf[off++] = id;
        off = buf.writeUInt32BE(value as number, off);
        break;
      case 'variableByteInteger':
        for (const v of typeof value === 'number' ? [value] : (value as number[])) {
          buf[off++] = id;
          off = writeVarint(buf, off, v);
        }
        break;
      case 'utf8String':
        buf[off++] = id;
        off = writeString(buf, off, value as string);
        break;
      case 'utf8StringPair':
        for (const [k, v] of value as [string, string][]) {
          buf[off++] = id;
          off = writeString(buf, off, k);
          off = writeString(buf, off, v);
        }
        break;
      case 'binaryData':
        buf[off++] = id;
        off = writeBinary(buf, off, value as Buffer);
        break;
    }
  }
  return off;
}

/** Allocates the packet buffer for `remaining` bytes of body and writes the fixed header. */
function allocPacket(type: number, first: number, remaining: number): { buf: Buffer; off: number } {
  if (remaining > MAX_VARIABLE_BYTE_INTEGER) throw fail(type, `remaining length ${remaining} is too large`, 0x95);
  const buf = allocOut(1 + varintSize(remaining) + remaining);
  buf[0] = first;
  return { buf, off: writeVarint(buf, 1, remaining) };
}

// --- packets ---------------------------------------------------------------------------------

/**
 * Encodes a packet for `version`. Fields a version lacks (5.0 properties and reason codes
 * toward 3.1.x) are left out. Throws MqttProtocolError for a packet that cannot be encoded
 * validly (e.g. QoS > 0 without packetId).
 */
export function encodePacket(packet: Packet, version: ProtocolVersion): Buffer {
  switch (packet.type) {
    case 1:
      return encodeConnect(packet, version);
    case 2:
      return encodeConnack(packet, version);
    case 3:
      return encodePublish(packet, version);
    case 4:
    case 5:
    case 6:
    case 7:
      return encodePubAckLike(packet as PubAckLikePacket, version);
    case 8:
      return encodeSubscribe(packet, version);
    case 9:
      return encodeSuback(packet, version);
    case 10:
      return encodeUnsubscribe(packet, version);
    case 11:
      return encodeUnsuback(packet, version);
    case 12:
      return allocPacket(12, 0xc0, 0).buf;
    case 13:
      return allocPacket(13, 0xd0, 0).buf;
    case 14:
    case 15: {
      const type = packet.type;
      if (version !== 5) {
        if (type === 15) throw fail(15, 'AUTH exists only in MQTT 5.0');
        return allocPacket(14, 0xe0, 0).buf;
      }
      const reasonCode = checkInt(type, packet.reasonCode ?? 0, 255, 'reasonCode');
      const propsSize = propertiesSize(type, packet.properties, type);
      if (propsSize === 0) {
        if (reasonCode === 0) return allocPacket(type, type << 4, 0).buf;
        const { buf, off } = allocPacket(type, type << 4, 1);
        buf[off] = reasonCode;
        return buf;
      }
      const { buf, off } = allocPacket(type, type << 4, 1 + varintSize(propsSize) + propsSize);
      buf[off] = reasonCode;
      writeProperties(buf, off + 1, packet.properties, propsSize);
      return buf;
    }
    default:
      throw new MqttProtocolError(0x82, `cannot encode packet of type ${String((packet as { type: unknown }).type)}`);
  }
}

function encodeConnect(packet: ConnectPacket, version: ProtocolVersion): Buffer {
  const protocolName = version === 3 ? 'MQIsdp' : 'MQTT';
  const v5 = version === 5;
  const keepAlive = checkInt(1, packet.keepAlive, 65535, 'keepAlive');
  let remaining = 2 + protocolName.length + 4 + 2 + strLen(1, packet.clientId, 'clientId');
  const propsSize = v5 ? propertiesSize(1, packet.properties, 1) : 0;
  if (v5) remaining += varintSize(propsSize) + propsSize;
  let flags = packet.clean ? 0x02 : 0;
  const will = packet.will;
  let willPropsSize = 0;
  if (will !== undefined) {
    const qos = checkInt(1, will.qos, 2, 'will.qos');
    flags |= 0x04 | (qos << 3) | (will.retain ? 0x20 : 0);
    remaining += 4 + strLen(1, will.topic, 'will.topic') + binLen(1, will.payload, 'will.payload');
    if (v5) {
      willPropsSize = propertiesSize(1, will.properties, WILL_PLACE);
      remaining += varintSize(willPropsSize) + willPropsSize;
    }
  }
  if (packet.username !== undefined) {
    flags |= 0x80;
    remaining += 2 + strLen(1, packet.username, 'username');
  }
  if (packet.password !== undefined) {
    if (!v5 && packet.username === undefined) throw fail(1, 'a password without a username needs MQTT 5.0 [MQTT-3.1.2-22]');
    flags |= 0x40;
    remaining += 2 + binLen(1, packet.password, 'password');
  }
  let { buf, off } = allocPacket(1, 0x10, remaining);
  off = writeString(buf, off, protocolName);
  buf[off++] = version;
  buf[off++] = flags;
  off = writeU16(buf, off, keepAlive);
  if (v5) off = writeProperties(buf, off, packet.properties, propsSize);
  off = writeString(buf, off, packet.clientId);
  if (will !== undefined) {
    if (v5) off = writeProperties(buf, off, will.properties, willPropsSize);
    off = writeString(buf, off, will.topic);
    off = writeBinary(buf, off, will.payload);
  }
  if (packet.username !== undefined) off = writeString(buf, off, packet.username);
  if (packet.password !== undefined) off = writeBinary(buf, off, packet.password);
  return buf;
}

function encodeConnack(packet: ConnackPacket, version: ProtocolVersion): Buffer {
  let code = checkInt(2, packet.reasonCode, 255, 'reasonCode');
  // MQTT 3.1 has no Session Present flag: the byte is reserved there (3.1.1 added the flag, [MQTT-3.2.2-1]).
  const flags = packet.sessionPresent && version !== 3 ? 1 : 0;
  if (version !== 5) {
    // A 5.0 reason code toward a 3.1.x client becomes the closest 3.1.x return code.
    if (code > 5) code = v5ConnackToV3(code);
    const { buf, off } = allocPacket(2, 0x20, 2);
    buf[off] = flags;
    buf[off + 1] = code;
    return buf;
  }
  const propsSize = propertiesSize(2, packet.properties, 2);
  let { buf, off } = allocPacket(2, 0x20, 2 + varintSize(propsSize) + propsSize);
  buf[off++] = flags;
  buf[off++] = code;
  writeProperties(buf, off, packet.properties, propsSize);
  return buf;
}

/**
 * PUBACK, PUBREC, PUBREL or PUBCOMP without properties, from its fields: the broker acknowledges every
 * QoS 1/2 message, and this path makes no packet object and no array for it.
 */
export function encodeAck(type: 4 | 5 | 6 | 7, packetId: number, reasonCode: number | undefined, version: ProtocolVersion): Buffer {
  const first = type === 6 ? 0x62 : type << 4;
  const id = checkPacketId(type, packetId);
  const code = version === 5 ? checkInt(type, reasonCode ?? 0, 255, 'reasonCode') : 0;
  // [MQTT-3.4.2-1] 5.0 may leave out a Success reason code when there are no properties.
  const buf = allocOut(code === 0 ? 4 : 5);
  buf[0] = first;
  buf[1] = code === 0 ? 2 : 3;
  buf[2] = id >> 8;
  buf[3] = id & 0xff;
  if (code !== 0) buf[4] = code;
  return buf;
}

function encodePubAckLike(packet: PubAckLikePacket, version: ProtocolVersion): Buffer {
  const type = packet.type;
  if (version !== 5 || packet.properties === undefined) return encodeAck(type, packet.packetId, packet.reasonCode, version);
  const first = type === 6 ? 0x62 : type << 4;
  const id = checkPacketId(type, packet.packetId);
  const reasonCode = checkInt(type, packet.reasonCode ?? 0, 255, 'reasonCode');
  const propsSize = propertiesSize(type, packet.properties, type);
  if (propsSize === 0) return encodeAck(type, id, reasonCode, version);
  let { buf, off } = allocPacket(type, first, 3 + varintSize(propsSize) + propsSize);
  off = writeU16(buf, off, id);
  buf[off++] = reasonCode;
  writeProperties(buf, off, packet.properties, propsSize);
  return buf;
}

function encodeSubscribe(packet: SubscribePacket, version: ProtocolVersion): Buffer {
  const id = checkPacketId(8, packet.packetId);
  const subs = packet.subscriptions;
  if (subs.length === 0) throw fail(8, 'no subscriptions [MQTT-3.8.3-3]');
  const v5 = version === 5;
  const propsSize = v5 ? propertiesSize(8, packet.properties, 8) : 0;
  let remaining = 2 + (v5 ? varintSize(propsSize) + propsSize : 0);
  for (const s of subs) {
    checkInt(8, s.qos, 2, 'subscription qos');
    if (s.retainHandling !== undefined) checkInt(8, s.retainHandling, 2, 'retainHandling');
    remaining += 3 + strLen(8, s.topicFilter, 'topicFilter');
  }
  let { buf, off } = allocPacket(8, 0x82, remaining);
  off = writeU16(buf, off, id);
  if (v5) off = writeProperties(buf, off, packet.properties, propsSize);
  for (const s of subs) {
    off = writeString(buf, off, s.topicFilter);
    buf[off++] = v5
      ? s.qos | (s.noLocal ? 4 : 0) | (s.retainAsPublished ? 8 : 0) | ((s.retainHandling ?? 0) << 4)
      : s.qos;
  }
  return buf;
}

function encodeSuback(packet: SubackPacket, version: ProtocolVersion): Buffer {
  const id = checkPacketId(9, packet.packetId);
  const codes = packet.reasonCodes;
  if (codes.length === 0) throw fail(9, 'no reason codes');
  const v5 = version === 5;
  const propsSize = v5 ? propertiesSize(9, packet.properties, 9) : 0;
  let { buf, off } = allocPacket(9, 0x90, 2 + (v5 ? varintSize(propsSize) + propsSize : 0) + codes.length);
  off = writeU16(buf, off, id);
  if (v5) off = writeProperties(buf, off, packet.properties, propsSize);
  for (const c of codes) {
    checkInt(9, c, 255, 'reason code');
    // 3.1.x knows only 0, 1, 2 and 0x80 Failure.
    buf[off++] = v5 || c < 0x80 ? c : 0x80;
    if (!v5 && c > 2 && c < 0x80) throw fail(9, `return code ${c} does not exist in MQTT 3.1.x`);
  }
  return buf;
}

function encodeUnsubscribe(packet: UnsubscribePacket, version: ProtocolVersion): Buffer {
  const id = checkPacketId(10, packet.packetId);
  const filters = packet.topicFilters;
  if (filters.length === 0) throw fail(10, 'no topic filters [MQTT-3.10.3-2]');
  const v5 = version === 5;
  const propsSize = v5 ? propertiesSize(10, packet.properties, 10) : 0;
  let remaining = 2 + (v5 ? varintSize(propsSize) + propsSize : 0);
  for (const f of filters) remaining += 2 + strLen(10, f, 'topic filter');
  let { buf, off } = allocPacket(10, 0xa2, remaining);
  off = writeU16(buf, off, id);
  if (v5) off = writeProperties(buf, off, packet.properties, propsSize);
  for (const f of filters) off = writeString(buf, off, f);
  return buf;
}

function encodeUnsuback(packet: UnsubackPacket, version: ProtocolVersion): Buffer {
  const id = checkPacketId(11, packet.packetId);
  if (version !== 5) {
    const { buf, off } = allocPacket(11, 0xb0, 2);
    writeU16(buf, off, id);
    return buf;
  }
  const codes = packet.reasonCodes;
  if (codes === undefined || codes.length === 0) throw fail(11, 'MQTT 5.0 needs one reason code per topic filter');
  const propsSize = propertiesSize(11, packet.properties, 11);
  let { buf, off } = allocPacket(11, 0xb0, 2 + varintSize(propsSize) + propsSize + codes.length);
  off = writeU16(buf, off, id);
  off = writeProperties(buf, off, packet.properties, propsSize);
  for (const c of codes) buf[off++] = checkInt(11, c, 255, 'reason code');
  return buf;
}

/**
 * Encodes a PUBLISH once so the same Buffer can go to every subscriber of that version, QoS and
 * properties. For QoS > 0 each subscriber needs its own packet id: see `withPacketId`.
 */
export function encodePublish(packet: PublishPacket, version: ProtocolVersion): Buffer {
  const topic = packet.topic;
  const payload = packet.payload;
  const qos = packet.qos;
  const topicLength = topic.length === 0 ? 0 : Buffer.byteLength(topic, 'utf8');
  if (topicLength > 65535) throw fail(3, 'topic is longer than 65535 bytes');
  let remaining = 2 + topicLength + payload.length;
  let first = 0x30 | (packet.retain ? 1 : 0);
  let packetId = 0;
  if (qos !== 0) {
    if (qos !== 1 && qos !== 2) throw fail(3, `invalid QoS ${String(qos)}`);
    packetId = packet.packetId!;
    if (!(packetId > 0 && packetId <= 65535)) throw fail(3, 'QoS > 0 needs a packetId from 1 to 65535');
    remaining += 2;
    first |= (qos << 1) | (packet.dup ? 8 : 0);
  }
  let propsSize = 0;
  if (version === 5) {
    propsSize = propertiesSize(3, packet.properties, 3);
    remaining += varintSize(propsSize) + propsSize;
  }
  if (remaining > MAX_VARIABLE_BYTE_INTEGER) throw fail(3, `remaining length ${remaining} is too large`, 0x95);
  const buf = allocOut(1 + (remaining < 128 ? 1 : varintSize(remaining)) + remaining);
  buf[0] = first;
  let off: number;
  if (remaining < 128) {
    buf[1] = remaining;
    off = 2;
  } else {
    off = writeVarint(buf, 1, remaining);
  }
  buf[off] = topicLength >> 8;
  buf[off + 1] = topicLength & 0xff;
  off += 2;
  if (topicLength === topic.length && topicLength <= 64) {
    // ASCII (byte length = UTF-16 length): a short loop beats the native write call.
    for (let i = 0; i < topicLength; i++) buf[off + i] = topic.charCodeAt(i);
    off += topicLength;
  } else {
    off += utf8Write.call(buf, topic, off, topicLength);
  }
  if (qos !== 0) {
    buf[off] = packetId >> 8;
    buf[off + 1] = packetId & 0xff;
    off += 2;
  }
  if (version === 5) off = writeProperties(buf, off, packet.properties, propsSize);
  if (payload.length !== 0) buf.set(payload, off); // works for any Uint8Array payload, not just Buffer
  return buf;
}

/** Offset of the packet identifier inside an encoded QoS 1/2 PUBLISH. */
export function publishPacketIdOffset(encoded: Buffer): number {
  let i = 1;
  while (encoded[i]! & 0x80) i++;
  i++;
  return i + 2 + ((encoded[i]! << 8) | encoded[i + 1]!);
}

/** A copy of an encoded QoS 1/2 PUBLISH with another packet id (and the DUP flag set when `dup`). */
export function withPacketId(encoded: Buffer, packetId: number, dup = false): Buffer {
  if ((encoded[0]! & 0x06) === 0) throw fail(3, 'a QoS 0 PUBLISH has no packet identifier');
  checkPacketId(3, packetId);
  const out = allocOut(encoded.length);
  encoded.copy(out);
  const off = publishPacketIdOffset(out);
  out[off] = packetId >> 8;
  out[off + 1] = packetId & 0xff;
  out[0] = dup ? out[0]! | 0x08 : out[0]! & ~0x08;
  return out;
}
