// `petrel conn URL`: connection diagnosis, one step at a time: DNS, TCP, TLS, WebSocket,
// CONNECT / CONNACK, PINGREQ round trip. A failure names the step and suggests a fix.
import { Buffer } from 'node:buffer';
import dns from 'node:dns/promises';
import net from 'node:net';
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { Command } from 'commander';
import { WebSocket, createWebSocketStream } from 'ws';
import type { ClientOptions, ResolvedOptions } from '../client/index.js';
import { MqttClient, ConnectionError, MqttClientError, TimeoutError, explainNetworkError, formatDuration, protocolVersionName, resolveOptions, tagWebSocketError, tlsConnectOptions, formatBrokerUrl, hostPort, isSecure, isWebSocket } from '../client/index.js';
import { connackReturnCodeName, reasonName } from '../protocol/index.js';
import type { Properties } from '../protocol/index.js';
import type { ConnectionFlags } from './common-client.js';
import { EXIT, UsageError, addConnectionOptions, clientOptionsFromFlags, exitCodeFor, parseIntegerFlag, printError, runAction } from './common-client.js';

interface ConnFlags extends ConnectionFlags {
  pings: string;
}

const EXAMPLES = `
Examples:
  petrel conn mqtt://localhost
  petrel conn mqtts://broker.example:8883 --cafile ca.pem
  petrel conn wss://broker.example/mqtt -u alice -P secret -V 3.1.1
  petrel conn localhost:1884 --insecure --tls
  petrel conn -h broker.local -p 1884           # or --url mqtt://broker.local:1884

Steps: DNS, TCP, TLS (protocol, cipher, server certificate chain and validity), WebSocket upgrade,
CONNECT, CONNACK (reason, session present, every MQTT 5 property the server returned), PINGREQ
round trip. Exit codes: 0 ok, 1 a step failed, 2 bad arguments, 3 connection refused by the broker.`;

/**
 * A step that does not finish within `ms` fails: with ETIMEDOUT for TCP (explained as a network
 * problem), with a TimeoutError saying which handshake stalled for `stalled` (a peer that accepts TCP
 * and then says nothing).
 */
function withinTimeout<T>(step: Promise<T>, ms: number, abandon: () => void, stalled?: { message: string; hint: string }): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      abandon();
      reject(
        stalled
          ? new TimeoutError('CONNECT_TIMEOUT', `timed out after ${formatDuration(ms)} ${stalled.message}`, { hint: stalled.hint })
          : Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' }),
      );
    }, ms);
  });
  return Promise.race([step, timeout]).finally(() => clearTimeout(timer));
}

export function registerConnCommand(program: Command): void {
  const cmd = program.command('conn').description('diagnose a connection to a broker, step by step').argument('[url]', 'broker URL (mqtt://, mqtts://, ws://, wss://) or host[:port]');
  addConnectionOptions(cmd, { withUrlArgument: true });
  cmd.option('--pings <n>', 'PINGREQ round trips to measure', '3');
  cmd.addHelpText('after', EXAMPLES);
  cmd.action((url: string | undefined, flags: ConnFlags) => runAction('conn', () => diagnose(url, flags)));
}

const out = (line = '') => process.stdout.write(`${line}\n`);
const ms = (start: number) => `${(performance.now() - start).toFixed(1)} ms`;
const STEP_WIDTH = 10;
const ok = (step: string, text: string) => out(`[ok]   ${step.padEnd(STEP_WIDTH)} ${text}`);
const info = (text: string) => out(`       ${' '.repeat(STEP_WIDTH)} ${text}`);

class StepFailure extends Error {
  constructor(
    readonly step: string,
    readonly error: unknown,
  ) {
    super(String(error));
  }
}

