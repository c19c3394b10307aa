// Streaming MQTT decoder: bytes in (any chunking), typed packets out.
//
// Design: packets that lie whole inside the chunk being fed are parsed in place (payloads are
// subarray views of the chunk, zero-copy). Only a packet that straddles chunks is accumulated,
// into one buffer of the exact remaining length once its fixed header is known (above 64 KiB the
// buffer grows as bytes arrive, so a header cannot reserve memory its sender never sends; the
// fixed header itself, at most 5 bytes, goes into a small buffer owned by the decoder).
// The maximum packet size is enforced from the fixed header, before any body byte is buffered.
import { Buffer, isUtf8 } from 'node:buffer';
import { v3ConnackToV5, type ProtocolVersion, type QoS } from './constants.js';
import { MqttProtocolError } from './errors.js';
import type {
  ConnackPacket,
  ConnectPacket,
  Packet,
  Properties,
  PublishPacket,
  Subscription,
  UserProperty,
  WillMessage,
} from './packets.js';
import { PROPERTY_BY_ID } from './properties.js';
import { isValidTopicFilter } from './topic.js';
import {
  ALLOWED_REASON_CODES,
  PACKET_NAMES,
  PROPERTY_PLACE_MASK,
  PROPERTY_SEEN_BIT,
  WILL_PLACE,
  placeName,
} from './codec-util.js';

export interface DecoderOptions {
  /**
   * Protocol version of the stream. A server-side decoder starts without one and takes it from
   * the CONNECT it decodes (every later packet is decoded for that version). A client sets it.
   */
  protocolVersion?: ProtocolVersion;
  /** Largest whole packet (fixed header included) accepted; larger ones fail with 0x95 from the fixed header alone. */
  maxPacketSize?: number;
  /** 'server' decodes packets a client sends (CONNECT, PUBLISH, SUBSCRIBE, ...); 'client' those a server sends. Default 'server'. */
  role?: 'server' | 'client';
}

// Packet types each role receives, as bit masks (bit n = packet type n).
const SERVER_RECEIVES =
  (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 12) | (1 << 14) | (1 << 15);
const CLIENT_RECEIVES =
  (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 9) | (1 << 11) | (1 << 13) | (1 << 14) | (1 << 15);

/** Largest straddling packet body buffered in one allocation of its full length. */
const BODY_WHOLE_BYTES = 64 * 1024;

/** Longest topic name remembered for the next PUBLISH (longer ones are decoded every time). */
const MEMO_TOPIC_BYTES = 128;
const utf8Slice = (Buffer.prototype as unknown as { utf8Slice(start: number, end: number): string }).utf8Slice;

// The getters of `buffer` and `byteOffset` themselves: Buffer#subarray reads both as properties of the
// Buffer, loads that V8's optimising compiler leaves generic (a LoadIC call each in --print-opt-code).
const TYPED_ARRAY = Object.getPrototypeOf(Uint8Array.prototype) as object;
const bufferOf = Object.getOwnPropertyDescriptor(TYPED_ARRAY, 'buffer')!.get! as (this: Uint8Array) => ArrayBuffer;
const byteOffsetOf = Object.getOwnPropertyDescriptor(TYPED_ARRAY, 'byteOffset')!.get! as (this: Uint8Array) => number;

/** buf[start, end) as a Buffer sharing its memory: what buf.subarray(start, end) gives, for a PUBLISH payload. */
function view(buf: Buffer, start: number, end: number): Buffer {
  return Buffer.from(bufferOf.call(buf), byteOffsetOf.call(buf) + start, end - start);
}

// ---------------------------------------------------------------------------------------------
// Cursor over the body being decoded. Module-level: decoding is synchronous and never calls
// user code, so one cursor serves every decoder instance without allocation.
let B: Buffer = Buffer.alloc(0);
let P = 0;
let E = 0;
/** Packet type being decoded (for error messages). */
let T = 0;

function malformed(message: string): MqttProtocolError {
  return new MqttProtocolError(0x81, `${PACKET_NAMES[T]} ${message}`, { packetType: T });
}
function protocolError(message: string): MqttProtocolError {
  return new MqttProtocolError(0x82, `${PACKET_NAMES[T]} ${message}`, { packetType: T });
}

