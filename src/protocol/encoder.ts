// MQTT encoder: one typed packet in, one Buffer out, for a given protocol version.
import type { ProtocolVersion } from './constants.js';
import type { Packet, PublishPacket } from './packets.js';

/**
 * Encodes a packet for `version`. Fields a version lacks (5.0 properties and reason codes
 * toward 3.1.x) are left out. Throws MqttProtocolError for a packet that cannot be encoded
 * validly (e.g. QoS > 0 without packetId).
 */
export function encodePacket(packet: Packet, version: ProtocolVersion): Buffer {
  void packet;
  void version;
  throw new Error('not implemented');
}

/**
 * Encodes a PUBLISH once so the same Buffer can go to every subscriber of that version, QoS and
 * properties. For QoS > 0 each subscriber needs its own packet id: see `withPacketId`.
 */
export function encodePublish(packet: PublishPacket, version: ProtocolVersion): Buffer {
  void packet;
  void version;
  throw new Error('not implemented');
}

/** Offset of the packet identifier inside an encoded QoS 1/2 PUBLISH. */
export function publishPacketIdOffset(encoded: Buffer): number {
  void encoded;
  throw new Error('not implemented');
}

/** A copy of an encoded QoS 1/2 PUBLISH with another packet id (and the DUP flag set when `dup`). */
export function withPacketId(encoded: Buffer, packetId: number, dup = false): Buffer {
  void encoded;
  void packetId;
  void dup;
  throw new Error('not implemented');
}