async function diagnose(url: string | undefined, flags: ConnFlags): Promise<number> {
  const pings = parseIntegerFlag(flags.pings, '--pings', 0, 1000);
  if (url !== undefined && flags.url !== undefined) throw new UsageError('give the broker URL once: as the argument or with -L/--url, not both');
  let options: ResolvedOptions;
  let clientOptions: ClientOptions;
  try {
    clientOptions = { ...clientOptionsFromFlags(flags, url), reconnect: false };
    options = resolveOptions(clientOptions);
    clientOptions.clientId = options.clientId;
  } catch (err) {
    if (err instanceof TypeError || (err instanceof MqttClientError && err.code === 'INVALID_ARGUMENT')) throw new UsageError(err.message);
    throw err;
  }
  const { address } = options;
  out(`petrel conn ${formatBrokerUrl(address)} (MQTT ${protocolVersionName(options.protocolVersion)})`);
  const started = performance.now();
  try {
    await runSteps(options, clientOptions, pings);
  } catch (err) {
    if (!(err instanceof StepFailure)) throw err;
    const e =
      err.error instanceof MqttClientError
        ? err.error
        : explainNetworkError(err.error, {
            host: address.host,
            port: address.port,
            tls: isSecure(address.scheme) && err.step !== 'WebSocket', // a WebSocket failure comes after TLS succeeded
            webSocket: err.step === 'WebSocket',
            phase: 'handshake',
          });
    out(`[FAIL] ${err.step.padEnd(STEP_WIDTH)} ${e.message}`);
    if (e.hint) info(`hint: ${e.hint}`);
    printError('conn', `${err.step} failed: ${e.message}`);
    return exitCodeFor(e);
  }
  out(`connection OK: ${formatBrokerUrl(address)} accepts MQTT ${protocolVersionName(options.protocolVersion)} (${ms(started)})`);
  return EXIT.OK;
}

