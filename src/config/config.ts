// Broker configuration files (JSON or YAML): parsed, checked against a schema, and turned into
// BrokerOptions. Every mistake is one line naming the key, e.g. `config: maxQos: must be 0, 1 or 2`.
import { existsSync, readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { stringify as toYaml } from 'yaml';
import { DEFAULT_LISTENERS, type BrokerOptions } from '../server/broker.js';
import { DEFAULT_LIMITS } from '../broker/options.js';
import { DEFAULT_OVERLOAD } from '../broker/overload.js';
import { machineLimits } from '../server/machine-limits.js';
import { DEFAULT_PORTS, DEFAULT_WS_PATH } from '../server/listeners.js';
import { compileRule, type AclRule } from '../auth/acl.js';
import { checkAddressEntry } from '../util/address.js';
import { DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT } from '../http/options.js';
import type { MemoryProfile } from '../runtime/v8-tuning.js';
import { array, boolean, ConfigError, fail, integer, LIMIT_CHECKS, LOGIN_PROTECTION_CHECK, object, OVERLOAD_CHECK, oneOf, record, string, U32, type Check } from './checks.js';
import { isValidTopicName } from '../protocol/topic.js';
import { clusterOptionError } from '../cluster/options.js';

export { ConfigError };

const port = integer(0, 65535);
const positive = integer(1, U32);
const stringList = array(string);
const stringOrList: Check = (v, path) => (Array.isArray(v) ? stringList(v, path) : string(v, path));

/** Keys every listener type accepts. */
const COMMON_LISTENER = {
  type: oneOf('tcp', 'tls', 'ws', 'wss', 'mqttsn'),
  host: string,
  port,
  name: string,
  allowAnonymous: boolean,
  maxConnections: positive,
  maxConnectionRate: positive,
  maxPublishRate: positive,
  publishBurst: positive,
  maxBytesRate: positive,
};
const wsPath: Check = (v, path) => (typeof v === 'string' && (v.startsWith('/') || v === '*') ? v : fail(path, 'must be a URL path starting with "/", or "*" for any path'));
const certificateFiles = { cert: string, key: string, passphrase: string };
const TLS_KEYS = {
  ...certificateFiles,
  ca: stringOrList,
  crl: stringOrList,
  minVersion: oneOf('TLSv1.2', 'TLSv1.3'),
  ciphers: string,
  ciphersuites: string,
  sni: record(object(certificateFiles)),
  requestCert: boolean,
  peerCertAsUsername: oneOf('cn', 'san'),
  peerCertAsClientId: oneOf('cn', 'san'),
};
/** MQTT-SN predefined topics: { 1: "sensors/temp" }, ids 1-65534, names without wildcards. */
const predefinedTopics: Check = (v, path) => {
  const table = record(string)(v, path) as Record<string, string>;
  for (const [id, name] of Object.entries(table)) {
    if (!/^\d+$/.test(id) || Number(id) < 1 || Number(id) > 0xfffe) fail(`${path}.${id}`, 'a topic id must be an integer from 1 to 65534');
    if (!isValidTopicName(name)) fail(`${path}.${id}`, 'must be a topic name without wildcards');
  }
  return table;
};
const seconds: Check = (v, path) => (typeof v === 'number' && v > 0 && v <= 3600 ? v : fail(path, 'must be a number of seconds above 0, at most 3600'));
const MQTTSN_KEYS = {
  gatewayId: integer(0, 255),
  predefinedTopics,
  retryInterval: seconds,
  maxRetries: integer(0, 100),
  advertiseInterval: integer(0, 65535),
  advertiseAddress: string,
  maxMessageSize: integer(16, 65535),
  maxHalfOpen: integer(1, 1_000_000),
  connectRatePerAddress: integer(1, 1_000_000),
  maxBufferedMessages: integer(1, U32),
  maxTopicsPerClient: integer(1, 65534),
  sessionExpiry: integer(0, U32),
  qosMinus1ClientId: string,
  recvBufferSize: integer(4096, 2 ** 31 - 1),
};
const LISTENER_SHAPES: Record<string, Check> = {
  tcp: object({
    ...COMMON_LISTENER,
    proxyProtocol: boolean,
    // `cidr` is defined below: looked up when a file is checked
    trustedProxies: (v, p) => array(cidr)(v, p),
    peerCertAsUsername: oneOf('cn'),
    peerCertAsClientId: oneOf('cn'),
    directSockets: boolean,
    acceptHandles: integer(1, 64),
  }),
  tls: object({ ...COMMON_LISTENER, ...TLS_KEYS }),
  ws: object({ ...COMMON_LISTENER, path: wsPath }),
  wss: object({ ...COMMON_LISTENER, ...TLS_KEYS, path: wsPath }),
  http: object({
    type: oneOf('http'),
    host: string,
    port,
    name: string,
    tokenFile: string,
    publicEndpoints: array(oneOf('metrics', 'health', 'ready')),
    dashboard: boolean,
    historySize: integer(1, 10_000),
    historyClients: integer(1, 10_000_000),
  }),
  mqttsn: object({ ...COMMON_LISTENER, ...MQTTSN_KEYS }),
};

const listener: Check = (v, path) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return fail(path, 'must be an object');
  const type = (v as { type?: unknown }).type ?? 'tcp';
  const shape = Object.hasOwn(LISTENER_SHAPES, String(type)) ? LISTENER_SHAPES[String(type)] : undefined;
  if (!shape) return fail(`${path}.type`, 'must be one of "tcp", "tls", "ws", "wss", "http", "mqttsn"');
  const out = shape({ ...v, type }, path) as Record<string, unknown>;
  if (type === 'tls' || type === 'wss') {
    for (const key of ['cert', 'key']) if (out[key] === undefined) fail(`${path}.${key}`, `required for a ${type} listener (PEM file)`);
    if ((out.peerCertAsUsername || out.peerCertAsClientId || out.requestCert) && !out.ca) fail(`${path}.ca`, 'required for mutual TLS (the CA that signs client certificates)');
    if (out.crl !== undefined && out.requestCert !== true) fail(`${path}.requestCert`, 'must be true for a CRL to apply (crl revokes client certificates)');
    if ((out.peerCertAsUsername || out.peerCertAsClientId) && out.requestCert !== true) fail(`${path}.requestCert`, 'must be true to use the client certificate as identity');
  }
  if (type === 'tcp') {
    if (out.trustedProxies !== undefined && out.proxyProtocol !== true) fail(`${path}.proxyProtocol`, 'must be true for trustedProxies to apply');
    if ((out.peerCertAsUsername || out.peerCertAsClientId) && !(out.trustedProxies as unknown[] | undefined)?.length) {
      fail(`${path}.trustedProxies`, "required to take the client certificate from the PROXY header (only a trusted proxy's word counts)");
    }
  }
  return out;
};

