// Packet builders shared by the tests that send packets by hand.
import { Buffer } from 'node:buffer';
import type { PublishPacket } from '../../src/protocol/packets.js';

/** A QoS 0 PUBLISH of `payload` (text) to `topic`; `extra` sets QoS, packet id, properties, ... */
export const pub = (topic: string, payload: string, extra: Partial<PublishPacket> = {}): PublishPacket => ({
  type: 3,
  topic,
  payload: Buffer.from(payload),
  qos: 0,
  retain: false,
  dup: false,
  ...extra,
});
