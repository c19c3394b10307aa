// Black-box audit of the client's failure explanations and of its TLS and WebSocket paths, for the
// library (what connect() rejects with: class, code, step, message, hint) and for the CLI (`petrel
// pub`, `sub`, `conn`: exit code and the explained line on stderr). Everything runs over real
// sockets on 127.0.0.1: Petrel's own broker where a real broker is needed, small net / tls / http /
// ws servers for the odd peers. What the other client and CLI tests already pin down (fake-server,
// cli-edge-cases, cli) is not repeated. Each test asserts what a mosquitto_pub / MQTT.js user would
// expect; the audit found 16 places where Petrel did otherwise, all fixed since.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { createBroker, type Broker, type BrokerOptions } from '../../src/index.js';
import { ConnackError, ConnectionError, DisconnectError, TimeoutError, connect, type ClientOptions, type MqttClientError } from '../../src/client/index.js';
import { PacketDecoder, encodePacket, type ConnectPacket, type Packet, type Properties, type ProtocolVersion } from '../../src/protocol/index.js';
import { startBroker } from '../helpers/broker.js';
import { hasOpenssl, makeCerts, type TestCerts } from '../helpers/certs.js';
import { freePort, petrelBroker, rawServer } from '../helpers/servers.js';
import { run, start, type Run } from './cli-process.js';

type Ctx = { after: (fn: () => unknown) => void; skip: (message?: string) => void };

const once: ClientOptions = { reconnect: false, connectTimeout: 3000 };

// ------------------------------------------------------------------ peers

/** One connection to a fake MQTT server: decoded packets in, packets out in the client's version. */
interface Peer {
  stream: Duplex;
  version: ProtocolVersion;
  connect?: ConnectPacket;
  received: Packet[];
  send(packet: Packet): void;
}
type OnPacket = (peer: Peer, packet: Packet) => void;

function servePeer(stream: Duplex, onPacket: OnPacket): Peer {
  const decoder = new PacketDecoder({ role: 'server' });
  const peer: Peer = {
    stream,
    version: 4,
    received: [],
    send: (packet) => {
      if (!stream.destroyed) stream.write(encodePacket(packet, peer.version));
    },
  };
  stream.on('error', () => {});
  stream.on('data', (chunk: Buffer) => {
    try {
      decoder.feed(chunk, (p) => {
        if (p.type === 1) {
          peer.connect = p as ConnectPacket;
          peer.version = peer.connect.protocolVersion;
        }
        peer.received.push(p);
        onPacket(peer, p);
      });
    } catch {
      stream.destroy();
    }
  });
  return peer;
}

/** Listens on 127.0.0.1:0; every socket is destroyed and the server closed after the test. */
async function listen(t: Ctx, server: net.Server): Promise<number> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

/** A TCP server speaking MQTT as `onPacket` decides. */
async function mqttServer(t: Ctx, onPacket: OnPacket): Promise<{ port: number; peers: Peer[] }> {
  const peers: Peer[] = [];
  const port = await listen(t, net.createServer((s) => peers.push(servePeer(s, onPacket))));
  return { port, peers };
}

const connack = (reasonCode = 0, properties?: Properties): Packet => ({ type: 2, sessionPresent: false, reasonCode, ...(properties ? { properties } : {}) });

/** CONNACK 0, SUBACK granting what was asked, PINGRESP: a well-behaved server. */
const wellBehaved: OnPacket = (peer, p) => {
  if (p.type === 1) peer.send(connack());
  else if (p.type === 8) peer.send({ type: 9, packetId: p.packetId, reasonCodes: p.subscriptions.map(() => 0) });
  else if (p.type === 12) peer.send({ type: 13 });
};

/** CONNACK 0 and SUBACK, then never a PINGRESP. */
const deafToPings: OnPacket = (peer, p) => {
  if (p.type === 1) peer.send(connack(0, peer.connect?.clientId === 'server-keepalive' ? { serverKeepAlive: 1 } : undefined));
  else if (p.type === 8) peer.send({ type: 9, packetId: p.packetId, reasonCodes: p.subscriptions.map(() => 0) });
};

interface Upgrade {
  url: string;
  headers: http.IncomingHttpHeaders;
  protocol: string;
}

/** An HTTP(S) server with a WebSocket endpoint on every path; the MQTT side answers as `onPacket` decides. */
async function wsServer(
  t: Ctx,
  options: { handleProtocols?: (protocols: Set<string>) => string | false; tls?: https.ServerOptions; onPacket?: OnPacket } = {},
): Promise<{ port: number; upgrades: Upgrade[]; peers: Peer[] }> {
  const server = options.tls ? https.createServer(options.tls) : http.createServer();
  const wss = new WebSocketServer({ server, ...(options.handleProtocols ? { handleProtocols: options.handleProtocols } : {}) });
  const upgrades: Upgrade[] = [];
  const peers: Peer[] = [];
  wss.on('connection', (ws, req) => {
    upgrades.push({ url: req.url ?? '', headers: req.headers, protocol: ws.protocol });
    peers.push(servePeer(createWebSocketStream(ws), options.onPacket ?? wellBehaved));
  });
  t.after(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
  return { port: await listen(t, server), upgrades, peers };
}

// ------------------------------------------------------------------ results

/** connect() must reject: the error it rejects with. */
async function failure(url: string, options: ClientOptions = {}): Promise<MqttClientError> {
  try {
    const c = await connect(url, { ...once, ...options });
    c.destroy();
  } catch (err) {
    return err as MqttClientError;
  }
  throw new assert.AssertionError({ message: `connect(${url}) was expected to fail` });
}

const errLines = (stderr: string) => stderr.split('\n').filter((l) => l.trim() !== '');

/**
 * The CLI's failure report: "petrel <cmd>: <message>", then at most hint lines; never a stack
 * trace. Returns the message.
 */
function reported(r: Run, cmd: string): string {
  assert.doesNotMatch(r.stderr, /^\s+at .*:\d+:\d+\)?$/m, `no stack trace: ${r.stderr}`);
  const lines = errLines(r.stderr);
  assert.ok(lines.length >= 1 && lines[0]!.startsWith(`petrel ${cmd}: `), `an explained line on stderr: ${JSON.stringify(r.stderr)}`);
  for (const l of lines.slice(1)) assert.ok(l.startsWith('  hint: '), `only a hint follows the message: ${JSON.stringify(r.stderr)}`);
  return lines[0]!.slice(`petrel ${cmd}: `.length);
}

/** `petrel conn`'s failing step and its explanation (stdout), checked against stderr. */
function failedStep(r: Run): { step: string; message: string; hint?: string } {
  const m = /^\[FAIL\] (\S+)\s+(.*)$(?:\n\s+hint: (.*)$)?/m.exec(r.stdout);
  assert.ok(m, `a [FAIL] step: ${r.stdout}`);
  assert.equal(errLines(r.stderr).length, 1, r.stderr);
  assert.ok(r.stderr.startsWith(`petrel conn: ${m[1]} failed: `), r.stderr);
  return { step: m[1]!, message: m[2]!, ...(m[3] !== undefined ? { hint: m[3] } : {}) };
}

/** Runs the CLI commands side by side (two CPUs: a few at a time). */
async function runAll(commands: string[][], width = 4): Promise<Run[]> {
  const out: Run[] = [];
  for (let i = 0; i < commands.length; i += width) out.push(...(await Promise.all(commands.slice(i, i + width).map((c) => run(c)))));
  return out;
}

// ------------------------------------------------------------------ certificates

interface Certs extends TestCerts {
  selfSigned: { cert: string; key: string };
  expiredServer: { cert: string; key: string };
  /** Signed by the test CA for DNS:other.example only. */
  otherName: { cert: string; key: string };
  file: (name: string) => string;
}