function readByte(what: string): number {
  if (P >= E) throw malformed(`${what} runs past the end of the packet`);
  return B[P++]!;
}

function readU16(what: string): number {
  if (P + 2 > E) throw malformed(`${what} runs past the end of the packet`);
  const v = (B[P]! << 8) | B[P + 1]!;
  P += 2;
  return v;
}

function readU32(what: string): number {
  if (P + 4 > E) throw malformed(`${what} runs past the end of the packet`);
  const v = B.readUInt32BE(P);
  P += 4;
  return v;
}

/** Variable Byte Integer (spec 1.5.5): at most 4 bytes, minimal encoding [MQTT-1.5.5-1]. */
function readVarint(what: string): number {
  let value = 0;
  let mul = 1;
  for (let i = 0; i < 4; i++) {
    if (P >= E) throw malformed(`${what} runs past the end of the packet`);
    const b = B[P++]!;
    value += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) {
      if (b === 0 && i > 0) throw malformed(`${what} is not minimally encoded [MQTT-1.5.5-1]`);
      return value;
    }
    mul *= 128;
  }
  throw malformed(`${what} is a variable byte integer longer than 4 bytes`);
}

/** Validates decoded UTF-8 string data [MQTT-1.5.4-1] [MQTT-1.5.4-2]. */
function checkUtf8(s: string, start: number, end: number, what: string): void {
  // Ill-formed input decodes to U+FFFD; only then is the (rarer) full check needed, since a
  // well-formed string may hold U+FFFD itself.
  if (s.includes('\uFFFD') && !isUtf8(B.subarray(start, end))) {
    throw malformed(`${what} is not well-formed UTF-8 [MQTT-1.5.4-1]`);
  }
  if (s.includes('\u0000')) throw malformed(`${what} contains U+0000 [MQTT-1.5.4-2]`);
}

function readString(what: string): string {
  const n = readU16(what);
  if (P + n > E) throw malformed(`${what} runs past the end of the packet`);
  const start = P;
  P += n;
  if (n === 0) return '';
  const s = utf8Slice.call(B, start, P);
  checkUtf8(s, start, P, what);
  return s;
}

/** Binary Data, copied (used for fields kept long: passwords, will payloads, property data). */
function readBinaryCopy(what: string): Buffer {
  const n = readU16(what);
  if (P + n > E) throw malformed(`${what} runs past the end of the packet`);
  const out = Buffer.allocUnsafe(n);
  B.copy(out, 0, P, P + n);
  P += n;
  return out;
}

function hasWildcard(s: string): boolean {
  return s.includes('+') || s.includes('#');
}

function expectEnd(): void {
  if (P !== E) throw malformed(`has ${E - P} unexpected byte(s) at the end`);
}

function checkPacketId(id: number): number {
  if (id === 0) throw protocolError('packet identifier must not be 0 [MQTT-2.2.1-3]');
  return id;
}

function checkReasonCode(code: number): number {
  const allowed = ALLOWED_REASON_CODES[T];
  if (allowed !== undefined && allowed[code] !== 1) {
    throw protocolError(`reason code 0x${code.toString(16).padStart(2, '0')} is not defined for this packet`);
  }
  return code;
}

/**
 * Properties (spec 2.2.2): length, then identifier/value pairs. `place` is the packet type, or
 * WILL_PLACE for the will properties. `clientPublish` marks a PUBLISH sent by a client, which
 * must not carry a Subscription Identifier [MQTT-3.3.4-6].
 */
