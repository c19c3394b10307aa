// The typed model of every MQTT control packet. One model serves 3.1, 3.1.1 and 5.0:
// fields that exist only in 5.0 (properties, reason codes) are optional and ignored when
// encoding for 3.1.x.
import type { ProtocolVersion, QoS } from './constants.js';

/** A user property: name and value, in order; names may repeat (MQTT 5, 3.3.2.3.7). */
export type UserProperty = [name: string, value: string];

/** MQTT 5.0 properties (spec table 2-4), by camelCase name. Which ones a packet may carry is in properties.ts. */
export interface Properties {
  payloadFormatIndicator?: number; // 0x01 byte
  messageExpiryInterval?: number; // 0x02 four byte integer
  contentType?: string; // 0x03
  responseTopic?: string; // 0x08
  correlationData?: Buffer; // 0x09
  /** 0x0B. A PUBLISH from the server may carry several; SUBSCRIBE carries at most one. */
  subscriptionIdentifier?: number | number[];
  sessionExpiryInterval?: number; // 0x11
  assignedClientIdentifier?: string; // 0x12
  serverKeepAlive?: number; // 0x13
  authenticationMethod?: string; // 0x15
  authenticationData?: Buffer; // 0x16
  requestProblemInformation?: number; // 0x17
  willDelayInterval?: number; // 0x18
  requestResponseInformation?: number; // 0x19
  responseInformation?: string; // 0x1A
  serverReference?: string; // 0x1C
  reasonString?: string; // 0x1F
  receiveMaximum?: number; // 0x21
  topicAliasMaximum?: number; // 0x22
  topicAlias?: number; // 0x23
  maximumQoS?: number; // 0x24
  retainAvailable?: number; // 0x25
  userProperties?: UserProperty[]; // 0x26
  maximumPacketSize?: number; // 0x27
  wildcardSubscriptionAvailable?: number; // 0x28
  subscriptionIdentifierAvailable?: number; // 0x29
  sharedSubscriptionAvailable?: number; // 0x2A
}

export interface WillMessage {
  topic: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  /** Will properties (5.0 only). */
  properties?: Properties;
}

export interface ConnectPacket {
  type: 1;
  /** "MQTT" for 3.1.1 and 5.0, "MQIsdp" for 3.1. */
  protocolName: string;
  protocolVersion: ProtocolVersion;
  /** Clean Session (3.1.x) or Clean Start (5.0). */
  clean: boolean;
  keepAlive: number;
  clientId: string;
  username?: string;
  password?: Buffer;
  will?: WillMessage;
  properties?: Properties;
}

export interface ConnackPacket {
  type: 2;
  sessionPresent: boolean;
  /** 5.0: the reason code. 3.1.x: the return code 0-5. */
  reasonCode: number;
  properties?: Properties;
}

export interface PublishPacket {
  type: 3;
  topic: string;
  /** A view into the received bytes when decoded: copy it before keeping it long (retained, queued). */
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  /** Present iff qos > 0. */
  packetId?: number;
  properties?: Properties;
}

/** PUBACK, PUBREC, PUBREL and PUBCOMP share one shape. */
export interface PubAckLikePacket {
  type: 4 | 5 | 6 | 7;
  packetId: number;
  /** 5.0 only; absent means 0x00 Success. */
  reasonCode?: number;
  properties?: Properties;
}
export type PubackPacket = PubAckLikePacket & { type: 4 };
export type PubrecPacket = PubAckLikePacket & { type: 5 };
export type PubrelPacket = PubAckLikePacket & { type: 6 };
export type PubcompPacket = PubAckLikePacket & { type: 7 };

export interface Subscription {
  topicFilter: string;
  /** Maximum QoS requested. */
  qos: QoS;
  /** 5.0 subscription options; absent means false / false / 0. */
  noLocal?: boolean;
  retainAsPublished?: boolean;
  retainHandling?: 0 | 1 | 2;
}

export interface SubscribePacket {
  type: 8;
  packetId: number;
  subscriptions: Subscription[];
  properties?: Properties;
}

export interface SubackPacket {
  type: 9;
  packetId: number;
  /** Granted QoS (0, 1, 2) or a failure code (0x80 in 3.1.1; any 5.0 reason code). */
  reasonCodes: number[];
  properties?: Properties;
}

export interface UnsubscribePacket {
  type: 10;
  packetId: number;
  topicFilters: string[];
  properties?: Properties;
}

export interface UnsubackPacket {
  type: 11;
  packetId: number;
  /** 5.0 only: one per topic filter. */
  reasonCodes?: number[];
  properties?: Properties;
}

export interface PingreqPacket {
  type: 12;
}
export interface PingrespPacket {
  type: 13;
}

export interface DisconnectPacket {
  type: 14;
  /** 5.0 only; absent means 0x00 Normal disconnection. */
  reasonCode?: number;
  properties?: Properties;
}

export interface AuthPacket {
  type: 15;
  /** Absent means 0x00 Success. */
  reasonCode?: number;
  properties?: Properties;
}

export type Packet =
  | ConnectPacket
  | ConnackPacket
  | PublishPacket
  | PubAckLikePacket
  | SubscribePacket
  | SubackPacket
  | UnsubscribePacket
  | UnsubackPacket
  | PingreqPacket
  | PingrespPacket
  | DisconnectPacket
  | AuthPacket;
