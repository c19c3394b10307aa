// `petrel pub`: publish one message (or each line of stdin), like mosquitto_pub.
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { PublishOptions } from '../client/index.js';
import { addCompatOptions, compatClientOptions, type CompatFlags } from './compat-flags.js';
import {
  EXIT,
  UsageError,
  addConnectionOptions,
  compactProperties,
  checkStringLength,
  checkTopicName,
  debugPackets,
  parseIntegerFlag,
  parseQos,
  parseSecondsFlag,
  requireV5,
  runAction,
} from './common-client.js';

interface PubFlags extends CompatFlags {
  format?: string;
  topic?: string;
  message?: string;
  file?: string;
  stdinFile?: boolean;
  stdinLine?: boolean;
  nullMessage?: boolean;
  qos: string;
  retain?: boolean;
  repeat?: string;
  repeatDelay?: string;
  contentType?: string;
  messageExpiry?: string;
  responseTopic?: string;
  correlationData?: string;
  quiet?: boolean;
}

const EXAMPLES = `
Examples:
  petrel pub -t sensors/temp -m 21.5
  petrel pub -h broker.local -p 1884 -t cmd/led -m on -q 1 -r
  petrel pub --url mqtts://user:pass@broker.example -t a/b -m hi --cafile ca.pem
  petrel pub -t logs/app -l < app.log            # one message per line
  petrel pub -t firmware/bin -f build.bin -q 1     # file contents as the payload
  petrel pub -t status/dev1 -n -r                  # empty retained message: clears the retained one
  petrel pub -V 5 -t a -m x -D source=cli -D trace=42 --content-type text/plain
  petrel pub -t a -m x -D publish user-property source cli -D publish message-expiry-interval 60   # mosquitto's -D
  petrel pub -t cmd/x -m 'ff00a1' --format hex    # the payload given in hex (or base64)
  petrel pub -t a -m x --will-topic status/me --will-payload gone -D will will-delay-interval 5
  petrel pub --profile prod -t a -m x              # connection flags from ~/.config/petrel/profiles

Exit codes: 0 ok, 1 connection failed, 2 bad arguments, 3 connection refused by the broker,
            4 publish refused by the broker.`;

export function registerPubCommand(program: Command): void {
  const cmd = program.command('pub').description('publish a message to an MQTT broker');
  addConnectionOptions(cmd);
  cmd
    .option('-t, --topic <topic>', 'topic to publish to')
    .option('-m, --message <message>', 'message payload')
    .option('-f, --file <file>', 'send the contents of a file as the message')
    .option('-s, --stdin-file', 'send all of stdin as one message')
    .option('-l, --stdin-line', 'send each line of stdin as a message')
    .option('-n, --null-message', 'send an empty (zero-length) message')
    .option('-q, --qos <qos>', 'QoS 0, 1 or 2', '0')
    .option('-r, --retain', 'retain the message')
    .option('--repeat <count>', 'publish the message this many times', '1')
    .option('--repeat-delay <seconds>', 'seconds between repeats', '0')
    .option('--content-type <type>', 'MQTT 5 content type')
    .option('-e, --response-topic <topic>', 'MQTT 5 response topic')
    .option('--correlation-data <data>', 'MQTT 5 correlation data')
    .option('--message-expiry <seconds>', 'MQTT 5 message expiry interval')
    .option('--format <encoding>', 'how -m is written: text (default), hex or base64 (MQTTX style)')
    .option('--quiet', 'print nothing, not even errors');
  addCompatOptions(cmd, 'publish');
  cmd.addHelpText('after', EXAMPLES);
  cmd.action((flags: PubFlags) => runPub(flags));
}

async function runPub(flags: PubFlags): Promise<void> {
  await runAction('pub', () => publish(flags), { quiet: Boolean(flags.quiet) });
}