let certs: Certs | undefined;
after(() => certs?.cleanup());

/** The test certificates plus a self-signed, an expired and a wrongly named server certificate; undefined without openssl. */
function testCerts(): Certs | undefined {
  if (certs) return certs;
  if (!hasOpenssl()) return undefined;
  const c = makeCerts()!;
  const file = (name: string) => join(c.dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: c.dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const pair = (name: string) => ({ cert: readFileSync(file(`${name}.crt`), 'utf8'), key: readFileSync(file(`${name}.key`), 'utf8') });
  const issue = (name: string, san: string, days: string, serial: string) => {
    openssl('req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=audit server');
    writeFileSync(file(`${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', serial, '-days', days, '-extfile', `${name}.ext`, '-out', `${name}.crt`);
    return pair(name);
  };
  openssl('req', '-x509', ...EC, '-keyout', 'self.key', '-out', 'self.crt', '-days', '30', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost');
  const expiredServer = issue('expired-server', 'IP:127.0.0.1,DNS:localhost', '-1', '9001');
  const otherName = issue('other-name', 'DNS:other.example', '30', '9002');
  openssl('pkey', '-in', 'client.key', '-out', 'client-encrypted.key', '-aes256', '-passout', 'pass:right-passphrase');
  writeFileSync(file('junk.pem'), 'this is not a PEM file\n');
  certs = { ...c, selfSigned: pair('self'), expiredServer, otherName, file };
  return certs;
}

const NO_OPENSSL = 'openssl not installed: the TLS checks need it to make certificates';

// ================================================================== network failures

test('DNS failure on every scheme: ConnectionError at the dns step; pub / sub / conn exit 1 in words', async () => {
  for (const scheme of ['mqtt', 'mqtts', 'ws', 'wss']) {
    const e = await failure(`${scheme}://no-such-broker.invalid:1883`);
    assert.ok(e instanceof ConnectionError, `${scheme}: ${e.name}`);
    assert.equal(e.step, 'dns', scheme);
    assert.ok(e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN', `${scheme}: ${e.code}`);
    assert.match(e.message, /^DNS lookup .*"no-such-broker\.invalid"/, scheme);
  }
  const [sub, wsPub, conn] = await runAll([
    ['sub', '-h', 'no-such-broker.invalid', '-t', 'a'],
    ['pub', '-L', 'wss://no-such-broker.invalid/mqtt', '-t', 'a', '-m', 'x'],
    ['conn', 'ws://no-such-broker.invalid/mqtt'],
  ]);
  assert.equal(sub!.code, 1);
  assert.match(reported(sub!, 'sub'), /^DNS lookup .*"no-such-broker\.invalid"/);
  assert.equal(wsPub!.code, 1);
  assert.match(reported(wsPub!, 'pub'), /^DNS lookup .*"no-such-broker\.invalid"/);
  assert.equal(conn!.code, 1);
  assert.equal(failedStep(conn!).step, 'DNS');
});

test('connection refused on every scheme: ConnectionError ECONNREFUSED at the tcp step; sub and conn over ws exit 1', async () => {
  const closed = await freePort();
  for (const scheme of ['mqtt', 'mqtts', 'ws', 'wss']) {
    const e = await failure(`${scheme}://127.0.0.1:${closed}`);
    assert.ok(e instanceof ConnectionError, scheme);
    assert.equal(e.code, 'ECONNREFUSED', scheme);
    assert.equal(e.step, 'tcp', scheme);
    assert.equal(e.message, `connection refused: nothing listens on 127.0.0.1:${closed} (ECONNREFUSED)`, scheme);
    assert.match(e.hint ?? '', /is the broker running\?/, scheme);
  }
  const [sub, conn] = await runAll([
    ['sub', '-L', `ws://127.0.0.1:${closed}/mqtt`, '-t', 'a'],
    ['conn', `wss://127.0.0.1:${closed}/mqtt`],
  ]);
  assert.equal(sub!.code, 1);
  assert.match(reported(sub!, 'sub'), /^connection refused: nothing listens on 127\.0\.0\.1:\d+ \(ECONNREFUSED\)$/);
  assert.equal(conn!.code, 1);
  assert.equal(failedStep(conn!).step, 'TCP');
});

test('no CONNACK: a TimeoutError CONNECT_TIMEOUT whose hint asks whether this is an MQTT port; a partial CONNACK is no CONNACK', async (t) => {
  const silent = await rawServer(t, () => {});
  const e = await failure(`mqtt://127.0.0.1:${silent}`, { connectTimeout: 200 });
  assert.ok(e instanceof TimeoutError);
  assert.equal(e.code, 'CONNECT_TIMEOUT');
  assert.equal(e.message, 'timed out waiting for CONNACK after 200 ms');
  assert.match(e.hint ?? '', /MQTT port/);
  const partial = await rawServer(t, (s) => s.once('data', () => s.write(Buffer.from([0x20, 0x03, 0x00]))));
  const p = await failure(`mqtt://127.0.0.1:${partial}`, { connectTimeout: 200 });
  assert.equal(p.code, 'CONNECT_TIMEOUT');
});

test('a server that closes right after accepting: each scheme names its step (closed before CONNACK, TLS handshake, WebSocket upgrade)', async (t) => {
  const port = await rawServer(t, (s) => s.destroy());
  const mqtt = await failure(`mqtt://127.0.0.1:${port}`);
  assert.ok(mqtt.code === 'CONNECTION_CLOSED' || mqtt.code === 'ECONNRESET', mqtt.code);
  assert.match(mqtt.message, /^connection to 127\.0\.0\.1:\d+ (closed by the server before CONNACK|reset by the server)/);
  const mqtts = await failure(`mqtts://127.0.0.1:${port}`);
  assert.equal((mqtts as ConnectionError).step, 'tls');
  assert.match(mqtts.message, /during the TLS handshake/);
  assert.match(mqtts.hint ?? '', /is this a TLS port\?/);
  const ws = await failure(`ws://127.0.0.1:${port}/mqtt`);
  assert.equal((ws as ConnectionError).step, 'websocket');
  assert.match(ws.message, /^WebSocket upgrade to 127\.0\.0\.1:\d+ failed: the server closed the connection without an HTTP answer/);
  const wss = await failure(`wss://127.0.0.1:${port}/mqtt`);
  assert.equal((wss as ConnectionError).step, 'tls');
  const [sub, conn] = await runAll([
    ['sub', '-L', `mqtts://127.0.0.1:${port}`, '-t', 'a'],
    ['conn', `ws://127.0.0.1:${port}/mqtt`],
  ]);
  assert.equal(sub!.code, 1);
  assert.match(reported(sub!, 'sub'), /reset by the server during the TLS handshake/);
  assert.equal(conn!.code, 1);
  assert.equal(failedStep(conn!).step, 'WebSocket');
});

test('garbage, a text banner, an HTTP server and a non-CONNACK first packet: PROTOCOL_ERROR saying what came (library, pub, sub, conn)', async (t) => {
  const garbage = await rawServer(t, (s) => s.write(Buffer.from([0xff, 0xfe, 0xfd, 0x00])));
  const banner = await rawServer(t, (s) => s.write('SSH-2.0-OpenSSH_9.6\r\n'));
  const web = await listen(t, http.createServer((_req, res) => res.end('hello')));
  const early = await mqttServer(t, (peer, p) => {
    if (p.type === 1) peer.send({ type: 9, packetId: 1, reasonCodes: [0] });
  });
  const g = await failure(`mqtt://127.0.0.1:${garbage}`);
  assert.equal(g.code, 'PROTOCOL_ERROR');
  assert.match(g.message, /^protocol error: the server did not answer CONNECT with CONNACK: the bytes it sent are not MQTT/);
  const b = await failure(`mqtt://127.0.0.1:${banner}`);
  assert.equal(b.message, 'protocol error: the server did not answer CONNECT with CONNACK: it sent text ("SSH-2.0-OpenSSH_9.6")');
  const h = await failure(`mqtt://127.0.0.1:${web}`);
  assert.match(h.message, /it answered in HTTP \("HTTP\/1\.1 400 Bad Request"\)$/);
  assert.ok(h.hint?.includes(`ws://127.0.0.1:${web}/mqtt`), h.hint);
  const [sub, conn, pub] = await runAll([
    ['sub', '-h', '127.0.0.1', '-p', String(web), '-t', 'a'],
    ['conn', `mqtt://127.0.0.1:${web}`],
    ['pub', '-h', '127.0.0.1', '-p', String(early.port), '-t', 'a', '-m', 'x'],
  ]);
  assert.equal(sub!.code, 1);
  assert.match(reported(sub!, 'sub'), /did not answer CONNECT with CONNACK: it answered in HTTP/);
  assert.match(sub!.stderr, /hint: this port speaks HTTP, not MQTT/);
  assert.equal(conn!.code, 1);
  const step = failedStep(conn!);
  assert.equal(step.step, 'CONNACK');
  assert.match(step.message, /it answered in HTTP/);
  assert.equal(pub!.code, 1);
  assert.equal(reported(pub!, 'pub'), 'protocol error: the server did not answer CONNECT with CONNACK: it sent SUBACK first');
});

test('a 3.1.x-only server answering a 5.0 CONNECT in its own format: return code 1 is 0x84 with the -V hint; an acceptance is a protocol error pointing at the version', async (t) => {
  const server = await rawServer(t, (s) =>
    s.once('data', (d: Buffer) => {
      // the Client ID decides the answer: "refuse" or "accept" (3.1.1 CONNACK bytes, no properties)
      s.write(Buffer.from([0x20, 0x02, 0x00, d.includes('refuse') ? 0x01 : 0x00]));
    }),
  );
  const refused = await failure(`mqtt://127.0.0.1:${server}`, { clientId: 'refuse' });
  assert.ok(refused instanceof ConnackError);
  assert.equal(refused.message, 'connection refused by the server: 0x84 Unsupported Protocol Version');
  assert.match(refused.hint ?? '', /-V 3\.1\.1/);
  const accepted = await failure(`mqtt://127.0.0.1:${server}`, { clientId: 'accept' });
  assert.equal(accepted.code, 'PROTOCOL_ERROR');
  assert.match(accepted.hint ?? '', /protocol version/);
  const cli = await run(['pub', '-h', '127.0.0.1', '-p', String(server), '-i', 'refuse', '-t', 'a', '-m', 'x']);
  assert.equal(cli.code, 3);
  assert.match(reported(cli, 'pub'), /0x84 Unsupported Protocol Version/);
});

test('a DISCONNECT instead of CONNACK: its reason code and reason string are reported', async (t) => {
  const server = await mqttServer(t, (peer, p) => {
    if (p.type === 1) peer.send({ type: 14, reasonCode: 0x87, properties: { reasonString: 'tenant suspended' } });
  });
  const e = await failure(`mqtt://127.0.0.1:${server.port}`);
  const cli = await run(['pub', '-h', '127.0.0.1', '-p', String(server.port), '-t', 'a', '-m', 'x']);
  assert.match(reported(cli, 'pub'), /0x87 Not authorized: tenant suspended/);
  assert.equal(e.reasonCode, 0x87);
  assert.match(e.message, /0x87 Not authorized: tenant suspended/);
});

// ================================================================== CONNACK refusals

/** Answers CONNECT with the code its Client ID names: "rc-86" → 0x86 (with a Server Reference for 0x9c / 0x9d). */
async function refusingServer(t: Ctx): Promise<number> {
  const { port } = await mqttServer(t, (peer, p) => {
    if (p.type !== 1) return;
    const code = parseInt(/^rc-([0-9a-f]+)/.exec(p.clientId)?.[1] ?? '0', 16);
    let properties: Properties | undefined;
    if (peer.version === 5 && (code === 0x9c || code === 0x9d)) properties = { serverReference: 'other.example:1883' };
    if (peer.version === 5 && code === 0x97) properties = { reasonString: 'tenant over quota' };
    peer.send(connack(code, properties));
  });
  return port;
}

const V3_RETURN_CODES: [number, RegExp][] = [
  [1, /^0x01 Unacceptable protocol version$/],
  [2, /^0x02 Identifier rejected$/],
  [3, /^0x03 Server unavailable$/],
  [4, /^0x04 Bad user name or password$/],
  [5, /^0x05 Not authorized$/],
];

test('3.1.1 / 3.1 CONNACK return codes 1-5: a ConnackError naming the reason; pub, sub and conn exit 3', async (t) => {
  const port = await refusingServer(t);
  for (const [code, name] of V3_RETURN_CODES) {
    for (const protocolVersion of ['3.1.1', '3.1'] as const) {
      const e = await failure(`mqtt://127.0.0.1:${port}`, { protocolVersion, clientId: `rc-${code}` });
      assert.ok(e instanceof ConnackError, `${protocolVersion} ${code}`);
      assert.equal(e.code, 'CONNACK_REFUSED');
      assert.equal(e.reasonCode, code);
      assert.match(e.message.replace('connection refused by the server: ', ''), name, `${protocolVersion} ${code}`);
    }
  }
  const runs = await runAll([
    ...V3_RETURN_CODES.map(([code]) => ['pub', '-h', '127.0.0.1', '-p', String(port), '-V', '3.1.1', '-i', `rc-${code}`, '-t', 'a', '-m', 'x']),
    ['sub', '-h', '127.0.0.1', '-p', String(port), '-V', '3.1', '-i', 'rc-4', '-t', 'a'],
    ['conn', `mqtt://127.0.0.1:${port}`, '-V', '3.1.1', '-i', 'rc-3'],
  ]);
  for (const [i, [code, name]] of V3_RETURN_CODES.entries()) {
    assert.equal(runs[i]!.code, 3, `pub -V 3.1.1 return code ${code}`);
    assert.match(reported(runs[i]!, 'pub').replace('connection refused by the server: ', ''), name);
  }
  const sub = runs[5]!;
  assert.equal(sub.code, 3);
  assert.equal(reported(sub, 'sub'), 'connection refused by the server: 0x04 Bad user name or password');
  assert.match(sub.stderr, /hint: check the user name and password \(-u \/ -P\)/);
  const conn = runs[6]!;
  assert.equal(conn.code, 3);
  assert.deepEqual(failedStep(conn), { step: 'CONNACK', message: 'connection refused by the server: 0x03 Server unavailable', hint: 'the server is unavailable: try again later' });
});

const V5_REFUSALS: [number, string][] = [
  [0x80, 'Unspecified error'],
  [0x81, 'Malformed Packet'],
  [0x82, 'Protocol Error'],
  [0x83, 'Implementation specific error'],
  [0x84, 'Unsupported Protocol Version'],
  [0x85, 'Client Identifier not valid'],
  [0x86, 'Bad User Name or Password'],
  [0x87, 'Not authorized'],
  [0x88, 'Server unavailable'],
  [0x89, 'Server busy'],
  [0x8a, 'Banned'],
  [0x8c, 'Bad authentication method'],
  [0x90, 'Topic Name invalid'],
  [0x95, 'Packet too large'],
  [0x97, 'Quota exceeded'],
  [0x99, 'Payload format invalid'],
  [0x9a, 'Retain not supported'],
  [0x9b, 'QoS not supported'],
  [0x9c, 'Use another server'],
  [0x9d, 'Server moved'],
  [0x9f, 'Connection rate exceeded'],
];
const hex = (code: number) => `0x${code.toString(16).padStart(2, '0')}`;

test('every 5.0 CONNACK reason code a server may send: named in words (plus the Reason String); pub, sub and conn exit 3', async (t) => {
  const port = await refusingServer(t);
  for (const [code, name] of V5_REFUSALS) {
    const e = await failure(`mqtt://127.0.0.1:${port}`, { clientId: `rc-${code.toString(16)}` });
    assert.ok(e instanceof ConnackError, hex(code));
    assert.equal(e.reasonCode, code);
    const detail = code === 0x97 ? ': tenant over quota' : '';
    assert.ok(e.message.startsWith(`connection refused by the server: ${hex(code)} ${name}${detail}`), e.message);
  }
  const some = [0x80, 0x84, 0x86, 0x87, 0x88, 0x8a, 0x97, 0x9f];
  const runs = await runAll([
    ...some.map((code) => ['pub', '-h', '127.0.0.1', '-p', String(port), '-i', `rc-${code.toString(16)}`, '-t', 'a', '-m', 'x']),
    ['sub', '-L', `mqtt://127.0.0.1:${port}`, '-i', 'rc-8a', '-t', 'a'],
    ['conn', `127.0.0.1:${port}`, '-i', 'rc-89'],
  ]);
  for (const [i, code] of some.entries()) {
    assert.equal(runs[i]!.code, 3, `pub ${hex(code)}`);
    assert.ok(reported(runs[i]!, 'pub').startsWith(`connection refused by the server: ${hex(code)} ${V5_REFUSALS.find(([c]) => c === code)![1]}`), runs[i]!.stderr);
  }
  assert.match(runs[2]!.stderr, /hint: check the user name and password/);
  assert.match(runs[1]!.stderr, /hint: .*-V 3\.1\.1/);
  assert.equal(runs[8]!.code, 3);
  assert.match(reported(runs[8]!, 'sub'), /0x8a Banned/);
  assert.equal(runs[9]!.code, 3);
  assert.match(failedStep(runs[9]!).message, /0x89 Server busy/);
});

test('CONNACK 0x9C / 0x9D: the Server Reference to use is named (library, pub, conn)', async (t) => {
  const port = await refusingServer(t);
  const [pub, conn] = await runAll([
    ['pub', '-h', '127.0.0.1', '-p', String(port), '-i', 'rc-9c', '-t', 'a', '-m', 'x'],
    ['conn', `mqtt://127.0.0.1:${port}`, '-i', 'rc-9d'],
  ]);
  assert.equal(pub!.code, 3);
  assert.equal(conn!.code, 3);
  for (const code of [0x9c, 0x9d]) {
    const e = await failure(`mqtt://127.0.0.1:${port}`, { clientId: `rc-${code.toString(16)}` });
    assert.ok(`${e.message} ${e.hint ?? ''}`.includes('other.example:1883'), `${hex(code)}: ${e.message} / ${e.hint}`);
  }
  assert.ok(pub!.stderr.includes('other.example:1883'), pub!.stderr);
  assert.ok(conn!.stdout.includes('other.example:1883'), conn!.stdout);
});

test('hints never suggest the protocol version already in use', async (t) => {
  const port = await refusingServer(t);
  const closing = await rawServer(t, (s) => s.once('data', () => s.destroy()));
  const refused = await failure(`mqtt://127.0.0.1:${port}`, { protocolVersion: '3.1.1', clientId: 'rc-1' });
  const closed = await failure(`mqtt://127.0.0.1:${closing}`, { protocolVersion: '3.1.1' });
  const cli = await run(['pub', '-h', '127.0.0.1', '-p', String(port), '-V', '3.1.1', '-i', 'rc-1', '-t', 'a', '-m', 'x']);
  assert.equal(cli.code, 3);
  assert.doesNotMatch(refused.hint ?? '', /-V 3\.1\.1/, refused.hint);
  assert.doesNotMatch(closed.hint ?? '', /-V 3\.1\.1/, closed.hint);
  assert.doesNotMatch(cli.stderr, /-V 3\.1\.1/, cli.stderr);
});

test('sub: a server DISCONNECT 0x9C with a Server Reference names the server and does not claim to reconnect', async (t) => {
  const server = await mqttServer(t, (peer, p) => {
    if (p.type === 1) peer.send(connack());
    if (p.type === 8) {
      peer.send({ type: 9, packetId: p.packetId, reasonCodes: [0] });
      setTimeout(() => peer.send({ type: 14, reasonCode: 0x9c, properties: { serverReference: 'other.example:1883' } }), 50);
    }
  });
  const r = await run(['sub', '-h', '127.0.0.1', '-p', String(server.port), '-t', 'a']);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(server.peers.length, 1, 'no reconnect after Use another server');
  assert.match(r.stderr, /0x9c Use another server/);
  assert.doesNotMatch(r.stderr, /reconnecting/, r.stderr);
  assert.ok(r.stderr.includes('other.example:1883'), r.stderr);
});

test('sub --no-reconnect: a connection lost before SUBACK is reported once', async (t) => {
  const server = await mqttServer(t, (peer, p) => {
    if (p.type === 1) peer.send(connack());
    if (p.type === 8) peer.stream.destroy();
  });
  const r = await run(['sub', '-h', '127.0.0.1', '-p', String(server.port), '-t', 'a', '--no-reconnect']);
  assert.equal(r.code, 1);
  const lines = errLines(r.stderr).filter((l) => !l.startsWith('  hint: '));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /closed by the server/);
});

// ================================================================== TLS

interface TlsBroker {
  broker: Broker;
  /** CA-signed, for 127.0.0.1 and localhost */
  good: number;
  selfSigned: number;
  expired: number;
  /** CA-signed for other.example only */
  otherName: number;
  /** Mutual TLS: a client certificate from the CA is required; its CN becomes the user name. */
  mutual: number;
  plain: number;
  wss: number;
}

async function tlsBroker(t: Ctx, c: Certs): Promise<TlsBroker> {
  const h = '127.0.0.1';
  const broker = await petrelBroker(t, {
    listeners: [
      { type: 'tls', host: h, port: 0, cert: c.server.cert, key: c.server.key },
      { type: 'tls', host: h, port: 0, ...c.selfSigned },
      { type: 'tls', host: h, port: 0, ...c.expiredServer },
      { type: 'tls', host: h, port: 0, ...c.otherName },
      { type: 'tls', host: h, port: 0, cert: c.server.cert, key: c.server.key, ca: c.ca, requestCert: true, peerCertAsUsername: 'cn' },
      { type: 'tcp', host: h, port: 0 },
      { type: 'wss', host: h, port: 0, cert: c.server.cert, key: c.server.key },
    ],
  });
  const p = (i: number) => broker.address(i).port;
  return { broker, good: p(0), selfSigned: p(1), expired: p(2), otherName: p(3), mutual: p(4), plain: p(5), wss: p(6) };
}

const UNKNOWN_CA = /^TLS: certificate signed by an unknown CA \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN)\)$/;

