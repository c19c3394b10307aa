// `petrel sub`: subscribe and print messages, like mosquitto_sub (its flags and -F format strings) and
// MQTTX CLI's sub (payloads as hex or base64, messages written to a file).
import { Buffer, isUtf8 } from 'node:buffer';
import type { Command } from 'commander';
import type { Message } from '../client/index.js';
import { MqttClientError, formatDuration, isFinalDisconnect } from '../client/index.js';
import { isValidTopicFilter, topicMatches } from '../protocol/index.js';
import type { Properties } from '../protocol/index.js';
import { addCompatOptions, compatClientOptions, type CompatFlags } from './compat-flags.js';
import { EXIT, UsageError, addConnectionOptions, compactProperties, debugPackets, exitCodeFor, parseDecimalFlag, parseIntegerFlag, parseQos, parseSecondsFlag, printError, requireV5, runAction } from './common-client.js';
import { openSink, type Sink } from './sub-output.js';
import { compileFormat, type Formatter } from './sub-format.js';

interface SubFlags extends CompatFlags {
  topic?: string[];
  unsubscribe?: string[];
  filterOut?: string[];
  qos: string;
  verbose?: boolean;
  F?: string;
  format?: string;
  pretty?: boolean;
  count?: string;
  timeout?: string;
  retained?: boolean;
  retainedOnly?: boolean;
  removeRetained?: boolean;
  randomFilter?: string;
  exitAfterSubscribe?: boolean;
  eol?: boolean;
  local?: boolean;
  retainAsPublished?: boolean;
  retainHandling?: string;
  reconnect?: boolean;
  quiet?: boolean;
  fileWrite?: string;
  fileSave?: string;
}

const EXAMPLES = `
Examples:
  petrel sub -t 'sensors/#' -v
  petrel sub -h broker.local -t a/b -t c/+ -q 1
  petrel sub --url ws://localhost:8083/mqtt -t '#' -v
  petrel sub -t 'jobs/#' -C 1 -W 10        # wait up to 10 s for one message, then exit
  petrel sub -t 'telemetry/#' --format json | jq .payload
  petrel sub -t '#' -F '%I %t %q %r %l %x'  # mosquitto_sub's format strings
  petrel sub -t 'cam/#' --format base64 --file-write cam.log
  petrel sub -t '#' --remove-retained --retained-only   # clear every retained message
  petrel sub -t state/x -c -i worker-1 -x 3600 -q 1   # persistent session for an hour
  petrel sub --profile prod -t 'alerts/#'

Output: the payload and a newline (-v: "topic payload"; an empty payload prints nothing, with -v
"topic (null)", as mosquitto_sub); --format hex / base64 print the payload encoded; --format json
prints one object per line with topic, payload (UTF-8 text, or base64 with "encoding": "base64"),
qos, retain and properties; -F prints mosquitto_sub's format strings (%t %p %q %r %l %m %x %X %j %J
%I %U %C %D %E %F %P %R %S %A %%, flags - and 0, width and .precision, @-strftime, \\n \\t \\e ...).
Profiles: lines of "-flag value" under a [name] line in ~/.config/petrel/profiles (or $PETREL_PROFILES).
Exit codes: 0 ok, 1 connection failed, 2 bad arguments, 3 connection refused by the broker,
            4 subscription refused, 27 -W time limit reached.`;

const collect = (v: string, prev: string[] | undefined) => [...(prev ?? []), v];

export function registerSubCommand(program: Command): void {
  const cmd = program.command('sub').description('subscribe to topics and print the messages');
  addConnectionOptions(cmd);
  cmd
    .option('-t, --topic <filter>', 'topic filter to subscribe to (repeatable)', collect)
    .option('-U, --unsubscribe <filter>', 'unsubscribe from this filter after subscribing (repeatable; with -c, for a kept session)', collect)
    .option('-T, --filter-out <filter>', 'do not print messages whose topic matches this filter (repeatable)', collect)
    .option('-q, --qos <qos>', 'maximum QoS 0, 1 or 2', '0')
    .option('-v, --verbose', 'print the topic before each payload')
    .option('-F <format>', "mosquitto_sub's output format, e.g. '%t %p' or '%j' (see below)")
    .option('--format <format>', 'output: text, json, hex or base64 (payload encoding, MQTTX style)')
    .option('--pretty', 'with -F %j / %J: indented JSON')
    .option('-C, --count <count>', 'exit after this many messages')
    .option('-W, --timeout <seconds>', 'exit (code 27) when no --count messages arrived within this many seconds')
    .option('-E, --exit-after-subscribe', 'exit once the subscriptions (and -U unsubscriptions) are acknowledged')
    .option('-R, --no-retained', 'do not print retained messages (stale values)')
    .option('--retained-only', 'print only retained messages; exit at the first message that is not')
    .option('--remove-retained', 'clear every retained message received (publish an empty retained message to its topic)')
    .option('--random-filter <percent>', 'print only this percentage of the messages, picked at random')
    .option('-N, --no-eol', 'no newline after each message')
    .option('--no-local', 'MQTT 5: do not receive my own publishes')
    .option('--retain-as-published', 'MQTT 5: keep the retain flag as published')
    .option('--retain-handling <mode>', 'MQTT 5: always (0), new (1: only for a new subscription) or never (2)')
    .option('--file-write <file>', 'append the output to this file instead of printing it')
    .option('--file-save <file>', 'save each payload in its own file: file, file-1, file-2, ...')
    .option('--quiet', 'print no error messages')
    .option('--no-reconnect', 'exit when the connection is lost instead of reconnecting');
  addCompatOptions(cmd, 'subscribe');
  cmd.addHelpText('after', EXAMPLES);
  cmd.action((flags: SubFlags) => runAction('sub', () => subscribe(flags), { quiet: Boolean(flags.quiet) }));
}

