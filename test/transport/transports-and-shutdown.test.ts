// Transports: PROXY protocol, mutual TLS identity, certificate reload, WebSocket edges, direct/net parity,
// shutdown and admission, over real sockets on 127.0.0.1 / ::1.
import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as netConnect, createServer as netCreateServer, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { after, describe, it, type TestContext } from 'node:test';
import { WebSocket } from 'ws';
import { createBroker, type Broker, type BrokerOptions } from '../../src/server/broker.js';
import type { ClientInfo } from '../../src/broker/hooks.js';
import type { ProtocolVersion } from '../../src/protocol/constants.js';
import { PacketDecoder } from '../../src/protocol/decoder.js';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { ConnectPacket, Packet, PublishPacket } from '../../src/protocol/packets.js';
import { makeCerts, type TestCerts } from '../helpers/certs.js';
import { delay, eventually } from '../helpers/wait.js';
import { startLogged, type LoggedBroker } from './helpers.js';
import { describeOrSkip } from '../helpers/skip.js';

const certs: TestCerts | undefined = makeCerts();
const noOpenssl = certs ? false : 'openssl not installed';
after(() => certs?.cleanup());

// ---- bytes ----

const connectPacket = (clientId: string, version: ProtocolVersion = 4, fields: Partial<ConnectPacket> = {}) =>
  encodePacket({ type: 1, protocolName: version === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: version, clean: true, keepAlive: 0, clientId, ...fields } as ConnectPacket, version);
const subscribePacket = (filter: string, qos: 0 | 1 | 2, version: ProtocolVersion = 4) =>
  encodePacket({ type: 8, packetId: 1, subscriptions: [{ topicFilter: filter, qos }] }, version);
const publishPacket = (topic: string, payload: Buffer | string, qos: 0 | 1 = 0, version: ProtocolVersion = 4, packetId = 1) =>
  encodePacket({ type: 3, topic, payload: Buffer.from(payload), qos, packetId: qos ? packetId : undefined, retain: false, dup: false } as PublishPacket, version);
const PINGREQ = Buffer.from([0xc0, 0x00]);

const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
function proxyV2(command: number, family: number, body: Buffer): Buffer {
  const head = Buffer.concat([V2_SIG, Buffer.from([0x20 | command, family, 0, 0])]);
  head.writeUInt16BE(body.length, 14);
  return Buffer.concat([head, body]);
}
function ipv4Block(src: number[], srcPort: number): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from([10, 0, 0, 1]).copy(b, 4);
  b.writeUInt16BE(srcPort, 8);
  b.writeUInt16BE(1883, 10);
  return b;
}
function ipv6Block(srcGroups: number[], srcPort: number): Buffer {
  const b = Buffer.alloc(36);
  srcGroups.forEach((g, i) => b.writeUInt16BE(g, i * 2));
  b.writeUInt16BE(1, 30); // destination ::1
  b.writeUInt16BE(srcPort, 32);
  b.writeUInt16BE(1883, 34);
  return b;
}

// ---- one client over any transport: bytes in, decoded packets out ----

interface Conn {
  packets: Packet[];
  /** Raw bytes received (for byte-exact comparisons). */
  bytes: Buffer[];
  closed: boolean;
  /** WebSocket close code (1006 when the TCP connection simply went away). */
  closeCode?: number;
  send(data: Buffer): void;
  next(type: number, timeoutMs?: number): Promise<Packet>;
  waitClosed(timeoutMs?: number): Promise<void>;
  destroy(): void;
  socket?: Socket;
  ws?: WebSocket;
}

function makeConn(version: ProtocolVersion, sendFn: (d: Buffer) => void, destroyFn: () => void): Conn & { feed(d: Buffer): void; markClosed(code?: number): void } {
  const decoder = new PacketDecoder({ protocolVersion: version, role: 'client', maxPacketSize: 256 * 1024 * 1024 });
  let waiters: (() => void)[] = [];
  const wake = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  const c = {
    packets: [] as Packet[],
    bytes: [] as Buffer[],
    closed: false,
    closeCode: undefined as number | undefined,
    send: sendFn,
    destroy: destroyFn,
    feed(d: Buffer) {
      c.bytes.push(Buffer.from(d));
      decoder.feed(d, (p) => c.packets.push(p));
      wake();
    },
    markClosed(code?: number) {
      c.closed = true;
      c.closeCode = code;
      wake();
    },
    async next(type: number, timeoutMs = 2000): Promise<Packet> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = c.packets.findIndex((p) => p.type === type);
        if (i >= 0) return c.packets.splice(i, 1)[0]!;
        if (c.closed) throw new Error(`closed while waiting for packet type ${type}`);
        if (Date.now() >= deadline) throw new Error(`timed out waiting for packet type ${type}`);
        await wait(deadline - Date.now());
      }
    },
    async waitClosed(timeoutMs = 2000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!c.closed) {
        if (Date.now() >= deadline) throw new Error('timed out waiting for the close');
        await wait(deadline - Date.now());
      }
    },
  };
  return c;
}

