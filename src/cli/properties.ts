// `-D command identifier value [value]`: MQTT 5 properties as mosquitto_pub / mosquitto_sub take them
// (`-D publish user-property source cli`, `-D connect receive-maximum 10`, `-D will will-delay-interval 30`),
// and Petrel's shorter `-D key=value` (a user property on the command's own packet).
import { Buffer } from 'node:buffer';
import type { Properties, UserProperty } from '../protocol/index.js';
import { UsageError } from './common-client.js';
import { nearest } from '../config/suggest.js';

/** The packets -D can add properties to. */
export type PropertyCommand = 'connect' | 'publish' | 'subscribe' | 'unsubscribe' | 'disconnect' | 'will';
export const PROPERTY_COMMANDS: readonly PropertyCommand[] = ['connect', 'publish', 'subscribe', 'unsubscribe', 'disconnect', 'will'];

type Kind = 'string' | 'binary' | 'u8' | 'u16' | 'u32' | 'pair';
interface PropertyInfo {
  key: keyof Properties;
  kind: Kind;
}

/** mosquitto's property names (mosquitto_pub(1) PROPERTIES), their Properties key and type. */
const PROPERTIES: Record<string, PropertyInfo> = {
  'authentication-data': { key: 'authenticationData', kind: 'binary' },
  'authentication-method': { key: 'authenticationMethod', kind: 'string' },
  'content-type': { key: 'contentType', kind: 'string' },
  'correlation-data': { key: 'correlationData', kind: 'binary' },
  'maximum-packet-size': { key: 'maximumPacketSize', kind: 'u32' },
  'message-expiry-interval': { key: 'messageExpiryInterval', kind: 'u32' },
  'payload-format-indicator': { key: 'payloadFormatIndicator', kind: 'u8' },
  'receive-maximum': { key: 'receiveMaximum', kind: 'u16' },
  'request-problem-information': { key: 'requestProblemInformation', kind: 'u8' },
  'request-response-information': { key: 'requestResponseInformation', kind: 'u8' },
  'response-topic': { key: 'responseTopic', kind: 'string' },
  'session-expiry-interval': { key: 'sessionExpiryInterval', kind: 'u32' },
  'topic-alias': { key: 'topicAlias', kind: 'u16' },
  'topic-alias-maximum': { key: 'topicAliasMaximum', kind: 'u16' },
  'user-property': { key: 'userProperties', kind: 'pair' },
  'will-delay-interval': { key: 'willDelayInterval', kind: 'u32' },
};

/** Which property each packet may carry (as mosquitto_pub / mosquitto_sub allow them). */
const ALLOWED: Record<PropertyCommand, string[]> = {
  connect: [
    'authentication-data',
    'authentication-method',
    'maximum-packet-size',
    'receive-maximum',
    'request-problem-information',
    'request-response-information',
    'session-expiry-interval',
    'topic-alias-maximum',
    'user-property',
  ],
  publish: ['content-type', 'correlation-data', 'message-expiry-interval', 'payload-format-indicator', 'response-topic', 'topic-alias', 'user-property'],
  subscribe: ['user-property'],
  unsubscribe: ['user-property'],
  disconnect: ['session-expiry-interval', 'user-property'],
  will: ['content-type', 'correlation-data', 'message-expiry-interval', 'payload-format-indicator', 'response-topic', 'user-property', 'will-delay-interval'],
};

/** The separator argv.ts puts between the words of one multi-word -D (a value cannot hold U+0000). */
export const WORD_SEPARATOR = '\u0000';

/** How many words follow `-D command`: the identifier and one value, or two for user-property. */
export function propertyArity(identifier: string): number {
  return identifier.toLowerCase() === 'user-property' ? 3 : 2;
}

export function isPropertyCommand(word: string): boolean {
  return (PROPERTY_COMMANDS as readonly string[]).includes(word.toLowerCase());
}

const LIMITS: Record<'u8' | 'u16' | 'u32', number> = { u8: 255, u16: 65535, u32: 0xffffffff };

function parseValue(info: PropertyInfo, name: string, value: string): unknown {
  switch (info.kind) {
    case 'string':
      return value;
    case 'binary':
      return Buffer.from(value);
    case 'pair':
      throw new Error('unreachable');
    default: {
      const max = LIMITS[info.kind];
      const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
      if (!(n <= max)) throw new UsageError(`-D ${name}: must be a whole number from 0 to ${max} (got "${value}")`);
      return n;
    }
  }
}

/** The properties of each packet, from the -D values of a command (`own`: the packet `-D key=value` is for). */
export function parsePropertyFlags(values: string[] | undefined, own: PropertyCommand, allowed: readonly PropertyCommand[]): Partial<Record<PropertyCommand, Properties>> {
  const out: Partial<Record<PropertyCommand, Properties>> = {};
  const add = (command: PropertyCommand, info: PropertyInfo, value: unknown) => {
    const props = (out[command] ??= {}) as Record<string, unknown>;
    if (info.kind === 'pair') ((props.userProperties ??= []) as UserProperty[]).push(value as UserProperty);
    else props[info.key] = value;
  };
  for (const raw of values ?? []) {
    if (!raw.includes(WORD_SEPARATOR)) {
      // Petrel's short form: -D key=value (or key:value), a user property
      const i = raw.search(/[=:]/);
      if (i <= 0) {
        throw new UsageError(
          `-D "${raw}": use -D key=value (a user property) or mosquitto's -D command identifier value, e.g. -D ${own} user-property key value`,
        );
      }
      add(own, PROPERTIES['user-property']!, [raw.slice(0, i).trim(), raw.slice(i + 1).trimStart()]);
      continue;
    }
    const [commandWord, identifierWord, ...rest] = raw.split(WORD_SEPARATOR) as [string, string | undefined, ...string[]];
    const command = commandWord.toLowerCase() as PropertyCommand;
    if (!allowed.includes(command)) {
      throw new UsageError(`-D ${commandWord}: this command sends no ${commandWord.toUpperCase()} packet; use one of ${allowed.join(', ')}`);
    }
    const identifier = (identifierWord ?? '').toLowerCase();
    const info = Object.hasOwn(PROPERTIES, identifier) ? PROPERTIES[identifier] : undefined;
    if (!info) {
      const guess = nearest(identifier, ALLOWED[command]);
      throw new UsageError(`-D ${command} ${identifierWord ?? ''}: unknown property${guess ? ` (did you mean ${guess}?)` : ''}; ${command} takes ${ALLOWED[command].join(', ')}`);
    }
    if (!ALLOWED[command].includes(identifier)) {
      throw new UsageError(`-D ${command} ${identifier}: a ${command.toUpperCase()} packet cannot carry ${identifier}; it takes ${ALLOWED[command].join(', ')}`);
    }
    const needed = propertyArity(identifier) - 1;
    if (rest.length < needed) throw new UsageError(`-D ${command} ${identifier}: needs ${needed === 2 ? 'a name and a value' : 'a value'}`);
    add(command, info, info.kind === 'pair' ? [rest[0]!, rest[1]!] : parseValue(info, `${command} ${identifier}`, rest[0]!));
  }
  return out;
}
