// `petrel sub -F '<format>'`: mosquitto_sub's output format strings (mosquitto_sub(1), OUTPUT FORMAT), byte
// for byte as mosquitto_sub 2.0 prints them: %-parameters with their flags, width and precision, @-time
// sequences (strftime) and \-escapes. The format is checked once, before connecting, as mosquitto_sub does.
import { Buffer, isUtf8 } from 'node:buffer';
import type { Message } from '../client/index.js';
import type { Properties } from '../protocol/index.js';
import { UsageError } from './common-client.js';

/** A received message and what the format may print of it. */
export interface FormatInput {
  message: Message;
  /** Packet Identifier of the PUBLISH (0 for QoS 0). */
  mid: number;
}

/** One message's output (without the end of line, which -N leaves out). */
export type Formatter = (input: FormatInput, now?: Timestamp) => Buffer;

export interface Timestamp {
  /** Milliseconds since the epoch. */
  ms: number;
  /** Nanoseconds within the second. */
  ns: number;
}

export function timestamp(): Timestamp {
  const ms = Date.now();
  // Date has milliseconds; the clock's sub-millisecond digits fill in the rest
  return { ms, ns: (ms % 1000) * 1_000_000 + Number(process.hrtime.bigint() % 1_000_000n) };
}

const PARAMETERS = 'jlmpqrtxACDEFIJPRSUX%';
const ESCAPES: Record<string, string> = { '\\': '\\', '0': '\0', a: '\x07', e: '\x1b', n: '\n', r: '\r', t: '\t', v: '\v' };

interface Spec {
  conversion: string;
  left: boolean;
  pad: ' ' | '0';
  width: number;
  precision: number;
}

type Part = Buffer | Spec | { time: string };

const shown = (format: string) => JSON.stringify(format);

/** Parses and checks a format; throws UsageError with mosquitto_sub's reasons. */
function parse(format: string): Part[] {
  const parts: Part[] = [];
  let text = '';
  const flush = () => {
    if (text) parts.push(Buffer.from(text, 'utf8'));
    text = '';
  };
  const n = format.length;
  for (let i = 0; i < n; i++) {
    const c = format[i]!;
    if (c === '%') {
      if (i === n - 1) throw new UsageError(`-F ${shown(format)}: incomplete format specifier: % at the end (%% prints a %)`);
      const spec: Spec = { conversion: '', left: false, pad: ' ', width: 0, precision: -1 };
      i++;
      if (format[i] === '-') {
        spec.left = true;
        if (i < n - 1) i++;
      }
      if (format[i] === '0') {
        spec.pad = '0';
        if (i < n - 1) i++;
      }
      while (i < n - 1 && format[i]! >= '0' && format[i]! <= '9') spec.width = spec.width * 10 + Number(format[i++]);
      if (format[i] === '.' && i < n - 1) {
        i++;
        spec.precision = 0;
        while (i < n - 1 && format[i]! >= '0' && format[i]! <= '9') spec.precision = spec.precision * 10 + Number(format[i++]);
      }
      const conversion = format[i]!;
      if (!PARAMETERS.includes(conversion)) {
        if (/[-0-9.]/.test(conversion)) throw new UsageError(`-F ${shown(format)}: incomplete format specifier at the end`);
        throw new UsageError(`-F ${shown(format)}: invalid format specifier '%${conversion}' (mosquitto_sub's are %${[...PARAMETERS].join(' %')})`);
      }
      flush();
      parts.push({ ...spec, conversion });
    } else if (c === '@') {
      if (i === n - 1) throw new UsageError(`-F ${shown(format)}: incomplete format specifier: @ at the end (@@ prints an @)`);
      const next = format[++i]!;
      if (next === '@') text += '@';
      else {
        flush();
        parts.push({ time: next });
      }
    } else if (c === '\\') {
      if (i === n - 1) throw new UsageError(`-F ${shown(format)}: incomplete escape: \\ at the end (\\\\ prints a \\)`);
      const next = format[++i]!;
      const escaped = Object.hasOwn(ESCAPES, next) ? ESCAPES[next] : undefined;
      if (escaped === undefined) throw new UsageError(`-F ${shown(format)}: invalid escape '\\${next}' (known: \\\\ \\0 \\a \\e \\n \\r \\t \\v)`);
      text += escaped;
    } else text += c;
  }
  flush();
  return parts;
}

