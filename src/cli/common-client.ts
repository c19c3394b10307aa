// Options shared by `petrel pub`, `sub`, `conn` and `bench`: connection, TLS, will, session;
// flags follow mosquitto_pub/sub (and MQTTX) so muscle memory works.
import { Buffer } from 'node:buffer';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { Option } from 'commander';
import type { ClientOptions, BrokerScheme } from '../client/index.js';
import { parseProtocolVersion, protocolVersionName, MAX_TIMER_MS, ConnackError, MqttClientError, ReasonCodeError, formatBrokerUrl, isSecure, parseBrokerUrl } from '../client/index.js';
import { isValidTopicName } from '../protocol/index.js';
import type { Properties, ProtocolVersion, QoS, UserProperty } from '../protocol/index.js';

/** Exit codes scripts can rely on. */
export const EXIT = {
  OK: 0,
  /** Connection failed (network, DNS, TLS, timeout) or another runtime error. */
  FAILED: 1,
  /** Invalid command line. */
  USAGE: 2,
  /** The broker refused the connection (CONNACK reason / return code). */
  REFUSED: 3,
  /** The broker refused a publish or subscription (reason code in PUBACK / SUBACK ...). */
  REJECTED: 4,
  /** `sub -W`: the time limit passed (as mosquitto_sub). */
  TIMEOUT: 27,
} as const;

export interface ConnectionFlags {
  host?: string;
  port?: string;
  url?: string;
  protocolVersion?: string;
  id?: string;
  idPrefix?: string;
  username?: string;
  password?: string;
  keepalive?: string;
  clean?: boolean;
  disableCleanSession?: boolean;
  sessionExpiry?: string;
  cafile?: string;
  cert?: string;
  key?: string;
  keyPassphrase?: string;
  insecure?: boolean;
  servername?: string;
  tls?: boolean;
  wsHeader?: string[];
  willTopic?: string;
  willMessage?: string;
  willQos?: string;
  willRetain?: boolean;
  connectTimeout?: string;
  debug?: boolean;
}

export class UsageError extends Error {}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** Adds the connection flags to a command; `-h` becomes the host (help stays on --help). */
export function addConnectionOptions(cmd: Command, { withUrlArgument = false, benchMode = false } = {}): Command {
  cmd.helpOption('--help', 'display help for command');
  cmd
    .option('-h, --host <host>', 'broker host (default: localhost)')
    .option('-p, --port <port>', 'broker port (default: 1883, 8883 with TLS, 8083 / 8084 for ws / wss)');
  cmd.option(
    '-L, --url <url>',
    `broker URL: mqtt://, mqtts://, ws://, wss:// (user:password@ allowed)${withUrlArgument ? '; same as the URL argument' : ''}`,
  );
  cmd
    .option('-V, --protocol-version <version>', 'MQTT version: 3.1, 3.1.1, 5 (also mqttv31, mqttv311, mqttv5)', '5')
    .option('-i, --id <clientId>', benchMode ? 'Client ID prefix (IDs are prefix_index)' : 'Client ID (default: petrel_ + random hex; "" lets the server assign one)')
    .option(benchMode ? '--id-prefix <prefix>' : '-I, --id-prefix <prefix>', 'Client ID prefix, followed by random hex')
    .option('-u, --username <username>', 'user name')
    .option('-P, --password <password>', 'password')
    .option('-k, --keepalive <seconds>', 'keep alive in seconds', '60')
    .option('--clean [bool]', 'clean session / clean start (--clean=false to keep the session)', (v) => !/^(false|0|no)$/i.test(v))
    .option('--no-clean', 'keep the session (same as --clean=false)')
    .option(benchMode ? '--disable-clean-session' : '-c, --disable-clean-session', 'keep the session (mosquitto spelling of --no-clean)')
    .option('-x, --session-expiry <seconds>', 'session expiry interval (MQTT 5)')
    .option('--connect-timeout <seconds>', 'seconds to wait for CONNACK (more than 0, at most 2147483)', '30')
    .option('--cafile <file>', 'CA certificate(s) to trust (PEM); implies TLS')
    .option('--cert <file>', 'client certificate (PEM); implies TLS')
    .option('--key <file>', 'client private key (PEM)')
    .option('--key-passphrase <passphrase>', 'passphrase of the client key')
    .option('--insecure', 'do not verify the server certificate (testing only)')
    .option('--servername <name>', 'TLS server name (SNI) to send and verify')
    .option('--tls', 'use TLS with the system CAs (mqtts)')
    .option('--ws-header <header>', 'extra WebSocket upgrade header "Name: value" (repeatable)', collect)
    .option('--will-topic <topic>', 'will message topic')
    .option('--will-message <message>', 'will message payload (mosquitto: --will-payload)')
    .option('--will-qos <qos>', 'will message QoS', '0')
    .option('--will-retain', 'retain the will message')
    .option('-d, --debug', 'print the packets sent and received on stderr');
  return cmd;
}

