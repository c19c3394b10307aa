// One message for one node as it goes in a stream entry (forwarder.ts): flags, topic, publisher, expiry,
// shared groups asked of the receiver, properties, payload. A batch is such messages one after the other.
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

/** One message for one node: what the receiving node needs to deliver it locally. */
export function encodeForward(message: Message, plain: boolean, groups: readonly string[] | undefined, now: number): Buffer {
  let flags = message.qos | (message.retain ? FLAG_RETAIN : 0) | (plain ? FLAG_PLAIN : 0);
  const topicLen = Buffer.byteLength(message.topic);
  let size = 1 + 2 + topicLen + 1 + 4 + message.payload.length;
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
  o = out.writeUInt16BE(topicLen, o);
  o += out.write(message.topic, o);
  if (message.from !== undefined) {
    o = out.writeUInt16BE(fromLen, o);
    o += out.write(message.from, o);
  }
  if (message.expiresAt !== undefined) o = out.writeUInt32BE(Math.max(0, Math.min(0xffffffff, message.expiresAt - now)), o);
  o = out.writeUInt8(groups?.length ?? 0, o);
  if (groups !== undefined) {
    for (const g of groups) {
      o = out.writeUInt16BE(Buffer.byteLength(g), o);
      o += out.write(g, o);
    }
  }
  if (props !== undefined) {
    o = out.writeUInt32BE(Buffer.byteLength(props), o);
    o += out.write(props, o);
  }
  o = out.writeUInt32BE(message.payload.length, o);
  message.payload.copy(out, o);
  return out;
}

function reviveBuffers(_key: string, v: unknown): unknown {
  if (typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) return Buffer.from((v as { data: number[] }).data);
  return v;
}

/** Every message of a batch, in order. */
export function decodeBatch(batch: Buffer, now: number, each: (message: Message, remote: RemoteDelivery) => void): void {
  let o = 0;
  while (o < batch.length) {
    const flags = batch.readUInt8(o++);
    const topicLen = batch.readUInt16BE(o);
    o += 2;
    const topic = batch.toString('utf8', o, (o += topicLen));
    let from: string | undefined;
    if (flags & FLAG_FROM) {
      const n = batch.readUInt16BE(o);
      o += 2;
      from = batch.toString('utf8', o, (o += n));
    }
    let expiresAt: number | undefined;
    if (flags & FLAG_EXPIRY) {
      expiresAt = now + batch.readUInt32BE(o);
      o += 4;
    }
    const groupCount = batch.readUInt8(o++);
    let groups: Set<string> | undefined;
    for (let i = 0; i < groupCount; i++) {
      const n = batch.readUInt16BE(o);
      o += 2;
      (groups ??= new Set()).add(batch.toString('utf8', o, (o += n)));
    }
    let properties: Properties | undefined;
    if (flags & FLAG_PROPS) {
      const n = batch.readUInt32BE(o);
      o += 4;
      properties = JSON.parse(batch.toString('utf8', o, (o += n)), reviveBuffers) as Properties;
    }
    const payloadLen = batch.readUInt32BE(o);
    o += 4;
    const payload = batch.subarray(o, (o += payloadLen));
    each({ topic, payload, qos: (flags & 3) as QoS, retain: (flags & FLAG_RETAIN) !== 0, properties, expiresAt, from }, { plain: (flags & FLAG_PLAIN) !== 0, groups });
  }
}
