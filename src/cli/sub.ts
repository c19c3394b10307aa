// `petrel sub`: subscribe and print messages, like mosquitto_sub.
import { Buffer, isUtf8 } from 'node:buffer';
import type { Command } from 'commander';
import { MqttClient } from '../client/client.js';
import type { Message } from '../client/client.js';
import { MqttClientError, formatDuration, isFinalDisconnect } from '../client/errors.js';
import { isValidTopicFilter } from '../protocol/index.js';
import type { Properties } from '../protocol/index.js';
import type { ConnectionFlags } from './common-client.js';
import { isMqttsnUrl } from '../mqttsn/client.js';
import { subscribeSn } from '../mqttsn/cli.js';
import {
  EXIT,
  UsageError,
  addConnectionOptions,
  clientOptionsFromFlags,
  compactProperties,
  debugPackets,
  exitCodeFor,
  parseIntegerFlag,
  parseQos,
  parseSecondsFlag,
  parseUserProperties,
  printError,
  requireV5,
  runAction,
  userPropertyOption,
} from './common-client.js';

interface SubFlags extends ConnectionFlags {
  topic?: string[];
  qos: string;
  verbose?: boolean;
  format: string;
  count?: string;
  timeout?: string;
  retained?: boolean;
  eol?: boolean;
  local?: boolean;
  retainAsPublished?: boolean;
  retainHandling?: string;
  userProperty?: string[];
  reconnect?: boolean;
}

const EXAMPLES = `
Examples:
  petrel sub -t 'sensors/#' -v
  petrel sub -h broker.local -t a/b -t c/+ -q 1
  petrel sub --url ws://localhost:8083/mqtt -t '#' -v
  petrel sub -t 'jobs/#' -C 1 -W 10        # wait up to 10 s for one message, then exit
  petrel sub -t 'telemetry/#' --format json | jq .payload
  petrel sub -t state/x -c -i worker-1 -x 3600 -q 1   # persistent session for an hour

Output: the payload and a newline (-v: "topic payload"); --format json prints one object per line
with topic, payload (UTF-8 text, or base64 with "encoding": "base64"), qos, retain and properties.
Exit codes: 0 ok, 1 connection failed, 2 bad arguments, 3 connection refused by the broker,
            4 subscription refused, 27 -W time limit reached.`;

export function registerSubCommand(program: Command): void {
  const cmd = program.command('sub').description('subscribe to topics and print the messages');
  addConnectionOptions(cmd);
  cmd
    .option('-t, --topic <filter>', 'topic filter to subscribe to (repeatable)', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('-q, --qos <qos>', 'maximum QoS 0, 1 or 2', '0')
    .option('-v, --verbose', 'print the topic before each payload')
    .option('-F, --format <format>', 'output format: text or json', 'text')
    .option('-C, --count <count>', 'exit after this many messages')
    .option('-W, --timeout <seconds>', 'exit (code 27) when no --count messages arrived within this many seconds')
    .option('-R, --no-retained', 'do not print retained messages (stale values)')
    .option('-N, --no-eol', 'no newline after the payload')
    .option('--no-local', 'MQTT 5: do not receive my own publishes')
    .option('--retain-as-published', 'MQTT 5: keep the retain flag as published')
    .option('--retain-handling <0|1|2>', 'MQTT 5: 0 send retained, 1 only for new subscriptions, 2 never')
    .option('--no-reconnect', 'exit when the connection is lost instead of reconnecting');
  userPropertyOption(cmd, 'the SUBSCRIBE');
  cmd.addHelpText('after', EXAMPLES);
  cmd.action((flags: SubFlags) => runAction('sub', () => subscribe(flags)));
}

export function formatMessage(m: Message, format: 'text' | 'json', verbose: boolean): Buffer | string {
  if (format === 'json') {
    const text = isUtf8(m.payload);
    const o: Record<string, unknown> = { topic: m.topic, payload: text ? m.payload.toString('utf8') : m.payload.toString('base64') };
    if (!text) o.encoding = 'base64';
    o.qos = m.qos;
    o.retain = m.retain;
    if (m.properties && Object.keys(m.properties).length > 0) o.properties = jsonProperties(m.properties);
    return JSON.stringify(o);
  }
  return verbose ? Buffer.concat([Buffer.from(`${m.topic} `), m.payload]) : m.payload;
}

function jsonProperties(p: Properties): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(p)) {
    if (Buffer.isBuffer(v)) out[k] = isUtf8(v) ? v.toString('utf8') : v.toString('base64');
    else if (k === 'userProperties') out[k] = Object.fromEntries(v as [string, string][]);
    else out[k] = v;
  }
  return out;
}

