// Client options and their defaults.
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { Properties, ProtocolVersion, QoS } from '../protocol/index.js';
import type { BackoffOptions } from './session-state.js';
import { MAX_TIMER_MS } from './session-state.js';
import type { OpenedTransport, TlsOptions } from './transport.js';
import type { BrokerAddress, BrokerScheme } from './url.js';
import { DEFAULT_PORTS, parseBrokerUrl } from './url.js';
import { MqttClientError } from './errors.js';
import { normalizeOptionNames } from './option-names.js';

export type ProtocolVersionInput = ProtocolVersion | '3.1' | '3.1.1' | '5' | '5.0' | (string & {}) | (number & {});

export interface WillOptions {
  topic: string;
  payload?: string | Buffer | Uint8Array;
  qos?: QoS;
  retain?: boolean;
  /** Will properties (5.0): willDelayInterval, messageExpiryInterval, contentType, userProperties, ... */
  properties?: Properties;
}

/**
 * MQTT.js's names for options that mean the same in Petrel, accepted as they are (see docs/client.md,
 * "Coming from MQTT.js"). Any other unknown option is an INVALID_ARGUMENT error naming it.
 */
export interface MqttJsOptions {
  /** = keepAlive (seconds). */
  keepalive?: number;
  /** = reconnect: { initialDelay: reconnectPeriod } (ms); 0 = reconnect: false. */
  reconnectPeriod?: number;
  /** = scheme: mqtt, mqtts, ws, wss (tcp, ssl, tls also). */
  protocol?: string;
  /** "MQTT" (3.1.1, 5.0) or "MQIsdp" (3.1): checked against protocolVersion, which decides it. */
  protocolId?: string;
  /** = host. */
  hostname?: string;
  /** = tls.ca, tls.cert, tls.key, tls.passphrase, tls.rejectUnauthorized, tls.servername, tls.alpnProtocols. */
  ca?: TlsOptions['ca'];
  cert?: TlsOptions['cert'];
  key?: TlsOptions['key'];
  passphrase?: string;
  rejectUnauthorized?: boolean;
  servername?: string;
  ALPNProtocols?: string[];
}

export interface ClientOptions extends MqttJsOptions {
  /** mqtt://host[:1883], mqtts://host[:8883], ws://host[:8083]/mqtt, wss://host[:8084]/mqtt. */
  url?: string;
  /** Instead of url: host (default localhost), port (default for the scheme), scheme (default mqtt), WebSocket path. */
  host?: string;
  port?: number;
  scheme?: BrokerScheme;
  path?: string;
  /** 3.1, 3.1.1 or 5.0 (also 3 / 4 / 5, "mqttv311", ...). Default 5.0. */
  protocolVersion?: ProtocolVersionInput;
  /** Default: "petrel_" + 16 hex digits. '' asks the server to assign one (5.0, or 3.1.1 with clean session). */
  clientId?: string;
  username?: string;
  password?: string | Buffer;
  /** Clean Session (3.1.x) / Clean Start (5.0). Default true. */
  clean?: boolean;
  /** Session Expiry Interval in seconds (5.0). 0xFFFFFFFF never expires. */
  sessionExpiry?: number;
  /** Keep alive in seconds (0 disables). Default 60. The server may override it (5.0 Server Keep Alive). */
  keepAlive?: number;
  /** Send PINGREQ after this many ms without sending anything. Default: the keep alive. */
  pingInterval?: number;
  /** How long to wait for PINGRESP before the connection is dead, ms. Default: min(ping interval in force, 30 s). */
  pingTimeout?: number;
  /** Time allowed from opening the socket to CONNACK, ms. Default 30000; at most 2^31 - 1 (about 24.8 days, longer values are capped). */
  connectTimeout?: number;
  will?: WillOptions;
  /** CONNECT properties (5.0): receiveMaximum, maximumPacketSize, topicAliasMaximum, userProperties, ... */
  properties?: Properties;
  tls?: TlsOptions;
  /** Extra headers for the WebSocket upgrade request. */
  wsHeaders?: Record<string, string>;
  /** Reconnect after a lost connection, with exponential backoff and jitter. Default true; false disables. */
  reconnect?: boolean | BackoffOptions;
  /** Keep publish() calls made while offline and send them on reconnect. Default true. */
  queueWhileOffline?: boolean;
  /** Most publishes kept while offline; more are rejected. Default 1000. */
  offlineQueueMax?: number;
  /** Subscribe again after reconnecting when the server has no session. Default true. */
  resubscribe?: boolean;
  /** Default `timeout` (ms) of publish / subscribe / unsubscribe: their promises reject with OPERATION_TIMEOUT after it. Default: none. */
  operationTimeout?: number;
  /** Opens the stream yourself (tests, proxies, diagnostics). */
  createStream?: (address: BrokerAddress) => Promise<Duplex | OpenedTransport>;
}