function readProperties(place: number, clientPublish: boolean): Properties {
  const len = readVarint('property length');
  if (P + len > E) throw malformed('properties run past the end of the packet');
  const out: Properties = {};
  if (len === 0) return out;
  const savedEnd = E;
  E = P + len;
  const where = placeName(place);
  let seen = 0;
  while (P < E) {
    const id = B[P++]!;
    const def = PROPERTY_BY_ID[id];
    if (def === undefined) throw malformed(`property identifier 0x${id.toString(16).padStart(2, '0')} is not defined`);
    if ((PROPERTY_PLACE_MASK[id]! & (1 << place)) === 0 || (clientPublish && id === 0x0b)) {
      throw protocolError(`property ${def.name} is not allowed in ${where}`);
    }
    const bit = PROPERTY_SEEN_BIT[id]!;
    if ((seen & bit) !== 0 && !(id === 0x26 || (id === 0x0b && place === 3))) {
      throw protocolError(`property ${def.name} appears more than once in ${where}`);
    }
    seen |= bit;
    const name = `property ${def.name}`;
    switch (def.type) {
      case 'byte': {
        const v = readByte(name);
        // Every byte property of 5.0 is a 0/1 flag.
        if (v > 1) throw protocolError(`${name} has invalid value ${v}`);
        (out as Record<string, unknown>)[def.name] = v;
        break;
      }
      case 'twoByteInteger': {
        const v = readU16(name);
        if (v === 0 && id === 0x21) throw protocolError(`${name} must not be 0`);
        (out as Record<string, unknown>)[def.name] = v;
        break;
      }
      case 'fourByteInteger': {
        const v = readU32(name);
        if (v === 0 && id === 0x27) throw protocolError(`${name} must not be 0`);
        (out as Record<string, unknown>)[def.name] = v;
        break;
      }
      case 'variableByteInteger': {
        // Only subscriptionIdentifier.
        const v = readVarint(name);
        if (v === 0) throw protocolError(`${name} must not be 0`);
        const prev = out.subscriptionIdentifier;
        if (prev === undefined) out.subscriptionIdentifier = v;
        else if (typeof prev === 'number') out.subscriptionIdentifier = [prev, v];
        else prev.push(v);
        break;
      }
      case 'utf8String': {
        const v = readString(name);
        if (id === 0x08 && hasWildcard(v)) throw protocolError(`${name} contains a wildcard [MQTT-3.3.2-14]`);
        // A Response Topic is a Topic Name: at least one character [MQTT-4.7.3-1].
        if (id === 0x08 && v.length === 0) throw protocolError(`${name} is empty [MQTT-4.7.3-1]`);
        (out as Record<string, unknown>)[def.name] = v;
        break;
      }
      case 'utf8StringPair': {
        const k = readString(`${name} name`);
        const v = readString(`${name} value`);
        const pair: UserProperty = [k, v];
        if (out.userProperties === undefined) out.userProperties = [pair];
        else out.userProperties.push(pair);
        break;
      }
      case 'binaryData':
        (out as Record<string, unknown>)[def.name] = readBinaryCopy(name);
        break;
    }
  }
  E = savedEnd;
  return out;
}

// ---------------------------------------------------------------------------------------------

export class PacketDecoder {
  protocolVersion: ProtocolVersion | undefined;
  maxPacketSize: number;
  readonly role: 'server' | 'client';
  private readonly receives: number;
  /** Bytes of a fixed header split across chunks; allocated on first need (a Buffer per idle connection costs ~200 B). */
  private header: Buffer | undefined = undefined;
  private headerLength = 0;
  /** Body of a packet that straddles chunks: its exact size up to 64 KiB, grown as bytes arrive beyond. */
  private body: Buffer | undefined = undefined;
  private bodyFilled = 0;
  /** Length of the straddling packet's body (its buffer may still be shorter: see startBody). */
  private bodyLength = 0;
  private bodyFirstByte = 0;
  private failure: unknown = undefined;
  /**
   * The last PUBLISH topic name, and its bytes: most clients publish to the same topic again and again, and
   * the same bytes give back the same string, already validated, and already hashed by the Maps it was
   * looked up in. The bytes go in one buffer of MEMO_TOPIC_BYTES, made on the first PUBLISH (nothing for a
   * connection that only subscribes), so a client alternating between topics allocates nothing per message.
   */
  private lastTopic = '';
  private lastTopicBytes: Buffer | undefined = undefined;
  private lastTopicLength = -1;

  constructor(options: DecoderOptions = {}) {
    this.protocolVersion = options.protocolVersion;
    this.maxPacketSize = options.maxPacketSize ?? 268_435_460;
    this.role = options.role ?? 'server';
    this.receives = this.role === 'server' ? SERVER_RECEIVES : CLIENT_RECEIVES;
  }