export function parseQos(value: string | undefined, what = 'QoS', flag = '-q'): QoS {
  const text = (value ?? '0').trim();
  if (!/^[012]$/.test(text)) throw new UsageError(`${what} must be 0, 1 or 2 (got "${value}" for ${flag})`);
  return Number(text) as QoS;
}

/** The largest whole number of seconds a Node.js timer takes (2^31 - 1 ms, about 24.8 days); setTimeout fires at once above it. */
export const MAX_TIMER_SECONDS = Math.floor(MAX_TIMER_MS / 1000);

/**
 * A whole decimal number from `min` to `max`: no sign, hex, exponent, fraction or empty string.
 * `what` names the flag in the message ("keep alive (-k)").
 */
export function parseIntegerFlag(value: string, what: string, min: number, max: number): number {
  const text = value.trim();
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max)) throw new UsageError(`${what} must be a whole number from ${min} to ${max} (got "${value}")`);
  return n;
}

/**
 * A plain decimal number (fractions allowed; no sign, hex or exponent) from `min` to `max` (`minExclusive`
 * refuses `min` itself); `unit` words the message ("seconds", "messages per second").
 */
export function parseDecimalFlag(value: string, what: string, unit: string, { min = 0, max = Number.MAX_SAFE_INTEGER, minExclusive = false } = {}): number {
  const text = value.trim();
  const n = /^(\d+(\.\d*)?|\.\d+)$/.test(text) ? Number(text) : NaN;
  const low = minExclusive ? n > min : n >= min;
  if (!(low && n <= max)) {
    const range = minExclusive ? `more than ${min} and at most ${max}` : `from ${min} to ${max}`;
    throw new UsageError(`${what} must be a number of ${unit} ${range} (got "${value}")`);
  }
  return n;
}

/** A decimal number of seconds (fractions allowed) from `min` to `max`; `minExclusive` refuses `min` itself. */
export function parseSecondsFlag(value: string, what: string, { min = 0, max = MAX_TIMER_SECONDS, minExclusive = false } = {}): number {
  return parseDecimalFlag(value, what, 'seconds', { min, max, minExclusive });
}

export function parseNonNegativeInt(value: string | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`${what} must be a non-negative whole number (got "${value}")`);
  return Number(text);
}

/** Refuses flags that exist only in MQTT 5 when an older version was asked for (-V 3.1 / 3.1.1). */
export function requireV5(version: ProtocolVersion, used: (string | false | undefined)[]): void {
  if (version === 5) return;
  const flag = used.find((f): f is string => typeof f === 'string');
  if (flag !== undefined) throw new UsageError(`${flag} exists only in MQTT 5, not with -V ${protocolVersionName(version)}: drop it or use -V 5`);
}

/** A UTF-8 string field of CONNECT / PUBLISH holds at most 65535 bytes. */
export function checkStringLength(value: string | undefined, what: string): void {
  if (value !== undefined && Buffer.byteLength(value, 'utf8') > 65535) {
    throw new UsageError(`${what} is ${Buffer.byteLength(value, 'utf8')} bytes long; MQTT allows at most 65535`);
  }
}

