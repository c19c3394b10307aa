// Rows <-> the broker's objects: JSON for the structured columns, with Buffers (correlation data,
// will payloads) kept as base64 so they come back as Buffers.
import { Buffer } from 'node:buffer';
import type { QoS } from '../protocol/constants.js';
import type { Properties } from '../protocol/packets.js';
import type { Message } from '../broker/message.js';
import type { QueuedMessage } from '../broker/store/types.js';

const BUFFER_TAG = '$b64';

function replacer(this: unknown, key: string, value: unknown): unknown {
  // JSON.stringify has called Buffer#toJSON already: { type: 'Buffer', data: [...] }.
  if (value !== null && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    return { [BUFFER_TAG]: Buffer.from((value as { data: number[] }).data).toString('base64') };
  }
  return value;
}

function reviver(_key: string, value: unknown): unknown {
  if (value !== null && typeof value === 'object' && typeof (value as Record<string, unknown>)[BUFFER_TAG] === 'string') {
    return Buffer.from((value as Record<string, string>)[BUFFER_TAG]!, 'base64');
  }
  return value;
}

export function toJson(value: unknown): string | null {
  return value === undefined ? null : JSON.stringify(value, replacer);
}

export function fromJson<T>(text: string | null): T | undefined {
  if (text === null) return undefined;
  // A reviver slows JSON.parse down several times: only for the texts that hold a Buffer.
  return (text.includes(BUFFER_TAG) ? JSON.parse(text, reviver) : JSON.parse(text)) as T;
}

/** A messages or retained row. */
export interface MessageRow {
  topic: string;
  payload: Buffer;
  qos: number;
  retain?: number;
  properties: string | null;
  expires_at: number | null;
  from_client: string | null;
}

export function messageFromRow(row: MessageRow, retain: boolean): Message {
  return {
    topic: row.topic,
    payload: row.payload,
    qos: row.qos as QoS,
    retain,
    properties: fromJson<Properties>(row.properties),
    expiresAt: row.expires_at ?? undefined,
    from: row.from_client ?? undefined,
  };
}

export function idsToText(ids: readonly number[] | undefined): string | null {
  return ids === undefined ? null : ids.join(',');
}

export function idsFromText(text: string | null): number[] | undefined {
  return text === null || text === '' ? undefined : text.split(',').map(Number);
}

/**
 * A run: messages queued for one session in one commit group, one after the other (consecutive seqs), written
 * as one `queue_runs` row rather than a row each (schema version 4). Only the common message goes in a run
 * (no properties, expiry, subscription identifiers or share: `isPlain`); each is, little-endian:
 * u8 flags (1: retain as queued, 2: the message's retain, 4: has a sender), u8 QoS as queued, u8 the message's
 * QoS, f64 queued at, u32 topic length, topic (UTF-8), u32 payload length, payload, [u32 sender length, sender].
 */
export function isPlain(item: QueuedMessage): boolean {
  const m = item.message;
  return item.subscriptionIds === undefined && item.shareKey === undefined && m.properties === undefined && m.expiresAt === undefined;
}

/** Reused between runs (better-sqlite3 copies a bound blob): no buffer per run but the one SQLite keeps. */
let scratch = Buffer.allocUnsafe(64 * 1024);

export function encodeRun(items: readonly QueuedMessage[]): Buffer {
  let size = 0;
  for (const item of items) {
    const m = item.message;
    size += 19 + Buffer.byteLength(m.topic) + m.payload.length + (m.from === undefined ? 0 : 4 + Buffer.byteLength(m.from));
  }
  if (size > scratch.length) scratch = Buffer.allocUnsafe(Math.max(size, scratch.length * 2));
  const b = scratch;
  let o = 0;
  for (const item of items) {
    const m = item.message;
    b[o] = (item.retain ? 1 : 0) | (m.retain ? 2 : 0) | (m.from === undefined ? 0 : 4);
    b[o + 1] = item.qos;
    b[o + 2] = m.qos;
    b.writeDoubleLE(item.queuedAt, o + 3);
    const topicLength = b.write(m.topic, o + 15);
    b.writeUInt32LE(topicLength, o + 11);
    o += 15 + topicLength;
    b.writeUInt32LE(m.payload.length, o);
    o += 4 + m.payload.copy(b, o + 4);
    if (m.from !== undefined) {
      const fromLength = b.write(m.from, o + 4);
      b.writeUInt32LE(fromLength, o);
      o += 4 + fromLength;
    }
  }
  const out = b.subarray(0, o);
  // A run far larger than usual (big payloads) does not keep its scratch buffer alive.
  if (scratch.length > 4 * 1024 * 1024) scratch = Buffer.allocUnsafe(64 * 1024);
  return out;
}

/** The messages of a run row, in order (their seqs: the row's seq, then one by one). */
export function decodeRun(b: Buffer, count: number): QueuedMessage[] {
  const out: QueuedMessage[] = [];
  let o = 0;
  for (let i = 0; i < count; i++) {
    const flags = b[o]!;
    const qos = b[o + 1]! as QoS;
    const messageQos = b[o + 2]! as QoS;
    const queuedAt = b.readDoubleLE(o + 3);
    const topicLength = b.readUInt32LE(o + 11);
    const topic = b.toString('utf8', o + 15, o + 15 + topicLength);
    o += 15 + topicLength;
    const payloadLength = b.readUInt32LE(o);
    // A copy: the message may outlive the rest of its run by far.
    const payload = Buffer.from(b.subarray(o + 4, o + 4 + payloadLength));
    o += 4 + payloadLength;
    let from: string | undefined;
    if ((flags & 4) !== 0) {
      const fromLength = b.readUInt32LE(o);
      from = b.toString('utf8', o + 4, o + 4 + fromLength);
      o += 4 + fromLength;
    }
    const message: Message = { topic, payload, qos: messageQos, retain: (flags & 2) !== 0, properties: undefined, expiresAt: undefined, from };
    out.push({ message, qos, retain: (flags & 1) !== 0, subscriptionIds: undefined, queuedAt, shareKey: undefined });
  }
  if (o !== b.length) throw new Error(`a queue run of ${count} messages has ${b.length - o} bytes left over`);
  return out;
}
