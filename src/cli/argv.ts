// What `petrel pub` / `petrel sub` do to their arguments before commander reads them: mosquitto's
// multi-word -D grouped into one value, mosquitto's and MQTTX's other spellings of Petrel's flags, profile
// options put in front (the command line wins), and an unknown flag answered with the nearest one.
import type { Command, Option } from 'commander';
import { isPropertyCommand, propertyArity, WORD_SEPARATOR } from './properties.js';
import { loadProfile, PROFILE_FLAGS, saveProfile } from './profile.js';
import { nearest } from '../config/suggest.js';

/** Other tools' spellings of Petrel's flags (mosquitto_pub/sub, MQTTX CLI), same meaning. */
export const ALIASES: Record<string, string> = {
  // mosquitto
  '--pw': '--password',
  '--will-payload': '--will-message',
  '--property': '-D',
  '--tls-use-os-certs': '--tls',
  // MQTTX CLI
  '--hostname': '--host',
  '--client-id': '--id',
  '--mqtt-version': '--protocol-version',
  '--ca': '--cafile',
  '--session-expiry-interval': '--session-expiry',
  '--message-expiry-interval': '--message-expiry',
  '--no_local': '--no-local',
  '--ws-headers': '--ws-header',
  '--user-properties': '--user-property',
  '--alpn': '--tls-alpn',
  '-up': '--user-property',
  '-se': '--session-expiry',
  '-rt': '--response-topic',
  '-ct': '--content-type',
  '-cd': '--correlation-data',
  '-nl': '--no-local',
  '-rap': '--retain-as-published',
  '-rh': '--retain-handling',
  '-Wt': '--will-topic',
  '-Wm': '--will-message',
  '-Wq': '--will-qos',
  '-Wr': '--will-retain',
};

/** mosquitto_pub/sub flags Petrel does not offer, and why. */
const NOT_OFFERED: Record<string, string> = {
  '-A': 'binding the client socket to a local address is not offered',
  '-S': 'DNS SRV lookup is not offered: give the host (-h) and port (-p)',
  '--unix': 'Unix domain sockets are not offered: the broker listens on TCP and WebSocket',
  '--proxy': 'SOCKS proxies are not offered',
  '--psk': 'TLS-PSK is not offered: use certificates (--cafile, --cert, --key)',
  '--psk-identity': 'TLS-PSK is not offered: use certificates (--cafile, --cert, --key)',
  '--tls-engine': 'OpenSSL engines are not offered: give the key as a PEM file (--key)',
  '--tls-engine-kpass-sha1': 'OpenSSL engines are not offered: give the key as a PEM file (--key)',
  '--keyform': 'keys are read as PEM files only (--key)',
  '--tls-version': 'the TLS version is not chosen: Node.js negotiates TLS 1.3 or 1.2',
  '--ciphers': 'the cipher list is not chosen: Node.js offers its default (TLS 1.2 and 1.3) suites',
  '--ws': 'use a WebSocket URL: -L ws://host:8083/mqtt (or wss://)',
  '--output-mode': "MQTTX's --output-mode is not offered: use --format json (or -F '%j') for whole messages",
  '-o': 'mosquitto 2.1\'s options file is not read: use a profile (--profile NAME, see petrel sub --help)',
};

/** Flags of the other command, so that `petrel pub -v` says it is a `sub` flag. */
const ONLY_IN: Record<'pub' | 'sub', string[]> = {
  sub: ['-C', '-E', '-F', '-N', '-R', '-T', '-U', '-v', '-W', '--count', '--timeout', '--verbose', '--format', '--filter-out', '--unsubscribe', '--remove-retained', '--retained-only', '--random-filter', '--pretty', '--retain-as-published', '--retain-handling', '--no-local', '--file-write', '--file-save', '--no-eol', '--no-retained', '--no-reconnect'],
  pub: ['-f', '-l', '-m', '-n', '-r', '-s', '-e', '--message', '--file', '--stdin-file', '--stdin-line', '--null-message', '--retain', '--repeat', '--repeat-delay', '--content-type', '--response-topic', '--correlation-data', '--message-expiry'],
};

function optionTable(cmd: Command): Map<string, Option> {
  const table = new Map<string, Option>();
  for (const o of cmd.options) {
    if (o.short) table.set(o.short, o);
    if (o.long) table.set(o.long, o);
  }
  return table;
}