/** A valid PUBLISH topic name: non-empty, no + or #, at most 65535 bytes, no U+0000. */
export function checkTopicName(topic: string, what: string, flag: string): void {
  if (!isValidTopicName(topic)) {
    const shown = topic.length > 80 ? `${topic.slice(0, 80)}...` : topic;
    throw new UsageError(`invalid ${what} "${shown}" (${flag}): a topic name is non-empty, has no + or # wildcards, no U+0000 and at most 65535 bytes`);
  }
}

export function parseUserProperties(values: string[] | undefined): UserProperty[] | undefined {
  if (!values || values.length === 0) return undefined;
  return values.map((kv) => {
    const i = kv.search(/[=:]/);
    if (i <= 0) throw new UsageError(`user property "${kv}" must look like key=value`);
    return [kv.slice(0, i).trim(), kv.slice(i + 1).trimStart()] as UserProperty;
  });
}

export function userPropertyOption(cmd: Command, what: string): Command {
  return cmd.option('-D, --user-property <key=value>', `MQTT 5 user property on ${what} (repeatable)`, collect);
}

function readPem(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new UsageError(`cannot read ${what} file "${file}": ${(err as Error).message}`);
  }
}

/**
 * The TLS files are checked here, so that a file that is not PEM, a wrong passphrase or a key of another
 * certificate is a bad argument naming its flag, not an OpenSSL error at connect time (Node.js even
 * ignores a --cafile without a certificate in it).
 */
function checkTlsFiles(flags: ConnectionFlags, pem: { ca?: Buffer; cert?: Buffer; key?: Buffer }): void {
  if (pem.ca) {
    const blocks = pem.ca.toString('latin1').match(/-----BEGIN (TRUSTED |X509 )?CERTIFICATE-----[^-]+-----END (TRUSTED |X509 )?CERTIFICATE-----/g) ?? [];
    if (blocks.length === 0) throw new UsageError(`--cafile "${flags.cafile}" holds no PEM certificate ("-----BEGIN CERTIFICATE-----")`);
    for (const b of blocks) {
      try {
        new X509Certificate(b);
      } catch (err) {
        throw new UsageError(`--cafile "${flags.cafile}" holds a certificate that cannot be read: ${(err as Error).message}`);
      }
    }
  }
  let cert: X509Certificate | undefined;
  if (pem.cert) {
    try {
      cert = new X509Certificate(pem.cert);
    } catch {
      throw new UsageError(`--cert "${flags.cert}" is not a PEM certificate ("-----BEGIN CERTIFICATE-----")`);
    }
  }
  let key: KeyObject | undefined;
  if (pem.key) {
    try {
      key = createPrivateKey({ key: pem.key, ...(flags.keyPassphrase ? { passphrase: flags.keyPassphrase } : {}) });
    } catch {
      if (/ENCRYPTED/.test(pem.key.toString('latin1'))) {
        throw new UsageError(
          flags.keyPassphrase
            ? `--key-passphrase does not decrypt --key "${flags.key}": wrong passphrase`
            : `--key "${flags.key}" is encrypted: pass its passphrase with --key-passphrase`,
        );
      }
      throw new UsageError(`--key "${flags.key}" is not a PEM private key ("-----BEGIN PRIVATE KEY-----")`);
    }
  }
  if (cert && key && !cert.checkPrivateKey(key)) throw new UsageError(`--cert "${flags.cert}" and --key "${flags.key}" do not match: the key is not the certificate's`);
}

/** The TLS flags given, by name (they all need an mqtts:// or wss:// connection). */
function tlsFlagsGiven(flags: ConnectionFlags): string[] {
  const given: [unknown, string][] = [
    [flags.tls, '--tls'],
    [flags.cafile, '--cafile'],
    [flags.cert, '--cert'],
    [flags.key, '--key'],
    [flags.keyPassphrase, '--key-passphrase'],
    [flags.insecure, '--insecure'],
    [flags.servername, '--servername'],
  ];
  return given.filter(([v]) => v !== undefined && v !== false).map(([, name]) => name);
}

