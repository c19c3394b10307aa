// One message for one node as it goes in a stream entry (forwarder.ts): flags, its number, topic, publisher,
// expiry, shared groups asked of the receiver, properties, payload. A batch is such messages one after the
// other. The number makes a message's identity cluster-wide with the origin node and epoch of its batch:
// (origin, epoch, number), the same in every node's copy. A message one node hands on to another for a
// session that moved there (handover.ts) keeps its identity (the relay's origin and epoch are written in it)
// and names the sessions it is for.
import { Buffer } from 'node:buffer';
import type { Message } from '../broker/message.js';
import type { RemoteDelivery } from '../broker/store/types.js';
import type { QoS } from '../protocol/constants.js';
import type { Properties } from '../protocol/packets.js';

const FLAG_RETAIN = 4;
const FLAG_PLAIN = 8;
const FLAG_PROPS = 16;
const FLAG_EXPIRY = 32;
const FLAG_FROM = 64;
/** A handed-on message: its first node and epoch, and the sessions it is for, follow the number. */
const FLAG_RELAY = 128;

/** A message's identity cluster-wide: the node it was published on, that node's life, its number there. */
export interface MessageId {
  origin: string;
  epoch: string;
  no: number;
}

/** A message identity as one string (a key of maps and sets, and what the Redis session store keeps with a message). */
export const identityKey = (id: MessageId): string => `${id.origin}\n${id.epoch}\n${id.no}`;

/** What a handed-on message carries besides the message: its identity and the sessions it is for. */
export interface Relay {
  id: MessageId;
  only: readonly string[];
}

/** One message for one node: what the receiving node needs to deliver it locally. */
export function encodeForward(message: Message, no: number, plain: boolean, groups: readonly string[] | undefined, now: number, relay?: Relay): Buffer {
  let flags = message.qos | (message.retain ? FLAG_RETAIN : 0) | (plain ? FLAG_PLAIN : 0);
  const topicLen = Buffer.byteLength(message.topic);
  let size = 1 + 4 + 2 + topicLen + 1 + 4 + message.payload.length;
  if (relay !== undefined) {
    flags |= FLAG_RELAY;
    size += 2 + Buffer.byteLength(relay.id.origin) + 2 + Buffer.byteLength(relay.id.epoch) + 2;
    for (const c of relay.only) size += 2 + Buffer.byteLength(c);
  }
  let fromLen = 0;
  if (message.from !== undefined) {
    flags |= FLAG_FROM;
    fromLen = Buffer.byteLength(message.from);
    size += 2 + fromLen;
  }
  if (message.expiresAt !== undefined) {
    flags |= FLAG_EXPIRY;
    size += 4;
  }
  let props: string | undefined;
  if (message.properties !== undefined) {
    flags |= FLAG_PROPS;
    props = JSON.stringify(message.properties);
    size += 4 + Buffer.byteLength(props);
  }
  if (groups !== undefined) for (const g of groups) size += 2 + Buffer.byteLength(g);
  const out = Buffer.allocUnsafe(size);
  let o = out.writeUInt8(flags, 0);
  o = out.writeUInt32BE((relay?.id.no ?? no) >>> 0, o);
  if (relay !== undefined) {
    o = writeString(out, relay.id.origin, o);
    o = writeString(out, relay.id.epoch, o);
    o = out.writeUInt16BE(relay.only.length, o);
    for (const c of relay.only) o = writeString(out, c, o);
  }
  o = out.writeUInt16BE(topicLen, o);
  o += out.write(message.topic, o);
  if (message.from !== undefined) {
    o = out.writeUInt16BE(fromLen, o);
    o += out.write(message.from, o);
  }
  if (message.expiresAt !== undefined) o = out.writeUInt32BE(Math.max(0, Math.min(0xffffffff, message.expiresAt - now)), o);
  o = out.writeUInt8(groups?.length ?? 0, o);
  if (groups !== undefined) for (const g of groups) o = writeString(out, g, o);
  if (props !== undefined) {
    o = out.writeUInt32BE(Buffer.byteLength(props), o);
    o += out.write(props, o);
  }
  o = out.writeUInt32BE(message.payload.length, o);
  message.payload.copy(out, o);
  return out;
}

function writeString(out: Buffer, s: string, o: number): number {
  const at = out.writeUInt16BE(Buffer.byteLength(s), o);
  return at + out.write(s, at);
}

function reviveBuffers(_key: string, v: unknown): unknown {
  if (typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) return Buffer.from((v as { data: number[] }).data);
  return v;
}

/**
 * Every message of a batch from `origin` (life `epoch`), in order, with its identity (`id`, one object reused
 * for every message: read it in the callback) and, for a handed-on one, the sessions it is for.
 */
export function decodeBatch(batch: Buffer, now: number, origin: string, epoch: string, each: (message: Message, remote: RemoteDelivery, id: MessageId) => void): void {
  let o = 0;
  const id: MessageId = { origin, epoch, no: 0 };
  const readString = (): string => {
    const n = batch.readUInt16BE(o);
    o += 2;
    return batch.toString('utf8', o, (o += n));
  };
  while (o < batch.length) {
    const flags = batch.readUInt8(o++);
    id.no = batch.readUInt32BE(o);
    o += 4;
    let only: Set<string> | undefined;
    if (flags & FLAG_RELAY) {
      id.origin = readString();
      id.epoch = readString();
      const count = batch.readUInt16BE(o);
      o += 2;
      only = new Set();
      for (let i = 0; i < count; i++) only.add(readString());
    } else {
      id.origin = origin;
      id.epoch = epoch;
    }
    const topic = readString();
    const from = flags & FLAG_FROM ? readString() : undefined;
    let expiresAt: number | undefined;
    if (flags & FLAG_EXPIRY) {
      expiresAt = now + batch.readUInt32BE(o);
      o += 4;
    }
    const groupCount = batch.readUInt8(o++);
    let groups: Set<string> | undefined;
    for (let i = 0; i < groupCount; i++) (groups ??= new Set()).add(readString());
    let properties: Properties | undefined;
    if (flags & FLAG_PROPS) {
      const n = batch.readUInt32BE(o);
      o += 4;
      properties = JSON.parse(batch.toString('utf8', o, (o += n)), reviveBuffers) as Properties;
    }
    const payloadLen = batch.readUInt32BE(o);
    o += 4;
    const payload = batch.subarray(o, (o += payloadLen));
    const message: Message = { topic, payload, qos: (flags & 3) as QoS, retain: (flags & FLAG_RETAIN) !== 0, properties, expiresAt, from };
    each(message, only === undefined ? { plain: (flags & FLAG_PLAIN) !== 0, groups } : { plain: true, groups: undefined, only }, id);
  }
}