export interface ResolvedOptions {
  address: BrokerAddress;
  protocolVersion: ProtocolVersion;
  clientId: string;
  username?: string;
  password?: Buffer;
  clean: boolean;
  sessionExpiry?: number;
  keepAlive: number;
  pingInterval: number;
  /** As given; absent means defaultPingTimeout() of the ping interval in force once CONNACK set it. */
  pingTimeout?: number;
  connectTimeout: number;
  will?: WillOptions;
  properties?: Properties;
  tls?: TlsOptions;
  wsHeaders?: Record<string, string>;
  reconnect: false | BackoffOptions;
  queueWhileOffline: boolean;
  offlineQueueMax: number;
  resubscribe: boolean;
  operationTimeout?: number;
  createStream?: ClientOptions['createStream'];
}

/** "3.1" / "mqttv311" / 5 / "5.0" → 3 | 4 | 5. Throws INVALID_ARGUMENT for anything else. */
export function parseProtocolVersion(input: ProtocolVersionInput): ProtocolVersion {
  const text = String(input).trim().toLowerCase().replace(/^mqtt\s*v?|^v/, '');
  switch (text) {
    case '3':
    case '3.1':
    case '31':
      return 3;
    case '4':
    case '3.1.1':
    case '311':
      return 4;
    case '5':
    case '5.0':
    case '50':
      return 5;
  }
  throw invalidOption(`unknown MQTT protocol version "${input}": use 3.1, 3.1.1 or 5`);
}

/** Human name of a protocol level: 3 → "3.1", 4 → "3.1.1", 5 → "5.0". */
export function protocolVersionName(version: ProtocolVersion): string {
  return version === 3 ? '3.1' : version === 4 ? '3.1.1' : '5.0';
}

export function randomClientId(): string {
  return `petrel_${randomBytes(8).toString('hex')}`;
}

function toBuffer(value: string | Buffer | Uint8Array | undefined): Buffer {
  if (value === undefined) return Buffer.alloc(0);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.isBuffer(value) ? value : Buffer.from(value);
}

export { toBuffer };

/**
 * PINGRESP timeout when none was given: the ping interval in force (a 5.0 Server Keep Alive may set
 * it when keepAlive is 0), at most 30 s. Computed per connection, never from a keep alive of 0.
 */
export function defaultPingTimeout(pingInterval: number): number {
  return Math.min(pingInterval, 30_000);
}

/** A bad option: an MqttClientError INVALID_ARGUMENT whose message names it, like every client failure. */
function invalidOption(message: string): MqttClientError {
  return new MqttClientError('INVALID_ARGUMENT', message);
}

/** A number option that must be finite and at least `min` (when given). */
function checkNumber(value: number | undefined, name: string, min: number, what: string): void {
  if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value) && value >= min)) {
    throw invalidOption(`${name} must be ${what} (got ${String(value)})`);
  }
}

