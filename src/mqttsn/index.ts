// petrel/mqttsn: the MQTT-SN 1.2 client, codec and (for embedding) the sans-I/O gateway.
export { connect, MqttSnClient, SnClientError, parseMqttsnUrl, isMqttsnUrl, returnCodeName } from './client.js';
export type { SnClientOptions, SnMessage, SnAddress } from './client.js';
export { decodeSn, encodeSn, decodeEncapsulated, encodeEncapsulated, isEncapsulated, SnDecodeError, SN_MAX_LENGTH } from './codec.js';
export * from './packets.js';
export { MqttSnGateway } from './gateway.js';
export type { GatewayOptions, GatewayStats, GatewayIo, Peer } from './gateway.js';
export { startMqttsnListener, DEFAULT_MQTTSN_PORT } from './listener.js';
export type { MqttsnListenerOptions, MqttsnListenerContext, RunningMqttsnListener } from './listener.js';
