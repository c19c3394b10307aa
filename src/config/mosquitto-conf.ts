// A Mosquitto 2.x configuration (mosquitto.conf(5)) turned into a Petrel config: listeners, security
// files (Petrel reads mosquitto_passwd files and Mosquitto ACL files as they are) and the limits both
// brokers share. What has no Petrel equivalent is reported line by line, never dropped silently.
import type { FileConfig } from './config.js';

export interface Conversion {
  config: FileConfig;
  /** "line 12: persistence: ..." for every option not carried over, or carried over with a difference. */
  notes: string[];
}

type Listener = NonNullable<FileConfig['listeners']>[number] & Record<string, unknown>;

/** Options that only configure something Petrel does differently or not at all, and why. */
const NOT_CARRIED: Record<string, string> = {
  persistence_file: 'Petrel always writes petrel.db in storage.dir (persistence_location); mosquitto.db is not read',
  autosave_interval: 'not needed: Petrel commits every change before acknowledging it (no snapshots), so a crash loses nothing acknowledged',
  autosave_on_changes: 'not needed: Petrel commits every change before acknowledging it (no snapshots)',
  log_dest: 'Petrel logs JSON lines (pino) to stdout',
  log_type: 'use logLevel',
  log_timestamp: 'every log line has a time',
  log_timestamp_format: 'every log line has a time (ms since the epoch)',
  connection_messages: 'connection lines are kept to connectionLogRate per second',
  pid_file: 'run Petrel under a service manager',
  user: 'run Petrel as the user it should be',
  include_dir: 'convert each included file and merge them by hand',
  set_tcp_nodelay: 'Petrel always sets TCP_NODELAY',
  upgrade_outgoing_qos: 'not offered (the spec gives the lower QoS)',
  message_size_limit: 'use maxPacketSize (whole packets, not payloads)',
  max_inflight_bytes: 'Petrel bounds in-flight messages by count (maxInflight)',
  allow_zero_length_clientid: 'Petrel assigns an ID to an empty one, as the spec asks',
  auto_id_prefix: 'assigned IDs start with "petrel-"',
  check_retain_source: 'not offered',
  clientid_prefixes: 'use an ACL or the authenticate hook',
  mount_point: 'not offered',
  http_dir: 'Petrel serves no files over HTTP',
  websockets_log_level: 'not needed',
  websockets_headers_size: 'not needed',
  socket_domain: 'give the listener an IPv4 or IPv6 address',
  bind_interface: 'give the listener an address',
  capath: 'list the CA files in ca',
  dhparamfile: 'Node.js chooses ECDHE groups',
  psk_hint: 'TLS-PSK is not offered',
  psk_file: 'TLS-PSK is not offered',
  use_subject_as_username: 'use use_identity_as_username (peerCertAsUsername: cn)',
  use_username_as_clientid: 'use peerCertAsClientId with certificates, or the authenticate hook',
  plugin: 'Petrel has hooks instead of plugins (createBroker({ authenticate, authorizePublish, ... }))',
  auth_plugin: 'Petrel has hooks instead of plugins',
  plugin_opt: 'Petrel has hooks instead of plugins',
  auth_opt: 'Petrel has hooks instead of plugins',
  memory_limit: 'not offered; bound what clients may hold (maxQueuedMessages, maxRetainedMessages, ...)',
  retry_interval: 'resends happen on reconnect, as MQTT 3.1.1 and 5.0 ask',
  allow_duplicate_messages: 'Petrel sends one copy per client for overlapping subscriptions',
};

/** Values of NOT_CARRIED options that ask for what Petrel does anyway: nothing to report. */
const SAME_AS_PETREL: Record<string, string> = {
  per_listener_settings: 'false',
  upgrade_outgoing_qos: 'false',
  set_tcp_nodelay: 'true',
  check_retain_source: 'false',
  connection_messages: 'true',
  allow_zero_length_clientid: 'true',
  log_timestamp: 'true',
  allow_duplicate_messages: 'false',
};

/** Mosquitto options that start a bridge, and those that only configure one. */
const BRIDGE_OPTIONS = /^(connection|address|addresses|topic|bridge_\w+|cleansession|local_\w+|remote_\w+|notifications\w*|keepalive_interval|idle_timeout|restart_timeout|round_robin|start_type|threshold|try_private|notification_topic|backoff_\w+)$/;