  /**
   * Feeds bytes; calls `onPacket` (with `thisArg` as `this`) synchronously for each complete packet, in
   * order. A method and its object instead of a closure: one closure per connection costs ~100 B.
   * Throws MqttProtocolError at the first invalid packet (after delivering the valid ones before it);
   * the decoder is then unusable.
   */
  feed<T = undefined>(chunk: Buffer, onPacket: (this: T, packet: Packet) => void, thisArg?: T): void {
    if (this.failure !== undefined) throw this.failure;
    try {
      this.feedChunk(chunk, onPacket as (this: unknown, packet: Packet) => void, thisArg);
    } catch (err) {
      this.failure = err;
      this.body = undefined;
      throw err;
    }
  }

  /** Bytes received but not yet part of a complete packet. */
  get bufferedBytes(): number {
    return this.headerLength + this.bodyFilled;
  }

  private feedChunk(chunk: Buffer, onPacket: (this: unknown, packet: Packet) => void, thisArg: unknown): void {
    const len = chunk.length;
    let pos = 0;

    if (this.body !== undefined) {
      // Continue a straddling body.
      let body = this.body;
      const bodyLength = this.bodyLength;
      const missing = bodyLength - this.bodyFilled;
      const take = len < missing ? len : missing;
      if (this.bodyFilled + take > body.length) {
        // A large body grows as its bytes arrive (see startBody): double it, up to the packet's length.
        const grown = Buffer.allocUnsafe(Math.min(bodyLength, Math.max(body.length * 2, this.bodyFilled + take)));
        body.copy(grown, 0, 0, this.bodyFilled);
        this.body = body = grown;
      }
      chunk.copy(body, this.bodyFilled, 0, take);
      this.bodyFilled += take;
      if (take < missing) return;
      pos = take;
      this.body = undefined;
      this.bodyFilled = 0;
      onPacket.call(thisArg, this.decodePacket(this.bodyFirstByte, body, 0, bodyLength));
    } else if (this.headerLength > 0) {
      // Continue a straddling fixed header: append remaining-length bytes until the last one.
      const header = this.header!;
      for (;;) {
        if (pos >= len) return;
        if (this.headerLength === 5) {
          // Type byte and four length bytes, the last still saying "more follows".
          T = header[0]! >> 4;
          throw malformed('remaining length is longer than 4 bytes');
        }
        const b = chunk[pos++]!;
        header[this.headerLength++] = b;
        if ((b & 0x80) === 0) break;
      }
      const first = header[0]!;
      const headerLength = this.headerLength;
      let remaining = 0;
      let mul = 1;
      for (let i = 1; i < headerLength; i++) {
        remaining += (header[i]! & 0x7f) * mul;
        mul *= 128;
      }
      this.headerLength = 0;
      this.checkFixedHeader(first, headerLength, remaining, header[headerLength - 1]!);
      if (len - pos < remaining) {
        this.startBody(first, remaining, chunk, pos);
        return;
      }
      const bodyStart = pos;
      pos += remaining;
      onPacket.call(thisArg, this.decodePacket(first, chunk, bodyStart, pos));
    }

    while (pos < len) {
      const first = chunk[pos]!;
      if (pos + 1 >= len) {
        (this.header ??= Buffer.alloc(5))[0] = first;
        this.headerLength = 1;
        return;
      }
      let b = chunk[pos + 1]!;
      let remaining = b & 0x7f;
      let headerLength = 2;
      if (b & 0x80) {
        let mul = 128;
        for (;;) {
          // Checked before the end of the chunk, so a fifth length byte is refused however the bytes are split.
          if (headerLength === 5) {
            T = first >> 4;
            throw malformed('remaining length is longer than 4 bytes');
          }
          if (pos + headerLength >= len) {
            // Header straddles the chunk: keep its bytes.
            chunk.copy((this.header ??= Buffer.alloc(5)), 0, pos, len);
            this.headerLength = len - pos;
            return;
          }
          b = chunk[pos + headerLength]!;
          headerLength++;
          remaining += (b & 0x7f) * mul;
          if ((b & 0x80) === 0) break;
          mul *= 128;
        }
      }
      this.checkFixedHeader(first, headerLength, remaining, b);
      const bodyStart = pos + headerLength;
      const bodyEnd = bodyStart + remaining;
      if (bodyEnd > len) {
        this.startBody(first, remaining, chunk, bodyStart);
        return;
      }
      pos = bodyEnd;
      onPacket.call(thisArg, this.decodePacket(first, chunk, bodyStart, bodyEnd));
    }
  }