/** Turns the flags into client options. `url` is a positional URL (petrel conn URL). */
export function clientOptionsFromFlags(flags: ConnectionFlags, url?: string): ClientOptions & { protocolVersion: ProtocolVersion } {
  const o: ClientOptions = {};
  let version: ProtocolVersion;
  try {
    version = parseProtocolVersion(flags.protocolVersion ?? '5');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  o.protocolVersion = version;
  const tlsFlags = tlsFlagsGiven(flags);
  const wantsTls = tlsFlags.length > 0;
  const theUrl = url ?? flags.url;
  let urlUsername: string | undefined;
  if (theUrl !== undefined) {
    let text = theUrl.trim();
    const explicitScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text);
    if (!explicitScheme) text = `${wantsTls ? 'mqtts' : 'mqtt'}://${text}`;
    let address;
    try {
      address = parseBrokerUrl(text);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    // mqtt:// / ws:// with TLS flags: refuse rather than connect in clear text and ignore them
    if (wantsTls && !isSecure(address.scheme)) {
      const secure = address.scheme === 'ws' ? 'wss' : 'mqtts';
      throw new UsageError(
        `${tlsFlags.join(' / ')} asks for TLS, but ${formatBrokerUrl(address)} is not a TLS connection: use ${secure}:// (and the broker's TLS port) or drop ${tlsFlags.join(' / ')}`,
      );
    }
    o.url = text;
    urlUsername = address.username;
    if (flags.host !== undefined) o.host = flags.host;
  } else {
    const scheme: BrokerScheme = wantsTls ? 'mqtts' : 'mqtt';
    o.scheme = scheme;
    o.host = flags.host ?? 'localhost';
  }
  if (flags.port !== undefined) {
    const text = flags.port.trim();
    const port = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!(port >= 1 && port <= 65535)) throw new UsageError(`invalid port "${flags.port}" (-p): use a whole number from 1 to 65535`);
    o.port = port;
  }
  if (flags.id !== undefined) {
    checkStringLength(flags.id, 'the Client ID (-i)');
    o.clientId = flags.id;
  } else if (flags.idPrefix !== undefined) {
    checkStringLength(`${flags.idPrefix}01234567`, 'the Client ID prefix (-I) plus 8 hex digits');
    o.clientId = `${flags.idPrefix}${Math.random().toString(16).slice(2, 10).padEnd(8, '0')}`;
  }
  checkStringLength(flags.username, 'the user name (-u)');
  checkStringLength(flags.password, 'the password (-P)');
  if (flags.username !== undefined) o.username = flags.username;
  if (flags.password !== undefined) o.password = flags.password;
  if (flags.password !== undefined && flags.username === undefined && urlUsername === undefined && version !== 5) {
    throw new UsageError(`a password (-P) needs a user name (-u) with -V ${protocolVersionName(version)} (MQTT 5 allows a password alone)`);
  }
  o.keepAlive = parseIntegerFlag(flags.keepalive ?? '60', 'keep alive (-k)', 0, 65535);
  o.clean = flags.disableCleanSession ? false : (flags.clean ?? true);
  if (flags.sessionExpiry !== undefined) {
    requireV5(version, ['--session-expiry (-x)']);
    o.sessionExpiry = parseIntegerFlag(flags.sessionExpiry, 'session expiry (-x)', 0, 0xffffffff);
  }
  const timeout = parseSecondsFlag(flags.connectTimeout ?? '30', '--connect-timeout', { min: 0, minExclusive: true });
  o.connectTimeout = Math.max(1, Math.round(timeout * 1000));
  if (wantsTls) {
    o.tls = {};
    if (flags.cafile) o.tls.ca = readPem(flags.cafile, 'CA');
    if (flags.cert) o.tls.cert = readPem(flags.cert, 'certificate');
    if (flags.key) o.tls.key = readPem(flags.key, 'key');
    if (flags.cert && !flags.key) throw new UsageError('--cert needs --key');
    if (flags.key && !flags.cert) throw new UsageError('--key needs --cert');
    checkTlsFiles(flags, o.tls as { ca?: Buffer; cert?: Buffer; key?: Buffer });
    if (flags.keyPassphrase) o.tls.passphrase = flags.keyPassphrase;
    if (flags.insecure) o.tls.rejectUnauthorized = false;
    if (flags.servername) o.tls.servername = flags.servername;
  }
  if (flags.wsHeader) {
    o.wsHeaders = {};
    for (const h of flags.wsHeader) {
      const i = h.indexOf(':');
      if (i <= 0) throw new UsageError(`--ws-header "${h}" must look like "Name: value"`);
      o.wsHeaders[h.slice(0, i).trim()] = h.slice(i + 1).trim();
    }
  }
  if (flags.willMessage !== undefined && flags.willTopic === undefined) throw new UsageError('--will-message needs --will-topic');
  if (flags.willTopic !== undefined) {
    checkTopicName(flags.willTopic, 'will topic', '--will-topic');
    checkStringLength(flags.willMessage, 'the will message (--will-message)');
    o.will = {
      topic: flags.willTopic,
      payload: flags.willMessage ?? '',
      qos: parseQos(flags.willQos, 'will QoS', '--will-qos'),
      retain: Boolean(flags.willRetain),
    };
  }
  return { ...o, protocolVersion: version };
}