type OutputFormat = 'text' | 'json' | 'hex' | 'base64';

export function formatMessage(m: Message, format: OutputFormat, verbose: boolean, eol = true): Buffer | string | undefined {
  if (format === 'json') {
    const text = isUtf8(m.payload);
    const o: Record<string, unknown> = { topic: m.topic, payload: text ? m.payload.toString('utf8') : m.payload.toString('base64') };
    if (!text) o.encoding = 'base64';
    o.qos = m.qos;
    o.retain = m.retain;
    if (m.properties && Object.keys(m.properties).length > 0) o.properties = jsonProperties(m.properties);
    return JSON.stringify(o);
  }
  const body = format === 'hex' ? Buffer.from(m.payload.toString('hex')) : format === 'base64' ? Buffer.from(m.payload.toString('base64')) : m.payload;
  // as mosquitto_sub: an empty payload prints nothing, with -v "topic (null)" (and with -v -N nothing)
  if (m.payload.length === 0) return verbose && eol ? `${m.topic} (null)` : undefined;
  return verbose ? Buffer.concat([Buffer.from(`${m.topic} `), body]) : body;
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

function checkFilters(filters: string[], flag: string): void {
  for (const f of filters) {
    if (!isValidTopicFilter(f)) throw new UsageError(`invalid topic filter "${f}" (${flag}): # only as the last level, + alone in its level, non-empty, at most 65535 bytes`);
  }
}

function parseRetainHandling(value: string | undefined): 0 | 1 | 2 | undefined {
  if (value === undefined) return undefined;
  const v = value.trim().toLowerCase();
  const mode = { '0': 0, always: 0, '1': 1, new: 1, '2': 2, never: 2 }[v] as 0 | 1 | 2 | undefined;
  if (mode === undefined) throw new UsageError(`--retain-handling must be always, new or never (or 0, 1, 2) (got "${value}")`);
  return mode;
}

async function subscribe(flags: SubFlags): Promise<number> {
  if (flags.url !== undefined && /^mqttsn:\/\//i.test(flags.url.trim())) {
    const { subscribeSn } = await import('../mqttsn/cli.js');
    return subscribeSn(flags);
  }
  const filters = flags.topic ?? [];
  const unsubscribes = flags.unsubscribe ?? [];
  const filterOut = flags.filterOut ?? [];
  if (filters.length === 0 && unsubscribes.length === 0) throw new UsageError('a topic filter is needed: -t <filter> (or -U <filter> to unsubscribe)');
  checkFilters(filters, '-t');
  checkFilters(unsubscribes, '-U');
  checkFilters(filterOut, '-T');
  // every flag is checked before a connection is opened
  const { connection, properties } = compatClientOptions(flags, 'subscribe');
  requireV5(connection.protocolVersion, [
    flags.local === false && '--no-local',
    flags.retainAsPublished === true && '--retain-as-published',
    flags.retainHandling !== undefined && '--retain-handling',
  ]);
  const qos = parseQos(flags.qos);
  if (flags.F !== undefined && flags.format !== undefined) throw new UsageError('use -F (a mosquitto format string) or --format (text, json, hex, base64), not both');
  if (flags.retained === false && flags.retainedOnly) throw new UsageError("combining -R and --retained-only makes no sense: one hides retained messages, the other prints only them");
  const format = (flags.format ?? 'text') as OutputFormat;
  if (!['text', 'json', 'hex', 'base64'].includes(format)) {
    const hint = format.includes('%') ? `; for a mosquitto format string use -F '${format}'` : '';
    throw new UsageError(`--format must be text, json, hex or base64 (got "${format}")${hint}`);
  }
  let formatter: Formatter | undefined;
  if (flags.F !== undefined) formatter = compileFormat(flags.F, { pretty: Boolean(flags.pretty), warn: (line) => flags.quiet || process.stderr.write(`petrel sub: ${line}\n`) });
  const count = flags.count === undefined ? undefined : parseIntegerFlag(flags.count, '--count (-C)', 1, Number.MAX_SAFE_INTEGER);
  const timeoutS = flags.timeout === undefined ? undefined : parseSecondsFlag(flags.timeout, '-W', { min: 0, minExclusive: true });
  const chance = flags.randomFilter === undefined ? 100 : parseDecimalFlag(flags.randomFilter, '--random-filter', 'percent', { min: 0, max: 100 });
  const retainHandling = parseRetainHandling(flags.retainHandling);
  const subscribeProperties = compactProperties(properties.subscribe ?? {});
  const unsubscribeProperties = compactProperties(properties.unsubscribe ?? {});
  const disconnectExpiry = properties.disconnect?.sessionExpiryInterval;
  const sink: Sink = openSink({ fileWrite: flags.fileWrite, fileSave: flags.fileSave });

  const reconnect = flags.reconnect !== false && !flags.exitAfterSubscribe;
  // loaded here, not at start-up: --help and a bad flag answer without loading the client (and ws)
  const { MqttClient } = await import('../client/client.js');
  const client = new MqttClient({ ...connection, reconnect: reconnect ? { initialDelay: 1000, maxDelay: 30_000 } : false });
  if (flags.debug) debugPackets(client);
  // %m and %j print the Packet Identifier, which Message does not carry: taken from the PUBLISH as it arrives
  const packetIds = new WeakMap<Message, number>();
  if (formatter && /%[-0-9.]*[mjJ]/.test(flags.F!)) {
    let lastId = 0;
    client.on('packetreceive', (p: { type: number; packetId?: number }) => {
      if (p.type === 3) lastId = p.packetId ?? 0;
    });
    client.on('message', (m: Message) => packetIds.set(m, lastId));
  }
  const messages = client.messages();
  const say = (line: string) => flags.quiet || process.stderr.write(`petrel sub: ${line}\n`);
  await client.connect();
  // without reconnect (or after a DISCONNECT that ends it: Use another server, ...) the loss is also why sub ends: say it once, here
  let reportedLoss: MqttClientError | undefined;
  client.on('offline', (err: MqttClientError) => {
    reportedLoss = err;
    const retry = reconnect && !isFinalDisconnect(err);
    say(`connection lost: ${retry ? `${err.message}; reconnecting` : err.describe()}`);
  });
  let attempting = false;
  client.on('reconnect', () => (attempting = true));
  client.on('connect', () => {
    if (attempting) say('reconnected');
    attempting = false;
  });
  client.on('error', (err: MqttClientError) => {
    if (attempting) say(`reconnect failed: ${err.message}`);
  });
  // Connections accepted and then dropped again and again (a takeover loop, a proxy, a broker under load): said
  // once, in words, by the client library.
  client.on('warning', (w: MqttClientError) => say(w.describe()));

  let exitCode: number = EXIT.OK;
  let timer: NodeJS.Timeout | undefined;
  const end = () => client.end({ timeout: 1000, ...(disconnectExpiry !== undefined ? { sessionExpiry: disconnectExpiry } : {}) });
  const stop = () => void end();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    if (filters.length > 0) {
      await client.subscribe(filters, {
        qos,
        ...(flags.local === false ? { noLocal: true } : {}),
        ...(flags.retainAsPublished ? { retainAsPublished: true } : {}),
        ...(retainHandling !== undefined ? { retainHandling } : {}),
        ...(subscribeProperties ? { properties: subscribeProperties } : {}),
      });
    }
    if (unsubscribes.length > 0) await client.unsubscribe(unsubscribes, unsubscribeProperties);
    if (flags.exitAfterSubscribe) {
      await end();
      return EXIT.OK;
    }
    if (timeoutS !== undefined) {
      timer = setTimeout(() => {
        say(`timed out after ${formatDuration(timeoutS * 1000)}`);
        exitCode = EXIT.TIMEOUT;
        stop();
      }, timeoutS * 1000);
    }
    const eol = flags.eol !== false ? Buffer.from('\n') : undefined;
    const removals: Promise<unknown>[] = [];
    let seen = 0;
    for await (const m of messages) {
      if (filterOut.some((f) => topicMatches(f, m.topic))) continue;
      if (flags.removeRetained && m.retain && m.payload.length > 0) {
        removals.push(client.publish(m.topic, Buffer.alloc(0), { qos: 1, retain: true }).catch((err: unknown) => say(`cannot clear the retained message of ${m.topic}: ${(err as Error).message}`)));
      }
      if (flags.retainedOnly && !m.retain) break;
      if (flags.retained === false && m.retain) continue;
      if (chance >= 100 || Math.random() * 100 < chance) {
        const out = formatter ? formatter({ message: m, mid: packetIds.get(m) ?? 0 }) : formatMessage(m, format, Boolean(flags.verbose), eol !== undefined);
        // mosquitto_sub adds the end of line after a format string even when it printed nothing
        if (out !== undefined || formatter) await sink.write(m, out ?? Buffer.alloc(0), eol);
      }
      seen++;
      if (count !== undefined && seen >= count) break;
    }
    // clear what --remove-retained asked for before leaving (a break above ends the loop, not the client)
    await Promise.all(removals);
    await end();
    // the loop ends when the client closes: after end(), or for good after a failure
    if (client.error) {
      if (client.error !== reportedLoss && !flags.quiet) printError('sub', client.error);
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
    await sink.close();
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