  private startBody(first: number, remaining: number, chunk: Buffer, from: number): void {
    // A body up to BODY_WHOLE_BYTES gets its exact buffer at once; a larger one starts at twice what has
    // arrived and grows, so a header announcing 256 MB reserves nothing its sender has not sent.
    const have = chunk.length - from;
    const body = Buffer.allocUnsafe(remaining <= BODY_WHOLE_BYTES ? remaining : Math.min(remaining, Math.max(BODY_WHOLE_BYTES, have * 2)));
    chunk.copy(body, 0, from, chunk.length);
    this.body = body;
    this.bodyLength = remaining;
    this.bodyFilled = have;
    this.bodyFirstByte = first;
  }

  /** Validates the fixed header (type, flags, role, size) before any body byte is buffered. */
  private checkFixedHeader(first: number, headerLength: number, remaining: number, lastLengthByte: number): void {
    const type = first >> 4;
    const flags = first & 0x0f;
    T = type;
    if (type === 0) throw malformed('packet type 0 is reserved');
    if (type === 15 && (this.protocolVersion ?? 4) !== 5) {
      throw malformed('packet type 15 is reserved in MQTT 3.1.x');
    }
    if ((this.receives & (1 << type)) === 0) {
      throw protocolError(`is never sent to a ${this.role === 'server' ? 'server' : 'client'}`);
    }
    if (type === 3) {
      const qos = (flags >> 1) & 3;
      if (qos === 3) throw malformed('QoS 3 is not allowed [MQTT-3.3.1-4]');
      if (qos === 0 && (flags & 8) !== 0) throw malformed('has DUP set with QoS 0 [MQTT-3.3.1-2]');
    } else {
      const expected = type === 6 || type === 8 || type === 10 ? 2 : 0;
      // MQTT 3.1 sets DUP on a resent PUBREL, SUBSCRIBE or UNSUBSCRIBE (3.1 section 2.1); 3.1.1 forbids it.
      if (flags !== expected && !(expected === 2 && flags === 0x0a && this.protocolVersion === 3)) {
        throw malformed(`fixed header flags must be 0b${expected.toString(2).padStart(4, '0')} [MQTT-2.2.2-2]`);
      }
    }
    if (headerLength > 2 && lastLengthByte === 0) throw malformed('remaining length is not minimally encoded [MQTT-1.5.5-1]');
    if (headerLength + remaining > this.maxPacketSize) {
      throw new MqttProtocolError(
        0x95,
        `${PACKET_NAMES[type]} of ${headerLength + remaining} bytes exceeds the maximum packet size ${this.maxPacketSize}`,
        { packetType: type },
      );
    }
  }

  private decodePacket(first: number, buf: Buffer, start: number, end: number): Packet {
    const type = first >> 4;
    if (type === 3) return this.decodePublish(first, buf, start, end);
    B = buf;
    P = start;
    E = end;
    T = type;
    const v5 = (this.protocolVersion ?? 4) === 5;
    switch (type) {
      case 1:
        return this.decodeConnect();
      case 2:
        return decodeConnack(v5, this.protocolVersion === 3);
      case 4:
      case 5:
      case 6:
      case 7: {
        const packetId = checkPacketId(readU16('packet identifier'));
        if (!v5) {
          expectEnd();
          return { type, packetId };
        }
        const reasonCode = P < E ? checkReasonCode(B[P++]!) : 0;
        const properties = P < E ? readProperties(type, false) : {};
        expectEnd();
        return { type, packetId, reasonCode, properties };
      }
      case 8:
        return decodeSubscribe(v5);
      case 9:
        return decodeSuback(v5);
      case 10:
        return decodeUnsubscribe(v5);
      case 11: {
        const packetId = checkPacketId(readU16('packet identifier'));
        if (!v5) {
          expectEnd();
          return { type: 11, packetId };
        }
        const properties = readProperties(11, false);
        const reasonCodes: number[] = [];
        while (P < E) reasonCodes.push(checkReasonCode(B[P++]!));
        if (reasonCodes.length === 0) throw protocolError('has no reason codes');
        return { type: 11, packetId, reasonCodes, properties };
      }
      case 12:
      case 13:
        expectEnd();
        return { type };
      case 14:
      case 15: {
        if (!v5) {
          expectEnd();
          return { type: 14 };
        }
        const reasonCode = P < E ? checkReasonCode(B[P++]!) : 0;
        const properties = P < E ? readProperties(type, false) : {};
        expectEnd();
        return { type, reasonCode, properties };
      }
      default:
        throw malformed('has an unknown packet type');
    }
  }

