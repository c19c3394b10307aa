// Broker configuration files (JSON or YAML): parsed, checked against a schema, and turned into
// BrokerOptions. Every mistake is one line naming the key, e.g. `config: maxQos: must be 0, 1 or 2`.
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { BrokerOptions } from '../broker/broker.js';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Check = (value: unknown, path: string) => unknown;

const fail = (path: string, what: string): never => {
  throw new ConfigError(`${path}: ${what}`);
};

const integer =
  (min: number, max: number): Check =>
  (v, path) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : fail(path, `must be an integer from ${min} to ${max}`);
const boolean: Check = (v, path) => (typeof v === 'boolean' ? v : fail(path, 'must be true or false'));
const string: Check = (v, path) => (typeof v === 'string' && v !== '' ? v : fail(path, 'must be a non-empty string'));
const oneOf =
  (...values: unknown[]): Check =>
  (v, path) =>
    values.includes(v) ? v : fail(path, `must be one of ${values.map((x) => JSON.stringify(x)).join(', ')}`);

function object(shape: Record<string, Check>): Check {
  return (v, path) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail(path, 'must be an object');
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(v)) {
      const check = shape[key];
      const where = path ? `${path}.${key}` : key;
      if (!check) return fail(where, `unknown key (known: ${Object.keys(shape).join(', ')})`);
      out[key] = check(value, where);
    }
    return out;
  };
}

const array =
  (item: Check): Check =>
  (v, path) =>
    Array.isArray(v) ? v.map((x, i) => item(x, `${path}[${i}]`)) : fail(path, 'must be a list');

const U32 = 0xffffffff;
const port = integer(0, 65535);

const listener = object({ type: oneOf('tcp'), host: string, port, name: string });

/** The schema of a config file: the keys of BrokerOptions that make sense in a file. */
export const CONFIG_SCHEMA: Record<string, Check> = {
  host: string,
  port,
  listeners: array(listener),
  logLevel: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
  connectTimeout: integer(1, U32),
  maxPacketSize: integer(16, 268_435_460),
  maxClientIdLength: integer(23, 65535),
  maxKeepAlive: integer(1, 65535),
  sessionExpiry: integer(0, U32),
  maxSessionExpiry: integer(0, U32),
  maxQueuedMessages: integer(0, 10_000_000),
  queueOverflow: oneOf('drop-oldest', 'drop-newest'),
  queueQos0: boolean,
  offlineMessageExpiry: integer(0, U32),
  maxQos: oneOf(0, 1, 2),
  receiveMaximum: integer(1, 65535),
  maxInflight: integer(1, 65535),
  topicAliasMaximum: integer(0, 65535),
  retainAvailable: boolean,
  allowAnonymous: boolean,
  hookTimeout: integer(1, 600_000),
};

export type FileConfig = Omit<BrokerOptions, 'logger' | 'clock' | 'authenticate' | 'authorizePublish' | 'authorizeSubscribe'> & {
  logLevel?: string;
};

/** Validates a parsed config object; throws ConfigError naming the first bad key. */
export function validateConfig(raw: unknown): FileConfig {
  return object(CONFIG_SCHEMA)(raw ?? {}, '') as FileConfig;
}

/** Reads and validates `petrel.config.json` / `.yaml` / `.yml`. */
export function loadConfigFile(file: string): FileConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(extname(file)) ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file} is not valid ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${(err as Error).message.split('\n')[0]}`);
  }
  return validateConfig(raw);
}
