// MQTT 5.0 property identifiers (spec table 2-4): data type and the packets that may carry each.
import { PacketType } from './constants.js';
import type { Properties } from './packets.js';

export type PropertyDataType =
  | 'byte'
  | 'twoByteInteger'
  | 'fourByteInteger'
  | 'variableByteInteger'
  | 'utf8String'
  | 'utf8StringPair'
  | 'binaryData';

/** Where a property may appear. 'will' is the Will Properties of CONNECT. */
export type PropertyPlace = (typeof PacketType)[keyof typeof PacketType] | 'will';

export interface PropertyDefinition {
  id: number;
  name: keyof Properties;
  type: PropertyDataType;
  places: readonly PropertyPlace[];
  /** May appear more than once (User Property; Subscription Identifier in a server's PUBLISH). */
  repeatable?: boolean;
}

const { CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH } =
  PacketType;

export const PROPERTY_DEFINITIONS: readonly PropertyDefinition[] = [
  { id: 0x01, name: 'payloadFormatIndicator', type: 'byte', places: [PUBLISH, 'will'] },
  { id: 0x02, name: 'messageExpiryInterval', type: 'fourByteInteger', places: [PUBLISH, 'will'] },
  { id: 0x03, name: 'contentType', type: 'utf8String', places: [PUBLISH, 'will'] },
  { id: 0x08, name: 'responseTopic', type: 'utf8String', places: [PUBLISH, 'will'] },
  { id: 0x09, name: 'correlationData', type: 'binaryData', places: [PUBLISH, 'will'] },
  { id: 0x0b, name: 'subscriptionIdentifier', type: 'variableByteInteger', places: [PUBLISH, SUBSCRIBE], repeatable: true },
  { id: 0x11, name: 'sessionExpiryInterval', type: 'fourByteInteger', places: [CONNECT, CONNACK, DISCONNECT] },
  { id: 0x12, name: 'assignedClientIdentifier', type: 'utf8String', places: [CONNACK] },
  { id: 0x13, name: 'serverKeepAlive', type: 'twoByteInteger', places: [CONNACK] },
  { id: 0x15, name: 'authenticationMethod', type: 'utf8String', places: [CONNECT, CONNACK, AUTH] },
  { id: 0x16, name: 'authenticationData', type: 'binaryData', places: [CONNECT, CONNACK, AUTH] },
  { id: 0x17, name: 'requestProblemInformation', type: 'byte', places: [CONNECT] },
  { id: 0x18, name: 'willDelayInterval', type: 'fourByteInteger', places: ['will'] },
  { id: 0x19, name: 'requestResponseInformation', type: 'byte', places: [CONNECT] },
  { id: 0x1a, name: 'responseInformation', type: 'utf8String', places: [CONNACK] },
  { id: 0x1c, name: 'serverReference', type: 'utf8String', places: [CONNACK, DISCONNECT] },
  {
    id: 0x1f,
    name: 'reasonString',
    type: 'utf8String',
    places: [CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH],
  },
  { id: 0x21, name: 'receiveMaximum', type: 'twoByteInteger', places: [CONNECT, CONNACK] },
  { id: 0x22, name: 'topicAliasMaximum', type: 'twoByteInteger', places: [CONNECT, CONNACK] },
  { id: 0x23, name: 'topicAlias', type: 'twoByteInteger', places: [PUBLISH] },
  { id: 0x24, name: 'maximumQoS', type: 'byte', places: [CONNACK] },
  { id: 0x25, name: 'retainAvailable', type: 'byte', places: [CONNACK] },
  {
    id: 0x26,
    name: 'userProperties',
    type: 'utf8StringPair',
    places: [CONNECT, CONNACK, PUBLISH, 'will', PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH],
    repeatable: true,
  },
  { id: 0x27, name: 'maximumPacketSize', type: 'fourByteInteger', places: [CONNECT, CONNACK] },
  { id: 0x28, name: 'wildcardSubscriptionAvailable', type: 'byte', places: [CONNACK] },
  { id: 0x29, name: 'subscriptionIdentifierAvailable', type: 'byte', places: [CONNACK] },
  { id: 0x2a, name: 'sharedSubscriptionAvailable', type: 'byte', places: [CONNACK] },
];

/** Property definitions indexed by identifier (undefined for identifiers the spec does not define). */
export const PROPERTY_BY_ID: readonly (PropertyDefinition | undefined)[] = (() => {
  const table: (PropertyDefinition | undefined)[] = new Array(256).fill(undefined);
  for (const def of PROPERTY_DEFINITIONS) table[def.id] = def;
  return table;
})();

export const PROPERTY_BY_NAME: ReadonlyMap<keyof Properties, PropertyDefinition> = new Map(
  PROPERTY_DEFINITIONS.map((def) => [def.name, def]),
);