const cidr: Check = (v, path) => {
  const s = string(v, path) as string;
  try {
    checkAddressEntry(s);
  } catch (err) {
    fail(path, (err as Error).message);
  }
  return s;
};

const aclRule: Check = (v, path) => {
  const rule = object({
    permission: oneOf('allow', 'deny'),
    action: oneOf('publish', 'subscribe', 'all'),
    username: string,
    clientId: string,
    certCN: string,
    address: (x, p) => (Array.isArray(x) ? array(cidr)(x, p) : cidr(x, p)),
    topic: string,
    topics: stringList,
  })(v, path) as Record<string, unknown>;
  for (const key of ['permission', 'action']) if (rule[key] === undefined) fail(`${path}.${key}`, 'required');
  try {
    compileRule(rule as unknown as AclRule, path);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  return rule;
};

/** The schema of a config file: the keys of BrokerOptions that make sense in a file. */
export const CONFIG_SCHEMA: Record<string, Check> = {
  host: string,
  port,
  listeners: array(listener),
  logLevel: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
  memoryProfile: oneOf('compact', 'throughput'),
  connectionLogRate: integer(0, 1_000_000),
  dataDir: string,
  ...LIMIT_CHECKS,
  // security
  passwordFile: string,
  acl: object({ file: string, default: oneOf('allow', 'deny'), rules: array(aclRule), disconnectOnDenied: boolean, strictSubscribe: boolean, receiveCache: integer(0, 1_000_000) }),
  bans: object({ clientIds: stringList, usernames: stringList, addresses: array(cidr) }),
  watchFiles: boolean,
  loginProtection: LOGIN_PROTECTION_CHECK,
  // memory and event-loop overload (docs/security.md)
  overload: OVERLOAD_CHECK,
  // per-client limits (listeners may override)
  maxPublishRate: positive,
  publishBurst: positive,
  maxBytesRate: positive,
  // durable storage (docs/storage.md)
  storage: object({ type: oneOf('sqlite', 'memory'), dir: string, durability: oneOf('process', 'power'), maxSizeMB: positive }),
  // a node of a cluster on Redis (docs/cluster.md)
  cluster: (v, path) => {
    const problem = clusterOptionError(v, path);
    if (problem !== undefined) throw new ConfigError(problem);
    return v;
  },
};

export type FileConfig = Omit<BrokerOptions, 'logger' | 'clock' | 'authenticate' | 'authorizePublish' | 'authorizeSubscribe' | 'authorizeReceive' | 'authMethods' | 'tickInterval'> & {
  logLevel?: string;
  /** V8 heap settings of the broker process (see src/runtime/v8-tuning.ts). */
  memoryProfile?: MemoryProfile;
};

/** Validates a parsed config object; throws ConfigError naming the first bad key. */
export function validateConfig(raw: unknown): FileConfig {
  if (raw !== undefined && raw !== null && (typeof raw !== 'object' || Array.isArray(raw))) {
    throw new ConfigError(`the config must be a mapping of settings (an object), not ${Array.isArray(raw) ? 'a list' : typeof raw}`);
  }
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
  const yaml = /\.ya?ml$/i.test(extname(file));
  try {
    raw = yaml ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file} is not valid ${yaml ? 'YAML' : 'JSON'}: ${syntaxError(err as Error, text)}`);
  }
  return validateConfig(raw);
}

/**
 * A parse error with the offending line shown ("  3 |    host: x" and a caret under the column): the yaml
 * library's position, or JSON.parse's "at position N" turned into a line and column.
 */
function syntaxError(err: Error, text: string): string {
  const first = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  let line: number | undefined;
  let col: number | undefined;
  const linePos = (err as Error & { linePos?: { line: number; col: number }[] }).linePos;
  if (linePos?.[0]) ({ line, col } = linePos[0]);
  else {
    const at = /position (\d+)/.exec(err.message);
    if (at) {
      const before = text.slice(0, Number(at[1]));
      line = before.split('\n').length;
      col = before.length - before.lastIndexOf('\n');
    }
  }
  if (line === undefined || col === undefined) return first;
  const lines = text.split(/\r?\n/);
  // YAML often points at the line after the mistake (a bad indent is found where the next key starts)
  const shown = [line - 1, line].filter((n) => n >= 1 && n <= lines.length);
  const width = String(line).length;
  const excerpt = shown.map((n) => `  ${String(n).padStart(width)} | ${lines[n - 1]}`);
  excerpt.push(`  ${' '.repeat(width)} | ${' '.repeat(Math.max(0, col - 1))}^`);
  return `${first} (line ${line}, column ${col}):\n${excerpt.join('\n')}`;
}

/** Config files looked for in the working directory when none is given. */
export const DEFAULT_CONFIG_FILES = ['petrel.config.json', 'petrel.config.yaml', 'petrel.config.yml'];

/**
 * Overrides from environment variables: PETREL_<KEY> for a top-level key (PETREL_MAX_QOS=1,
 * PETREL_PASSWORD_FILE=/etc/petrel/passwd), PETREL_<KEY>__<SUBKEY> inside a section
 * (PETREL_ACL__DEFAULT=deny); values are parsed as JSON when they are JSON (numbers, booleans,
 * lists: PETREL_LISTENERS='[{"type":"tcp","port":1883}]'), else taken as strings.
 * Variables that name no key are an error naming the variable.
 */
export function envOverrides(env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const keyFor = (part: string, keys: string[]) => keys.find((k) => k.toLowerCase() === part.replace(/_/g, '').toLowerCase());
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('PETREL_') || raw === undefined) continue;
    const parts = name.slice(7).split('__');
    const top = keyFor(parts[0]!, Object.keys(CONFIG_SCHEMA));
    if (!top) throw new ConfigError(`${name}: no config key ${JSON.stringify(parts[0])} (see docs/configuration.md)`);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // a plain string
    }
    // Each variable is checked on its own, so that the error names the one that was set.
    const check = (v: unknown) => {
      try {
        CONFIG_SCHEMA[top]!(v, top);
      } catch (err) {
        throw new ConfigError(`${name}: ${(err as Error).message}`);
      }
    };
    if (parts.length === 1) {
      check(value);
      out[top] = value;
    } else {
      const field = parts.slice(1).map((p) => p.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())).join('.');
      check({ [field]: value });
      ((out[top] ??= {}) as Record<string, unknown>)[field] = value;
    }
  }
  return out;
}

export interface ConfigSources {
  /** Config file; default: the first of DEFAULT_CONFIG_FILES that exists. */
  file?: string;
  /** Collects what the caller should tell the user (a listener list replaced by --port / --host). */
  warnings?: string[];
  env?: NodeJS.ProcessEnv;
  /** Values from command-line flags (win over everything). */
  flags?: Record<string, unknown>;
}

/** file < PETREL_* environment < flags, validated. */
export function resolveConfig(sources: ConfigSources = {}): FileConfig {
  const file = findConfigFile(sources.file);
  const fromFile = file ? loadConfigFile(file) : {};
  const fromEnv = envOverrides(sources.env ?? process.env);
  const flags = Object.fromEntries(Object.entries(sources.flags ?? {}).filter(([, v]) => v !== undefined));
  const byFlag = flags.port !== undefined || flags.host !== undefined;
  const base = mergeSections(fromFile as Record<string, unknown>, fromEnv);
  if (byFlag && base.listeners !== undefined && flags.listeners === undefined) {
    // The flag is what the user asked for now: it replaces the listeners of a file (often one picked up
    // from the working directory without being named), with a word about it.
    const list = base.listeners as unknown[];
    const from = fromEnv.listeners !== undefined ? 'PETREL_LISTENERS' : `${file}${sources.file === undefined ? ' (found in the working directory)' : ''}`;
    sources.warnings?.push(`--port/--host replace the ${list.length} listener${list.length === 1 ? '' : 's'} of ${from}: one TCP listener on ${flags.host ?? base.host ?? '0.0.0.0'}:${flags.port ?? base.port ?? 1883}`);
    delete base.listeners;
  }
  const merged = validateConfig(mergeSections(base, flags));
  if ((fromEnv.port !== undefined || fromEnv.host !== undefined) && merged.listeners) {
    throw new ConfigError('PETREL_PORT/PETREL_HOST cannot be combined with "listeners" (set the port in the listener instead)');
  }
  return merged;
}

/** The config file resolveConfig() reads: the one given, else the first of DEFAULT_CONFIG_FILES in the working directory. */
export function findConfigFile(file?: string): string | undefined {
  return file ?? DEFAULT_CONFIG_FILES.find((f) => existsSync(f));
}

/** The configuration in force: defaults filled in, listeners spelled out, secrets hidden. */
export function effectiveConfig(config: FileConfig): Record<string, unknown> {
  const { host, port, listeners, ...rest } = config;
  const list =
    listeners ?? (port !== undefined || host !== undefined ? [{ type: 'tcp' as const, host: host ?? '0.0.0.0', port: port ?? 1883 }] : DEFAULT_LISTENERS);
  const { connackUserProperties: _ignored, ...limits } = DEFAULT_LIMITS;
  // The memory limits createBroker() derives from this machine where none is set (server/machine-limits.ts).
  const { maxRetainedBytes, maxQueuedBytes, maxSubscriptionsPerClient } = machineLimits();
  return {
    logLevel: 'info',
    memoryProfile: 'compact',
    connectionLogRate: 100,
    ...limits,
    maxRetainedBytes,
    maxQueuedBytes,
    maxSubscriptionsPerClient,
    ...rest,
    overload: { ...DEFAULT_OVERLOAD, ...rest.overload },
    listeners: list.map(({ type = 'tcp', ...l }) => {
      if (type === 'http') return { type, host: DEFAULT_HTTP_HOST, port: DEFAULT_HTTP_PORT, ...l };
      const out: Record<string, unknown> = { type, host: '0.0.0.0', port: DEFAULT_PORTS[type], ...l };
      if (type === 'ws' || type === 'wss') out.path ??= DEFAULT_WS_PATH;
      if ('passphrase' in out) out.passphrase = '(hidden)';
      // A key given inline as PEM text is a secret: print-config shows that there is one, not what it is.
      if (typeof out.key === 'string' && out.key.includes('-----BEGIN')) out.key = '(inline PEM, hidden)';
      if (out.sni) {
        out.sni = Object.fromEntries(
          Object.entries(out.sni as Record<string, Record<string, unknown>>).map(([k, v]) => [
            k,
            {
              ...v,
              ...(v.passphrase ? { passphrase: '(hidden)' } : {}),
              ...(typeof v.key === 'string' && v.key.includes('-----BEGIN') ? { key: '(inline PEM, hidden)' } : {}),
            },
          ]),
        );
      }
      return out;
    }),
  };
}

/** --print-config output. */
export function formatConfig(config: FileConfig, format: 'yaml' | 'json' = 'yaml'): string {
  const effective = effectiveConfig(config);
  return format === 'json' ? JSON.stringify(effective, null, 2) + '\n' : toYaml(effective);
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Top-level keys replaced, sections (acl, bans) merged key by key. */
function mergeSections(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isPlainObject(v) && isPlainObject(out[k]) ? { ...out[k], ...v } : v;
  return out;
}