test('TLS server certificate problems: unknown CA, self-signed, expired, hostname mismatch (library, pub, conn)', async (t) => {
  const c = testCerts();
  if (!c) return t.skip(NO_OPENSSL);
  const b = await tlsBroker(t, c);
  const unknown = await failure(`mqtts://127.0.0.1:${b.good}`);
  assert.ok(unknown instanceof ConnectionError);
  assert.equal(unknown.step, 'tls');
  assert.match(unknown.message, UNKNOWN_CA);
  assert.match(unknown.hint ?? '', /pass --cafile/);
  const self = await failure(`mqtts://127.0.0.1:${b.selfSigned}`);
  assert.equal(self.code, 'DEPTH_ZERO_SELF_SIGNED_CERT');
  assert.match(self.message, UNKNOWN_CA);
  const expired = await failure(`mqtts://127.0.0.1:${b.expired}`, { tls: { ca: c.ca } });
  assert.equal(expired.code, 'CERT_HAS_EXPIRED');
  assert.equal(expired.message, 'TLS: the server certificate has expired (CERT_HAS_EXPIRED)');
  const mismatch = await failure(`mqtts://localhost:${b.otherName}`, { tls: { ca: c.ca } });
  assert.equal(mismatch.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  assert.match(mismatch.message, /^TLS: hostname mismatch: .*localhost.*DNS:other\.example/);
  assert.match(mismatch.hint ?? '', /--servername/);

  const ca = ['--cafile', c.paths.ca];
  const [pubUnknown, pubSelf, pubExpired, pubMismatch, connExpired, connMismatch] = await runAll([
    ['pub', '-L', `mqtts://127.0.0.1:${b.good}`, '-t', 'a', '-m', 'x'],
    ['pub', '-h', '127.0.0.1', '-p', String(b.selfSigned), '--tls', '-t', 'a', '-m', 'x'],
    ['sub', '-L', `mqtts://127.0.0.1:${b.expired}`, ...ca, '-t', 'a'],
    ['pub', '-h', 'localhost', '-p', String(b.otherName), ...ca, '-t', 'a', '-m', 'x'],
    ['conn', `mqtts://127.0.0.1:${b.expired}`, ...ca],
    ['conn', `mqtts://localhost:${b.otherName}`, ...ca],
  ]);
  for (const r of [pubUnknown, pubSelf, pubExpired, pubMismatch, connExpired, connMismatch]) assert.equal(r!.code, 1, r!.stderr);
  assert.match(reported(pubUnknown!, 'pub'), UNKNOWN_CA);
  assert.match(pubUnknown!.stderr, /hint: pass --cafile/);
  assert.match(reported(pubSelf!, 'pub'), UNKNOWN_CA);
  assert.equal(reported(pubExpired!, 'sub'), 'TLS: the server certificate has expired (CERT_HAS_EXPIRED)');
  assert.match(reported(pubMismatch!, 'pub'), /^TLS: hostname mismatch: .*other\.example/);
  assert.deepEqual(failedStep(connExpired!).step, 'TLS');
  assert.match(connExpired!.stdout, /EXPIRED on \d{4}-/, 'conn shows the certificate and when it expired');
  assert.match(failedStep(connMismatch!).message, /hostname mismatch/);
  assert.match(connMismatch!.stdout, /DNS:other\.example/);
});

test('TLS hostname mismatch on an IP address names what the certificate is for', async (t) => {
  const c = testCerts();
  if (!c) return t.skip(NO_OPENSSL);
  const b = await tlsBroker(t, c);
  const e = await failure(`mqtts://127.0.0.1:${b.otherName}`, { tls: { ca: c.ca } });
  assert.equal(e.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  assert.match(e.message, /other\.example/);
});

test('TLS options work: --cafile, --insecure, --cert / --key (+ --key-passphrase), --servername; conn warns when not verifying', async (t) => {
  const c = testCerts();
  if (!c) return t.skip(NO_OPENSSL);
  const b = await tlsBroker(t, c);
  const users: (string | undefined)[] = [];
  b.broker.on('clientConnected', (client) => users.push(client.username));
  const ca = ['--cafile', c.paths.ca];
  const mutual = ['-h', '127.0.0.1', '-p', String(b.mutual), ...ca];
  const [withCa, insecure, servername, wrongName, cert, encrypted, connInsecure] = await runAll([
    ['pub', '-L', `mqtts://localhost:${b.good}`, ...ca, '-t', 'a', '-m', 'x', '-q', '1'],
    ['pub', '-h', '127.0.0.1', '-p', String(b.selfSigned), '--insecure', '-t', 'a', '-m', 'x', '-q', '1'],
    ['pub', '-h', '127.0.0.1', '-p', String(b.otherName), ...ca, '--servername', 'other.example', '-t', 'a', '-m', 'x'],
    ['pub', '-h', '127.0.0.1', '-p', String(b.good), ...ca, '--servername', 'wrong.example', '-t', 'a', '-m', 'x'],
    ['pub', ...mutual, '--cert', c.file('client.crt'), '--key', c.file('client.key'), '-t', 'a', '-m', 'x', '-q', '1'],
    ['pub', ...mutual, '--cert', c.file('client.crt'), '--key', c.file('client-encrypted.key'), '--key-passphrase', 'right-passphrase', '-t', 'a', '-m', 'x'],
    ['conn', `mqtts://127.0.0.1:${b.selfSigned}`, '--insecure', '--pings', '1'],
  ]);
  for (const r of [withCa, insecure, servername, cert, encrypted, connInsecure]) assert.equal(r!.code, 0, r!.stderr + r!.stdout);
  assert.equal(wrongName!.code, 1);
  assert.match(reported(wrongName!, 'pub'), /^TLS: hostname mismatch: .*wrong\.example/);
  assert.ok(users.includes('device-1'), `the client certificate was presented (CN as user name): ${users.join(',')}`);
  assert.match(connInsecure!.stdout, /WARNING: not verified \(TLS: certificate signed by an unknown CA/);
  assert.match(connInsecure!.stdout, /^connection OK: /m);
  // the library: the same options
  const lib = await connect(`mqtts://127.0.0.1:${b.otherName}`, { ...once, tls: { ca: c.ca, servername: 'other.example' } });
  assert.equal(lib.tlsSocket?.authorized, true);
  await lib.end();
});

test('SNI: a host name is sent as the server name, an IP address is not, --servername / the servername option override it (mqtts, wss)', async (t) => {
  const c = testCerts();
  if (!c) return t.skip(NO_OPENSSL);
  const names: string[] = [];
  const context = tls.createSecureContext({ cert: c.server.cert, key: c.server.key });
  const sni = (name: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => {
    names.push(name);
    cb(null, context);
  };
  const mqttsPort = await listen(t, tls.createServer({ cert: c.server.cert, key: c.server.key, SNICallback: sni }, (s) => servePeer(s, wellBehaved)));
  const wss = await wsServer(t, { tls: { cert: c.server.cert, key: c.server.key, SNICallback: sni } });
  const seen = async (url: string, options: ClientOptions) => {
    names.length = 0;
    const client = await connect(url, { ...once, ...options });
    client.destroy();
    return [...names];
  };
  assert.deepEqual(await seen(`mqtts://localhost:${mqttsPort}`, { tls: { ca: c.ca } }), ['localhost']);
  assert.deepEqual(await seen(`mqtts://127.0.0.1:${mqttsPort}`, { tls: { ca: c.ca } }), []);
  assert.deepEqual(await seen(`mqtts://127.0.0.1:${mqttsPort}`, { tls: { ca: c.ca, servername: 'localhost' } }), ['localhost']);
  assert.deepEqual(await seen(`wss://localhost:${wss.port}/mqtt`, { tls: { ca: c.ca } }), ['localhost']);
  assert.deepEqual(await seen(`wss://127.0.0.1:${wss.port}/mqtt`, { tls: { ca: c.ca, servername: 'localhost' } }), ['localhost']);
  names.length = 0;
  const [pub, conn] = await runAll([
    ['pub', '-h', '127.0.0.1', '-p', String(mqttsPort), '--cafile', c.paths.ca, '--servername', 'localhost', '-t', 'a', '-m', 'x'],
    ['conn', `wss://127.0.0.1:${wss.port}/mqtt`, '--cafile', c.paths.ca, '--servername', 'localhost', '--pings', '0'],
  ]);
  assert.equal(pub!.code, 0, pub!.stderr);
  assert.equal(conn!.code, 0, conn!.stdout);
  assert.deepEqual(names, ['localhost', 'localhost']);
});

test('TLS to a plain MQTT port and mqtt:// to a TLS port are told apart at once, with the scheme to use (library, pub, conn)', async (t) => {
  const c = testCerts();
  if (!c) return t.skip(NO_OPENSSL);
  const b = await tlsBroker(t, c);
  const started = Date.now();
  const tlsToPlain = await failure(`mqtts://127.0.0.1:${b.plain}`, { tls: { ca: c.ca } });
  assert.equal((tlsToPlain as ConnectionError).step, 'tls');
  assert.match(tlsToPlain.hint ?? '', /use mqtt:\/\//);
  const plainToTls = await failure(`mqtt://127.0.0.1:${b.good}`);
  assert.ok(plainToTls instanceof DisconnectError || plainToTls.code === 'ECONNRESET', plainToTls.name);
  assert.match(plainToTls.message, /closed by the server before CONNACK|reset by the server/);
  assert.match(plainToTls.hint ?? '', /TLS port,? use mqtts:\/\//);
  const wsToTls = await failure(`ws://127.0.0.1:${b.good}/mqtt`);
  assert.equal((wsToTls as ConnectionError).step, 'websocket');
  assert.ok(Date.now() - started < 2500, 'no waiting for a timeout');
  const [pub, conn, sub] = await runAll([
    ['pub', '-h', '127.0.0.1', '-p', String(b.good), '-t', 'a', '-m', 'x'],
    ['conn', `mqtt://127.0.0.1:${b.good}`],
    ['sub', '-L', `mqtts://127.0.0.1:${b.plain}`, ...['--cafile', c.paths.ca], '-t', 'a'],
  ]);
  assert.equal(pub!.code, 1);
  assert.match(reported(pub!, 'pub'), /closed by the server before CONNACK|reset by the server/);
  assert.match(pub!.stderr, /hint: if this is a TLS port,? use mqtts:\/\//);
  assert.equal(conn!.code, 1);
  assert.deepEqual([failedStep(conn!).step, /mqtts:\/\//.test(failedStep(conn!).hint ?? '')], ['CONNACK', true]);
  assert.equal(sub!.code, 1);
  assert.match(reported(sub!, 'sub'), /TLS/);
  assert.match(sub!.stderr, /use mqtt:\/\//);
});

test('mutual TLS against a server that sends the TLS alert: "client certificate required" with the --cert / --key hint (TLS 1.3 and 1.2)', async (t) => {
  const c = testCerts();
  if (!c) return t.skip(NO_OPENSSL);
  const strict = (maxVersion: tls.SecureVersion) =>
    listen(t, tls.createServer({ cert: c.server.cert, key: c.server.key, ca: c.ca, requestCert: true, rejectUnauthorized: true, maxVersion }, (s) => servePeer(s, wellBehaved)));
  const v13 = await strict('TLSv1.3');
  const v12 = await strict('TLSv1.2');
  const e13 = await failure(`mqtts://127.0.0.1:${v13}`, { tls: { ca: c.ca } });
  assert.equal(e13.code, 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
  assert.equal(e13.message, 'TLS: client certificate required by the server (ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED)');
  assert.match(e13.hint ?? '', /--cert and --key/);
  const e12 = await failure(`mqtts://127.0.0.1:${v12}`, { tls: { ca: c.ca } });
  assert.equal((e12 as ConnectionError).step, 'tls');
  assert.match(e12.hint ?? '', /client certificate/);
  const ok = await connect(`mqtts://127.0.0.1:${v13}`, { ...once, tls: { ca: c.ca, cert: c.client.cert, key: c.client.key } });
  ok.destroy();
  const pub = await run(['pub', '-L', `mqtts://127.0.0.1:${v13}`, '--cafile', c.paths.ca, '-t', 'a', '-m', 'x']);
  assert.equal(pub.code, 1);
  assert.match(reported(pub, 'pub'), /^TLS: client certificate required by the server/);
});

test('mutual TLS against Petrel\'s own TLS listener: a missing or untrusted client certificate is named (library, pub, conn)', async (t) => {
  const c = testCerts();
  if (!c) return t.skip(NO_OPENSSL);
  const b = await tlsBroker(t, c);
  const url = `mqtts://127.0.0.1:${b.mutual}`;
  const [pub, conn] = await runAll([
    ['pub', '-L', url, '--cafile', c.paths.ca, '-t', 'a', '-m', 'x'],
    ['conn', url, '--cafile', c.paths.ca],
  ]);
  const none = await failure(url, { tls: { ca: c.ca } });
  const foreign = await failure(url, { tls: { ca: c.ca, ...c.foreign } });
  for (const [what, e] of [['no certificate', none], ['foreign certificate', foreign]] as const) {
    assert.match(`${e.message} ${e.hint ?? ''}`, /client certificate/i, `${what}: ${e.message} / ${e.hint}`);
    assert.doesNotMatch(e.hint ?? '', /-V 3\.1\.1/, what);
  }
  assert.equal(pub!.code, 1);
  assert.match(pub!.stderr, /client certificate/i);
  assert.match(failedStep(conn!).step, /^TLS$/);
});

test('conn: a client certificate refused by a TLS 1.3 server is reported at the TLS step', async (t) => {
  const c = testCerts();
  if (!c) return t.skip(NO_OPENSSL);
  const port = await listen(t, tls.createServer({ cert: c.server.cert, key: c.server.key, ca: c.ca, requestCert: true, rejectUnauthorized: true }, (s) => servePeer(s, wellBehaved)));
  const r = await run(['conn', `mqtts://127.0.0.1:${port}`, '--cafile', c.paths.ca]);
  assert.equal(r.code, 1);
  const step = failedStep(r);
  assert.match(step.message, /client certificate required/);
  assert.equal(step.step, 'TLS');
});

test('wss to a TLS 1.2 server that wants a client certificate: explained as for mqtts, no raw OpenSSL text', async (t) => {
  const c = testCerts();
  if (!c) return t.skip(NO_OPENSSL);
  const port = await listen(t, tls.createServer({ cert: c.server.cert, key: c.server.key, ca: c.ca, requestCert: true, rejectUnauthorized: true, maxVersion: 'TLSv1.2' }, (s) => s.on('error', () => {})));
  const pub = await run(['pub', '-L', `wss://127.0.0.1:${port}/mqtt`, '--cafile', c.paths.ca, '-t', 'a', '-m', 'x']);
  const e = await failure(`wss://127.0.0.1:${port}/mqtt`, { tls: { ca: c.ca } });
  assert.equal(pub.code, 1);
  assert.doesNotMatch(pub.stderr, /rec_layer|SSL routines/);
  assert.match(reported(pub, 'pub'), /^TLS: /);
  assert.equal((e as ConnectionError).step, 'tls');
  assert.match(e.hint ?? '', /client certificate/);
});

test('a wrong or missing --key-passphrase is a bad argument naming the flag, not a network failure', async (t) => {
  const c = testCerts();
  if (!c) return t.skip(NO_OPENSSL);
  const b = await tlsBroker(t, c);
  const base = ['pub', '-h', '127.0.0.1', '-p', String(b.mutual), '--cafile', c.paths.ca, '--cert', c.file('client.crt'), '--key', c.file('client-encrypted.key'), '-t', 'a', '-m', 'x'];
  const [wrong, missing] = await runAll([[...base, '--key-passphrase', 'wrong-passphrase'], base]);
  const lib = await failure(`mqtts://127.0.0.1:${b.mutual}`, {
    tls: { ca: c.ca, cert: c.client.cert, key: readFileSync(c.file('client-encrypted.key')), passphrase: 'wrong-passphrase' },
  });
  assert.doesNotMatch(lib.message, /^connection to /, lib.message);
  assert.match(lib.message, /passphrase|decrypt/);
  for (const r of [wrong!, missing!]) {
    assert.equal(r.code, 2, r.stderr);
    assert.match(reported(r, 'pub'), /passphrase/);
  }
});

test('--cert / --key that do not match, or a --cert that is not PEM: a bad argument naming the flag', async (t) => {
  const c = testCerts();
  if (!c) return t.skip(NO_OPENSSL);
  const b = await tlsBroker(t, c);
  const base = ['pub', '-h', '127.0.0.1', '-p', String(b.mutual), '--cafile', c.paths.ca, '-t', 'a', '-m', 'x'];
  const [mismatch, junk] = await runAll([
    [...base, '--cert', c.file('client.crt'), '--key', c.file('client2.key')],
    [...base, '--cert', c.file('junk.pem'), '--key', c.file('client.key')],
  ]);
  assert.match(reported(mismatch!, 'pub'), /--key|--cert/);
  assert.match(reported(junk!, 'pub'), /--cert/);
  assert.equal(mismatch!.code, 2);
  assert.equal(junk!.code, 2);
});

test('a --cafile without a certificate in it is a bad argument, not "unknown CA: pass --cafile"', async (t) => {
  const c = testCerts();
  if (!c) return t.skip(NO_OPENSSL);
  const b = await tlsBroker(t, c);
  const r = await run(['pub', '-h', '127.0.0.1', '-p', String(b.good), '--cafile', c.file('junk.pem'), '-t', 'a', '-m', 'x']);
  assert.match(reported(r, 'pub'), /--cafile/);
  assert.doesNotMatch(r.stderr, /hint: pass --cafile/);
  assert.equal(r.code, 2);
});

// ================================================================== WebSocket

test('WebSocket: a wrong path is a 404 with a path hint, a refused "mqtt" subprotocol is named, mqtt:// to a ws port hints ws:// (library, pub, conn)', async (t) => {
  const b = await petrelBroker(t, { listeners: [{ type: 'ws', host: '127.0.0.1', port: 0, path: '/mqtt' }] });
  const port = b.address(0).port;
  const wrong = await failure(`ws://127.0.0.1:${port}/wrong`);
  assert.ok(wrong instanceof ConnectionError);
  assert.equal(wrong.step, 'websocket');
  assert.match(wrong.message, /^WebSocket upgrade to 127\.0\.0\.1:\d+ failed: .*404/);
  assert.match(wrong.hint ?? '', /path/);
  const plain = await failure(`mqtt://127.0.0.1:${port}`);
  assert.match(plain.message, /it answered in HTTP/);
  assert.ok(plain.hint?.includes(`ws://127.0.0.1:${port}/mqtt`), plain.hint);
  const noProtocol = await wsServer(t, { handleProtocols: () => false });
  const otherProtocol = await wsServer(t, { handleProtocols: () => 'mqttv3.1' });
  for (const s of [noProtocol, otherProtocol]) {
    const e = await failure(`ws://127.0.0.1:${s.port}/mqtt`);
    assert.equal((e as ConnectionError).step, 'websocket');
    assert.equal(e.code, 'ERR_WS_SUBPROTOCOL');
    assert.match(e.hint ?? '', /"mqtt" subprotocol/);
  }
  const [pubWrong, connWrong, pubProto, connOk] = await runAll([
    ['pub', '-L', `ws://127.0.0.1:${port}/wrong`, '-t', 'a', '-m', 'x'],
    ['conn', `ws://127.0.0.1:${port}/wrong`],
    ['pub', '-L', `ws://127.0.0.1:${noProtocol.port}/mqtt`, '-t', 'a', '-m', 'x'],
    ['conn', `ws://127.0.0.1:${port}/mqtt`, '--pings', '1'],
  ]);
  assert.equal(pubWrong!.code, 1);
  assert.match(reported(pubWrong!, 'pub'), /404/);
  assert.equal(connWrong!.code, 1);
  assert.deepEqual([failedStep(connWrong!).step, /404/.test(failedStep(connWrong!).message)], ['WebSocket', true]);
  assert.equal(pubProto!.code, 1);
  assert.match(pubProto!.stderr, /hint: the server did not accept the "mqtt" subprotocol/);
  reported(pubProto!, 'pub');
  assert.equal(connOk!.code, 0, connOk!.stdout);
  const steps = [...connOk!.stdout.matchAll(/^\[ok\] {3}(\S+)/gm)].map((m) => m[1]);
  assert.deepEqual(steps, ['DNS', 'TCP', 'WebSocket', 'CONNECT', 'CONNACK', 'PING', 'DISCONNECT']);
  assert.match(connOk!.stdout, /upgraded at \/mqtt, subprotocol "mqtt"/);
});

test('conn: a server refusing the "mqtt" subprotocol is explained as in pub', async (t) => {
  const s = await wsServer(t, { handleProtocols: () => false });
  const r = await run(['conn', `ws://127.0.0.1:${s.port}/mqtt`]);
  assert.equal(r.code, 1);
  const step = failedStep(r);
  assert.equal(step.step, 'WebSocket');
  assert.doesNotMatch(step.message, /ECONNECTION/);
  assert.match(step.hint ?? '', /"mqtt" subprotocol/);
});

test('WebSocket 401: the hint speaks of authentication, not of the path', async (t) => {
  const port = await listen(t, http.createServer((_req, res) => res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="mqtt"' }).end()));
  const e = await failure(`ws://127.0.0.1:${port}/mqtt`);
  assert.match(e.message, /401/);
  assert.doesNotMatch(e.hint ?? '', /check the path/);
  assert.match(e.hint ?? '', /auth|credential|--ws-header/i);
});

test('WebSocket URL: path and query reach the server, user:pass@ become the MQTT credentials (percent-decoded), --ws-header is sent (library, pub)', async (t) => {
  const s = await wsServer(t, { handleProtocols: (p) => (p.has('mqtt') ? 'mqtt' : false) });
  const client = await connect(`ws://al%40ice:pa%3Ass@127.0.0.1:${s.port}/custom/path?token=abc&x=1`, { ...once, wsHeaders: { 'X-Tenant': 'blue' } });
  client.destroy();
  const r = await run(['pub', '-L', `ws://bob:secret@127.0.0.1:${s.port}/p/q?token=xyz`, '--ws-header', 'X-Tenant: green', '-t', 'a', '-m', 'x']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(
    s.upgrades.map((u) => [u.url, u.protocol, u.headers['x-tenant']]),
    [
      ['/custom/path?token=abc&x=1', 'mqtt', 'blue'],
      ['/p/q?token=xyz', 'mqtt', 'green'],
    ],
  );
  assert.deepEqual(
    s.peers.map((p) => [p.connect?.username, p.connect?.password?.toString()]),
    [
      ['al@ice', 'pa:ss'],
      ['bob', 'secret'],
    ],
  );
});

test('wss: an unknown CA fails at TLS, not at the WebSocket upgrade; with --cafile every step passes (library, pub, sub, conn)', async (t) => {
  const c = testCerts();
  if (!c) return t.skip(NO_OPENSSL);
  const b = await tlsBroker(t, c);
  const e = await failure(`wss://127.0.0.1:${b.wss}/mqtt`);
  assert.equal((e as ConnectionError).step, 'tls');
  assert.match(e.message, UNKNOWN_CA);
  const [pub, conn, connOk, sub] = await runAll([
    ['pub', '-L', `wss://127.0.0.1:${b.wss}/mqtt`, '-t', 'a', '-m', 'x'],
    ['conn', `wss://127.0.0.1:${b.wss}/mqtt`],
    ['conn', `wss://127.0.0.1:${b.wss}/mqtt`, '--cafile', c.paths.ca, '--pings', '1'],
    ['sub', '-L', `wss://127.0.0.1:${b.wss}/mqtt`, '--cafile', c.paths.ca, '-t', 'a', '-W', '0.3'],
  ]);
  assert.equal(pub!.code, 1);
  assert.match(reported(pub!, 'pub'), UNKNOWN_CA);
  assert.equal(conn!.code, 1);
  assert.equal(failedStep(conn!).step, 'TLS');
  assert.equal(connOk!.code, 0, connOk!.stdout);
  assert.deepEqual([...connOk!.stdout.matchAll(/^\[ok\] {3}(\S+)/gm)].map((m) => m[1]), ['DNS', 'TCP', 'TLS', 'WebSocket', 'CONNECT', 'CONNACK', 'PING', 'DISCONNECT']);
  assert.equal(sub!.code, 27, sub!.stderr);
});

// ================================================================== keep alive

test('keep alive: PINGREQ after the keep alive (or Server Keep Alive) of silence; no PINGRESP is KEEPALIVE_TIMEOUT in words (library, sub, conn -k 1)', async (t) => {
  const server = await mqttServer(t, deafToPings);
  const sub = start(['sub', '-h', '127.0.0.1', '-p', String(server.port), '-t', 'a', '-k', '1', '--no-reconnect']);
  const conn = start(['conn', `mqtt://127.0.0.1:${server.port}`, '-k', '1']);
  t.after(() => {
    sub.kill('SIGKILL');
    conn.kill('SIGKILL');
  });
  const watch = async (options: ClientOptions) => {
    const client = await connect(`mqtt://127.0.0.1:${server.port}`, { ...once, ...options });
    const connected = Date.now();
    const peer = server.peers.find((p) => p.connect?.clientId === client.clientId)!;
    const closed = await new Promise<MqttClientError | undefined>((r) => client.once('close', r));
    const ping = peer.received.findIndex((p) => p.type === 12);
    return { closed, elapsed: Date.now() - connected, pinged: ping >= 0 };
  };
  const [own, assigned] = await Promise.all([watch({ keepAlive: 1, clientId: 'own-keepalive' }), watch({ keepAlive: 60, clientId: 'server-keepalive' })]);
  for (const [what, r] of [['keepAlive 1', own], ['Server Keep Alive 1', assigned]] as const) {
    assert.ok(r.pinged, `${what}: PINGREQ sent`);
    assert.ok(r.closed instanceof TimeoutError, `${what}: ${r.closed?.name}`);
    assert.equal(r.closed.code, 'KEEPALIVE_TIMEOUT');
    assert.equal(r.closed.message, 'no PINGRESP from the server within 1 s: connection considered dead');
    assert.ok(r.elapsed >= 1500 && r.elapsed < 4000, `${what}: ping after 1 s, dead 1 s later (${r.elapsed} ms)`);
  }
  const s = await sub.done;
  assert.equal(s.code, 1);
  assert.equal(reported(s, 'sub'), 'connection lost: no PINGRESP from the server within 1 s: connection considered dead');
  const c = await conn.done;
  assert.equal(c.code, 1);
  assert.deepEqual(failedStep(c), {
    step: 'PING',
    message: 'no PINGRESP from the server within 1 s: connection considered dead',
    hint: 'the network or the server stalled; the client reconnects if reconnect is on',
  });
});

test('conn: a server that never answers PINGREQ fails the PING step in bounded time (default keep alive)', async (t) => {
  const server = await mqttServer(t, deafToPings);
  const conn = start(['conn', `mqtt://127.0.0.1:${server.port}`, '--connect-timeout', '1']);
  t.after(() => conn.kill('SIGKILL'));
  const r = await Promise.race([conn.done, new Promise<undefined>((resolve) => setTimeout(resolve, 3500))]);
  conn.kill('SIGKILL');
  assert.ok(r, 'conn ended within 3.5 s');
  assert.equal(r.code, 1);
  assert.equal(failedStep(r).step, 'PING');
});

// ================================================================== passwords

test('passwords never appear in CLI output: -P, URL credentials, -d, refusals and failures', async (t) => {
  const SECRET = 'Sup3r-s3cret-pw';
  const { broker, port } = await startBroker({ authenticate: ({ username, password }) => username === 'bob' && password?.toString() === SECRET });
  t.after(() => broker.close());
  const closed = await freePort();
  const tcp = ['-h', '127.0.0.1', '-p', String(port)];
  const runs = await runAll([
    ['pub', ...tcp, '-u', 'alice', '-P', SECRET, '-t', 'a', '-m', 'x', '-d'],
    ['pub', '-L', `mqtt://alice:${SECRET}@127.0.0.1:${port}`, '-t', 'a', '-m', 'x'],
    ['sub', '-L', `mqtt://alice:${SECRET}@127.0.0.1:${port}`, '-t', 'a', '-V', '3.1.1', '-d'],
    ['conn', `mqtt://alice:${SECRET}@127.0.0.1:${port}`, '-d'],
    ['sub', ...tcp, '-u', 'bob', '-P', SECRET, '-t', 'a', '-W', '0.3', '-d'],
    ['conn', `mqtt://bob:${SECRET}@127.0.0.1:${port}`, '--pings', '1'],
    ['pub', '-L', `mqtt://alice:${SECRET}@no-such-broker.invalid`, '-t', 'a', '-m', 'x'],
    ['conn', `mqtt://alice:${SECRET}@127.0.0.1:${closed}`],
    ['pub', '-L', `ws://alice:${SECRET}@127.0.0.1:${port}/mqtt`, '-t', 'a', '-m', 'x', '-d'],
    ['pub', '-L', `mqtt://alice:${SECRET}@127.0.0.1:${port}`, '--tls', '-t', 'a', '-m', 'x'],
    ['pub', ...tcp, '-P', SECRET, '-V', '3.1.1', '-t', 'a', '-m', 'x'],
    ['pub', ...tcp, '-u', 'alice', '-P', SECRET, '-t', 'a/+', '-m', 'x'],
  ]);
  assert.deepEqual(
    runs.map((r) => r.code),
    [3, 3, 3, 3, 27, 0, 1, 1, 1, 2, 2, 2],
    runs.map((r) => r.stderr).join('\n'),
  );
  for (const r of runs) {
    assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET), `password printed: ${r.stdout}${r.stderr}`);
    if (r.code !== 0 && r.code !== 27) assert.doesNotMatch(r.stderr, /^\s+at .*:\d+:\d+\)?$/m);
  }
  assert.match(runs[0]!.stderr, /"password":"\*\*\*"/, '-d masks the password');
  assert.match(runs[5]!.stdout, /user "bob"/);
});

test('a malformed broker URL is reported without its password (library and CLI)', async () => {
  const SECRET = 'Sup3r-s3cret-pw';
  const urls = [`mqtt://alice:${SECRET}@127.0.0.1:99999`, `mqtt://alice:${SECRET}@127.0.0.1:0`, `foo://alice:${SECRET}@127.0.0.1`];
  const runs = await runAll([...urls.map((u) => ['pub', '-L', u, '-t', 'a', '-m', 'x']), ['conn', urls[0]!]]);
  for (const r of runs) assert.equal(r.code, 2, r.stderr);
  for (const u of urls) {
    const e = await failure(u);
    assert.equal(e.code, 'INVALID_ARGUMENT');
    assert.ok(!e.message.includes(SECRET), e.message);
  }
  for (const r of runs) assert.ok(!r.stderr.includes(SECRET), r.stderr);
});
