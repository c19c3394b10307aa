// The names connect() accepts: Petrel's own, MQTT.js's where they mean the same (migration is
// how most users arrive), and for every other name an INVALID_ARGUMENT error that names it and,
// where there is one, the Petrel option to use instead. Options are never silently ignored.
import type { ClientOptions } from './options.js';
import { MqttClientError } from './errors.js';

/** Every option of ClientOptions. */
export const PETREL_OPTIONS: readonly string[] = [
  'url', 'host', 'port', 'scheme', 'path', 'protocolVersion', 'clientId', 'username', 'password', 'clean',
  'sessionExpiry', 'keepAlive', 'pingInterval', 'pingTimeout', 'connectTimeout', 'will', 'properties', 'tls',
  'wsHeaders', 'reconnect', 'queueWhileOffline', 'offlineQueueMax', 'resubscribe', 'operationTimeout', 'createStream',
];

/** MQTT.js's TLS options, same meaning: they go into `tls`. */
const TLS_NAMES: Record<string, string> = {
  ca: 'ca',
  cert: 'cert',
  key: 'key',
  passphrase: 'passphrase',
  rejectUnauthorized: 'rejectUnauthorized',
  servername: 'servername',
  ALPNProtocols: 'alpnProtocols',
};

/** MQTT.js names with no Petrel equivalent of the same meaning: what to use instead. */
const NOT_THE_SAME: Record<string, string> = {
  queueQoSZero: 'Petrel queues publishes of every QoS while offline: use queueWhileOffline (and offlineQueueMax)',
  reschedulePings: 'Petrel always counts any packet sent as activity: use pingInterval to change when PINGREQ goes',
  wsOptions: 'use wsHeaders for upgrade headers, or createStream to open the WebSocket yourself',
  manualConnect: 'use createClient(), which does not connect until client.connect()',
  reconnectOnConnackError: 'Petrel retries a refused CONNACK unless retrying cannot help (bad credentials, banned, ...): see reconnect',
  incomingStore: 'Petrel keeps the session in memory: there is no store option',
  outgoingStore: 'Petrel keeps the session in memory: there is no store option',
  servers: 'give one url; Petrel has no server list',
  unixSocket: 'use createStream to open a Unix socket yourself',
  transformWsUrl: 'use url (and path) for the WebSocket address',
  autoUseTopicAlias: 'set properties.topicAlias on publish() yourself',
  autoAssignTopicAlias: 'set properties.topicAlias on publish() yourself',
  authPacket: 'enhanced authentication (AUTH) is not supported',
  customHandleAcks: 'Petrel acknowledges received messages itself',
  messageIdProvider: 'Petrel assigns packet identifiers itself',
};

function invalid(message: string): MqttClientError {
  return new MqttClientError('INVALID_ARGUMENT', message);
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const old = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = old;
    }
  }
  return row[b.length]!;
}

function nearest(name: string): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of PETREL_OPTIONS) {
    const d = distance(name.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(name.length / 4)) ? best : undefined;
}

/**
 * Returns the options with MQTT.js names turned into Petrel's; throws INVALID_ARGUMENT naming an
 * unknown option (and the Petrel one to use), or a name given in both spellings.
 */
export function normalizeOptionNames(input: Record<string, unknown>): ClientOptions {
  const out: Record<string, unknown> = {};
  const tls: Record<string, unknown> = {};
  const set = (name: string, value: unknown, from: string) => {
    if (input[name] !== undefined && name !== from) throw invalid(`options ${from} and ${name} both given: ${from} is MQTT.js's name for ${name}, give one`);
    out[name] = value;
  };
  for (const [name, value] of Object.entries(input)) {
    if (value === undefined) continue;
    if ((PETREL_OPTIONS as readonly string[]).includes(name)) {
      if (!(name in out)) out[name] = value;
      continue;
    }
    switch (name) {
      case 'keepalive':
        set('keepAlive', value, name);
        continue;
      case 'reconnectPeriod': {
        // MQTT.js: ms between attempts, 0 disables reconnecting
        if (typeof value !== 'number' || !(value >= 0)) throw invalid(`reconnectPeriod must be a number of milliseconds, 0 or more (got ${String(value)})`);
        set('reconnect', value === 0 ? false : { initialDelay: value }, name);
        continue;
      }
      case 'protocol':
        set('scheme', schemeOf(value), name);
        continue;
      case 'hostname':
        set('host', value, name);
        continue;
      case 'protocolId': {
        const version = input.protocolVersion ?? 5;
        const expected = version === 3 || version === '3.1' ? 'MQIsdp' : 'MQTT';
        if (value !== expected) {
          throw invalid(`protocolId "${String(value)}" does not match protocolVersion ${String(version)}: Petrel sends "${expected}" for it; leave protocolId out and set protocolVersion`);
        }
        continue;
      }
    }
    const tlsName = TLS_NAMES[name];
    if (tlsName !== undefined) {
      tls[tlsName] = value;
      continue;
    }
    const instead = NOT_THE_SAME[name];
    if (instead !== undefined) throw invalid(`unknown option "${name}" (an MQTT.js option): ${instead}`);
    const near = nearest(name);
    throw invalid(`unknown option "${name}"${near ? `: did you mean ${near}?` : ''} (the options are listed in docs/client.md)`);
  }
  if (Object.keys(tls).length > 0) {
    if (out.tls !== undefined && typeof out.tls === 'object') out.tls = { ...tls, ...(out.tls as object) };
    else out.tls = tls;
  }
  return out as ClientOptions;
}

/** MQTT.js's `protocol` ('mqtt', 'mqtts', 'tcp', 'ssl', 'tls', 'ws', 'wss') as a scheme. */
function schemeOf(value: unknown): string {
  switch (value) {
    case 'mqtt':
    case 'tcp':
      return 'mqtt';
    case 'mqtts':
    case 'ssl':
    case 'tls':
      return 'mqtts';
    case 'ws':
    case 'wss':
      return value;
  }
  throw invalid(`protocol "${String(value)}" is not supported: use mqtt, mqtts, ws or wss (or the url option)`);
}
