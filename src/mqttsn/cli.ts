// `petrel pub` and `petrel sub` over MQTT-SN (`-L mqttsn://host:1884`), and `petrel broker --mqttsn-port`.
// The commands call in here when the URL scheme is mqttsn://; the flags mean what they mean over MQTT.
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { DEFAULT_LISTENERS } from '../server/broker.js';
import type { FileConfig } from '../config/config.js';
import { ConfigError } from '../config/checks.js';
import { isValidTopicFilter, isValidTopicName } from '../protocol/topic.js';
import { MqttSnClient, SnClientError, type SnClientOptions } from './client.js';
import type { SnQoS } from './packets.js';

/** The flags of `pub` and `sub` this file reads (a subset of theirs). */
export interface SnCliFlags {
  url?: string;
  id?: string;
  idPrefix?: string;
  keepalive?: string;
  clean?: boolean;
  disableCleanSession?: boolean;
  willTopic?: string;
  willMessage?: string;
  willQos?: string;
  willRetain?: boolean;
  username?: string;
  password?: string;
  protocolVersion?: string;
  topic?: string | string[];
  qos: string;
  // pub
  message?: string;
  file?: string;
  stdinFile?: boolean;
  stdinLine?: boolean;
  nullMessage?: boolean;
  retain?: boolean;
  repeat?: string;
  repeatDelay?: string;
  quiet?: boolean;
  // sub
  verbose?: boolean;
  format?: string;
  count?: string;
  timeout?: string;
  retained?: boolean;
  eol?: boolean;
}

const OK = 0;
const FAILED = 1;
const USAGE = 2;
const REFUSED = 3;
const REJECTED = 4;
const TIMEOUT = 27;

class SnUsageError extends Error {}

function integer(text: string | undefined, flag: string, min: number, max: number, fallback: number): number {
  if (text === undefined) return fallback;
  const n = /^-?\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!(n >= min && n <= max)) throw new SnUsageError(`${flag} must be an integer from ${min} to ${max} (got "${text}")`);
  return n;
}

/** Client options from the connection flags; those MQTT-SN has no place for are refused by name. */
function clientOptions(flags: SnCliFlags): SnClientOptions {
  if (flags.username !== undefined || flags.password !== undefined) throw new SnUsageError('MQTT-SN 1.2 has no username or password (-u / -P)');
  if (flags.protocolVersion !== undefined && flags.protocolVersion !== '5') throw new SnUsageError('-V does not apply to MQTT-SN (it is MQTT-SN 1.2)');
  const options: SnClientOptions = {
    clientId: flags.id ?? (flags.idPrefix !== undefined ? `${flags.idPrefix}${Math.random().toString(16).slice(2, 10)}` : undefined),
    keepAlive: integer(flags.keepalive, '--keepalive (-k)', 0, 65535, 60),
    cleanSession: !(flags.disableCleanSession === true || flags.clean === false),
    predefinedTopics: predefinedFromUrl(flags.url!),
  };
  if (flags.willTopic !== undefined) {
    if (!isValidTopicName(flags.willTopic)) throw new SnUsageError(`invalid will topic "${flags.willTopic}"`);
    options.will = { topic: flags.willTopic, payload: flags.willMessage ?? '', qos: integer(flags.willQos, '--will-qos', 0, 2, 0) as 0 | 1 | 2, retain: Boolean(flags.willRetain) };
  }
  return options;
}

/** Predefined topic ids given in the URL: mqttsn://host:1884?topic.1=sensors/temp&topic.2=cmd/led */
export function predefinedFromUrl(url: string): Record<number, string> {
  const out: Record<number, string> = {};
  for (const [key, value] of new URL(url).searchParams) {
    const m = /^topic\.(\d+)$/.exec(key);
    if (!m) throw new SnUsageError(`unknown URL parameter "${key}" (predefined topics are given as topic.<id>=<name>)`);
    out[Number(m[1])] = value;
  }
  return out;
}

async function run(what: 'pub' | 'sub', quiet: boolean, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (!quiet) process.stderr.write(`petrel ${what}: ${(err as Error).message}\n`);
    if (err instanceof SnUsageError || err instanceof TypeError) return USAGE;
    if (err instanceof SnClientError && err.returnCode !== undefined) return /connection refused/.test(err.message) ? REFUSED : REJECTED;
    return FAILED;
  }
}