  /** The topic name in buf[start, end): the last one's string when the bytes are the same, else decoded and checked. */
  private topicName(buf: Buffer, start: number, end: number): string {
    const length = end - start;
    if (length === 0) return '';
    if (length === this.lastTopicLength) {
      const known = this.lastTopicBytes!;
      let i = 0;
      while (i < length && buf[start + i] === known[i]) i++;
      if (i === length) return this.lastTopic;
    }
    const topic = utf8Slice.call(buf, start, end);
    B = buf;
    checkUtf8(topic, start, end, 'topic name');
    if (topic.includes('+') || topic.includes('#')) {
      throw new MqttProtocolError(0x90, 'PUBLISH topic name contains a wildcard [MQTT-3.3.2-2]', { packetType: 3 });
    }
    if (length <= MEMO_TOPIC_BYTES) {
      // A byte loop: Buffer#copy makes a view per call, which costs more than copying a short topic.
      const bytes = (this.lastTopicBytes ??= Buffer.allocUnsafeSlow(MEMO_TOPIC_BYTES));
      for (let i = 0; i < length; i++) bytes[i] = buf[start + i]!;
      this.lastTopicLength = length;
      this.lastTopic = topic;
    }
    return topic;
  }

  private decodePublish(first: number, buf: Buffer, start: number, end: number): PublishPacket {
    T = 3;
    if (start + 2 > end) {
      throw new MqttProtocolError(0x81, 'PUBLISH topic name runs past the end of the packet', { packetType: 3 });
    }
    const topicEnd = start + 2 + ((buf[start]! << 8) | buf[start + 1]!);
    if (topicEnd > end) {
      throw new MqttProtocolError(0x81, 'PUBLISH topic name runs past the end of the packet', { packetType: 3 });
    }
    const topic = this.topicName(buf, start + 2, topicEnd);
    B = buf; // the properties below are read through B
    const qos = ((first >> 1) & 3) as QoS;
    let pos = topicEnd;
    let packetId = 0;
    if (qos !== 0) {
      if (pos + 2 > end) {
        throw new MqttProtocolError(0x81, 'PUBLISH packet identifier runs past the end of the packet', { packetType: 3 });
      }
      packetId = (buf[pos]! << 8) | buf[pos + 1]!;
      pos += 2;
      if (packetId === 0) {
        throw new MqttProtocolError(0x82, 'PUBLISH packet identifier must not be 0 [MQTT-2.2.1-3]', { packetType: 3 });
      }
    }
    if (this.protocolVersion === 5) {
      P = pos;
      E = end;
      // Most PUBLISHes carry no properties: no object for them (undefined means none, as in 3.1.1).
      let properties: Properties | undefined;
      if (P < E && buf[P] === 0) P++;
      else properties = readProperties(3, this.role === 'server');
      if (topic.length === 0 && properties?.topicAlias === undefined) {
        throw new MqttProtocolError(0x82, 'PUBLISH topic name is empty and there is no topic alias', { packetType: 3 });
      }
      const payload = view(buf, P, end);
      return qos === 0
        ? { type: 3, topic, payload, qos, retain: (first & 1) === 1, dup: false, properties }
        : { type: 3, topic, payload, qos, retain: (first & 1) === 1, dup: (first & 8) !== 0, packetId, properties };
    }
    if (topic.length === 0) {
      throw new MqttProtocolError(0x82, 'PUBLISH topic name is empty [MQTT-4.7.3-1]', { packetType: 3 });
    }
    const payload = view(buf, pos, end);
    return qos === 0
      ? { type: 3, topic, payload, qos, retain: (first & 1) === 1, dup: false }
      : { type: 3, topic, payload, qos, retain: (first & 1) === 1, dup: (first & 8) !== 0, packetId };
  }

