// The client's public value types: what CONNACK said, a received message, the options and
// results of publish / subscribe / unsubscribe, and the events the client emits.
import type { Buffer } from 'node:buffer';
import type { DisconnectPacket, Packet, Properties, QoS } from '../protocol/index.js';
import type { MqttClientError } from './errors.js';

/** What the server said in its CONNACK. */
export interface ConnackInfo {
  sessionPresent: boolean;
  /** 0 (Success / Connection accepted). */
  reasonCode: number;
  /** CONNACK properties (5.0), as the server sent them. */
  properties: Properties;
  /** The Client ID in use: the one sent, or the server-assigned one. */
  clientId: string;
  /** Keep alive in force, seconds (Server Keep Alive when the server set one). */
  keepAlive: number;
}

/** A received application message. */
export interface Message {
  topic: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  /** PUBLISH properties (5.0). */
  properties?: Properties;
}

/** How long an operation may take: every publish / subscribe / unsubscribe promise can be made to settle. */
export interface OperationOptions {
  /** Rejects the promise (code ABORTED) when this signal aborts. */
  signal?: AbortSignal;
  /** Rejects the promise (code OPERATION_TIMEOUT) after this many ms; default: the client's `operationTimeout` (none). */
  timeout?: number;
}

export interface PublishOptions extends OperationOptions {
  qos?: QoS;
  retain?: boolean;
  /** PUBLISH properties (5.0): messageExpiryInterval, contentType, responseTopic, correlationData, userProperties, ... */
  properties?: Properties;
}

/** Acknowledgement of a publish: reason code 0 (or 0x10 No matching subscribers) and what the server added. */
export interface PublishResult {
  reasonCode: number;
  reasonString?: string;
  properties?: Properties;
}

export interface SubscribeOptions extends OperationOptions {
  qos?: QoS;
  /** 5.0 subscription options. */
  noLocal?: boolean;
  retainAsPublished?: boolean;
  retainHandling?: 0 | 1 | 2;
  /** SUBSCRIBE properties (5.0): subscriptionIdentifier, userProperties. */
  properties?: Properties;
}

export interface SubscribeResult {
  topicFilter: string;
  /** Granted QoS 0..2, or a failure code (0x80 and up). */
  reasonCode: number;
  /** The granted QoS, when the subscription succeeded. */
  qos?: QoS;
}

export interface UnsubscribeOptions extends OperationOptions {
  /** UNSUBSCRIBE properties (5.0): userProperties. */
  properties?: Properties;
}

export interface UnsubscribeResult {
  topicFilter: string;
  /** 5.0: the reason code per filter; 3.1.x: 0. */
  reasonCode: number;
}

export interface MqttClientEvents {
  /** Connected (first time and after every reconnect). */
  connect: [info: ConnackInfo];
  /** A reconnect attempt starts. */
  reconnect: [info: { attempt: number; delay: number }];
  /** The connection was lost (the client will reconnect unless it is closed). */
  offline: [error: MqttClientError];
  /** The server sent DISCONNECT (5.0). */
  disconnect: [packet: DisconnectPacket];
  /** The client is finally closed: end(), destroy(), or a failure it does not retry. */
  close: [error?: MqttClientError];
  /** Errors while running (a failed reconnect, a protocol error). Only emitted when someone listens. */
  error: [error: MqttClientError];
  /**
   * Something the user should know, once, in words: the server keeps closing the connection soon
   * after accepting it (code UNSTABLE_CONNECTION: a takeover loop, a proxy, a broker under load).
   */
  warning: [error: MqttClientError];
  message: [message: Message];
  packetsend: [packet: Packet];
  packetreceive: [packet: Packet];
}