/** Applies defaults and checks every option; throws INVALID_ARGUMENT with a message naming the option. */
export function resolveOptions(urlOrOptions: string | ClientOptions | undefined, more: ClientOptions = {}): ResolvedOptions {
  const o = normalizeOptionNames(typeof urlOrOptions === 'string' ? { ...more, url: urlOrOptions } : { ...(urlOrOptions ?? {}), ...more });
  let address: BrokerAddress;
  if (o.url !== undefined) {
    try {
      address = parseBrokerUrl(o.url);
    } catch (err) {
      throw invalidOption((err as Error).message);
    }
    if (o.host !== undefined) address.host = o.host;
    if (o.port !== undefined) address.port = o.port;
  } else {
    const scheme = o.scheme ?? 'mqtt';
    address = {
      scheme,
      host: o.host ?? 'localhost',
      port: o.port ?? DEFAULT_PORTS[scheme],
      path: scheme === 'ws' || scheme === 'wss' ? (o.path ?? '/mqtt') : '',
    };
  }
  const protocolVersion = parseProtocolVersion(o.protocolVersion ?? 5);
  const clean = o.clean ?? true;
  const clientId = o.clientId ?? randomClientId();
  if (clientId === '' && protocolVersion === 3) throw invalidOption('MQTT 3.1 needs a Client ID: an empty one is allowed from 3.1.1 on');
  if (clientId === '' && protocolVersion === 4 && !clean) {
    throw invalidOption('an empty Client ID needs a clean session in MQTT 3.1.1');
  }
  const keepAlive = o.keepAlive ?? 60;
  if (!Number.isInteger(keepAlive) || keepAlive < 0 || keepAlive > 65535) throw invalidOption('keepAlive must be an integer 0..65535 (seconds)');
  const username = o.username ?? address.username;
  const passwordValue = o.password ?? address.password;
  // setTimeout fires at once above 2^31 - 1 ms: a longer timeout (or Infinity) waits that long instead
  const connectTimeout = Math.min(o.connectTimeout ?? 30_000, MAX_TIMER_MS);
  if (!(connectTimeout > 0)) throw invalidOption(`connectTimeout must be a positive number of milliseconds (got ${String(o.connectTimeout)})`);
  checkNumber(o.pingInterval, 'pingInterval', 0, 'a number of milliseconds, 0 or more');
  checkNumber(o.pingTimeout, 'pingTimeout', 1, 'a positive number of milliseconds');
  checkNumber(o.operationTimeout, 'operationTimeout', Number.MIN_VALUE, 'a positive number of milliseconds');
  if (o.offlineQueueMax !== undefined && !(Number.isInteger(o.offlineQueueMax) && o.offlineQueueMax >= 0)) {
    throw invalidOption(`offlineQueueMax must be a whole number, 0 or more (got ${String(o.offlineQueueMax)})`);
  }
  if (typeof o.reconnect === 'object') {
    const r = o.reconnect;
    checkNumber(r.initialDelay, 'reconnect.initialDelay', 0, 'a number of milliseconds, 0 or more');
    checkNumber(r.maxDelay, 'reconnect.maxDelay', 0, 'a number of milliseconds, 0 or more');
    checkNumber(r.multiplier, 'reconnect.multiplier', 1, 'a number, 1 or more');
    if (r.jitter !== undefined && !(typeof r.jitter === 'number' && r.jitter >= 0 && r.jitter <= 1)) throw invalidOption(`reconnect.jitter must be from 0 to 1 (got ${String(r.jitter)})`);
  }
  const pingInterval = o.pingInterval ?? keepAlive * 1000;
  const resolved: ResolvedOptions = {
    address,
    protocolVersion,
    clientId,
    clean,
    keepAlive,
    pingInterval,
    connectTimeout,
    reconnect: o.reconnect === false ? false : o.reconnect === true || o.reconnect === undefined ? {} : o.reconnect,
    queueWhileOffline: o.queueWhileOffline ?? true,
    offlineQueueMax: o.offlineQueueMax ?? 1000,
    resubscribe: o.resubscribe ?? true,
  };
  if (username !== undefined) resolved.username = username;
  if (passwordValue !== undefined) resolved.password = toBuffer(passwordValue);
  if (o.pingTimeout !== undefined) resolved.pingTimeout = o.pingTimeout;
  if (o.sessionExpiry !== undefined) resolved.sessionExpiry = o.sessionExpiry;
  if (o.will !== undefined) resolved.will = o.will;
  if (o.properties !== undefined) resolved.properties = o.properties;
  if (o.tls !== undefined) resolved.tls = o.tls;
  if (o.wsHeaders !== undefined) resolved.wsHeaders = o.wsHeaders;
  if (o.operationTimeout !== undefined) resolved.operationTimeout = o.operationTimeout;
  if (o.createStream !== undefined) resolved.createStream = o.createStream;
  return resolved;
}
