// Checks shared by the config file and createBroker(): each names the key it refuses, in one line
// (`receiveMaximum: must be an integer from 1 to 65535`).
import type { BrokerLimits } from '../broker/options.js';
import { nearest } from './suggest.js';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export type Check = (value: unknown, path: string) => unknown;

export const fail = (path: string, what: string): never => {
  throw new ConfigError(`${path}: ${what}`);
};

export const integer =
  (min: number, max: number): Check =>
  (v, path) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : fail(path, `must be an integer from ${min} to ${max}`);
export const boolean: Check = (v, path) => (typeof v === 'boolean' ? v : fail(path, 'must be true or false'));
export const string: Check = (v, path) => (typeof v === 'string' && v !== '' ? v : fail(path, 'must be a non-empty string'));
export const oneOf =
  (...values: unknown[]): Check =>
  (v, path) =>
    values.includes(v) ? v : fail(path, `must be one of ${values.map((x) => JSON.stringify(x)).join(', ')}`);

export function object(shape: Record<string, Check>): Check {
  return (v, path) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail(path, 'must be an object');
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(v)) {
      // Own keys only: "__proto__" or "constructor" must not find Object.prototype's members.
      const check = Object.hasOwn(shape, key) ? shape[key] : undefined;
      const where = path ? `${path}.${key}` : key;
      if (!check) return fail(where, unknownKey(key, Object.keys(shape)));
      out[key] = check(value, where);
    }
    return out;
  };
}

/** "unknown key (did you mean allowAnonymous?)"; a short list of the keys when none is near; the docs for a long one. */
/** Mosquitto's names for listener keys, which Mosquitto users type from habit. */
const MOSQUITTO_NAMES: Record<string, string> = { certfile: 'cert', keyfile: 'key', cafile: 'ca', crlfile: 'crl', require_certificate: 'requestCert', tls_version: 'minVersion', max_connections: 'maxConnections' };

function unknownKey(key: string, known: string[]): string {
  const mosquitto = Object.hasOwn(MOSQUITTO_NAMES, key) ? MOSQUITTO_NAMES[key] : undefined;
  // allow_anonymous → allowAnonymous: the same word without the underscores
  const guess = mosquitto !== undefined && known.includes(mosquitto) ? mosquitto : nearest(key.replace(/_/g, ''), known);
  if (guess) return `unknown key (did you mean ${guess}?)`;
  if (known.length <= 12) return `unknown key (known: ${known.join(', ')})`;
  return 'unknown key (see docs/configuration.md for the keys)';
}

export function record(item: Check): Check {
  return (v, path) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail(path, 'must be an object');
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, item(x, `${path}.${k}`)]));
  };
}

export const array =
  (item: Check): Check =>
  (v, path) =>
    Array.isArray(v) ? v.map((x, i) => item(x, `${path}[${i}]`)) : fail(path, 'must be a list');

export const U32 = 0xffffffff;

/** Every broker limit (BrokerLimits) with its check: the config file's keys and createBroker()'s. */
export const LIMIT_CHECKS: Record<keyof BrokerLimits, Check> = {
  connectTimeout: integer(1, U32),
  maxPacketSize: integer(16, 268_435_460),
  maxClientIdLength: integer(23, 65535),
  maxKeepAlive: integer(1, 65535),
  sessionExpiry: integer(0, U32),
  maxSessionExpiry: integer(0, U32),
  maxQueuedMessages: integer(0, 10_000_000),
  maxQueuedBytes: integer(0, Number.MAX_SAFE_INTEGER),
  queueOverflow: oneOf('drop-oldest', 'drop-newest'),
  queueQos0: boolean,
  offlineMessageExpiry: integer(0, U32),
  maxQos: oneOf(0, 1, 2),
  receiveMaximum: integer(1, 65535),
  maxInflight: integer(1, 65535),
  maxTopicLevels: integer(1, 32768),
  maxSubscriptionsPerClient: integer(0, U32),
  maxRetainedMessages: integer(0, U32),
  maxRetainedBytes: integer(0, Number.MAX_SAFE_INTEGER),
  sysInterval: integer(0, 86400),
  topicAliasMaximum: integer(0, 65535),
  retainAvailable: boolean,
  allowAnonymous: boolean,
  hookTimeout: integer(1, 600_000),
  responseInformation: (v, path) => (typeof v === 'string' ? v : fail(path, 'must be a string')),
  serverReference: (v, path) => (typeof v === 'string' ? v : fail(path, 'must be a string')),
  serverMoved: boolean,
  wildcardSubscriptionAvailable: boolean,
  subscriptionIdentifiersAvailable: boolean,
  sharedSubscriptionAvailable: boolean,
  sharedSubscriptionStrategy: oneOf('round-robin', 'random', 'sticky'),
  validatePayloadFormat: boolean,
  maxOutputBuffer: integer(1024, 2 ** 31),
  slowConsumerTimeout: integer(0, U32),
  connackUserProperties: array((v, path) =>
    Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string' ? v : fail(path, 'must be a [name, value] pair of strings'),
  ),
};

/** `loginProtection` (src/auth/login-guard.ts): every key optional, each a bounded integer. */
export const LOGIN_PROTECTION_CHECK: Check = object({
  maxConcurrentChecks: integer(1, 64),
  maxPendingChecks: integer(1, 1_000_000),
  maxPendingPerAddress: integer(1, 1_000_000),
  maxPendingPerUsername: integer(1, 1_000_000),
  maxCheckWait: integer(1, 600_000),
  maxFailures: integer(1, 1_000_000),
  maxAddressFailures: integer(1, 1_000_000),
  failureWindow: integer(1, 86_400),
  banTime: integer(0, 86_400 * 365),
  cacheTime: integer(0, 86_400),
  failureDelay: integer(0, 60_000),
});

const fraction: Check = (v, path) => (typeof v === 'number' && v > 0 && v <= 1 ? v : fail(path, 'must be a number above 0 and at most 1'));

/** `overload` (src/broker/overload.ts): every key optional; the low-water mark below the high one. */
export const OVERLOAD_CHECK: Check = (v, path) => {
  const o = object({
    enabled: boolean,
    memoryLimit: integer(0, Number.MAX_SAFE_INTEGER),
    memoryHighWater: fraction,
    memoryLowWater: fraction,
    eventLoopLagMs: integer(0, 600_000),
    sampleIntervalMs: integer(10, 3_600_000),
  })(v, path) as Record<string, number | boolean | undefined>;
  const high = (o.memoryHighWater as number | undefined) ?? 0.85;
  const low = (o.memoryLowWater as number | undefined) ?? 0.7;
  if (low >= high) fail(`${path}.memoryLowWater`, `must be below memoryHighWater (${high})`);
  return o;
};

/** Throws ConfigError naming the first limit in `options` that is out of range (undefined ones are defaults). */
export function checkLimits(options: Partial<Record<keyof BrokerLimits, unknown>>): void {
  for (const key of Object.keys(LIMIT_CHECKS) as (keyof BrokerLimits)[]) {
    if (options[key] !== undefined) LIMIT_CHECKS[key](options[key], key);
  }
}
