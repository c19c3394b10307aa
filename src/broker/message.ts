// The broker's own view of an application message, independent of the packet it came in.
import { Buffer } from 'node:buffer';
import type { QoS } from '../protocol/constants.js';
import type { Properties } from '../protocol/packets.js';

export interface Message {
  topic: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  /**
   * 5.0 properties forwarded to subscribers: payload format, content type, response topic,
   * correlation data, user properties. Message Expiry is kept as `expiresAt` instead.
   */
  properties?: Properties;
  /** Absolute time (ms on the broker's clock) after which the message must not be delivered. */
  expiresAt?: number;
  /** Client ID of the publisher (for No Local), undefined for broker-made messages. */
  from?: string;
}

/** Properties that travel with a message from publisher to subscriber (3.3.2.3). */
const FORWARDED = new Set<string>(['payloadFormatIndicator', 'contentType', 'responseTopic', 'correlationData', 'userProperties']);

export function forwardedProperties(props: Properties | undefined): Properties | undefined {
  if (!props) return undefined;
  let out: Record<string, unknown> | undefined;
  // Over the keys present (usually none): cheaper than probing the five forwarded ones on every PUBLISH.
  for (const key in props) {
    const value = props[key as keyof Properties];
    if (value !== undefined && FORWARDED.has(key)) (out ??= {})[key] = value;
  }
  return out as Properties | undefined;
}

/**
 * Builds a message from what a PUBLISH, a will or the embedding API gives: only the properties that travel
 * are kept, and a Message Expiry Interval becomes an absolute `expiresAt` on the broker's clock.
 * `copyPayload` gives the message its own copy of the payload (see `detach`) without a second Message.
 */
export function createMessage(
  fields: { topic: string; payload: Buffer; qos: QoS; retain: boolean; properties?: Properties },
  from: string | undefined,
  now: number,
  copyPayload = false,
): Message {
  const expiry = fields.properties?.messageExpiryInterval;
  return {
    topic: fields.topic,
    payload: copyPayload ? Buffer.from(fields.payload) : fields.payload,
    qos: fields.qos,
    retain: fields.retain,
    properties: forwardedProperties(fields.properties),
    expiresAt: expiry !== undefined ? now + expiry * 1000 : undefined,
    from,
  };
}

/**
 * Whether a message waiting for a subscriber is past its lifetime: its Message Expiry Interval has passed
 * (strictly: an interval of 0 still reaches the subscribers it is routed to at once, as in Mosquitto), or
 * it has waited `offlineLimitMs` (offlineMessageExpiry; 0 = no limit) since `queuedAt`.
 */
export function messageExpired(message: Message, queuedAt: number | undefined, now: number, offlineLimitMs: number): boolean {
  if (message.expiresAt !== undefined && message.expiresAt < now) return true;
  return offlineLimitMs > 0 && queuedAt !== undefined && queuedAt + offlineLimitMs <= now;
}

/** A message that may outlive the current receive buffer (retained, queued) must own its payload. */
export function detach(message: Message): Message {
  // Written out rather than spread: same shape as createMessage's, and no spread on the per-message path.
  return {
    topic: message.topic,
    payload: Buffer.from(message.payload),
    qos: message.qos,
    retain: message.retain,
    properties: message.properties,
    expiresAt: message.expiresAt,
    from: message.from,
  };
}