/** Numeric options with a Petrel key: the values Mosquitto accepts (min–max) and, where they differ, Petrel's for them (undefined: keep the default). */
const NUMBERS: Record<string, { key: string; min: number; max: number; convert?: (n: number) => number | undefined }> = {
  // Mosquitto's 0 (or less) means no limit.
  max_queued_messages: { key: 'maxQueuedMessages', min: -Infinity, max: Infinity, convert: (n) => (n <= 0 ? 10_000_000 : Math.min(n, 10_000_000)) },
  max_queued_bytes: { key: 'maxQueuedBytes', min: 0, max: Number.MAX_SAFE_INTEGER },
  max_inflight_messages: { key: 'maxInflight', min: -Infinity, max: Infinity, convert: (n) => (n <= 0 ? 65535 : Math.min(n, 65535)) },
  max_keepalive: { key: 'maxKeepAlive', min: 0, max: Infinity, convert: (n) => (n === 0 ? 65535 : Math.min(n, 65535)) },
  max_packet_size: { key: 'maxPacketSize', min: -Infinity, max: Infinity, convert: (n) => (n > 0 ? Math.max(n, 16) : undefined) },
  max_qos: { key: 'maxQos', min: 0, max: 2 },
  sys_interval: { key: 'sysInterval', min: 0, max: Infinity, convert: (n) => Math.min(n, 86_400) },
  max_topic_alias: { key: 'topicAliasMaximum', min: 0, max: Infinity, convert: (n) => Math.min(n, 65535) },
};

/** "1h", "2d", "3600" → seconds (Mosquitto's persistent_client_expiration units: h d w m y). */
function durationSeconds(text: string): number | undefined {
  const m = /^(\d+)([hdwmy]?)$/.exec(text);
  if (!m) return undefined;
  const unit = { '': 1, h: 3600, d: 86_400, w: 604_800, m: 2_592_000, y: 31_536_000 }[m[2]!]!;
  return Number(m[1]) * unit;
}

// Mosquitto reads the first word of a boolean or a number and ignores the rest ("true # sensors").
const firstWord = (v: string): string => v.split(/\s/, 1)[0] ?? '';
const bool = (v: string): boolean | undefined => (firstWord(v) === 'true' ? true : firstWord(v) === 'false' ? false : undefined);
const int = (v: string): number | undefined => (/^-?\d+$/.test(firstWord(v)) ? Number(firstWord(v)) : undefined);