function tcpConn(port: number, version: ProtocolVersion = 4, host = '127.0.0.1'): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port, host }, () => resolve(c));
    const c = makeConn(version, (d) => socket.write(d), () => socket.destroy());
    c.socket = socket;
    socket.on('data', (d: Buffer) => c.feed(d));
    socket.on('close', () => c.markClosed());
    socket.on('error', reject);
  });
}

function tlsConn(port: number, version: ProtocolVersion = 4, creds: { cert?: string; key?: string } = {}): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: certs!.ca, servername: 'localhost', ...creds }, () => resolve(c));
    const c = makeConn(version, (d) => socket.write(d), () => socket.destroy());
    c.socket = socket;
    socket.on('data', (d: Buffer) => c.feed(d));
    socket.on('close', () => c.markClosed());
    socket.on('error', reject);
  });
}

function wsConn(url: string, version: ProtocolVersion = 4, options: ConstructorParameters<typeof WebSocket>[2] = {}): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, version === 3 ? 'mqttv3.1' : 'mqtt', { ca: certs?.ca, maxPayload: 256 * 1024 * 1024, ...options });
    const c = makeConn(version, (d) => ws.send(d, { binary: true }), () => ws.terminate());
    c.ws = ws;
    ws.on('message', (d: Buffer) => c.feed(d));
    ws.on('close', (code: number) => c.markClosed(code));
    ws.on('unexpected-response', (_req, res) => {
      reject(new Error(`HTTP ${res.statusCode}`));
      res.destroy();
    });
    ws.on('error', (err) => reject(err));
    ws.on('open', () => resolve(c));
  });
}

/** CONNECT (and its CONNACK) on an open connection; returns the CONNACK reason code. */
async function handshake(c: Conn, clientId: string, version: ProtocolVersion = 4, fields: Partial<ConnectPacket> = {}): Promise<number> {
  c.send(connectPacket(clientId, version, fields));
  return ((await c.next(2)) as { reasonCode: number }).reasonCode;
}

async function logged(options: BrokerOptions, t: TestContext): Promise<LoggedBroker> {
  const b = await startLogged(options);
  t.after(() => b.broker.close());
  return b;
}

function recordConnected(broker: Broker): ClientInfo[] {
  const seen: ClientInfo[] = [];
  broker.on('clientConnected', (c) => seen.push(c));
  return seen;
}

// ---------------------------------------------------------------------------------------------------------------------

