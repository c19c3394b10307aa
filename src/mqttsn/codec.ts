// MQTT-SN 1.2 codec, sans I/O: one datagram in, one typed message out (and back).
// Decoding is strict about structure (spec section 5): the Length field must equal the datagram's
// size, every fixed-size message has exactly its size, reserved TopicIdType and QoS values are
// refused, strings are UTF-8. Topic rules (wildcards, levels) are the gateway's, which answers
// them with a return code instead of dropping the message.
import { Buffer, isUtf8 } from 'node:buffer';
import {
  SN_TYPE_NAMES,
  SnType,
  type Encapsulated,
  type SnPacket,
  type SnQoS,
  type SnSubscribeTopic,
  type SnTopic,
} from './packets.js';

/** A datagram that is not a valid MQTT-SN message. The gateway drops it and counts it. */
export class SnDecodeError extends Error {
  constructor(
    message: string,
    readonly msgType?: number,
  ) {
    super(message);
    this.name = 'SnDecodeError';
  }
}

/** Largest message the Length field can describe (3-octet form, spec 5.2.1). */
export const SN_MAX_LENGTH = 0xffff;

// ---- flags (spec 5.3.4) ----
const DUP = 0x80;
const RETAIN = 0x10;
const WILL = 0x08;
const CLEAN = 0x04;