/** Checks `format` and returns the function that prints a message with it (`pretty`: --pretty for %j / %J). */
export function compileFormat(format: string, { pretty = false, warn = (_: string) => {} } = {}): Formatter {
  const parts = parse(format);
  return (input, now = timestamp()) => {
    const out: Buffer[] = [];
    for (const part of parts) {
      if (Buffer.isBuffer(part)) out.push(part);
      else if ('time' in part) out.push(Buffer.from(strftime(part.time, now)));
      else out.push(percent(part, input, now, pretty, warn));
    }
    return Buffer.concat(out);
  };
}

// --- %-parameters -----------------------------------------------------------------------------------

const repeat = (c: string, n: number) => Buffer.from(n > 0 ? c.repeat(n) : '');

/** printf's %d with mosquitto's flags: left-aligned, zero-padded or space-padded to the width. */
function formatInt(value: number, spec: Spec): Buffer {
  const text = String(value);
  if (spec.width === 0 || text.length >= spec.width) return Buffer.from(text);
  if (spec.left) return Buffer.from(text.padEnd(spec.width));
  if (spec.pad === '0') return Buffer.from(value < 0 ? `-${text.slice(1).padStart(spec.width - 1, '0')}` : text.padStart(spec.width, '0'));
  return Buffer.from(text.padStart(spec.width));
}

/** printf's %*.*s on bytes (a precision may cut a UTF-8 character, as it does in C). */
function formatString(value: string | Buffer, spec: Spec): Buffer {
  let bytes = Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8');
  if (spec.precision >= 0 && bytes.length > spec.precision) bytes = bytes.subarray(0, spec.precision);
  const fill = repeat(' ', spec.width - bytes.length);
  return Buffer.concat(spec.left ? [bytes, fill] : [fill, bytes]);
}

/** mosquitto_sub's payload printing: with a width, the payload is cut to it (hex: to half of it) and padded. */
function formatPayload(payload: Buffer, hex: 0 | 1 | 2, spec: Spec): Buffer {
  let length = payload.length;
  let padding: number;
  if (spec.width > 0) {
    length = Math.min(length, spec.width);
    if (hex) {
      length = Math.floor(length / 2);
      padding = spec.width - length * 2;
    } else padding = spec.width - length;
  } else padding = -length;
  const bytes = payload.subarray(0, length);
  const body = hex === 0 ? bytes : Buffer.from(hex === 1 ? bytes.toString('hex') : bytes.toString('hex').toUpperCase());
  return spec.left ? Buffer.concat([body, repeat(' ', padding)]) : Buffer.concat([repeat(spec.pad, padding), body]);
}

const first = (v: number | number[] | undefined) => (Array.isArray(v) ? v[0] : v);

function percent(spec: Spec, { message, mid }: FormatInput, now: Timestamp, pretty: boolean, warn: (line: string) => void): Buffer {
  const p: Properties = message.properties ?? {};
  const intOrBlank = (v: number | undefined, pad: string = spec.pad) => (v === undefined ? repeat(pad, spec.width) : formatInt(v, spec));
  switch (spec.conversion) {
    case '%':
      return Buffer.from('%');
    case 'A':
      return intOrBlank(p.topicAlias);
    case 'C':
      return p.contentType === undefined ? repeat(' ', spec.width) : formatString(p.contentType, spec);
    case 'D':
      return p.correlationData ?? Buffer.alloc(0);
    case 'E':
      // C prints it as a signed int
      return intOrBlank(p.messageExpiryInterval === undefined ? undefined : p.messageExpiryInterval | 0);
    case 'F':
      return intOrBlank(p.payloadFormatIndicator);
    case 'I':
      return formatString(strftime('FT%T%z', now), spec);
    case 'j':
    case 'J': {
      const json = messageJson(message, mid, now, spec.conversion === 'j');
      if (json === undefined) {
        warn(`message payload is not valid JSON on topic ${message.topic}`);
        return Buffer.alloc(0);
      }
      return Buffer.from(printJson(json, pretty ? 0 : -1));
    }
    case 'l':
      return formatInt(message.payload.length, spec);
    case 'm':
      return formatInt(mid, spec);
    case 'P':
      return Buffer.from((p.userProperties ?? []).map(([k, v]) => `${k}:${v}`).join(' '));
    case 'p':
      return formatPayload(message.payload, 0, spec);
    case 'q':
      return Buffer.from(String(message.qos));
    case 'R':
      return p.responseTopic === undefined ? Buffer.alloc(0) : formatString(p.responseTopic, spec);
    case 'r':
      return Buffer.from(message.retain ? '1' : '0');
    case 'S':
      return intOrBlank(first(p.subscriptionIdentifier));
    case 't':
      return formatString(message.topic, spec);
    case 'U':
      return Buffer.from(`${Math.floor(now.ms / 1000)}.${String(now.ns).padStart(9, '0')}`);
    case 'x':
      return formatPayload(message.payload, 1, spec);
    case 'X':
      return formatPayload(message.payload, 2, spec);
    default:
      return Buffer.alloc(0);
  }
}