describe('PROXY protocol listener: reads, headers and addresses', () => {
  it(
    'bytes that follow the PROXY header in a later read are read (header, then CONNECT; CONNECT, then PINGREQ)',
    async (t) => {
      const { broker } = await logged({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0, proxyProtocol: true }] }, t);
      const port = broker.address().port;
      // HAProxy sends the header on connect, before the client's first bytes: they arrive in a later read.
      const a = await tcpConn(port);
      t.after(() => a.destroy());
      a.send(Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51000 1883\r\n'));
      await delay(50);
      a.send(connectPacket('split-read'));
      const connack = await a.next(2, 1000).catch(() => undefined);
      // Header and CONNECT in one read are served, but the client's next packet is never read.
      const b = await tcpConn(port);
      t.after(() => b.destroy());
      b.send(Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.8 10.0.0.1 51000 1883\r\n'), connectPacket('same-read')]));
      await b.next(2);
      await delay(50);
      b.send(PINGREQ);
      const pingresp = await b.next(13, 1000).catch(() => undefined);
      assert.ok(connack, 'CONNACK for a CONNECT sent after the header');
      assert.ok(pingresp, 'PINGRESP for a PINGREQ sent after CONNACK');
    },
  );

  it('v1 TCP6 / UNKNOWN, v2 TCP4 / TCP6 / AF_UNSPEC / LOCAL, with TLVs and a header split over reads: CONNACK, and the address in clientConnected and clientDisconnected', async (t) => {
    const { broker } = await logged({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0, proxyProtocol: true }] }, t);
    const port = broker.address().port;
    const connected = recordConnected(broker);
    const gone: [string | undefined, string][] = [];
    broker.on('clientDisconnected', (c, info) => gone.push([c?.clientId, info.remoteAddress]));
    const tlv = Buffer.from([0x04, 0x00, 0x03, 0x61, 0x62, 0x63]); // PP2_TYPE_NOOP, 3 bytes
    const cases: [string, Buffer[], RegExp][] = [
      ['v1-tcp6', [Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 40000 1883\r\n')], /^\[2001:db8::7\]:40000$/],
      ['v1-unknown', [Buffer.from('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n')], /^127\.0\.0\.1:\d+$/],
      ['v2-tcp4-tlv', [proxyV2(1, 0x11, Buffer.concat([ipv4Block([192, 0, 2, 44], 4444), tlv]))], /^192\.0\.2\.44:4444$/],
      ['v2-tcp6', [proxyV2(1, 0x21, ipv6Block([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99], 6000))], /^\[2001:db8::99\]:6000$/],
      ['v2-unspec', [proxyV2(1, 0x00, Buffer.alloc(0))], /^127\.0\.0\.1:\d+$/],
      ['v2-local', [proxyV2(0, 0x11, ipv4Block([198, 51, 100, 1], 1))], /^127\.0\.0\.1:\d+$/],
    ];
    // The same v1 and v2 headers split over several reads (the last one carries the CONNECT).
    const v1 = Buffer.from('PROXY TCP4 198.51.100.20 10.0.0.1 12345 1883\r\n');
    cases.push(['v1-split', [v1.subarray(0, 3), v1.subarray(3, 20), v1.subarray(20)], /^198\.51\.100\.20:12345$/]);
    const v2 = proxyV2(1, 0x11, ipv4Block([198, 51, 100, 21], 2345));
    cases.push(['v2-split', [v2.subarray(0, 5), v2.subarray(5, 14), v2.subarray(14, 20), v2.subarray(20)], /^198\.51\.100\.21:2345$/]);
    for (const [id, chunks, address] of cases) {
      const c = await tcpConn(port);
      for (const [i, chunk] of chunks.entries()) {
        c.send(i === chunks.length - 1 ? Buffer.concat([chunk, connectPacket(id)]) : chunk);
        if (i < chunks.length - 1) await delay(20);
      }
      assert.equal(((await c.next(2)) as { reasonCode: number }).reasonCode, 0, id);
      c.destroy();
      await eventually(() => gone.some(([cid]) => cid === id), 2000, `${id} to be gone`);
      assert.match(connected.find((x) => x.clientId === id)!.remoteAddress, address, `${id} clientConnected`);
      assert.match(gone.find(([cid]) => cid === id)![1], address, `${id} clientDisconnected`);
    }
  });

  it('truncated, wrong signature, wrong v2 version, short v2 address block: closed without a CONNACK, logged; the listener keeps serving', async (t) => {
    const b = await logged({ connectTimeout: 1000, listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0, proxyProtocol: true }] }, t);
    const port = b.broker.address().port;
    const bad: [string, Buffer, boolean][] = [
      ['truncated v1 then FIN', Buffer.from('PROXY TCP4 203.0.113.7 10.0'), true],
      ['truncated v2 then FIN', proxyV2(1, 0x11, ipv4Block([1, 2, 3, 4], 5)).subarray(0, 20), true],
      ['v2 signature with a wrong byte', Buffer.concat([Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0b]), Buffer.alloc(20)]), false],
      ['lower-case v1', Buffer.from('proxy TCP4 203.0.113.7 10.0.0.1 1 2\r\n'), false],
      ['v2 version 1', Buffer.concat([V2_SIG, Buffer.from([0x11, 0x11, 0, 12]), ipv4Block([1, 2, 3, 4], 5)]), false],
      ['v2 TCP4 with 4 address bytes', proxyV2(1, 0x11, Buffer.from([1, 2, 3, 4])), false],
      ['v1 with a host name', Buffer.from('PROXY TCP4 evil.example 10.0.0.1 1 2\r\n'), false],
    ];
    const before = b.logged('PROXY protocol header').length;
    for (const [what, bytes, fin] of bad) {
      const c = await tcpConn(port);
      c.send(Buffer.concat([bytes, fin ? Buffer.alloc(0) : connectPacket('bad')]));
      if (fin) c.socket!.end();
      await c.waitClosed(1500).catch(() => assert.fail(`${what}: not closed`));
      assert.equal(c.packets.length, 0, `${what}: nothing answered`);
    }
    assert.equal(b.logged('PROXY protocol header').length - before, bad.length, 'one log line each');
    const ok = await tcpConn(port);
    ok.send(Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.9 10.0.0.1 1 2\r\n'), connectPacket('after-bad')]));
    assert.equal(((await ok.next(2)) as { reasonCode: number }).reasonCode, 0);
    ok.destroy();
  });
});

// ---------------------------------------------------------------------------------------------------------------------