async function subscribe(flags: SubFlags): Promise<number> {
  if (isMqttsnUrl(flags.url)) return subscribeSn(flags);
  const filters = flags.topic ?? [];
  if (filters.length === 0) throw new UsageError('a topic filter is needed: -t <filter>');
  for (const f of filters) {
    if (!isValidTopicFilter(f)) {
      throw new UsageError(`invalid topic filter "${f}" (-t): # only as the last level, + alone in its level, non-empty, at most 65535 bytes`);
    }
  }
  // every flag is checked before a connection is opened
  const connection = clientOptionsFromFlags(flags);
  requireV5(connection.protocolVersion, [
    flags.userProperty !== undefined && '--user-property (-D)',
    flags.local === false && '--no-local',
    flags.retainAsPublished === true && '--retain-as-published',
    flags.retainHandling !== undefined && '--retain-handling',
  ]);
  const qos = parseQos(flags.qos);
  const format = flags.format;
  if (format !== 'text' && format !== 'json') throw new UsageError(`--format must be text or json (got "${format}")`);
  const count = flags.count === undefined ? undefined : parseIntegerFlag(flags.count, '--count (-C)', 1, Number.MAX_SAFE_INTEGER);
  const timeoutS = flags.timeout === undefined ? undefined : parseSecondsFlag(flags.timeout, '-W', { min: 0, minExclusive: true });
  let retainHandling: 0 | 1 | 2 | undefined;
  if (flags.retainHandling !== undefined) {
    if (!/^[012]$/.test(flags.retainHandling.trim())) throw new UsageError(`--retain-handling must be 0, 1 or 2 (got "${flags.retainHandling}")`);
    retainHandling = Number(flags.retainHandling) as 0 | 1 | 2;
  }
  const properties = compactProperties({ userProperties: parseUserProperties(flags.userProperty) });
  const reconnect = flags.reconnect !== false;
  const client = new MqttClient({ ...connection, reconnect: reconnect ? { initialDelay: 1000, maxDelay: 30_000 } : false });
  if (flags.debug) debugPackets(client);
  const messages = client.messages();
  await client.connect();
  // without reconnect (or after a DISCONNECT that ends it: Use another server, ...) the loss is also why sub ends: say it once, here
  let reportedLoss: MqttClientError | undefined;
  client.on('offline', (err: MqttClientError) => {
    reportedLoss = err;
    const retry = reconnect && !isFinalDisconnect(err);
    process.stderr.write(`petrel sub: connection lost: ${retry ? `${err.message}; reconnecting` : err.describe()}\n`);
  });
  let attempting = false;
  client.on('reconnect', () => (attempting = true));
  client.on('connect', () => {
    if (attempting) process.stderr.write('petrel sub: reconnected\n');
    attempting = false;
  });
  client.on('error', (err: MqttClientError) => {
    if (attempting) process.stderr.write(`petrel sub: reconnect failed: ${err.message}\n`);
  });

  let exitCode: number = EXIT.OK;
  let timer: NodeJS.Timeout | undefined;
  const stop = () => void client.end({ timeout: 1000 });
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await client.subscribe(filters, {
      qos,
      ...(flags.local === false ? { noLocal: true } : {}),
      ...(flags.retainAsPublished ? { retainAsPublished: true } : {}),
      ...(retainHandling !== undefined ? { retainHandling } : {}),
      ...(properties ? { properties } : {}),
    });
    if (timeoutS !== undefined) {
      timer = setTimeout(() => {
        process.stderr.write(`petrel sub: timed out after ${formatDuration(timeoutS * 1000)}\n`);
        exitCode = EXIT.TIMEOUT;
        stop();
      }, timeoutS * 1000);
    }
    const eol = flags.eol !== false ? '\n' : '';
    let seen = 0;
    for await (const m of messages) {
      if (flags.retained === false && m.retain) continue;
      const out = formatMessage(m, format, Boolean(flags.verbose));
      // Write the line and its end before waiting: skipping the newline under backpressure ran lines together.
      const flushed = process.stdout.write(out);
      if (!(eol ? process.stdout.write(eol) && flushed : flushed)) {
        await new Promise((r) => process.stdout.once('drain', r));
      }
      seen++;
      if (count !== undefined && seen >= count) {
        stop();
        break;
      }
    }
    // the loop ends when the client closes: after end(), or for good after a failure
    if (client.error) {
      if (client.error !== reportedLoss) printError('sub', client.error);
      exitCode = exitCodeFor(client.error);
    }
    await client.end();
    return exitCode;
  } catch (err) {
    client.destroy();
    // a SUBSCRIBE cut short by the loss already reported: not twice ("the client closed: <the same>")
    if (reportedLoss && client.error === reportedLoss && err instanceof MqttClientError && err.cause === reportedLoss) return exitCodeFor(reportedLoss);
    throw err;
  } finally {
    clearTimeout(timer);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
