// The one CONNECT builder: the client and `petrel bench` both make their CONNECT here.
import type { Buffer } from 'node:buffer';
import { PacketType, encodePacket, isValidTopicName } from '../protocol/index.js';
import type { ConnectPacket, Properties } from '../protocol/index.js';
import { MqttClientError } from './errors.js';
import { encodeFailure } from './failures.js';
import type { ResolvedOptions } from './options.js';
import { toBuffer } from './options.js';

/** The options CONNECT is made of. */
export type ConnectFields = Pick<ResolvedOptions, 'protocolVersion' | 'clean' | 'keepAlive' | 'username' | 'password' | 'will' | 'properties' | 'sessionExpiry'>;

/** CONNECT for these options and Client ID (the client's may be server-assigned by now, bench's carries an index). */
export function buildConnectPacket(o: ConnectFields, clientId: string): ConnectPacket {
  const packet: ConnectPacket = {
    type: PacketType.CONNECT,
    protocolName: o.protocolVersion === 3 ? 'MQIsdp' : 'MQTT',
    protocolVersion: o.protocolVersion,
    clean: o.clean,
    keepAlive: o.keepAlive,
    clientId,
  };
  if (o.username !== undefined) packet.username = o.username;
  if (o.password !== undefined) packet.password = o.password;
  if (o.will) {
    packet.will = { topic: o.will.topic, payload: toBuffer(o.will.payload), qos: o.will.qos ?? 0, retain: o.will.retain ?? false };
    if (o.will.properties && o.protocolVersion === 5) packet.will.properties = o.will.properties;
  }
  if (o.protocolVersion === 5) {
    const properties: Properties = { ...o.properties };
    if (o.sessionExpiry !== undefined) properties.sessionExpiryInterval = o.sessionExpiry;
    if (Object.keys(properties).length > 0) packet.properties = properties;
  }
  return packet;
}

/** Encodes CONNECT, or throws INVALID_ARGUMENT saying which option cannot go on the wire. */
export function encodeConnect(packet: ConnectPacket, sessionExpiry: number | undefined): Buffer {
  if (sessionExpiry !== undefined && !(Number.isInteger(sessionExpiry) && sessionExpiry >= 0 && sessionExpiry <= 0xffffffff)) {
    throw new MqttClientError('INVALID_ARGUMENT', `sessionExpiry must be a whole number of seconds from 0 to 4294967295 (got ${String(sessionExpiry)})`);
  }
  if (packet.will && !isValidTopicName(packet.will.topic)) {
    throw new MqttClientError('INVALID_ARGUMENT', `invalid will topic "${packet.will.topic}": it must be non-empty and contain no + or #`);
  }
  try {
    return encodePacket(packet, packet.protocolVersion);
  } catch (err) {
    throw new MqttClientError('INVALID_ARGUMENT', encodeFailure('CONNECT', err), { cause: err });
  }
}
