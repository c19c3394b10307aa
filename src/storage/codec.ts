// Rows <-> the broker's objects: JSON for the structured columns, with Buffers (correlation data,
// will payloads) kept as base64 so they come back as Buffers.
import { Buffer } from 'node:buffer';
import type { QoS } from '../protocol/constants.js';
import type { Properties } from '../protocol/packets.js';
import type { Message } from '../broker/message.js';

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