/** The message for a flag the command does not know. */
export function unknownFlagMessage(command: string, flag: string, cmd: Command): string {
  const base = flag.split('=')[0]!;
  if (Object.hasOwn(NOT_OFFERED, base)) return `${base}: ${NOT_OFFERED[base]!}`;
  const other = command === 'pub' ? 'sub' : command === 'sub' ? 'pub' : undefined;
  if (other && ONLY_IN[other].includes(base)) return `unknown option '${base}': it is a flag of \`petrel ${other}\`, not of \`petrel ${command}\``;
  let hint = '';
  if (base.startsWith('--')) {
    const longs = [...cmd.options.filter((o) => !o.hidden && o.long).map((o) => o.long!), ...Object.keys(ALIASES).filter((a) => a.startsWith('--'))];
    const guess = nearest(base, longs);
    if (guess) hint = ` (did you mean ${guess}${ALIASES[guess] ? `, the same as ${ALIASES[guess]}` : ""}?)`;
  }
  return `unknown option '${base}'${hint}; see petrel ${command} --help`;
}

/**
 * The arguments as commander should read them. Also makes the command answer an unknown flag with
 * unknownFlagMessage(), and reads / writes profiles (--profile, --save-profile).
 */
export function prepareArguments(cmd: Command, args: string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const command = cmd.name();
  (cmd as unknown as { unknownOption(flag: string): void }).unknownOption = (flag: string) => {
    cmd.error(`petrel ${command}: ${unknownFlagMessage(command, flag, cmd)}`, { code: 'commander.unknownOption', exitCode: 2 });
  };
  const normalized = normalize(cmd, args);
  const { profile, saveAs, rest } = takeProfileFlags(normalized);
  if (saveAs !== undefined) {
    const file = saveProfile(saveAs, profileArguments(cmd, rest), env);
    process.stderr.write(`petrel ${command}: saved the connection options as profile "${saveAs}" in ${file}\n`);
  }
  const name = profile ?? env.PETREL_PROFILE;
  if (name === undefined || name === '') return rest;
  const fromProfile = normalize(cmd, loadProfile(name, env));
  // profile first: a flag given on the command line comes later and wins
  return [...fromProfile, ...rest];
}

/** Aliases replaced, -D's words joined: a pass over the arguments that knows which flags take a value. */
function normalize(cmd: Command, args: string[]): string[] {
  const table = optionTable(cmd);
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    let arg = args[i]!;
    if (arg === '--') {
      out.push(...args.slice(i));
      break;
    }
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (Object.hasOwn(ALIASES, flag)) arg = ALIASES[flag]! + (eq > 0 ? arg.slice(eq) : '');
    const name = eq > 0 ? arg.slice(0, arg.indexOf('=')) : arg;
    if (name === '-D' && eq < 0) {
      // mosquitto's -D command identifier value [value]: one value for commander
      const next = args[i + 1];
      if (next !== undefined && isPropertyCommand(next) && args[i + 2] !== undefined) {
        const words = args.slice(i + 1, i + 2 + propertyArity(args[i + 2]!));
        out.push('-D', words.join(WORD_SEPARATOR));
        i += words.length;
        continue;
      }
      if (next !== undefined && isPropertyCommand(next)) {
        out.push('-D', next + WORD_SEPARATOR);
        i += 1;
        continue;
      }
    }
    out.push(arg);
    const option = table.get(name);
    if (option && eq < 0 && i + 1 < args.length) {
      const value = args[i + 1]!;
      // commander takes the next word as a required value whatever it looks like, an optional one unless it is a flag
      if (option.required || (option.optional && !value.startsWith('-'))) {
        out.push(value);
        i++;
      }
    }
  }
  return out;
}

function takeProfileFlags(args: string[]): { profile?: string; saveAs?: string; rest: string[] } {
  const rest: string[] = [];
  let profile: string | undefined;
  let saveAs: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      rest.push(...args.slice(i));
      break;
    }
    const m = /^--(profile|save-profile)(?:=(.*))?$/.exec(arg);
    if (!m) {
      rest.push(arg);
      continue;
    }
    const value = m[2] ?? args[++i];
    if (value === undefined) return { profile, saveAs, rest: [...rest, arg] }; // commander says the value is missing
    if (m[1] === 'profile') profile = value;
    else saveAs = value;
  }
  return { profile, saveAs, rest };
}

/** The connection flags among the arguments (what a profile keeps), as flag / value pairs. */
function profileArguments(cmd: Command, args: string[]): string[][] {
  const table = optionTable(cmd);
  const out: string[][] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const option = table.get(name);
    if (!option) continue;
    let value: string | undefined;
    if (eq > 0) value = arg.slice(eq + 1);
    else if (option.required || (option.optional && args[i + 1] !== undefined && !args[i + 1]!.startsWith('-'))) value = args[++i];
    if (option.long && PROFILE_FLAGS.has(option.long)) out.push(value === undefined ? [option.long] : [option.long, value]);
  }
  return out;
}
