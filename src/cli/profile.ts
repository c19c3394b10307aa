// Connection profiles for `petrel pub` / `petrel sub`: named sets of flags kept in a file, in the spirit of
// mosquitto_sub's options file (one `-flag value` a line) with a [name] line starting each profile:
//
//   # ~/.config/petrel/profiles
//   [prod]
//   --url mqtts://broker.example.com
//   --cafile /etc/petrel/ca.pem
//   -u alice
//
// `petrel sub --profile prod -t '#'` (or PETREL_PROFILE=prod) reads it; flags on the command line win.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { UsageError } from './common-client.js';
import { nearest } from '../config/suggest.js';

/** The flags a profile keeps when saved with --save-profile: how to reach and log in to a broker. */
export const PROFILE_FLAGS = new Set([
  '--host',
  '--port',
  '--url',
  '--protocol-version',
  '--id',
  '--id-prefix',
  '--username',
  '--password',
  '--keepalive',
  '--connect-timeout',
  '--cafile',
  '--capath',
  '--cert',
  '--key',
  '--key-passphrase',
  '--insecure',
  '--servername',
  '--tls',
  '--tls-version',
  '--ciphers',
  '--tls-alpn',
  '--ws-header',
]);

/** $PETREL_PROFILES, else $XDG_CONFIG_HOME/petrel/profiles, else ~/.config/petrel/profiles. */
export function profileFile(env: NodeJS.ProcessEnv = process.env): string {
  if (env.PETREL_PROFILES) return env.PETREL_PROFILES;
  return join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config'), 'petrel', 'profiles');
}

interface Section {
  name: string;
  lines: string[];
}

function readSections(file: string): Section[] {
  const sections: Section[] = [];
  readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const header = /^\[([^\]]+)\]$/.exec(line);
      if (header) sections.push({ name: header[1]!.trim(), lines: [] });
      else if (sections.length === 0) throw new UsageError(`${file} line ${i + 1}: "${line}" comes before any [profile] line`);
      else sections.at(-1)!.lines.push(line);
    });
  return sections;
}

/** The arguments of a profile: each line is a flag and, after the first space, its value (taken as it is: no quotes). */
export function loadProfile(name: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const file = profileFile(env);
  if (!existsSync(file)) throw new UsageError(`no profile file ${file} (profile "${name}"): make one with --save-profile ${name}, or set PETREL_PROFILES`);
  const sections = readSections(file);
  const section = sections.find((s) => s.name === name);
  if (!section) {
    const guess = nearest(name, sections.map((s) => s.name));
    throw new UsageError(`no profile "${name}" in ${file}${guess ? ` (did you mean ${guess}?)` : ''}; it has ${sections.map((s) => s.name).join(', ') || 'none'}`);
  }
  const args: string[] = [];
  for (const line of section.lines) {
    const space = line.search(/\s/);
    if (space < 0) args.push(line);
    else args.push(line.slice(0, space), line.slice(space + 1).trim());
  }
  return args;
}

/** Writes (or replaces) a profile; the file is made readable by its owner only, as it may hold a password. */
export function saveProfile(name: string, flags: string[][], env: NodeJS.ProcessEnv = process.env): string {
  if (!/^[^\]\s][^\]]*$/.test(name)) throw new UsageError(`--save-profile "${name}": a profile name has no "]" and does not start with a space`);
  const file = profileFile(env);
  const others = existsSync(file) ? readSections(file).filter((s) => s.name !== name) : [];
  const sections = [...others, { name, lines: flags.map((f) => f.join(' ')) }];
  const text = sections.map((s) => `[${s.name}]\n${s.lines.map((l) => `${l}\n`).join('')}`).join('\n');
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `# Petrel connection profiles (petrel pub/sub --profile NAME); one flag and its value a line\n${text}`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}