/** Exit code for an error. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError) return EXIT.USAGE;
  if (err instanceof ConnackError) return EXIT.REFUSED;
  if (err instanceof ReasonCodeError) return EXIT.REJECTED;
  if (err instanceof TypeError) return EXIT.USAGE;
  // a topic, option or packet the client refused before sending it: the command line asked for it
  if (err instanceof MqttClientError && err.code === 'INVALID_ARGUMENT') return EXIT.USAGE;
  return EXIT.FAILED;
}

/** Prints "petrel <cmd>: message" (and the hint) on stderr. */
export function printError(command: string, err: unknown): void {
  const text = err instanceof MqttClientError ? err.describe() : err instanceof Error ? err.message : String(err);
  process.stderr.write(`petrel ${command}: ${text}\n`);
}

/** Prints one packet per line on stderr, for -d. */
export function debugPackets(client: { on(event: 'packetsend' | 'packetreceive', fn: (p: { type: number }) => void): unknown }): void {
  const names = ['', 'CONNECT', 'CONNACK', 'PUBLISH', 'PUBACK', 'PUBREC', 'PUBREL', 'PUBCOMP', 'SUBSCRIBE', 'SUBACK', 'UNSUBSCRIBE', 'UNSUBACK', 'PINGREQ', 'PINGRESP', 'DISCONNECT', 'AUTH'];
  const show = (dir: string) => (p: { type: number }) => {
    const { type, ...rest } = p as { type: number } & Record<string, unknown>;
    const fields = JSON.stringify(rest, (k, v: unknown) => {
      if (k === 'password') return '***';
      if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer') return `<${((v as { data: number[] }).data ?? []).length} bytes>`;
      return v;
    });
    process.stderr.write(`${dir} ${names[type] ?? type} ${fields}\n`);
  };
  client.on('packetsend', show('->'));
  client.on('packetreceive', show('<-'));
}

/** A v5 property bag from the common publish flags, or undefined when empty. */
export function compactProperties(p: Properties): Properties | undefined {
  const out: Properties = {};
  for (const [k, v] of Object.entries(p)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Runs a command action, mapping errors to messages and exit codes. */
export async function runAction(command: string, fn: () => Promise<number | void>, { quiet = false } = {}): Promise<void> {
  try {
    const code = await fn();
    process.exitCode = code ?? EXIT.OK;
  } catch (err) {
    if (!quiet) printError(command, err);
    process.exitCode = exitCodeFor(err);
  }
}

export { Option };