  private decodeConnect(): ConnectPacket {
    const protocolName = readString('protocol name');
    const level = readByte('protocol level');
    if (protocolName !== 'MQTT' && protocolName !== 'MQIsdp') {
      // Not MQTT at all: close without a CONNACK, as Mosquitto does [MQTT-3.1.2-1] (a CONNACK 0x01 is for a
      // known protocol name at a level this server does not support [MQTT-3.1.2-2]).
      throw new MqttProtocolError(0x82, `CONNECT protocol name ${JSON.stringify(protocolName)} is not MQTT [MQTT-3.1.2-1]`, { packetType: 1 });
    }
    if (!((protocolName === 'MQTT' && (level === 4 || level === 5)) || (protocolName === 'MQIsdp' && level === 3))) {
      throw new MqttProtocolError(0x84, `CONNECT protocol name "${protocolName}" with level ${level} is not supported`, {
        packetType: 1,
        requestedProtocolLevel: level,
      });
    }
    try {
      return this.decodeConnectBody(protocolName, level as ProtocolVersion);
    } catch (err) {
      // The level is known: a 5.0 server can answer a malformed 5.0 CONNECT with CONNACK and its reason code.
      if (err instanceof MqttProtocolError && err.requestedProtocolLevel === undefined) {
        throw new MqttProtocolError(err.reasonCode, err.message, { packetType: 1, requestedProtocolLevel: level });
      }
      throw err;
    }
  }

  private decodeConnectBody(protocolName: string, protocolVersion: ProtocolVersion): ConnectPacket {
    const level = protocolVersion;
    const v5 = level === 5;
    const flags = readByte('connect flags');
    if (flags & 1) throw malformed('reserved connect flag is set [MQTT-3.1.2-3]');
    const willFlag = (flags & 0x04) !== 0;
    const willQoS = (flags >> 3) & 3;
    const willRetain = (flags & 0x20) !== 0;
    const passwordFlag = (flags & 0x40) !== 0;
    const usernameFlag = (flags & 0x80) !== 0;
    if (!willFlag && (willQoS !== 0 || willRetain)) {
      throw malformed('will QoS / will retain set without the will flag [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15]');
    }
    if (willQoS === 3) throw malformed('will QoS 3 is not allowed [MQTT-3.1.2-14]');
    if (!v5 && passwordFlag && !usernameFlag) throw malformed('password flag set without user name flag [MQTT-3.1.2-22]');
    const keepAlive = readU16('keep alive');
    const properties = v5 ? readProperties(1, false) : undefined;
    const clientId = readString('client identifier');
    let will: WillMessage | undefined;
    if (willFlag) {
      const willProperties = v5 ? readProperties(WILL_PLACE, false) : undefined;
      const topic = readString('will topic');
      if (topic.length === 0 || hasWildcard(topic)) {
        throw new MqttProtocolError(0x90, 'CONNECT will topic is empty or contains a wildcard', { packetType: 1 });
      }
      const payload = readBinaryCopy('will payload');
      will = { topic, payload, qos: willQoS as QoS, retain: willRetain };
      if (willProperties !== undefined) will.properties = willProperties;
    }
    const username = usernameFlag ? readString('user name') : undefined;
    const password = passwordFlag ? readBinaryCopy('password') : undefined;
    expectEnd();
    const packet: ConnectPacket = { type: 1, protocolName, protocolVersion, clean: (flags & 2) !== 0, keepAlive, clientId };
    if (username !== undefined) packet.username = username;
    if (password !== undefined) packet.password = password;
    if (will !== undefined) packet.will = will;
    if (properties !== undefined) packet.properties = properties;
    if (this.protocolVersion === undefined && this.role === 'server') this.protocolVersion = protocolVersion;
    return packet;
  }
}