// --- %j / %J: JSON as mosquitto_sub prints it (cJSON) ---------------------------------------------------

/** A JSON value whose objects keep their order and may repeat a key (cJSON does both). */
type Json = string | number | boolean | null | Json[] | { entries: [string, Json][] };

const PROPERTY_NAMES: Partial<Record<keyof Properties, string>> = {
  payloadFormatIndicator: 'payload-format-indicator',
  messageExpiryInterval: 'message-expiry-interval',
  contentType: 'content-type',
  responseTopic: 'response-topic',
  correlationData: 'correlation-data',
  subscriptionIdentifier: 'subscription-identifier',
  topicAlias: 'topic-alias',
  userProperties: 'user-properties',
};

/** "2020-05-06T22:12:00.123456Z+0100": local time, microseconds, then (as mosquitto_sub writes it) Z and the offset. */
function jsonTime(now: Timestamp): string {
  return `${strftime('Y-%m-%dT%H:%M:%S', now)}.${String(Math.floor(now.ns / 1000)).padStart(6, '0')}Z${strftime('z', now)}`;
}

function fromPlain(v: unknown): Json {
  if (Array.isArray(v)) return v.map(fromPlain);
  if (v !== null && typeof v === 'object') return { entries: Object.entries(v).map(([k, x]) => [k, fromPlain(x)]) };
  return v as Json;
}

/** The message as %j (escaped: the payload as a string) or %J (the payload is JSON itself) print it; undefined when %J's payload is not JSON. */
function messageJson(m: Message, mid: number, now: Timestamp, escaped: boolean): Json | undefined {
  const entries: [string, Json][] = [
    ['tst', jsonTime(now)],
    ['topic', m.topic],
    ['qos', m.qos],
    ['retain', m.retain ? 1 : 0],
    ['payloadlen', m.payload.length],
  ];
  if (m.qos > 0) entries.push(['mid', mid]);
  const props = m.properties ?? {};
  const list: [string, Json][] = [];
  for (const [key, value] of Object.entries(props) as [keyof Properties, unknown][]) {
    const name = PROPERTY_NAMES[key];
    if (name === undefined || value === undefined) continue;
    if (key === 'userProperties') list.push([name, { entries: (value as [string, string][]).map(([k, v]) => [k, v]) }]);
    else if (key === 'correlationData') list.push([name, (value as Buffer).toString('utf8')]);
    else if (key === 'subscriptionIdentifier') list.push([name, first(value as number | number[])!]);
    else list.push([name, value as Json]);
  }
  if (list.length > 0) entries.push(['properties', { entries: list }]);
  let payload: Json;
  if (m.payload.length === 0) payload = null;
  else if (escaped) {
    // text as a string; other bytes (not UTF-8, or with a NUL) as a list of byte values, as mosquitto_sub 2.0.15+ does
    payload = isUtf8(m.payload) && !m.payload.includes(0) ? m.payload.toString('utf8') : [...m.payload];
  } else {
    try {
      payload = fromPlain(JSON.parse(m.payload.toString('utf8')));
    } catch {
      return undefined;
    }
  }
  entries.push(['payload', payload]);
  return { entries };
}

