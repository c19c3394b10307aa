// Broker URLs: mqtt://, mqtts://, ws://, wss:// with their default ports and paths.

export type BrokerScheme = 'mqtt' | 'mqtts' | 'ws' | 'wss';

export interface BrokerAddress {
  scheme: BrokerScheme;
  /** Host name or IP address, without IPv6 brackets. */
  host: string;
  port: number;
  /** WebSocket path ('/mqtt' by default); '' for mqtt/mqtts. */
  path: string;
  /** Credentials found in the URL (percent-decoded). */
  username?: string;
  password?: string;
}

export const DEFAULT_PORTS: Readonly<Record<BrokerScheme, number>> = { mqtt: 1883, mqtts: 8883, ws: 8083, wss: 8084 };

const SCHEME_ALIASES: Readonly<Record<string, BrokerScheme>> = {
  mqtt: 'mqtt',
  tcp: 'mqtt',
  mqtts: 'mqtts',
  ssl: 'mqtts',
  tls: 'mqtts',
  'mqtt+ssl': 'mqtts',
  ws: 'ws',
  wss: 'wss',
};

/** True for the schemes that use TLS. */
export function isSecure(scheme: BrokerScheme): boolean {
  return scheme === 'mqtts' || scheme === 'wss';
}

export function isWebSocket(scheme: BrokerScheme): boolean {
  return scheme === 'ws' || scheme === 'wss';
}

/**
 * Parses a broker URL. A bare `host[:port]` is taken as mqtt://. Throws TypeError with a readable
 * message for an unknown scheme or a bad port.
 */
export function parseBrokerUrl(input: string): BrokerAddress {
  // messages quote the URL, but never its password
  const shown = redactPassword(input);
  let text = input.trim();
  if (text === '') throw new TypeError('empty broker URL');
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) text = `mqtt://${text}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TypeError(`invalid broker URL "${shown}"`);
  }
  const rawScheme = url.protocol.slice(0, -1).toLowerCase();
  const scheme = SCHEME_ALIASES[rawScheme];
  if (scheme === undefined) {
    // MQTT-SN speaks another protocol over UDP: its client is its own entry point.
    if (rawScheme.toLowerCase() === 'mqttsn') throw new TypeError(`"${shown}" is MQTT-SN over UDP: use connect() from 'petrel/mqttsn' (petrel pub/sub take mqttsn:// URLs as they are)`);
    throw new TypeError(`unsupported URL scheme "${rawScheme}://" in "${shown}": use mqtt://, mqtts://, ws:// or wss://`);
  }
  let host = url.hostname;
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host === '') throw new TypeError(`no host in broker URL "${shown}"`);
  // URL drops a port equal to the scheme's web default (ws://h:80, wss://h:443): read it from the text
  const authority = text.slice(text.indexOf('//') + 2).split(/[/?#]/)[0]!;
  const hostPart = authority.slice(authority.lastIndexOf('@') + 1);
  const explicitPort = /:(\d+)$/.exec(hostPart.startsWith('[') ? hostPart.slice(hostPart.indexOf(']')) : hostPart)?.[1];
  const port = explicitPort === undefined ? DEFAULT_PORTS[scheme] : Number(explicitPort);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new TypeError(`invalid port in broker URL "${shown}"`);
  let path = '';
  if (isWebSocket(scheme)) {
    path = url.pathname === '' || url.pathname === '/' ? '/mqtt' : url.pathname;
    path += url.search;
  }
  const address: BrokerAddress = { scheme, host, port, path };
  if (url.username !== '') address.username = decodeURIComponent(url.username);
  if (url.password !== '') address.password = decodeURIComponent(url.password);
  return address;
}

/** The URL text with the password of its user:password@ as ***, for messages: mqtt://alice:***@host. */
export function redactPassword(text: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)?([^/?#]*)(.*)$/is.exec(text);
  if (!m) return text;
  const [, scheme = '', authority = '', rest = ''] = m;
  // the user info ends at the authority's last @; the password starts after its first :
  const at = authority.lastIndexOf('@');
  const colon = authority.indexOf(':');
  if (at < 0 || colon < 0 || colon > at) return text;
  return `${scheme}${authority.slice(0, colon)}:***${authority.slice(at)}${rest}`;
}

/** `host:port` with IPv6 brackets, for messages. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The URL of an address, without credentials: mqtt://127.0.0.1:1883, ws://host:8083/mqtt. */
export function formatBrokerUrl(address: Pick<BrokerAddress, 'scheme' | 'host' | 'port' | 'path'>): string {
  return `${address.scheme}://${hostPort(address.host, address.port)}${address.path}`;
}
