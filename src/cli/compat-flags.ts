// Flags `petrel pub` and `petrel sub` share beyond the connection ones: mosquitto's -D (MQTT 5 properties on
// any packet), --capath, --tls-alpn, --nodelay and -x -1, and the profile flags. They turn into client options here.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { Option } from 'commander';
import type { ClientOptions } from '../client/index.js';
import type { Properties, ProtocolVersion } from '../protocol/index.js';
import type { ConnectionFlags } from './common-client.js';
import { UsageError, clientOptionsFromFlags, requireV5 } from './common-client.js';
import { parsePropertyFlags, type PropertyCommand } from './properties.js';

export interface CompatFlags extends ConnectionFlags {
  property?: string[];
  userProperty?: string[];
  capath?: string;
  tlsAlpn?: string[];
  nodelay?: boolean;
  profile?: string;
  saveProfile?: string;
}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

export function addCompatOptions(cmd: Command, own: 'publish' | 'subscribe'): Command {
  cmd
    .option(
      '-D, --property <command identifier value>',
      `MQTT 5 property, as mosquitto: -D ${own} user-property key value, -D connect receive-maximum 10, -D will will-delay-interval 30 ` +
        `(commands: connect, ${own === 'publish' ? 'publish' : 'subscribe, unsubscribe'}, disconnect, will); -D key=value is a user property on the ${own.toUpperCase()} (repeatable)`,
      collect,
    )
    .addOption(new Option('--user-property <key=value>', 'user property (same as -D key=value)').argParser(collect).hideHelp())
    .option('--capath <dir>', 'directory of CA certificates (PEM files) to trust; implies TLS')
    .option('--tls-alpn <protocol>', 'ALPN protocol to offer in the TLS handshake (repeatable)', collect)
    .addOption(new Option('--nodelay', 'accepted for mosquitto compatibility: Petrel always disables Nagle\'s algorithm').hideHelp())
    .option('--profile <name>', 'read connection flags from this profile (~/.config/petrel/profiles; PETREL_PROFILE sets a default)')
    .option('--save-profile <name>', 'save the connection flags given as this profile, then run');
  return cmd;
}

/** The CA files of a directory (as mosquitto's --capath: every PEM certificate in it). */
function readCaPath(dir: string): Buffer[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new UsageError(`--capath "${dir}": cannot read the directory: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const certs: Buffer[] = [];
  for (const name of names.sort()) {
    const file = join(dir, name);
    try {
      if (!statSync(file).isFile()) continue;
      const pem = readFileSync(file);
      if (pem.includes('-----BEGIN CERTIFICATE-----')) certs.push(pem);
    } catch {
      // unreadable entries are skipped, as OpenSSL's directory lookup does
    }
  }
  if (certs.length === 0) throw new UsageError(`--capath "${dir}" holds no PEM certificate`);
  return certs;
}

/** -x as mosquitto takes it: 0 to 4294967295, or -1 / ∞ for a session that does not expire. */
export function normalizeSessionExpiry(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return /^\s*(-1|∞|inf(inity)?)\s*$/i.test(value) ? '4294967295' : value;
}

export interface CompatResult {
  connection: ClientOptions & { protocolVersion: ProtocolVersion };
  /** Properties for the command's other packets (PUBLISH, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT). */
  properties: Partial<Record<PropertyCommand, Properties>>;
}

/** The client options of pub / sub: the connection flags plus -D, --capath, --tls-alpn. */
export function compatClientOptions(flags: CompatFlags, own: 'publish' | 'subscribe'): CompatResult {
  const extraTls = flags.capath !== undefined || flags.tlsAlpn !== undefined;
  const connection = clientOptionsFromFlags({ ...flags, sessionExpiry: normalizeSessionExpiry(flags.sessionExpiry), tls: flags.tls || extraTls || undefined });
  const allowed: PropertyCommand[] = own === 'publish' ? ['connect', 'publish', 'disconnect', 'will'] : ['connect', 'subscribe', 'unsubscribe', 'disconnect', 'will'];
  const values = [...(flags.property ?? []), ...(flags.userProperty ?? [])];
  requireV5(connection.protocolVersion, [values.length > 0 && '-D (MQTT 5 properties)']);
  const properties = parsePropertyFlags(values, own, allowed);
  if (flags.capath !== undefined) {
    const fromDir = readCaPath(flags.capath);
    const given = connection.tls?.ca;
    connection.tls = { ...connection.tls, ca: [...(given === undefined ? [] : Array.isArray(given) ? given : [given]), ...fromDir] };
  }
  if (flags.tlsAlpn !== undefined) connection.tls = { ...connection.tls, alpnProtocols: flags.tlsAlpn };
  // mosquitto: -c without -x keeps an MQTT 5 session for ever, and then the Client ID must be the user's
  const keep = flags.disableCleanSession === true || flags.clean === false;
  if (keep && connection.protocolVersion === 5 && connection.sessionExpiry === undefined && properties.connect?.sessionExpiryInterval === undefined) {
    connection.sessionExpiry = 0xffffffff;
  }
  if (connection.sessionExpiry === 0xffffffff && flags.id === undefined && flags.idPrefix === undefined) {
    throw new UsageError('a session that never expires (-c, or -x -1) needs a Client ID of yours (-i or -I): a random one could never be resumed');
  }
  const { connect, will } = properties;
  if (connect) {
    const { sessionExpiryInterval, ...rest } = connect;
    if (sessionExpiryInterval !== undefined) connection.sessionExpiry ??= sessionExpiryInterval;
    if (Object.keys(rest).length > 0) connection.properties = { ...connection.properties, ...rest };
  }
  if (will) {
    if (!connection.will) throw new UsageError('-D will ...: needs a will (--will-topic)');
    connection.will.properties = { ...connection.will.properties, ...will };
  }
  if (properties.disconnect?.userProperties) {
    throw new UsageError('-D disconnect user-property: not offered (the DISCONNECT Petrel sends carries a session expiry only)');
  }
  return { connection, properties };
}