function decodeConnack(v5: boolean, v31: boolean): ConnackPacket {
  const ackFlags = readByte('acknowledge flags');
  if (ackFlags & 0xfe) throw malformed('reserved acknowledge flags are set [MQTT-3.2.2-1]');
  const code = readByte(v5 ? 'reason code' : 'return code');
  if (v5 && E - P === 0 && code >= 1 && code <= 5) {
    // A 3.1.x-only server refusing a 5.0 CONNECT answers in its own format (no properties): report
    // what it means (e.g. 1 → 0x84 Unsupported Protocol Version) instead of a protocol error.
    return { type: 2, sessionPresent: false, reasonCode: v3ConnackToV5(code), properties: {} };
  }
  if (!v5) {
    if (code > 5) throw malformed(`return code ${code} is reserved`);
    expectEnd();
    // MQTT 3.1 has no Session Present: that byte is reserved there (the encoder writes 0), so it means nothing.
    return { type: 2, sessionPresent: !v31 && ackFlags === 1, reasonCode: code };
  }
  checkReasonCode(code);
  const properties = readProperties(2, false);
  expectEnd();
  return { type: 2, sessionPresent: ackFlags === 1, reasonCode: code, properties };
}

function decodeSubscribe(v5: boolean): Packet {
  const packetId = checkPacketId(readU16('packet identifier'));
  const properties = v5 ? readProperties(8, false) : undefined;
  const subscriptions: Subscription[] = [];
  while (P < E) {
    const topicFilter = readString('topic filter');
    // 3.1.1 has no reason code for a bad filter: a zero-length one is a protocol violation that closes the
    // connection [MQTT-4.7.3-1] [MQTT-4.8.0-1]. (5.0 answers it in the SUBACK: 0x8F.)
    if (!v5 && topicFilter.length === 0) throw protocolError('topic filter is empty [MQTT-4.7.3-1]');
    const options = readByte('subscription options');
    const qos = options & 3;
    if (qos === 3) throw malformed('subscription QoS 3 is not allowed [MQTT-3.8.3-4]');
    if (v5) {
      if (options & 0xc0) throw malformed('reserved subscription option bits are set [MQTT-3.8.3-5]');
      const retainHandling = (options >> 4) & 3;
      if (retainHandling === 3) throw malformed('retain handling 3 is not allowed');
      subscriptions.push({
        topicFilter,
        qos: qos as QoS,
        noLocal: (options & 4) !== 0,
        retainAsPublished: (options & 8) !== 0,
        retainHandling: retainHandling as 0 | 1 | 2,
      });
    } else {
      if (options & 0xfc) throw malformed('reserved subscription option bits are set [MQTT-3.8.3-4]');
      subscriptions.push({ topicFilter, qos: qos as QoS });
    }
  }
  if (subscriptions.length === 0) throw protocolError('has no topic filter [MQTT-3.8.3-3]');
  return properties === undefined ? { type: 8, packetId, subscriptions } : { type: 8, packetId, subscriptions, properties };
}

function decodeSuback(v5: boolean): Packet {
  const packetId = checkPacketId(readU16('packet identifier'));
  const properties = v5 ? readProperties(9, false) : undefined;
  const reasonCodes: number[] = [];
  while (P < E) {
    const code = B[P++]!;
    if (v5) checkReasonCode(code);
    else if (code > 2 && code !== 0x80) throw malformed(`return code 0x${code.toString(16)} is not allowed [MQTT-3.9.3-2]`);
    reasonCodes.push(code);
  }
  if (reasonCodes.length === 0) throw protocolError('has no return codes');
  return properties === undefined ? { type: 9, packetId, reasonCodes } : { type: 9, packetId, reasonCodes, properties };
}

function decodeUnsubscribe(v5: boolean): Packet {
  const packetId = checkPacketId(readU16('packet identifier'));
  const properties = v5 ? readProperties(10, false) : undefined;
  const topicFilters: string[] = [];
  while (P < E) {
    const filter = readString('topic filter');
    // As in SUBSCRIBE: 3.1.1 can only close the connection on an invalid filter [MQTT-4.7.3-1] [MQTT-4.8.0-1]
    // (Mosquitto does too); 5.0 answers it per filter in the UNSUBACK.
    if (!v5 && !isValidTopicFilter(filter)) throw protocolError(`topic filter ${JSON.stringify(filter.slice(0, 100))} is ${filter.length === 0 ? 'empty' : 'not a valid topic filter'} [MQTT-4.7.3-1] [MQTT-4.7.1-1]`);
    topicFilters.push(filter);
  }
  if (topicFilters.length === 0) throw protocolError('has no topic filter [MQTT-3.10.3-2]');
  return properties === undefined ? { type: 10, packetId, topicFilters } : { type: 10, packetId, topicFilters, properties };
}