/** `petrel pub -L mqttsn://...`: returns the exit code. */
export async function publishSn(flags: SnCliFlags): Promise<number> {
  return run('pub', Boolean(flags.quiet), async () => {
    const topic = Array.isArray(flags.topic) ? flags.topic[0] : flags.topic;
    if (!topic) throw new SnUsageError('a topic is needed: -t <topic>');
    if (!isValidTopicName(topic)) throw new SnUsageError(`invalid topic name "${topic}" (-t)`);
    const qos = integer(flags.qos, '-q', -1, 2, 0) as SnQoS;
    const repeat = integer(flags.repeat, '--repeat', 0, Number.MAX_SAFE_INTEGER, 1);
    const repeatDelay = Number(flags.repeatDelay ?? '0') * 1000;
    const options = clientOptions(flags);
    let payload: Buffer | undefined;
    if (flags.message !== undefined) payload = Buffer.from(flags.message);
    else if (flags.nullMessage) payload = Buffer.alloc(0);
    else if (flags.file !== undefined) payload = readFileSync(flags.file);
    else if (flags.stdinFile) {
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      payload = Buffer.concat(chunks);
    } else if (!flags.stdinLine) throw new SnUsageError('a message is needed: -m <message>, -f <file>, -s (stdin), -l (stdin lines) or -n (empty)');
    const client = new MqttSnClient(options);
    // QoS -1 needs no connection (MQTT-SN 6.8): the datagram goes out and that is all.
    if (qos === -1) await client.open(flags.url!);
    else await client.connect(flags.url!);
    try {
      const send = (data: Buffer | string) => client.publish(topic, data, { qos, retain: Boolean(flags.retain) });
      if (payload !== undefined) {
        for (let i = 0; i < repeat; i++) {
          if (i > 0 && repeatDelay > 0) await new Promise((r) => setTimeout(r, repeatDelay));
          await send(payload);
        }
      } else {
        for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) await send(line);
      }
      if (qos === -1) client.destroy();
      else await client.end();
    } catch (err) {
      client.destroy();
      throw err;
    }
    return OK;
  });
}

/** `petrel sub -L mqttsn://...`: returns the exit code. */
export async function subscribeSn(flags: SnCliFlags): Promise<number> {
  return run('sub', false, async () => {
    const filters = flags.topic === undefined ? [] : Array.isArray(flags.topic) ? flags.topic : [flags.topic];
    if (filters.length === 0) throw new SnUsageError('a topic filter is needed: -t <filter>');
    for (const f of filters) if (!isValidTopicFilter(f)) throw new SnUsageError(`invalid topic filter "${f}" (-t)`);
    const qos = integer(flags.qos, '-q', 0, 2, 0) as 0 | 1 | 2;
    const format = flags.format ?? 'text';
    if (format !== 'text' && format !== 'json') throw new SnUsageError(`--format must be text or json (got "${format}")`);
    const count = flags.count === undefined ? undefined : integer(flags.count, '--count (-C)', 1, Number.MAX_SAFE_INTEGER, 1);
    const timeoutS = flags.timeout === undefined ? undefined : Number(flags.timeout);
    if (timeoutS !== undefined && !(timeoutS > 0)) throw new SnUsageError(`-W must be a number of seconds above 0 (got "${flags.timeout}")`);
    const client = new MqttSnClient(clientOptions(flags));
    const messages = client.messages();
    await client.connect(flags.url!);
    let exitCode = OK;
    const stop = () => void client.end();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    let timer: NodeJS.Timeout | undefined;
    try {
      for (const f of filters) await client.subscribe(f, { qos });
      if (timeoutS !== undefined) {
        timer = setTimeout(() => {
          process.stderr.write(`petrel sub: timed out after ${timeoutS} s\n`);
          exitCode = TIMEOUT;
          stop();
        }, timeoutS * 1000);
      }
      const eol = flags.eol !== false ? '\n' : '';
      let seen = 0;
      for await (const m of messages) {
        if (flags.retained === false && m.retain) continue;
        const out =
          format === 'json'
            ? JSON.stringify({ topic: m.topic, payload: m.payload.toString('utf8'), qos: m.qos, retain: m.retain })
            : flags.verbose
              ? Buffer.concat([Buffer.from(`${m.topic} `), m.payload])
              : m.payload;
        process.stdout.write(out);
        if (eol) process.stdout.write(eol);
        if (count !== undefined && ++seen >= count) {
          stop();
          break;
        }
      }
      await client.end();
      return exitCode;
    } catch (err) {
      client.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  });
}

/** `petrel broker --mqttsn-port PORT`: an MQTT-SN listener besides the others in force. */
export function withMqttsnPort(config: FileConfig, text: string): FileConfig {
  const port = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!(port <= 65535)) throw new ConfigError(`--mqttsn-port: must be a whole number from 0 to 65535 (got "${text}")`);
  const { port: tcpPort, host, listeners, ...rest } = config;
  const base = listeners ?? (tcpPort !== undefined || host !== undefined ? [{ type: 'tcp' as const, host: host ?? '0.0.0.0', port: tcpPort ?? 1883 }] : DEFAULT_LISTENERS);
  return { ...rest, listeners: [...base, { type: 'mqttsn', port, ...(host !== undefined ? { host } : {}) }] };
}