describeOrSkip('mutual TLS identity', noOpenssl, () => {
  const mtls = () => ({ host: '127.0.0.1', port: 0, cert: certs!.paths.serverCert, key: certs!.paths.serverKey, ca: certs!.paths.ca, requestCert: true });

  it(
    'peerCertAsUsername "san": a certificate without a SAN does not log in under the username it put in CONNECT',
    async (t) => {
      const { broker } = await logged({ allowAnonymous: false, listeners: [{ type: 'tls', ...mtls(), peerCertAsUsername: 'san' }] }, t);
      const seen = recordConnected(broker);
      const c = await tlsConn(broker.address().port, 4, certs!.client2); // CN device-2, no SAN
      t.after(() => c.destroy());
      const code = await handshake(c, 'x', 4, { username: 'device-1' });
      assert.notEqual(code, 0, `refused (got CONNACK ${code}; username ${JSON.stringify(seen[0]?.username)})`);
    },
  );

  it(
    'peerCertAsClientId "san": a certificate without a SAN cannot take another device\'s Client ID from CONNECT',
    async (t) => {
      const { broker } = await logged({ listeners: [{ type: 'tls', ...mtls(), peerCertAsClientId: 'san' }] }, t);
      const seen = recordConnected(broker);
      const c = await tlsConn(broker.address().port, 4, certs!.client2);
      t.after(() => c.destroy());
      const code = await handshake(c, 'device-1.example');
      assert.ok(code !== 0 || seen[0]?.clientId !== 'device-1.example', `device-2 connected as ${JSON.stringify(seen[0]?.clientId)}`);
    },
  );

  it('over wss: Client ID from the CN and username from the SAN replace the CONNECT fields, for 3.1.1 and 5.0', async (t) => {
    const { broker } = await logged({ allowAnonymous: false, listeners: [{ type: 'wss', ...mtls(), peerCertAsClientId: 'cn', peerCertAsUsername: 'san' }] }, t);
    const seen = recordConnected(broker);
    const url = `wss://127.0.0.1:${broker.address().port}/mqtt`;
    for (const version of [4, 5] as const) {
      const c = await wsConn(url, version, { cert: certs!.client.cert, key: certs!.client.key });
      assert.equal(await handshake(c, 'claimed-id', version, { username: 'claimed-user', password: Buffer.from('whatever') }), 0);
      c.destroy();
    }
    assert.deepEqual(
      seen.map((s) => [s.clientId, s.username, s.certificateCN]),
      [
        ['device-1', 'device-1.example', 'device-1'],
        ['device-1', 'device-1.example', 'device-1'],
      ],
    );
    // No certificate over wss: refused at the handshake, no HTTP upgrade.
    await assert.rejects(wsConn(url));
  });
});

// ---------------------------------------------------------------------------------------------------------------------

describeOrSkip('TLS settings and reload', noOpenssl, () => {
  const handshakeInfo = (port: number, options: { maxVersion?: 'TLSv1.2' | 'TLSv1.3'; ciphers?: string } = {}) =>
    new Promise<{ protocol: string | null; cipher: string; cn: string }>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port, ca: certs!.ca, servername: 'localhost', ...options }, () => {
        const cn = s.getPeerCertificate().subject.CN;
        resolve({ protocol: s.getProtocol(), cipher: s.getCipher().name, cn: String(Array.isArray(cn) ? cn[0] : cn) });
        s.destroy();
      });
      s.once('error', reject);
    });

  it('a broken new certificate (garbage, then a key that does not match) is logged and the old one kept; minVersion survives reloads on tls and wss; a live connection stays', async (t) => {
    const cert = join(certs!.dir, 'reload-live.crt');
    const key = join(certs!.dir, 'reload-live.key');
    copyFileSync(certs!.paths.serverCert, cert);
    copyFileSync(certs!.paths.serverKey, key);
    const b = await logged(
      {
        listeners: [
          { type: 'tls', host: '127.0.0.1', port: 0, cert, key, minVersion: 'TLSv1.3' },
          { type: 'wss', host: '127.0.0.1', port: 0, cert, key, minVersion: 'TLSv1.3' },
        ],
      },
      t,
    );
    const [tlsPort, wssPort] = [b.broker.address(0).port, b.broker.address(1).port];
    const live = await tlsConn(tlsPort);
    t.after(() => live.destroy());
    assert.equal(await handshake(live, 'live'), 0);
    const failures = () => b.logged('TLS certificates not reloaded').length;
    writeFileSync(cert, 'not a certificate\n');
    await eventually(() => failures() >= 2, 3000, 'the garbage to be refused by both listeners');
    assert.equal((await handshakeInfo(tlsPort)).cn, 'Petrel Test Server');
    copyFileSync(certs!.paths.server2Cert, cert); // certificate 2 with key 1
    await eventually(() => failures() >= 4, 3000, 'the mismatched pair to be refused');
    assert.match(String(b.logged('TLS certificates not reloaded').at(-1)!.error), /mismatch/i);
    assert.equal((await handshakeInfo(wssPort)).cn, 'Petrel Test Server');
    copyFileSync(certs!.paths.server2Key, key);
    await eventually(() => b.logged('TLS certificates reloaded').length >= 2, 3000, 'the good pair to be loaded');
    b.broker.reload();
    for (const port of [tlsPort, wssPort]) {
      const info = await handshakeInfo(port);
      assert.deepEqual([info.protocol, info.cn], ['TLSv1.3', 'Petrel Test Server 2']);
      await assert.rejects(handshakeInfo(port, { maxVersion: 'TLSv1.2' }), /protocol version|alert/i, 'TLS 1.2 still refused after the reload');
    }
    live.send(PINGREQ);
    await live.next(13);
  });

  it(
    '`ciphersuites` restricts the TLS 1.3 suites',
    async (t) => {
      const { broker } = await logged(
        { listeners: [{ type: 'tls', host: '127.0.0.1', port: 0, cert: certs!.paths.serverCert, key: certs!.paths.serverKey, ciphersuites: 'TLS_CHACHA20_POLY1305_SHA256' }] },
        t,
      );
      const port = broker.address().port;
      assert.equal((await handshakeInfo(port)).cipher, 'TLS_CHACHA20_POLY1305_SHA256', 'the only suite configured');
      await assert.rejects(handshakeInfo(port, { ciphers: 'TLS_AES_128_GCM_SHA256' }), 'a client offering only another TLS 1.3 suite is refused');
    },
  );
});

