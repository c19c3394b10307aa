// `petrel pub`: publish one message (or each line of stdin), like mosquitto_pub.
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { MqttClient } from '../client/client.js';
import type { PublishOptions } from '../client/client.js';
import type { ConnectionFlags } from './common-client.js';
import { isMqttsnUrl } from '../mqttsn/client.js';
import { publishSn } from '../mqttsn/cli.js';
import {
  EXIT,
  UsageError,
  addConnectionOptions,
  clientOptionsFromFlags,
  compactProperties,
  checkStringLength,
  checkTopicName,
  debugPackets,
  parseIntegerFlag,
  parseQos,
  parseSecondsFlag,
  parseUserProperties,
  requireV5,
  runAction,
  userPropertyOption,
} from './common-client.js';

interface PubFlags extends ConnectionFlags {
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
  userProperty?: string[];
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
    .option('--quiet', 'print nothing, not even errors');
  userPropertyOption(cmd, 'the PUBLISH');
  cmd.addHelpText('after', EXAMPLES);
  cmd.action((flags: PubFlags) => runPub(flags));
}

async function runPub(flags: PubFlags): Promise<void> {
  await runAction('pub', () => publish(flags), { quiet: Boolean(flags.quiet) });
}

async function publish(flags: PubFlags): Promise<number> {
  if (isMqttsnUrl(flags.url)) return publishSn(flags);
  if (!flags.topic) throw new UsageError('a topic is needed: -t <topic>');
  checkTopicName(flags.topic, 'topic name', '-t');
  const sources = [flags.message !== undefined, flags.file !== undefined, flags.stdinFile, flags.stdinLine, flags.nullMessage].filter(Boolean).length;
  if (sources === 0) throw new UsageError('a message is needed: -m <message>, -f <file>, -s (stdin), -l (stdin lines) or -n (empty)');
  if (sources > 1) throw new UsageError('use only one of -m, -f, -s, -l, -n');
  // every flag is checked before anything is read or a connection opened
  const connection = clientOptionsFromFlags(flags);
  requireV5(connection.protocolVersion, [
    flags.userProperty !== undefined && '--user-property (-D)',
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
  const properties = compactProperties({
    contentType: flags.contentType,
    responseTopic: flags.responseTopic,
    correlationData: flags.correlationData === undefined ? undefined : Buffer.from(flags.correlationData),
    messageExpiryInterval: flags.messageExpiry === undefined ? undefined : parseIntegerFlag(flags.messageExpiry, '--message-expiry', 0, 0xffffffff),
    userProperties: parseUserProperties(flags.userProperty),
  });
  if (properties) options.properties = properties;

  let payload: Buffer | undefined;
  if (flags.message !== undefined) payload = Buffer.from(flags.message);
  else if (flags.nullMessage) payload = Buffer.alloc(0);
  else if (flags.file !== undefined) {
    try {
      payload = readFileSync(flags.file);
    } catch (err) {
      throw new UsageError(`cannot read message file "${flags.file}": ${(err as Error).message}`);
    }
  } else if (flags.stdinFile) payload = await readAll(process.stdin);

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
      const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
      for await (const line of lines) {
        pending.push(client.publish(flags.topic, line, options));
        if (pending.length >= 1000) await Promise.all(pending.splice(0));
      }
      await Promise.all(pending);
    }
    await client.end();
  } catch (err) {
    client.destroy();
    throw err;
  }
  return EXIT.OK;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks);
}