export function convertMosquittoConf(text: string): Conversion {
  const config: FileConfig & Record<string, unknown> = {};
  const notes: string[] = [];
  const listeners: Listener[] = [];
  // Listener options before the first `listener` line belong to the default listener (`port`, or 1883).
  const defaultListener: Listener = { type: 'tcp' };
  let current: Listener | undefined;
  let defaultPort: number | undefined;
  let inBridge = false;
  let anonymousSet = false;
  let perListener = false;
  // Mosquitto's defaults where Petrel's differ, written out so the converted broker behaves the same.
  config.maxPacketSize = 268_435_455;
  config.maxInflight = 20;
  config.sessionExpiry = 0xffffffff;

  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const at = `line ${i + 1}`;
    const space = line.search(/\s/);
    const key = space < 0 ? line : line.slice(0, space);
    const value = space < 0 ? '' : line.slice(space + 1).trim();
    const note = (why: string) => notes.push(`${at}: ${key}: ${why}`);
    const bad = () => note(`cannot read ${JSON.stringify(value)}; skipped`);

    if (key === 'listener') {
      inBridge = false;
      const [portText, host] = value.split(/\s+/);
      const port = int(portText ?? '');
      if (port === undefined) return bad();
      if (port === 0 && host?.startsWith('/')) {
        // Its options go to a listener that is not kept.
        current = { type: 'tcp' };
        return note(`Unix socket listener ${host} skipped: Petrel listens on TCP only`);
      }
      current = { type: 'tcp', port };
      if (host) current.host = host;
      listeners.push(current);
      return;
    }
    if (key === 'connection') {
      inBridge = true;
      return note(`bridge ${JSON.stringify(value)} skipped: Petrel has no bridges yet`);
    }
    if (inBridge && BRIDGE_OPTIONS.test(key)) return; // reported once, at its `connection` line
    const target: Listener = current ?? defaultListener;
    switch (key) {
      case 'port': {
        const port = int(value);
        if (port === undefined) return bad();
        defaultPort = port;
        return;
      }
      case 'bind_address':
        target.host = value;
        return;
      case 'protocol':
        if (value === 'websockets') target.type = target.type === 'tls' ? 'wss' : 'ws';
        else if (value !== 'mqtt') bad();
        return;
      case 'certfile':
      case 'keyfile':
      case 'cafile':
      case 'crlfile': {
        target[{ certfile: 'cert', keyfile: 'key', cafile: 'ca', crlfile: 'crl' }[key]] = value;
        if (key === 'certfile') target.type = target.type === 'ws' ? 'wss' : target.type === 'tcp' ? 'tls' : target.type;
        return;
      }
      case 'require_certificate':
        if (bool(value) === undefined) return bad();
        target.requestCert = bool(value);
        return;
      case 'use_identity_as_username':
        if (bool(value) === undefined) return bad();
        if (bool(value)) target.peerCertAsUsername = 'cn';
        return;
      case 'tls_version':
        if (value === 'tlsv1.3') target.minVersion = 'TLSv1.3';
        else if (value === 'tlsv1.2') target.minVersion = 'TLSv1.2';
        else note(`${value} is below what Petrel offers (TLS 1.2 and 1.3); skipped`);
        return;
      case 'ciphers':
        target.ciphers = value;
        return;
      case 'ciphers_tls1.3':
        target.ciphersuites = value;
        return;
      case 'max_connections': {
        const n = int(value);
        if (n === undefined) return bad();
        if (n >= 0) target.maxConnections = n; // -1: no limit
        return;
      }
      case 'per_listener_settings': {
        const b = bool(value);
        if (b === undefined) return bad();
        perListener = b;
        return;
      }
      case 'allow_anonymous': {
        const b = bool(value);
        if (b === undefined) return bad();
        // With per_listener_settings, each listener says it for itself (and refuses anonymous clients unless it does).
        if (perListener && current !== undefined) target.allowAnonymous = b;
        else {
          config.allowAnonymous = b;
          anonymousSet = true;
        }
        return;
      }
      case 'password_file':
        if (perListener && current !== undefined && config.passwordFile !== undefined && config.passwordFile !== value) {
          return note('a second password file: Petrel has one for every listener, the first one given');
        }
        config.passwordFile = value;
        return;
      case 'acl_file':
        if (perListener && current !== undefined && config.acl?.file !== undefined && config.acl.file !== value) {
          return note('a second ACL file: Petrel has one for every listener, the first one given');
        }
        // Mosquitto denies what its acl_file does not grant, even when the file has no rule yet.
        config.acl = { ...config.acl, file: value, default: 'deny' };
        return;
      case 'queue_qos0_messages':
        if (bool(value) === undefined) return bad();
        config.queueQos0 = bool(value);
        return;
      case 'persistent_client_expiration': {
        const s = durationSeconds(value);
        if (s === undefined) return bad();
        config.sessionExpiry = s;
        return;
      }
      case 'persistence': {
        // Mosquitto snapshots every autosave_interval; Petrel commits as it goes (docs/storage.md).
        const on = bool(value);
        if (on === undefined) return bad();
        config.storage = { ...config.storage, type: on ? 'sqlite' : 'memory' };
        if (on) note('storage.type sqlite: every change is committed before it is acknowledged, not snapshotted every autosave_interval, so a kill -9 loses nothing acknowledged; mosquitto.db is not imported');
        return;
      }
      case 'persistence_location':
        if (value === '') return bad();
        config.storage = { type: 'sqlite', ...config.storage, dir: value.replace(/\/+$/, '') || '/' };
        return note(`storage.dir: Petrel writes petrel.db in ${value} (Mosquitto's mosquitto.db there is not imported)`);
      case 'retain_available':
        if (bool(value) === undefined) return bad();
        config.retainAvailable = bool(value);
        return;
      default: {
        const numeric = Object.hasOwn(NUMBERS, key) ? NUMBERS[key]! : undefined;
        if (numeric !== undefined) {
          const n = int(value);
          if (n === undefined || n < numeric.min || n > numeric.max) return bad();
          const v = numeric.convert ? numeric.convert(n) : n;
          if (v !== undefined) config[numeric.key] = v;
          return;
        }
        if (Object.hasOwn(NOT_CARRIED, key)) {
          if (Object.hasOwn(SAME_AS_PETREL, key) && SAME_AS_PETREL[key] === value) return;
          return note(`not carried over: ${NOT_CARRIED[key]!}`);
        }
        return note('not recognised; skipped');
      }
    }
  });

  let localOnly = false;
  if (defaultPort !== undefined) {
    listeners.unshift({ ...defaultListener, port: defaultPort });
  } else if (listeners.length === 0) {
    // Mosquitto 2's "local only mode": without any listener or port it listens on the loopback interface
    // only and lets clients in without a username (one that gives a username is still checked).
    localOnly = true;
    listeners.push({ ...defaultListener, port: 1883, host: defaultListener.host ?? '127.0.0.1' });
    notes.push(
      'no listener in the file: Mosquitto 2 then runs in "local only mode", on localhost:1883 with anonymous clients allowed, and so does this config (add a listener to accept other machines)',
    );
    if (anonymousSet && config.allowAnonymous === false) notes.push('allow_anonymous false: Mosquitto ignores it in local only mode (anonymous clients on localhost connect); so does this config');
  }
  for (const l of listeners) {
    // Mosquitto answers WebSocket upgrades on any URL path: so does "*".
    if (l.type === 'ws' || l.type === 'wss') l.path = '*';
    if (l.peerCertAsUsername && !l.requestCert) l.requestCert = true;
  }
  // Mosquitto 2 refuses anonymous clients unless allow_anonymous says otherwise.
  if (localOnly) config.allowAnonymous = true;
  else if (!anonymousSet) config.allowAnonymous = false;
  config.listeners = listeners;
  return { config, notes };
}