function qosFromFlags(flags: number): SnQoS {
  const bits = (flags >> 5) & 3;
  return bits === 3 ? -1 : (bits as 0 | 1 | 2);
}
function qosBits(qos: SnQoS): number {
  return (qos === -1 ? 3 : qos) << 5;
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** The inner message of a forwarder encapsulation (spec 5.5); throws SnDecodeError when malformed. */
export function decodeEncapsulated(datagram: Buffer): Encapsulated {
  if (datagram.length < 4) throw new SnDecodeError('encapsulated message shorter than its header', SnType.ENCAPSULATED);
  if (datagram[1] !== SnType.ENCAPSULATED) throw new SnDecodeError('not an encapsulated message');
  const length = datagram[0]!;
  // Length counts the header up to the end of the Wireless Node Id; at least one octet of node id.
  if (length < 4 || length >= datagram.length) throw new SnDecodeError(`encapsulation Length ${length} does not fit a datagram of ${datagram.length} octets`, SnType.ENCAPSULATED);
  return { ctrl: datagram[2]!, nodeId: datagram.subarray(3, length), message: datagram.subarray(length) };
}

export function isEncapsulated(datagram: Buffer): boolean {
  return datagram.length >= 2 && datagram[1] === SnType.ENCAPSULATED && datagram[0] !== 0x01;
}

/** Wraps an encoded message for a forwarder (spec 5.5). */
export function encodeEncapsulated(e: Encapsulated): Buffer {
  const length = 3 + e.nodeId.length;
  if (e.nodeId.length < 1 || length > 255) throw new RangeError('wireless node id must be 1 to 252 octets');
  const out = Buffer.allocUnsafe(length + e.message.length);
  out[0] = length;
  out[1] = SnType.ENCAPSULATED;
  out[2] = e.ctrl & 0xff;
  e.nodeId.copy(out, 3);
  e.message.copy(out, length);
  return out;
}

/** Decodes one MQTT-SN message (one datagram). Payloads are views into `datagram`. */
export function decodeSn(datagram: Buffer): SnPacket {
  const size = datagram.length;
  if (size < 2) throw new SnDecodeError(`datagram of ${size} octet(s) is shorter than a header`);
  let length: number;
  let pos: number;
  if (datagram[0] === 0x01) {
    if (size < 4) throw new SnDecodeError('3-octet Length field runs past the end of the datagram');
    length = datagram.readUInt16BE(1);
    pos = 3;
  } else {
    length = datagram[0]!;
    pos = 1;
  }
  if (length !== size) throw new SnDecodeError(`Length field says ${length} octets but the datagram has ${size}`);
  const type = datagram[pos++]!;
  const name = SN_TYPE_NAMES[type];
  if (name === undefined || type === SnType.ENCAPSULATED) throw new SnDecodeError(`unknown MsgType 0x${type.toString(16).padStart(2, '0')}`, type);
  const body = datagram.subarray(pos);
  const n = body.length;
  const fail = (why: string): never => {
    throw new SnDecodeError(`${name} ${why}`, type);
  };
  const exactly = (want: number) => {
    if (n !== want) fail(`must have ${want} octet(s) after the header, has ${n}`);
  };
  const atLeast = (want: number) => {
    if (n < want) fail(`must have at least ${want} octet(s) after the header, has ${n}`);
  };
  const text = (from: number, what: string, minLength = 1): string => {
    const bytes = body.subarray(from);
    if (bytes.length < minLength) fail(`has an empty ${what}`);
    if (!isUtf8(bytes)) fail(`${what} is not valid UTF-8`);
    return bytes.toString('utf8');
  };
  const u16 = (at: number) => body.readUInt16BE(at);
  const willTopic = (): { qos: 0 | 1 | 2; retain: boolean; topic: string | undefined } => {
    if (n === 0) return { qos: 0, retain: false, topic: undefined };
    const flags = body[0]!;
    const qos = qosFromFlags(flags);
    if (qos === -1) fail('has QoS -1, which only a PUBLISH may have');
    return { qos: qos as 0 | 1 | 2, retain: (flags & RETAIN) !== 0, topic: text(1, 'will topic') };
  };
  const subscribeTopic = (flags: number, from: number): SnSubscribeTopic => {
    const idType = flags & 3;
    if (idType === 0) return { type: 0, name: text(from, 'topic name') };
    if (n - from !== 2) fail(`names a ${idType === 1 ? 'predefined topic id' : 'short topic name'} in ${n - from} octets instead of 2`);
    if (idType === 1) return { type: 1, id: u16(from) };
    if (idType === 2) return { type: 2, name: text(from, 'short topic name') };
    return fail('has the reserved TopicIdType 0b11');
  };
  const msgIdFor = (qos: number, msgId: number) => {
    if (qos > 0 && msgId === 0) fail(`has MsgId 0 at QoS ${qos}`);
    return msgId;
  };

  switch (type) {
    case SnType.ADVERTISE:
      exactly(3);
      return { type, gwId: body[0]!, duration: u16(1) };
    case SnType.SEARCHGW:
      exactly(1);
      return { type, radius: body[0]! };
    case SnType.GWINFO:
      atLeast(1);
      return n > 1 ? { type, gwId: body[0]!, gwAdd: body.subarray(1) } : { type, gwId: body[0]! };
    case SnType.CONNECT: {
      atLeast(5);
      const flags = body[0]!;
      return { type, will: (flags & WILL) !== 0, cleanSession: (flags & CLEAN) !== 0, protocolId: body[1]!, duration: u16(2), clientId: text(4, 'client id') };
    }
    case SnType.CONNACK:
    case SnType.WILLTOPICRESP:
    case SnType.WILLMSGRESP:
      exactly(1);
      return { type, returnCode: body[0]! };
    case SnType.WILLTOPICREQ:
    case SnType.WILLMSGREQ:
    case SnType.PINGRESP:
      exactly(0);
      return { type };
    case SnType.WILLTOPIC:
    case SnType.WILLTOPICUPD:
      return { type, ...willTopic() };
    case SnType.WILLMSG:
    case SnType.WILLMSGUPD:
      return { type, payload: body };
    case SnType.REGISTER:
      atLeast(5);
      return { type, topicId: u16(0), msgId: msgIdFor(1, u16(2)), topicName: text(4, 'topic name') };
    case SnType.REGACK:
    case SnType.PUBACK:
      exactly(5);
      return { type, topicId: u16(0), msgId: u16(2), returnCode: body[4]! };
    case SnType.PUBLISH: {
      atLeast(5);
      const flags = body[0]!;
      const qos = qosFromFlags(flags);
      const idType = flags & 3;
      let topic: SnTopic;
      if (idType === 0) topic = { type: 0, id: u16(1) };
      else if (idType === 1) topic = { type: 1, id: u16(1) };
      else if (idType === 2) {
        const short = body.subarray(1, 3);
        if (!isUtf8(short)) fail('short topic name is not valid UTF-8');
        topic = { type: 2, name: short.toString('utf8') };
      } else return fail('has the reserved TopicIdType 0b11');
      // [MQTT-SN 6.8] QoS -1 has no registration, so only predefined ids and short names.
      if (qos === -1 && idType === 0) fail('at QoS -1 must use a predefined topic id or a short topic name');
      return { type, dup: (flags & DUP) !== 0, qos, retain: (flags & RETAIN) !== 0, topic, msgId: msgIdFor(qos, u16(3)), payload: body.subarray(5) };
    }
    case SnType.PUBCOMP:
    case SnType.PUBREC:
    case SnType.PUBREL:
    case SnType.UNSUBACK:
      exactly(2);
      return { type, msgId: u16(0) };
    case SnType.SUBSCRIBE: {
      atLeast(4);
      const flags = body[0]!;
      const qos = qosFromFlags(flags);
      if (qos === -1) fail('asks for QoS -1, which only a PUBLISH may have');
      return { type, dup: (flags & DUP) !== 0, qos: qos as 0 | 1 | 2, msgId: msgIdFor(1, u16(1)), topic: subscribeTopic(flags, 3) };
    }
    case SnType.SUBACK: {
      exactly(6);
      const qos = qosFromFlags(body[0]!);
      return { type, qos: qos === -1 ? 0 : qos, topicId: u16(1), msgId: u16(3), returnCode: body[5]! };
    }
    case SnType.UNSUBSCRIBE:
      atLeast(4);
      return { type, msgId: msgIdFor(1, u16(1)), topic: subscribeTopic(body[0]!, 3) };
    case SnType.PINGREQ:
      return n === 0 ? { type } : { type, clientId: text(0, 'client id') };
    case SnType.DISCONNECT:
      if (n !== 0 && n !== 2) fail(`must have 0 or 2 octets (Duration) after the header, has ${n}`);
      return n === 2 ? { type, duration: u16(0) } : { type };
  }
  return fail('is not handled');
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** Encodes one message; throws RangeError when it would not fit the Length field (65535 octets). */
export function encodeSn(p: SnPacket): Buffer {
  let body: Buffer;
  switch (p.type) {
    case SnType.ADVERTISE:
      body = Buffer.from([p.gwId, p.duration >> 8, p.duration & 0xff]);
      break;
    case SnType.SEARCHGW:
      body = Buffer.from([p.radius]);
      break;
    case SnType.GWINFO:
      body = p.gwAdd ? Buffer.concat([Buffer.from([p.gwId]), p.gwAdd]) : Buffer.from([p.gwId]);
      break;
    case SnType.CONNECT: {
      const id = Buffer.from(p.clientId, 'utf8');
      body = Buffer.allocUnsafe(4 + id.length);
      body[0] = (p.will ? WILL : 0) | (p.cleanSession ? CLEAN : 0);
      body[1] = p.protocolId;
      body.writeUInt16BE(p.duration, 2);
      id.copy(body, 4);
      break;
    }
    case SnType.CONNACK:
    case SnType.WILLTOPICRESP:
    case SnType.WILLMSGRESP:
      body = Buffer.from([p.returnCode]);
      break;
    case SnType.WILLTOPICREQ:
    case SnType.WILLMSGREQ:
    case SnType.PINGRESP:
      body = Buffer.alloc(0);
      break;
    case SnType.WILLTOPIC:
    case SnType.WILLTOPICUPD:
      body = p.topic === undefined ? Buffer.alloc(0) : Buffer.concat([Buffer.from([qosBits(p.qos) | (p.retain ? RETAIN : 0)]), Buffer.from(p.topic, 'utf8')]);
      break;
    case SnType.WILLMSG:
    case SnType.WILLMSGUPD:
      body = p.payload;
      break;
    case SnType.REGISTER: {
      const name = Buffer.from(p.topicName, 'utf8');
      body = Buffer.allocUnsafe(4 + name.length);
      body.writeUInt16BE(p.topicId, 0);
      body.writeUInt16BE(p.msgId, 2);
      name.copy(body, 4);
      break;
    }
    case SnType.REGACK:
    case SnType.PUBACK:
      body = Buffer.allocUnsafe(5);
      body.writeUInt16BE(p.topicId, 0);
      body.writeUInt16BE(p.msgId, 2);
      body[4] = p.returnCode;
      break;
    case SnType.PUBLISH: {
      const total = 2 + 5 + p.payload.length;
      const header = total > 255 ? 4 : 2;
      const out = Buffer.allocUnsafe(total + header - 2);
      if (out.length > SN_MAX_LENGTH) throw new RangeError(`PUBLISH of ${out.length} octets is longer than MQTT-SN allows (65535)`);
      let at = writeHeader(out, SnType.PUBLISH);
      out[at++] = (p.dup ? DUP : 0) | qosBits(p.qos) | (p.retain ? RETAIN : 0) | p.topic.type;
      if (p.topic.type === 2) {
        const short = Buffer.from(p.topic.name, 'utf8');
        if (short.length !== 2) throw new RangeError(`short topic name ${JSON.stringify(p.topic.name)} is not 2 octets`);
        short.copy(out, at);
      } else out.writeUInt16BE(p.topic.id, at);
      out.writeUInt16BE(p.msgId, at + 2);
      p.payload.copy(out, at + 4);
      return out;
    }
    case SnType.PUBCOMP:
    case SnType.PUBREC:
    case SnType.PUBREL:
    case SnType.UNSUBACK:
      body = Buffer.from([p.msgId >> 8, p.msgId & 0xff]);
      break;
    case SnType.SUBSCRIBE:
    case SnType.UNSUBSCRIBE: {
      const topic = subscribeTopicBytes(p.topic);
      body = Buffer.allocUnsafe(3 + topic.length);
      body[0] = (p.type === SnType.SUBSCRIBE ? (p.dup ? DUP : 0) | qosBits(p.qos) : 0) | p.topic.type;
      body.writeUInt16BE(p.msgId, 1);
      topic.copy(body, 3);
      break;
    }
    case SnType.SUBACK:
      body = Buffer.allocUnsafe(6);
      body[0] = qosBits(p.qos);
      body.writeUInt16BE(p.topicId, 1);
      body.writeUInt16BE(p.msgId, 3);
      body[5] = p.returnCode;
      break;
    case SnType.PINGREQ:
      body = p.clientId === undefined ? Buffer.alloc(0) : Buffer.from(p.clientId, 'utf8');
      break;
    case SnType.DISCONNECT:
      body = p.duration === undefined ? Buffer.alloc(0) : Buffer.from([p.duration >> 8, p.duration & 0xff]);
      break;
  }
  const total = body.length + (body.length + 2 > 255 ? 4 : 2);
  if (total > SN_MAX_LENGTH) throw new RangeError(`${SN_TYPE_NAMES[p.type]} of ${total} octets is longer than MQTT-SN allows (65535)`);
  const out = Buffer.allocUnsafe(total);
  body.copy(out, writeHeader(out, p.type));
  return out;
}

/** Writes Length (1 or 3 octets, from out.length) and MsgType; returns where the body starts. */
function writeHeader(out: Buffer, type: number): number {
  if (out.length <= 255) {
    out[0] = out.length;
    out[1] = type;
    return 2;
  }
  out[0] = 0x01;
  out.writeUInt16BE(out.length, 1);
  out[3] = type;
  return 4;
}

function subscribeTopicBytes(topic: SnSubscribeTopic): Buffer {
  if (topic.type === 1) return Buffer.from([topic.id >> 8, topic.id & 0xff]);
  const bytes = Buffer.from(topic.name, 'utf8');
  if (topic.type === 2 && bytes.length !== 2) throw new RangeError(`short topic name ${JSON.stringify(topic.name)} is not 2 octets`);
  return bytes;
}
