// Messages and wills as the cluster keeps them in Redis: JSON, with Buffers (payloads, Correlation Data) in
// base64. One format for the retained hash, its pub/sub events and the wills of each node.
import { Buffer } from 'node:buffer';
import type { ClientInfo } from '../broker/hooks.js';
import type { Message } from '../broker/message.js';
import type { WillMessage } from '../protocol/packets.js';

function replacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  // JSON.stringify has already turned a Buffer into { type, data: [...] }: the original is on `this`.
  return Buffer.isBuffer(raw) ? { $b: raw.toString('base64') } : value;
}

function reviver(_key: string, value: unknown): unknown {
  if (value !== null && typeof value === 'object' && typeof (value as { $b?: unknown }).$b === 'string') return Buffer.from((value as { $b: string }).$b, 'base64');
  return value;
}

export const encode = (value: unknown): string => JSON.stringify(value, replacer);
export const decode = <T>(text: string): T => JSON.parse(text, reviver) as T;

/** A retained message as stored: the Message fields (expiresAt absolute, ms since the epoch). */
export function encodeMessage(m: Message): string {
  return encode({ topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, properties: m.properties, expiresAt: m.expiresAt, from: m.from });
}

export function decodeMessage(text: string): Message {
  const m = decode<Message>(text);
  // Same field order as createMessage, so decoded messages share its hidden class.
  return { topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, properties: m.properties ?? undefined, expiresAt: m.expiresAt ?? undefined, from: m.from ?? undefined };
}

/** A will of a live connection (publishAt undefined) or one waiting out its Will Delay, as a node records it. */
export interface WillRecord {
  will: WillMessage;
  client: ClientInfo;
  /** When it is due (ms), once its connection ended; undefined while the connection is live. */
  publishAt: number | undefined;
  /** The session's expiry interval (s): a will waits min(Will Delay, session expiry) after its connection ends. */
  sessionExpiry: number;
}

export const encodeWill = (record: WillRecord): string => encode(record);
export const decodeWill = (text: string): WillRecord => decode<WillRecord>(text);