async function publish(flags: PubFlags): Promise<number> {
  if (flags.url !== undefined && /^mqttsn:\/\//i.test(flags.url.trim())) {
    const { publishSn } = await import('../mqttsn/cli.js');
    return publishSn(flags);
  }
  if (!flags.topic) throw new UsageError('a topic is needed: -t <topic>');
  checkTopicName(flags.topic, 'topic name', '-t');
  const sources = [flags.message !== undefined, flags.file !== undefined, flags.stdinFile, flags.stdinLine, flags.nullMessage].filter(Boolean).length;
  if (sources === 0) throw new UsageError('a message is needed: -m <message>, -f <file>, -s (stdin), -l (stdin lines) or -n (empty)');
  if (sources > 1) throw new UsageError('use only one of -m, -f, -s, -l, -n');
  // every flag is checked before anything is read or a connection opened
  const { connection, properties: packetProperties } = compatClientOptions(flags, 'publish');
  requireV5(connection.protocolVersion, [
    flags.contentType !== undefined && '--content-type',
    flags.responseTopic !== undefined && '--response-topic (-e)',
    flags.correlationData !== undefined && '--correlation-data',
    flags.messageExpiry !== undefined && '--message-expiry',
  ]);
  const qos = parseQos(flags.qos);
  const repeat = parseIntegerFlag(flags.repeat ?? '1', '--repeat', 0, Number.MAX_SAFE_INTEGER);
  const repeatDelay = parseSecondsFlag(flags.repeatDelay ?? '0', '--repeat-delay') * 1000;
  if (flags.responseTopic !== undefined) checkTopicName(flags.responseTopic, 'response topic', '-e');
  checkStringLength(flags.contentType, 'the content type (--content-type)');
  checkStringLength(flags.correlationData, 'the correlation data (--correlation-data)');
  const options: PublishOptions = { qos, retain: Boolean(flags.retain) };
  // flags win over the same property given with -D publish ...
  const fromD = packetProperties.publish ?? {};
  const properties = compactProperties({
    ...fromD,
    contentType: flags.contentType ?? fromD.contentType,
    responseTopic: flags.responseTopic ?? fromD.responseTopic,
    correlationData: flags.correlationData === undefined ? fromD.correlationData : Buffer.from(flags.correlationData),
    messageExpiryInterval: flags.messageExpiry === undefined ? fromD.messageExpiryInterval : parseIntegerFlag(flags.messageExpiry, '--message-expiry', 0, 0xffffffff),
  });
  if (fromD.responseTopic !== undefined) checkTopicName(fromD.responseTopic, 'response topic', '-D publish response-topic');
  const disconnectExpiry = packetProperties.disconnect?.sessionExpiryInterval;
  const encoding = (flags.format ?? 'text').toLowerCase();
  if (!['text', 'hex', 'base64'].includes(encoding)) throw new UsageError(`--format must be text, hex or base64 (got "${flags.format}")`);
  if (encoding !== 'text' && flags.message === undefined) throw new UsageError(`--format ${encoding} applies to -m: give the payload with -m`);
  if (properties) options.properties = properties;

  let payload: Buffer | undefined;
  if (flags.message !== undefined) payload = decodeMessage(flags.message, encoding);
  else if (flags.nullMessage) payload = Buffer.alloc(0);
  else if (flags.file !== undefined) {
    try {
      payload = readFileSync(flags.file);
    } catch (err) {
      throw new UsageError(`cannot read message file "${flags.file}": ${(err as Error).message}`);
    }
  } else if (flags.stdinFile) payload = await readAll(process.stdin);

  // loaded here, not at start-up: --help and a bad flag answer without loading the client (and ws)
  const { MqttClient } = await import('../client/client.js');
  const client = new MqttClient({ ...connection, reconnect: false });
  if (flags.debug) debugPackets(client);
  await client.connect();
  try {
    if (payload !== undefined) {
      for (let i = 0; i < repeat; i++) {
        if (i > 0 && repeatDelay > 0) await new Promise((r) => setTimeout(r, repeatDelay));
        await client.publish(flags.topic, payload, options);
      }
    } else {
      // -l: one message per line, as lines arrive; QoS > 0 acknowledgements overlap
      const pending: Promise<unknown>[] = [];
      const { createInterface } = await import('node:readline');
      const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
      for await (const line of lines) {
        pending.push(client.publish(flags.topic, line, options));
        if (pending.length >= 1000) await Promise.all(pending.splice(0));
      }
      await Promise.all(pending);
    }
    await client.end(disconnectExpiry !== undefined ? { sessionExpiry: disconnectExpiry } : {});
  } catch (err) {
    client.destroy();
    throw err;
  }
  return EXIT.OK;
}

function decodeMessage(text: string, encoding: string): Buffer {
  if (encoding === 'hex') {
    const hex = text.replace(/\s+/g, '');
    if (!/^([0-9a-f]{2})*$/i.test(hex)) throw new UsageError(`-m "${text}" is not hex (pairs of 0-9 a-f; spaces allowed)`);
    return Buffer.from(hex, 'hex');
  }
  if (encoding === 'base64') {
    const b64 = text.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(b64)) throw new UsageError(`-m "${text}" is not base64`);
    return Buffer.from(b64, 'base64');
  }
  return Buffer.from(text);
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks);
}
