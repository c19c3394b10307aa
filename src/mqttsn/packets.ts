// The typed model of every MQTT-SN 1.2 message (spec section 5.4) and its constants.
import type { Buffer } from 'node:buffer';

/** MsgType values (spec 5.2.2, table 3). */
export const SnType = {
  ADVERTISE: 0x00,
  SEARCHGW: 0x01,
  GWINFO: 0x02,
  CONNECT: 0x04,
  CONNACK: 0x05,
  WILLTOPICREQ: 0x06,
  WILLTOPIC: 0x07,
  WILLMSGREQ: 0x08,
  WILLMSG: 0x09,
  REGISTER: 0x0a,
  REGACK: 0x0b,
  PUBLISH: 0x0c,
  PUBACK: 0x0d,
  PUBCOMP: 0x0e,
  PUBREC: 0x0f,
  PUBREL: 0x10,
  SUBSCRIBE: 0x12,
  SUBACK: 0x13,
  UNSUBSCRIBE: 0x14,
  UNSUBACK: 0x15,
  PINGREQ: 0x16,
  PINGRESP: 0x17,
  DISCONNECT: 0x18,
  WILLTOPICUPD: 0x1a,
  WILLTOPICRESP: 0x1b,
  WILLMSGUPD: 0x1c,
  WILLMSGRESP: 0x1d,
  /** Forwarder encapsulation (spec 5.5). */
  ENCAPSULATED: 0xfe,
} as const;

export const SN_TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(SnType).map(([name, value]) => [value, name]));

/** ReturnCode values (spec 5.3.10, table 5). */
export const SnReturnCode = {
  Accepted: 0x00,
  Congestion: 0x01,
  InvalidTopicId: 0x02,
  NotSupported: 0x03,
} as const;

/** TopicIdType, the two low bits of Flags (spec 5.3.4). */
export const TopicIdType = {
  Normal: 0,
  Predefined: 1,
  Short: 2,
} as const;
export type TopicIdTypeValue = 0 | 1 | 2;

/** QoS of MQTT-SN: -1 is "publish without connection" (spec 6.8), encoded as 0b11. */
export type SnQoS = -1 | 0 | 1 | 2;

/** The protocol id of CONNECT (spec 5.3.7): 0x01. */
export const SN_PROTOCOL_ID = 0x01;

/** A topic as a PUBLISH, REGISTER or SUBSCRIBE names it: a registered or predefined id, or a two-character short name. */
export type SnTopic =
  | { type: 0; id: number }
  | { type: 1; id: number }
  | { type: 2; name: string };

export interface AdvertisePacket { type: 0x00; gwId: number; duration: number }
export interface SearchGwPacket { type: 0x01; radius: number }
/** gwAdd is present only when a client answers on behalf of a gateway. */
export interface GwInfoPacket { type: 0x02; gwId: number; gwAdd?: Buffer }
export interface SnConnectPacket { type: 0x04; will: boolean; cleanSession: boolean; protocolId: number; duration: number; clientId: string }
export interface SnConnackPacket { type: 0x05; returnCode: number }
export interface WillTopicReqPacket { type: 0x06 }
/** An empty WILLTOPIC (no flags, no topic: exactly 2 octets) deletes the will (spec 5.4.7). */
export interface WillTopicPacket { type: 0x07; qos: 0 | 1 | 2; retain: boolean; topic: string | undefined }
export interface WillMsgReqPacket { type: 0x08 }
export interface WillMsgPacket { type: 0x09; payload: Buffer }
export interface RegisterPacket { type: 0x0a; topicId: number; msgId: number; topicName: string }
export interface RegackPacket { type: 0x0b; topicId: number; msgId: number; returnCode: number }
export interface SnPublishPacket { type: 0x0c; dup: boolean; qos: SnQoS; retain: boolean; topic: SnTopic; msgId: number; payload: Buffer }
export interface SnPubackPacket { type: 0x0d; topicId: number; msgId: number; returnCode: number }
export interface SnPubcompPacket { type: 0x0e; msgId: number }
export interface SnPubrecPacket { type: 0x0f; msgId: number }
export interface SnPubrelPacket { type: 0x10; msgId: number }
/** A SUBSCRIBE or UNSUBSCRIBE names a filter (type 0, wildcards allowed), a predefined id or a short name. */
export type SnSubscribeTopic = { type: 0; name: string } | { type: 1; id: number } | { type: 2; name: string };
export interface SnSubscribePacket { type: 0x12; dup: boolean; qos: 0 | 1 | 2; msgId: number; topic: SnSubscribeTopic }
export interface SnSubackPacket { type: 0x13; qos: 0 | 1 | 2; topicId: number; msgId: number; returnCode: number }
export interface SnUnsubscribePacket { type: 0x14; msgId: number; topic: SnSubscribeTopic }
export interface SnUnsubackPacket { type: 0x15; msgId: number }
/** clientId is sent by a sleeping client that wakes up (spec 6.14). */
export interface SnPingreqPacket { type: 0x16; clientId?: string }
export interface SnPingrespPacket { type: 0x17 }
/** duration (s) is present when a client goes to sleep (spec 6.14). */
export interface SnDisconnectPacket { type: 0x18; duration?: number }
/** topic undefined: the empty form, which deletes the will. */
export interface WillTopicUpdPacket { type: 0x1a; qos: 0 | 1 | 2; retain: boolean; topic: string | undefined }
export interface WillTopicRespPacket { type: 0x1b; returnCode: number }
export interface WillMsgUpdPacket { type: 0x1c; payload: Buffer }
export interface WillMsgRespPacket { type: 0x1d; returnCode: number }

export type SnPacket =
  | AdvertisePacket
  | SearchGwPacket
  | GwInfoPacket
  | SnConnectPacket
  | SnConnackPacket
  | WillTopicReqPacket
  | WillTopicPacket
  | WillMsgReqPacket
  | WillMsgPacket
  | RegisterPacket
  | RegackPacket
  | SnPublishPacket
  | SnPubackPacket
  | SnPubcompPacket
  | SnPubrecPacket
  | SnPubrelPacket
  | SnSubscribePacket
  | SnSubackPacket
  | SnUnsubscribePacket
  | SnUnsubackPacket
  | SnPingreqPacket
  | SnPingrespPacket
  | SnDisconnectPacket
  | WillTopicUpdPacket
  | WillTopicRespPacket
  | WillMsgUpdPacket
  | WillMsgRespPacket;

/** A forwarder-encapsulated message (spec 5.5): the wireless node it came from (or goes to) and the message. */
export interface Encapsulated {
  /** Ctrl octet: bits 0-1 the broadcast radius (relevant gateway to forwarder only). */
  ctrl: number;
  nodeId: Buffer;
  /** The inner MQTT-SN message, still encoded. */
  message: Buffer;
}
