// petrel/client: an MQTT 3.1 / 3.1.1 / 5.0 client with promises and async iteration.
//
//   import { connect } from 'petrel/client';
//   const client = await connect('mqtt://localhost', { clientId: 'demo' });
//   await client.subscribe('sensors/#', { qos: 1 });
//   await client.publish('sensors/a', '21.5', { qos: 1 });
//   for await (const msg of client.messages()) console.log(msg.topic, msg.payload.toString());
import { MqttClient } from './client.js';
import type { ClientOptions } from './options.js';

export { MqttClient } from './client.js';
export type {
  ConnackInfo,
  Message,
  MqttClientEvents,
  OperationOptions,
  PublishOptions,
  PublishResult,
  SubscribeOptions,
  SubscribeResult,
  UnsubscribeOptions,
  UnsubscribeResult,
} from './types.js';
export type { ClientOptions, MqttJsOptions, ResolvedOptions, WillOptions, ProtocolVersionInput } from './options.js';
export { parseProtocolVersion, protocolVersionName, randomClientId, resolveOptions } from './options.js';
export {
  MqttClientError,
  ConnectionError,
  TimeoutError,
  ConnackError,
  DisconnectError,
  ReasonCodeError,
  ClientClosedError,
  explainNetworkError,
  connackError,
  serverDisconnectError,
  formatDuration,
  isFinalDisconnect,
} from './errors.js';
export type { BrokerAddress, BrokerScheme } from './url.js';
export { parseBrokerUrl, formatBrokerUrl, DEFAULT_PORTS, hostPort, isSecure, isWebSocket } from './url.js';
export type { TlsOptions, OpenedTransport } from './transport.js';
export { openTransport, tlsConnectOptions, tagWebSocketError } from './transport.js';
export type { BackoffOptions } from './session-state.js';
export { backoffDelay, KeepAlive, MAX_TIMER_MS, PacketIdAllocator } from './session-state.js';

/**
 * Connects and resolves once the server accepted the connection (CONNACK 0x00).
 * Rejects with an explained error (ConnectionError, TimeoutError, ConnackError, ...) otherwise.
 */
export async function connect(url: string, options?: ClientOptions): Promise<MqttClient>;
export async function connect(options: ClientOptions): Promise<MqttClient>;
export async function connect(urlOrOptions: string | ClientOptions, options?: ClientOptions): Promise<MqttClient> {
  const client = new MqttClient(urlOrOptions, options);
  await client.connect();
  return client;
}

/** Creates a client without connecting: call `client.connect()`. */
export function createClient(urlOrOptions: string | ClientOptions, options?: ClientOptions): MqttClient {
  return new MqttClient(urlOrOptions, options);
}