async function runSteps(options: ResolvedOptions, clientOptions: ClientOptions, pings: number): Promise<void> {
  const { address } = options;
  const where = hostPort(address.host, address.port);

  // 1. DNS
  let ip = address.host;
  if (net.isIP(address.host)) ok('DNS', `${address.host} is an IP address: no lookup`);
  else {
    const t = performance.now();
    try {
      const all = await dns.lookup(address.host, { all: true });
      ip = all[0]!.address;
      ok('DNS', `${address.host} → ${all.map((a) => a.address).join(', ')} (${ms(t)})`);
    } catch (err) {
      throw new StepFailure('DNS', err);
    }
  }

  // 2. TCP
  let socket: net.Socket;
  {
    const t = performance.now();
    try {
      const s = net.connect({ host: ip, port: address.port });
      socket = await withinTimeout(
        new Promise<net.Socket>((resolve, reject) => {
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        }),
        options.connectTimeout,
        () => s.destroy(),
      );
    } catch (err) {
      throw new StepFailure('TCP', err);
    }
    socket.setNoDelay(true);
    ok('TCP', `connected to ${hostPort(ip, address.port)} from ${socket.localAddress}:${socket.localPort} (${ms(t)})`);
  }

  // 3. TLS
  let stream: Duplex = socket;
  if (isSecure(address.scheme)) {
    const t = performance.now();
    const wanted = tlsConnectOptions(address.host, options.tls);
    let tlsSocket: tls.TLSSocket;
    try {
      // verify by hand below, so the certificate can be shown even when it fails verification
      const s = tls.connect({ ...wanted, socket, rejectUnauthorized: false });
      tlsSocket = await withinTimeout(
        new Promise<tls.TLSSocket>((resolve, reject) => {
          s.once('secureConnect', () => resolve(s));
          s.once('error', reject);
        }),
        options.connectTimeout,
        () => s.destroy(),
        {
          message: `in the TLS handshake with ${where}`,
          hint: 'the server accepted TCP but did not complete the TLS handshake: is this a TLS port? for a plain port use mqtt:// (or ws://)',
        },
      );
    } catch (err) {
      throw new StepFailure('TLS', err);
    }
    const cipher = tlsSocket.getCipher();
    ok('TLS', `${tlsSocket.getProtocol() ?? 'TLS'}, ${cipher.standardName ?? cipher.name} (${ms(t)})`);
    printChain(tlsSocket);
    if (!tlsSocket.authorized) {
      const code = String(tlsSocket.authorizationError ?? 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
      let reason = '';
      const details: { host?: string; cert?: tls.PeerCertificate } = {};
      if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
        const servername = wanted.servername ?? address.host;
        details.host = servername;
        details.cert = tlsSocket.getPeerCertificate();
        reason = tls.checkServerIdentity(servername, details.cert)?.message ?? '';
      }
      const error = explainNetworkError(Object.assign(new Error(reason || code), { code, reason, ...details }), { host: address.host, port: address.port, tls: true });
      if (wanted.rejectUnauthorized !== false) {
        tlsSocket.destroy();
        throw new StepFailure('TLS', error);
      }
      info(`WARNING: not verified (${error.message}); going on because of --insecure`);
    } else info('server certificate verified');
    stream = tlsSocket;
  }

  // 4. WebSocket
  if (isWebSocket(address.scheme)) {
    const t = performance.now();
    const base = stream;
    try {
      stream = await withinTimeout(new Promise<Duplex>((resolve, reject) => {
        const ws = new WebSocket(formatBrokerUrl(address), ['mqtt'], {
          headers: options.wsHeaders,
          perMessageDeflate: false,
          createConnection: (() => base) as unknown as typeof net.createConnection,
        });
        ws.once('open', () => {
          ok('WebSocket', `upgraded at ${address.path}, subprotocol "${ws.protocol}" (${ms(t)})`);
          resolve(createWebSocketStream(ws));
        });
        ws.once('error', (e: NodeJS.ErrnoException) => reject(tagWebSocketError(e)));
      }), options.connectTimeout, () => base.destroy(), {
        message: `waiting for the WebSocket upgrade from ${where}`,
        hint: `the server accepted the connection but did not answer the upgrade to ${address.path}: is this a WebSocket port (and path)?`,
      });
    } catch (err) {
      base.destroy();
      throw new StepFailure('WebSocket', err);
    }
  }

  // 5. CONNECT / CONNACK
  const client = new MqttClient({ ...clientOptions, createStream: async () => stream });
  const parts = [
    `MQTT ${protocolVersionName(options.protocolVersion)}`,
    `client ID "${client.clientId}"`,
    options.clean ? (options.protocolVersion === 5 ? 'clean start' : 'clean session') : 'keeping the session',
    `keep alive ${options.keepAlive} s`,
  ];
  if (options.username !== undefined) parts.push(`user "${options.username}"`);
  if (options.sessionExpiry !== undefined) parts.push(`session expiry ${options.sessionExpiry} s`);
  const t = performance.now();
  let connack;
  try {
    ok('CONNECT', `sending: ${parts.join(', ')}`);
    connack = await client.connect();
  } catch (err) {
    // a TLS 1.3 server checks the client certificate after its handshake: its alert comes while we wait for CONNACK
    throw new StepFailure(err instanceof ConnectionError && err.step === 'tls' ? 'TLS' : 'CONNACK', err);
  }
  const v5 = options.protocolVersion === 5;
  ok('CONNACK', `${v5 ? reasonName(connack.reasonCode) : connackReturnCodeName(connack.reasonCode)} in ${ms(t)}, session present: ${connack.sessionPresent ? 'yes' : 'no'}`);
  if (v5) printConnackProperties(connack.properties, options);
  else info('(MQTT 3.1.x CONNACK carries no properties)');

  // 6. PING
  if (pings > 0) {
    const rtts: number[] = [];
    try {
      // bounded like the other steps: a server that never answers would otherwise hold us for the whole keep alive
      for (let i = 0; i < pings; i++) rtts.push(await client.ping({ timeout: options.connectTimeout }));
    } catch (err) {
      client.destroy();
      throw new StepFailure('PING', err);
    }
    const min = Math.min(...rtts);
    const max = Math.max(...rtts);
    const avg = rtts.reduce((a, b) => a + b, 0) / rtts.length;
    ok('PING', `PINGREQ → PINGRESP round trip min/avg/max ${min.toFixed(2)}/${avg.toFixed(2)}/${max.toFixed(2)} ms (${pings})`);
  }
  await client.end();
  ok('DISCONNECT', `sent, connection to ${where} closed`);
}