/** cJSON's output: compact (depth -1), or cJSON_Print's tabs and ":\t" (depth 0). */
export function printJson(v: Json, depth: number): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map((x) => printJson(x, depth < 0 ? -1 : depth)).join(depth < 0 ? ',' : ', ')}]`;
  if (depth < 0) return `{${v.entries.map(([k, x]) => `${JSON.stringify(k)}:${printJson(x, -1)}`).join(',')}}`;
  const inner = '\t'.repeat(depth + 1);
  return `{\n${v.entries.map(([k, x]) => `${inner}${JSON.stringify(k)}:\t${printJson(x, depth + 1)}`).join(',\n')}\n${'\t'.repeat(depth)}}`;
}

// --- @-sequences: strftime(3) in local time ------------------------------------------------------------------

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const two = (n: number) => String(n).padStart(2, '0');

function offset(d: Date): string {
  const minutes = -d.getTimezoneOffset();
  const a = Math.abs(minutes);
  return `${minutes < 0 ? '-' : '+'}${two(Math.floor(a / 60))}${two(a % 60)}`;
}

function dayOfYear(d: Date): number {
  return Math.floor((Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()) - Date.UTC(d.getFullYear(), 0, 0)) / 86_400_000);
}

/**
 * strftime(3) for a format whose first % is already taken off (`'FT%T%z'` is "%FT%T%z"); `N` is mosquitto's
 * nanoseconds. The conversions of C and POSIX; an unknown one prints nothing.
 */
export function strftime(format: string, now: Timestamp): string {
  const d = new Date(now.ms);
  const one = (c: string): string => {
    const h12 = d.getHours() % 12 || 12;
    switch (c) {
      case 'a': return DAYS[d.getDay()]!.slice(0, 3);
      case 'A': return DAYS[d.getDay()]!;
      case 'b': case 'h': return MONTHS[d.getMonth()]!.slice(0, 3);
      case 'B': return MONTHS[d.getMonth()]!;
      case 'c': return `${one('a')} ${one('b')} ${String(d.getDate()).padStart(2)} ${one('T')} ${d.getFullYear()}`;
      case 'C': return two(Math.floor(d.getFullYear() / 100));
      case 'd': return two(d.getDate());
      case 'D': return `${one('m')}/${one('d')}/${one('y')}`;
      case 'e': return String(d.getDate()).padStart(2);
      case 'F': return `${d.getFullYear()}-${one('m')}-${one('d')}`;
      case 'H': return two(d.getHours());
      case 'I': return two(h12);
      case 'j': return String(dayOfYear(d)).padStart(3, '0');
      case 'k': return String(d.getHours()).padStart(2);
      case 'l': return String(h12).padStart(2);
      case 'm': return two(d.getMonth() + 1);
      case 'M': return two(d.getMinutes());
      case 'n': return '\n';
      case 'N': return String(now.ns).padStart(9, '0');
      case 'p': return d.getHours() < 12 ? 'AM' : 'PM';
      case 'P': return d.getHours() < 12 ? 'am' : 'pm';
      case 'r': return `${one('I')}:${one('M')}:${one('S')} ${one('p')}`;
      case 'R': return `${one('H')}:${one('M')}`;
      case 's': return String(Math.floor(now.ms / 1000));
      case 'S': return two(d.getSeconds());
      case 't': return '\t';
      case 'T': return `${one('H')}:${one('M')}:${one('S')}`;
      case 'u': return String(d.getDay() || 7);
      case 'w': return String(d.getDay());
      case 'x': return `${one('m')}/${one('d')}/${one('y')}`;
      case 'X': return one('T');
      case 'y': return two(d.getFullYear() % 100);
      case 'Y': return String(d.getFullYear());
      case 'z': return offset(d);
      case 'Z': return new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' }).formatToParts(d).find((p) => p.type === 'timeZoneName')?.value ?? '';
      case '%': return '%';
      default: return '';
    }
  };
  return format.replace(/^(.)|%(.)/g, (_, a: string | undefined, b: string | undefined) => one((a ?? b)!));
}