// ---------------------------------------------------------------------------------------------------------------------

describe('WebSocket listener edges', () => {
  it('query string accepted, trailing slash / other case / double slash are 404; any Origin and Host accepted; the address is the TCP peer', async (t) => {
    const { broker } = await logged({ listeners: [{ type: 'ws', host: '127.0.0.1', port: 0 }] }, t);
    const base = `ws://127.0.0.1:${broker.address().port}`;
    const seen = recordConnected(broker);
    for (const path of ['/mqtt?token=abc&x=1', '/mqtt?']) {
      const c = await wsConn(base + path);
      assert.equal(await handshake(c, `q${path.length}`), 0, path);
      c.destroy();
    }
    for (const path of ['/mqtt/', '/MQTT', '//mqtt', '/mqtt/x']) await assert.rejects(wsConn(base + path), /HTTP 404/, path);
    const c = await wsConn(`${base}/mqtt`, 4, { origin: 'https://evil.example', headers: { Host: 'not-this-host.example:1' } });
    assert.equal(await handshake(c, 'origin'), 0);
    c.destroy();
    assert.ok(seen.every((s) => /^127\.0\.0\.1:\d+$/.test(s.remoteAddress)));
  });

  it(
    'one binary frame carrying several packets, each under maxPacketSize but more than it together, is served [MQTT-6.0.0-2]',
    async (t) => {
      const { broker } = await logged({ maxPacketSize: 4096, listeners: [{ type: 'ws', host: '127.0.0.1', port: 0 }] }, t);
      const c = await wsConn(`ws://127.0.0.1:${broker.address().port}/mqtt`);
      t.after(() => c.destroy());
      assert.equal(await handshake(c, 'batcher'), 0);
      const p = publishPacket('batch', Buffer.alloc(3000, 1), 1, 4, 1);
      const q = publishPacket('batch', Buffer.alloc(3000, 2), 1, 4, 2);
      c.send(Buffer.concat([p, q]));
      await c.next(4);
      await c.next(4);
      assert.equal(c.closed, false);
    },
  );

  it('a packet of exactly maxPacketSize goes both ways in one frame; a client gone mid-frame has its will published', async (t) => {
    const max = 4096;
    const { broker } = await logged({ maxPacketSize: max, listeners: [{ type: 'ws', host: '127.0.0.1', port: 0 }] }, t);
    const url = `ws://127.0.0.1:${broker.address().port}/mqtt`;
    const sub = await wsConn(url);
    t.after(() => sub.destroy());
    assert.equal(await handshake(sub, 'big-sub'), 0);
    sub.send(subscribePacket('big', 0));
    await sub.next(9);
    const exact = publishPacket('big', Buffer.alloc(max - 8, 7)); // 1 + 2 (length) + 2 + 3 (topic) + payload
    assert.equal(exact.length, max);
    sub.send(exact);
    const got = (await sub.next(3)) as PublishPacket;
    assert.equal(got.payload.length, max - 8);
    sub.send(subscribePacket('will/ws', 0));
    await sub.next(9);
    // A raw WebSocket that sends a CONNECT with a will, then a few bytes of a frame, then vanishes.
    const raw = await new Promise<Socket>((resolve, reject) => {
      const s = netConnect(broker.address().port, '127.0.0.1', () => resolve(s));
      s.on('error', reject);
    });
    raw.on('error', () => {});
    raw.write(
      'GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n',
    );
    await new Promise((r) => raw.once('data', r));
    const mask = [1, 2, 3, 4];
    const frame = (payload: Buffer) => Buffer.concat([Buffer.from([0x82, 0x80 | payload.length, ...mask]), Buffer.from(payload.map((x, i) => x ^ mask[i % 4]!))]);
    raw.write(frame(connectPacket('mid-frame', 4, { will: { topic: 'will/ws', payload: Buffer.from('gone'), qos: 0, retain: false } })));
    await eventually(() => broker.inspect.isConnected('mid-frame'), 2000, 'the raw WebSocket to connect');
    raw.write(frame(Buffer.concat([PINGREQ, PINGREQ])).subarray(0, 4)); // header and half the mask
    await delay(30);
    raw.destroy();
    assert.equal(((await sub.next(3)) as PublishPacket).payload.toString(), 'gone');
  });

  it('a WebSocket subscriber that stops reading is a slow consumer: QoS 0 dropped over the mark and cut after slowConsumerTimeout; QoS 1 queued', async (t) => {
    const { broker } = await logged(
      { maxOutputBuffer: 64 * 1024, slowConsumerTimeout: 600, maxQueuedMessages: 100_000, listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }, { type: 'ws', host: '127.0.0.1', port: 0 }] },
      t,
    );
    const gone: [string | undefined, string][] = [];
    broker.on('clientDisconnected', (c, info) => gone.push([c?.clientId, info.reason]));
    const pub = await tcpConn(broker.address(0).port);
    t.after(() => pub.destroy());
    assert.equal(await handshake(pub, 'flooder'), 0);
    const payload = Buffer.alloc(1024, 0x61);
    for (const qos of [0, 1] as const) {
      const id = `slow-ws-q${qos}`;
      const sub = await wsConn(`ws://127.0.0.1:${broker.address(1).port}/mqtt`);
      t.after(() => sub.destroy());
      assert.equal(await handshake(sub, id), 0);
      sub.send(subscribePacket(`flood/${qos}`, qos));
      await sub.next(9);
      (sub.ws as unknown as { _socket: Socket })._socket.pause(); // stops reading: kernel buffers fill, then the broker's
      const droppedBefore = broker.inspect.counts().droppedMessages;
      // Sampled every turn, whatever the broker reads in it (a connection reads its share per turn).
      let maxQueued = 0;
      let sampling = true;
      const sample = () => {
        maxQueued = Math.max(maxQueued, broker.inspect.session(id)?.queued ?? 0);
        if (sampling) setImmediate(sample);
      };
      sample();
      for (let i = 0; i < 20_000; i++) {
        pub.send(publishPacket(`flood/${qos}`, payload, qos, 4, (i % 60_000) + 1));
        if (i % 500 === 499) await new Promise((r) => setImmediate(r));
      }
      pub.send(PINGREQ);
      await pub.next(13, 4000);
      sampling = false;
      if (qos === 0) {
        assert.ok(broker.inspect.counts().droppedMessages > droppedBefore, 'QoS 0 dropped');
      } else {
        assert.equal(broker.inspect.counts().droppedMessages, droppedBefore, 'QoS 1 not dropped');
        assert.ok(maxQueued > 0, 'QoS 1 queued in the session');
      }
      await eventually(() => !broker.inspect.isConnected(id), 3000, `${id} to be cut`);
      assert.match(gone.find(([c]) => c === id)![1], /slow consumer/);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------------

describe('direct handles and node:net give the same answers', () => {
  for (const host of ['127.0.0.1', '::1']) {
    it(`on ${host}: half-close after a QoS 1 PUBLISH, RST mid-packet, a subscriber gone before its message`, async (t) => {
      const b = await logged(
        {
          listeners: [
            { type: 'tcp', host, port: 0 },
            { type: 'tcp', host, port: 0, directSockets: false },
          ],
        },
        t,
      );
      assert.deepEqual(
        b.logged('listening').map((l) => l.sockets),
        ['direct', 'net'],
      );
      const gone: [string | undefined, string, boolean, string][] = [];
      b.broker.on('clientDisconnected', (c, info) => gone.push([c?.clientId, info.reason, info.willPublished, info.remoteAddress]));
      const transcripts: string[][] = [];
      for (const index of [0, 1]) {
        const port = b.broker.address(index).port;
        const out: string[] = [];
        const watcher = await tcpConn(port, 5, host);
        assert.equal(await handshake(watcher, `watch${index}`, 5), 0);
        watcher.send(subscribePacket('w/#', 0, 5));
        await watcher.next(9);
        // 1. CONNECT + QoS 1 PUBLISH, then FIN at once: the PUBACK, then the close.
        for (const version of [4, 5] as const) {
          const c = await tcpConn(port, version, host);
          c.socket!.end(Buffer.concat([connectPacket(`half${version}-${index}`, version), publishPacket('w/half', 'h', 1, version, 7)]));
          await c.waitClosed();
          out.push(`half${version}:${Buffer.concat(c.bytes).toString('hex')}`);
          out.push(`delivered:${((await watcher.next(3)) as PublishPacket).payload.toString()}`);
        }
        // 2. RST in the middle of a PUBLISH: the will, nothing else.
        const r = await tcpConn(port, 4, host);
        assert.equal(await handshake(r, `rst-${index}`, 4, { will: { topic: 'w/will', payload: Buffer.from('will'), qos: 0, retain: false } }), 0);
        r.send(publishPacket('w/never', 'never delivered').subarray(0, 8));
        await delay(20);
        r.socket!.resetAndDestroy();
        out.push(`rst:${((await watcher.next(3)) as PublishPacket).topic}`);
        // 3. A subscriber that reset its connection, then a message for it: closed once, the broker goes on.
        const s = await tcpConn(port, 4, host);
        assert.equal(await handshake(s, `vanished-${index}`), 0);
        s.send(subscribePacket('gone/x', 0));
        await s.next(9);
        s.socket!.resetAndDestroy();
        b.broker.publish('gone/x', 'to nobody');
        await eventually(() => gone.some(([id]) => id === `vanished-${index}`), 2000, 'the vanished subscriber to be gone');
        await delay(50);
        out.push(`vanished:${gone.filter(([id]) => id === `vanished-${index}`).length}`);
        watcher.send(PINGREQ);
        await watcher.next(13);
        assert.deepEqual(watcher.packets, [], 'nothing else reached the watcher');
        watcher.destroy();
        transcripts.push(out);
        for (const [id, , , address] of gone) if (id?.endsWith(`-${index}`)) assert.match(address, host === '::1' ? /^\[::1\]:\d+$/ : /^127\.0\.0\.1:\d+$/);
      }
      assert.deepEqual(transcripts[0], [
        'half4:2002000040020007',
        'delivered:h',
        'half5:200b000008270010000022ffff40020007',
        'delivered:h',
        'rst:w/will',
        'vanished:1',
      ]);
      assert.deepEqual(transcripts[1], transcripts[0]);
      assert.deepEqual(
        gone.filter(([id]) => id?.startsWith('rst-')).map(([, reason, will]) => [reason.startsWith('connection lost'), will]),
        [
          [true, true],
          [true, true],
        ],
      );
    });
  }
});

// ---------------------------------------------------------------------------------------------------------------------

describe('broker.close()', () => {
  /** One 5.0 and one 3.1.1 subscriber to "t" on every listener of `broker` (tcp, tcp net, proxy, tls, ws, wss). */
  async function clientsOnEveryListener(broker: Broker, kinds: string[]): Promise<{ kind: string; version: ProtocolVersion; c: Conn }[]> {
    const out: { kind: string; version: ProtocolVersion; c: Conn }[] = [];
    for (const [i, kind] of kinds.entries()) {
      const port = broker.address(i).port;
      for (const version of [5, 4] as const) {
        const c =
          kind === 'tls' ? await tlsConn(port, version) : kind === 'ws' || kind === 'wss' ? await wsConn(`${kind}://127.0.0.1:${port}/mqtt`, version) : await tcpConn(port, version);
        const id = `${kind}-${version}`;
        c.send(Buffer.concat([kind === 'proxy' ? Buffer.from('PROXY TCP4 203.0.113.1 10.0.0.1 1000 1883\r\n') : Buffer.alloc(0), connectPacket(id, version), subscribePacket('t', 0, version)]));
        await c.next(2);
        await c.next(9);
        out.push({ kind, version, c });
      }
    }
    return out;
  }

  it('every transport: what was published first arrives, then DISCONNECT 0x8B (5.0) or the close (ws 1001); close() resolves; the same ports listen again', async (t) => {
    const kinds = ['tcp', 'tcp-net', 'proxy', ...(certs ? ['tls', 'ws', 'wss'] : ['ws'])];
    const tlsFiles = certs ? { cert: certs.paths.serverCert, key: certs.paths.serverKey } : undefined;
    const listenerOf = (kind: string, port = 0) =>
      kind === 'tcp'
        ? { type: 'tcp' as const, host: '127.0.0.1', port }
        : kind === 'tcp-net'
          ? { type: 'tcp' as const, host: '127.0.0.1', port, directSockets: false }
          : kind === 'proxy'
            ? { type: 'tcp' as const, host: '127.0.0.1', port, proxyProtocol: true }
            : kind === 'ws'
              ? { type: 'ws' as const, host: '127.0.0.1', port }
              : { type: kind as 'tls' | 'wss', host: '127.0.0.1', port, ...tlsFiles! };
    const broker = createBroker({ tickInterval: 50, listeners: kinds.map((k) => listenerOf(k)) });
    await broker.listen();
    const ports = kinds.map((_, i) => broker.address(i).port);
    const clients = await clientsOnEveryListener(broker, kinds);
    t.after(() => clients.forEach(({ c }) => c.destroy()));
    broker.publish('t', 'last words');
    const started = Date.now();
    await broker.close();
    assert.ok(Date.now() - started < 1000, 'close() resolves promptly');
    for (const { kind, version, c } of clients) {
      await c.waitClosed().catch(() => assert.fail(`${kind} ${version}: not closed`));
      const types = c.packets.map((p) => (p.type === 14 ? `DISCONNECT 0x${(p as { reasonCode: number }).reasonCode.toString(16)}` : p.type === 3 ? (p as PublishPacket).payload.toString() : String(p.type)));
      assert.deepEqual(types, version === 5 ? ['last words', 'DISCONNECT 0x8b'] : ['last words'], `${kind} ${version}`);
      if (kind === 'ws' || kind === 'wss') assert.equal(c.closeCode, 1001, `${kind} ${version}: close code`);
    }
    const again = createBroker({ tickInterval: 50, listeners: kinds.map((k, i) => listenerOf(k, ports[i])) });
    await again.listen();
    assert.deepEqual(
      kinds.map((_, i) => again.address(i).port),
      ports,
    );
    await again.close();
  });

  it(
    'a 5.0 client reading at full speed gets a large queued message, then DISCONNECT 0x8B',
    async (t) => {
      const kinds = ['tcp', 'tcp-net', 'ws'];
      const broker = createBroker({
        tickInterval: 50,
        maxPacketSize: 32 * 1024 * 1024,
        maxOutputBuffer: 64 * 1024 * 1024,
        listeners: [
          { type: 'tcp', host: '127.0.0.1', port: 0 },
          { type: 'tcp', host: '127.0.0.1', port: 0, directSockets: false },
          { type: 'ws', host: '127.0.0.1', port: 0 },
        ],
      });
      await broker.listen();
      const clients = (await clientsOnEveryListener(broker, kinds)).filter((x) => x.version === 5);
      t.after(() => clients.forEach(({ c }) => c.destroy()));
      const size = 16 * 1024 * 1024;
      broker.publish('t', Buffer.alloc(size, 1));
      await broker.close();
      await Promise.all(clients.map(({ c }) => c.waitClosed(4000).catch(() => {})));
      const got = clients.map(({ kind, c }) => `${kind}: ${c.packets.map((p) => (p.type === 3 ? `PUBLISH ${(p as PublishPacket).payload.length}` : p.type === 14 ? `DISCONNECT 0x${(p as { reasonCode: number }).reasonCode.toString(16)}` : p.type)).join(', ')}`);
      assert.deepEqual(
        got,
        kinds.map((k) => `${k}: PUBLISH ${size}, DISCONNECT 0x8b`),
      );
    },
  );
});

// ---------------------------------------------------------------------------------------------------------------------

describe('listener maxConnections', () => {
  it('tls, ws and net-socket tcp: the connection over the limit gets CONNACK 0x97 (3.1.1: 3) and is closed; once one leaves a new one is accepted', async (t) => {
    const tlsFiles = certs ? { cert: certs.paths.serverCert, key: certs.paths.serverKey } : undefined;
    const listeners: BrokerOptions['listeners'] = [
      { type: 'ws', host: '127.0.0.1', port: 0, maxConnections: 1 },
      { type: 'tcp', host: '127.0.0.1', port: 0, maxConnections: 1, directSockets: false },
      ...(tlsFiles ? [{ type: 'tls' as const, host: '127.0.0.1', port: 0, maxConnections: 1, ...tlsFiles }] : []),
    ];
    const b = await logged({ listeners }, t);
    for (const [i, l] of listeners!.entries()) {
      const port = b.broker.address(i).port;
      const open = (version: ProtocolVersion) =>
        l.type === 'ws' ? wsConn(`ws://127.0.0.1:${port}/mqtt`, version) : l.type === 'tls' ? tlsConn(port, version) : tcpConn(port, version);
      const first = await open(5);
      assert.equal(await handshake(first, `${l.type}-first`, 5), 0);
      for (const version of [5, 4] as const) {
        const extra = await open(version);
        assert.equal(await handshake(extra, `${l.type}-extra${version}`, version), version === 5 ? 0x97 : 3, `${l.type} ${version}`);
        await extra.waitClosed();
      }
      first.destroy();
      await eventually(() => !b.broker.inspect.isConnected(`${l.type}-first`), 2000, 'the first to leave');
      await eventually(() => (b.broker as unknown as { running: { connections(): number }[] }).running[i]!.connections() === 0, 2000, 'the listener count to drop');
      const next = await open(5);
      assert.equal(await handshake(next, `${l.type}-next`, 5), 0, `${l.type}: accepted again`);
      next.destroy();
    }
  });
});