function printChain(socket: tls.TLSSocket): void {
  let cert = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
  if (!cert || Object.keys(cert).length === 0) {
    info('the server sent no certificate');
    return;
  }
  info('server certificate chain:');
  const seen = new Set<string>();
  for (let depth = 0; cert && !seen.has(cert.fingerprint256); depth++) {
    seen.add(cert.fingerprint256);
    const validTo = new Date(cert.valid_to);
    const validFrom = new Date(cert.valid_from);
    const now = Date.now();
    const days = Math.floor((validTo.getTime() - now) / 86_400_000);
    const validity =
      now < validFrom.getTime() ? `NOT YET VALID (from ${validFrom.toISOString()})` : days < 0 ? `EXPIRED on ${validTo.toISOString()}` : `valid until ${validTo.toISOString().slice(0, 10)} (${days} day${days === 1 ? "" : "s"} left)`;
    info(`  ${depth}: ${dn(cert.subject)}  issued by ${dn(cert.issuer)}`);
    info(`     ${validity}${cert.subjectaltname ? `, ${cert.subjectaltname}` : ''}`);
    const next = cert.issuerCertificate as tls.DetailedPeerCertificate | undefined;
    if (!next || next.fingerprint256 === cert.fingerprint256) break;
    cert = next;
  }
}

function dn(name: tls.Certificate | undefined): string {
  if (!name) return '?';
  const parts: string[] = [];
  for (const key of ['CN', 'O', 'OU'] as const) {
    const v = name[key];
    if (v) parts.push(`${key}=${Array.isArray(v) ? v.join('+') : v}`);
  }
  return parts.join(', ') || '(empty)';
}

const PROPERTY_LABELS: [keyof Properties, string, string?][] = [
  ['assignedClientIdentifier', 'Assigned Client Identifier'],
  ['serverKeepAlive', 'Server Keep Alive'],
  ['sessionExpiryInterval', 'Session Expiry Interval'],
  ['receiveMaximum', 'Receive Maximum', '65535'],
  ['maximumPacketSize', 'Maximum Packet Size', 'no limit'],
  ['topicAliasMaximum', 'Topic Alias Maximum', '0'],
  ['maximumQoS', 'Maximum QoS', '2'],
  ['retainAvailable', 'Retain Available', 'yes'],
  ['wildcardSubscriptionAvailable', 'Wildcard Subscriptions', 'yes'],
  ['subscriptionIdentifierAvailable', 'Subscription Identifiers', 'yes'],
  ['sharedSubscriptionAvailable', 'Shared Subscriptions', 'yes'],
  ['responseInformation', 'Response Information'],
  ['serverReference', 'Server Reference'],
  ['reasonString', 'Reason String'],
  ['authenticationMethod', 'Authentication Method'],
  ['authenticationData', 'Authentication Data'],
  ['userProperties', 'User Properties'],
];

function printConnackProperties(p: Properties, options: ResolvedOptions): void {
  const shown = new Set<string>();
  const rows: string[] = [];
  const defaults: string[] = [];
  for (const [key, label, fallback] of PROPERTY_LABELS) {
    const v = p[key];
    if (v === undefined) {
      if (fallback) defaults.push(`${label} ${fallback}`);
      continue;
    }
    shown.add(key);
    let text: string;
    if (key === 'serverKeepAlive') text = `${String(v)} s (overrides the ${options.keepAlive} s asked for)`;
    else if (key === 'sessionExpiryInterval') text = v === 0xffffffff ? 'never expires' : `${String(v)} s`;
    else if (key === 'maximumPacketSize') text = `${String(v)} bytes`;
    else if (key === 'userProperties') text = (v as [string, string][]).map(([k, val]) => `${k}=${val}`).join(', ');
    else if (['retainAvailable', 'wildcardSubscriptionAvailable', 'subscriptionIdentifierAvailable', 'sharedSubscriptionAvailable'].includes(key)) text = v ? 'yes' : 'NO';
    else if (Buffer.isBuffer(v)) text = `<${v.length} bytes>`;
    else text = String(v);
    rows.push(`${label}: ${text}`);
  }
  for (const [key, v] of Object.entries(p)) if (!shown.has(key) && v !== undefined) rows.push(`${key}: ${JSON.stringify(v)}`);
  if (rows.length === 0) info('no CONNACK properties');
  else {
    info('CONNACK properties:');
    for (const r of rows) info(`  ${r}`);
  }
  if (defaults.length > 0) info(`not sent, so the defaults apply: ${defaults.join(', ')}`);
}

