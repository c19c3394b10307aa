// The client against real brokers: Debian's mosquitto and the Petrel broker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, MqttClient, type Message, type MqttClientError, type ClientOptions } from '../../src/client/index.js';
import { createBroker } from '../../src/index.js';
import { hasOpenssl, makeCertificates, type Certificates } from './helpers.js';
import { delay, eventually } from '../helpers/wait.js';
import { hasMosquitto, startMosquitto } from '../helpers/mosquitto.js';

type Ctx = { after: (fn: () => unknown) => void; skip: (msg?: string) => void };

interface StartedBroker {
  url: string;
  wsUrl?: string;
  stop(): Promise<void>;
}

const brokers: { name: string; available: () => string | undefined; start: () => Promise<StartedBroker> }[] = [
  {
    name: 'mosquitto',
    available: () => (hasMosquitto ? undefined : 'mosquitto not installed'),
    async start() {
      const m = await startMosquitto({ websockets: true });
      return { url: `mqtt://127.0.0.1:${m.port}`, wsUrl: `ws://127.0.0.1:${m.wsPort}/mqtt`, stop: () => m.stop() };
    },
  },
  {
    name: 'petrel',
    available: () => undefined,
    async start() {
      const b = createBroker({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }, { type: 'ws', host: '127.0.0.1', port: 0 }] });
      await b.listen();
      return { url: `mqtt://127.0.0.1:${b.address(0).port}`, wsUrl: `ws://127.0.0.1:${b.address(1).port}/mqtt`, stop: () => b.close() };
    },
  },
];

async function open(t: Ctx, url: string, options: ClientOptions = {}): Promise<MqttClient> {
  const c = await connect(url, { reconnect: { initialDelay: 20, maxDelay: 200, jitter: 0 }, connectTimeout: 3000, ...options });
  t.after(() => c.destroy());
  return c;
}

for (const broker of brokers) {
  test(`${broker.name}: publish / subscribe round trip, QoS 0-2, MQTT 3.1 / 3.1.1 / 5.0 over TCP and WebSocket`, async (t) => {
    const why = broker.available();
    if (why) return t.skip(why);
    const b = await broker.start();
    t.after(() => b.stop());
    const urls = [b.url, ...(b.wsUrl ? [b.wsUrl] : [])];
    for (const url of urls) {
      for (const version of ['3.1', '3.1.1', '5'] as const) {
        const sub = await open(t, url, { protocolVersion: version });
        const pub = await open(t, url, { protocolVersion: version });
        const prefix = `rt/${url.slice(0, 2)}/${version}`;
        const granted = await sub.subscribe(`${prefix}/#`, { qos: 2 });
        assert.equal(granted[0]!.qos, 2, `${url} ${version}`);
        const it = sub.messages();
        for (const qos of [0, 1, 2] as const) {
          const r = await pub.publish(`${prefix}/q${qos}`, `hello ${qos}`, { qos });
          assert.ok(r.reasonCode < 0x80);
          const m = (await it.next()).value as Message;
          assert.equal(m.topic, `${prefix}/q${qos}`);
          assert.equal(m.payload.toString(), `hello ${qos}`);
          assert.equal(m.qos, qos);
        }
        const rtt = await pub.ping();
        assert.ok(rtt >= 0 && rtt < 1000);
        await Promise.all([sub.end(), pub.end()]);
        assert.equal(sub.closed, true);
      }
    }
  });

  test(`${broker.name}: after a network failure the client reconnects, resubscribes and sends what was queued`, async (t) => {
    const why = broker.available();
    if (why) return t.skip(why);
    const b = await broker.start();
    t.after(() => b.stop());
    const sub = await open(t, b.url, { clientId: 'rs-sub' });
    const pub = await open(t, b.url, { clientId: 'rs-pub', reconnect: { initialDelay: 100, jitter: 0 } });
    await sub.subscribe('rs/#', { qos: 1 });
    const it = sub.messages();
    let reconnects = 0;
    sub.on('reconnect', () => reconnects++);
    const subBack = new Promise((r) => sub.once('connect', r));
    sub.simulateNetworkFailure();
    await subBack;
    assert.equal(reconnects, 1);
    assert.equal(sub.connack?.sessionPresent, false);
    const pubOffline = new Promise((r) => pub.once('offline', r));
    pub.simulateNetworkFailure();
    await pubOffline;
    const queued = pub.publish('rs/queued', 'sent while offline', { qos: 1 });
    assert.equal(pub.connected, false);
    await queued;
    const m = (await it.next()).value as Message;
    assert.equal(m.topic, 'rs/queued');
    assert.equal(m.payload.toString(), 'sent while offline');
  });

  test(`${broker.name}: empty Client ID: the server assigns one (5.0) / accepts it with clean session (3.1.1); will properties`, async (t) => {
    const why = broker.available();
    if (why) return t.skip(why);
    const b = await broker.start();
    t.after(() => b.stop());
    const v5 = await open(t, b.url, { clientId: '' });
    assert.notEqual(v5.clientId, '');
    assert.equal(v5.connack?.properties.assignedClientIdentifier, v5.clientId);
    const v311 = await open(t, b.url, { clientId: '', protocolVersion: '3.1.1' });
    assert.equal(v311.connected, true);
    const watcher = await open(t, b.url);
    await watcher.subscribe('willprops/#', { qos: 1 });
    const it = watcher.messages();
    const dying = await open(t, b.url, {
      will: { topic: 'willprops/x', payload: 'bye', qos: 1, properties: { contentType: 'text/plain', userProperties: [['why', 'test']] } },
    });
    dying.destroy();
    const will = (await it.next()).value as Message;
    assert.equal(will.payload.toString(), 'bye');
    assert.equal(will.properties?.contentType, 'text/plain');
    assert.deepEqual(will.properties?.userProperties, [['why', 'test']]);
  });

  test(`${broker.name}: the will is published on destroy() but not on end()`, async (t) => {
    const why = broker.available();
    if (why) return t.skip(why);
    const b = await broker.start();
    t.after(() => b.stop());
    const watcher = await open(t, b.url);
    await watcher.subscribe('will/#', { qos: 1 });
    const got: Message[] = [];
    watcher.on('message', (m) => got.push(m));
    const polite = await open(t, b.url, { will: { topic: 'will/polite', payload: 'gone', qos: 1 } });
    await polite.end();
    const rude = await open(t, b.url, { will: { topic: 'will/rude', payload: 'gone', qos: 1 }, protocolVersion: '3.1.1' });
    rude.destroy();
    await eventually(() => got.length >= 1, 3000, 'the will');
    await delay(50);
    assert.deepEqual(
      got.map((m) => m.topic),
      ['will/rude'],
    );
  });
}

test('mosquitto: broker restart: publishes made while it is down arrive after it is back', async (t) => {
  if (!hasMosquitto) return t.skip('mosquitto not installed');
  let m = await startMosquitto();
  t.after(() => m.stop());
  const url = `mqtt://127.0.0.1:${m.port}`;
  const sub = await open(t, url, { clientId: 'restart-sub' });
  const pub = await open(t, url, { clientId: 'restart-pub' });
  await sub.subscribe('restart/#', { qos: 1 });
  const it = sub.messages();
  const down = Promise.all([new Promise((r) => sub.once('offline', r)), new Promise((r) => pub.once('offline', r))]);
  await m.stop();
  await down;
  // retained: whichever client reconnects first, the subscriber gets it (live or on resubscribe)
  const p = pub.publish('restart/x', 'after restart', { qos: 1, retain: true });
  assert.equal(pub.pending.queued, 1);
  m = await startMosquitto({ port: m.port });
  await p;
  const msg = (await it.next()).value as Message;
  assert.equal(msg.payload.toString(), 'after restart');
});

test('mosquitto: wrong password is refused by name (mosquitto 2 answers Not authorized); right password connects', async (t) => {
  if (!hasMosquitto) return t.skip('mosquitto not installed');
  const m = await startMosquitto({ users: { alice: 's3cret' } });
  t.after(() => m.stop());
  const url = `mqtt://127.0.0.1:${m.port}`;
  await assert.rejects(connect(url, { username: 'alice', password: 'wrong' }), (e: MqttClientError) => {
    assert.equal(e.code, 'CONNACK_REFUSED');
    assert.ok(e.reasonCode === 0x86 || e.reasonCode === 0x87, String(e.reasonCode));
    assert.match(e.message, /^connection refused by the server: 0x8[67] (Bad User Name or Password|Not authorized)$/);
    return true;
  });
  await assert.rejects(connect(url, { username: 'alice', password: 'wrong', protocolVersion: '3.1.1' }), /refused by the server: 0x0[45] (Bad user name or password|Not authorized)/);
  await assert.rejects(connect(url, { protocolVersion: '3.1' }), /0x05 Not authorized/);
  const ok = await open(t, `mqtt://alice:s3cret@127.0.0.1:${m.port}`);
  assert.equal(ok.connected, true);
});

test('petrel: wrong password is refused with 0x86 (5.0) / 0x04 (3.1.1), in words, with a hint', async (t) => {
  const b = createBroker({ port: 0, host: '127.0.0.1', authenticate: (r) => r.username === 'alice' && r.password?.toString() === 's3cret' });
  await b.listen();
  t.after(() => b.close());
  const url = `mqtt://127.0.0.1:${b.address().port}`;
  await assert.rejects(connect(url, { username: 'alice', password: 'wrong' }), (e: MqttClientError) => {
    assert.equal(e.code, 'CONNACK_REFUSED');
    assert.equal(e.reasonCode, 0x86);
    // the server may add a Reason String after the name
    assert.match(e.message, /^connection refused by the server: 0x86 Bad User Name or Password(: .+)?$/);
    assert.match(e.hint ?? '', /-u \/ -P/);
    return true;
  });
  await assert.rejects(connect(url, { username: 'alice', password: 'wrong', protocolVersion: '3.1.1' }), /^ConnackError: connection refused by the server: 0x04 Bad user name or password$/);
  const ok = await open(t, url, { username: 'alice', password: 's3cret' });
  assert.equal(ok.connected, true);
});

let certs: Certificates | undefined;
function certificates(): Certificates {
  certs ??= makeCertificates();
  return certs;
}

test('mosquitto TLS: unknown CA, trusted CA, hostname mismatch, --insecure', async (t) => {
  if (!hasMosquitto) return t.skip('mosquitto not installed');
  if (!hasOpenssl) return t.skip('openssl not installed');
  const c = certificates();
  const m = await startMosquitto({ tls: { cafile: c.caCert, certfile: c.serverCert, keyfile: c.serverKey }, wss: true });
  t.after(() => m.stop());
  const url = `mqtts://127.0.0.1:${m.tlsPort}`;
  // secure WebSocket with the same certificates
  const wss = await open(t, `wss://localhost:${m.wssPort}/mqtt`, { tls: { ca: readFileSync(c.caCert) } });
  await wss.subscribe('wss/x', { qos: 1 });
  const wssIt = wss.messages();
  await wss.publish('wss/x', 'over wss', { qos: 1 });
  assert.equal(((await wssIt.next()).value as Message).payload.toString(), 'over wss');
  await assert.rejects(connect(`wss://localhost:${m.wssPort}/mqtt`, { reconnect: false }), /certificate signed by an unknown CA/);
  await assert.rejects(connect(url, { tls: { ca: readFileSync(c.otherCaCert) } }), (e: MqttClientError) => {
    assert.match(e.message, /^TLS: certificate signed by an unknown CA \(/);
    assert.match(e.hint ?? '', /pass --cafile/);
    return true;
  });
  const good = await open(t, url, { tls: { ca: readFileSync(c.caCert) } });
  assert.equal(good.tlsSocket?.authorized, true);
  await assert.rejects(connect(url, { tls: { ca: readFileSync(c.caCert), servername: 'wrong.example' } }), (e: MqttClientError) => {
    assert.equal(e.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
    assert.match(e.message, /hostname mismatch/);
    return true;
  });
  const insecure = await open(t, url, { tls: { rejectUnauthorized: false } });
  assert.equal(insecure.connected, true);
  // plain MQTT to the TLS port, TLS to the plain port
  await assert.rejects(connect(`mqtts://127.0.0.1:${m.port}`, { tls: { ca: readFileSync(c.caCert) } }), (e: MqttClientError) => {
    assert.match(e.message, /does not speak TLS|reset by the server during the TLS handshake/);
    assert.match(e.hint ?? '', /mqtt:\/\//);
    return true;
  });
});

test('mosquitto TLS: client certificate required', async (t) => {
  if (!hasMosquitto) return t.skip('mosquitto not installed');
  if (!hasOpenssl) return t.skip('openssl not installed');
  const c = certificates();
  const m = await startMosquitto({ tls: { cafile: c.caCert, certfile: c.serverCert, keyfile: c.serverKey, requireCertificate: true } });
  t.after(() => m.stop());
  const url = `mqtts://127.0.0.1:${m.tlsPort}`;
  await assert.rejects(connect(url, { tls: { ca: readFileSync(c.caCert) }, reconnect: false }), (e: MqttClientError) => {
    assert.match(e.message, /client certificate required/);
    assert.match(e.hint ?? '', /--cert and --key/);
    return true;
  });
  const ok = await open(t, url, { tls: { ca: readFileSync(c.caCert), cert: readFileSync(c.clientCert), key: readFileSync(c.clientKey) } });
  assert.equal(ok.connected, true);
});

test('petrel TLS and WSS: the client verifies the broker, presents a certificate, and explains an unknown CA', async (t) => {
  if (!hasOpenssl) return t.skip('openssl not installed');
  const c = certificates();
  const b = createBroker({
    listeners: [
      { type: 'tls', host: '127.0.0.1', port: 0, cert: c.serverCert, key: c.serverKey, ca: c.caCert, requestCert: true, peerCertAsUsername: 'cn' },
      { type: 'wss', host: '127.0.0.1', port: 0, cert: c.serverCert, key: c.serverKey },
    ],
  });
  await b.listen();
  t.after(() => b.close());
  const usernames: (string | undefined)[] = [];
  b.on('clientConnected', (info) => usernames.push(info.username));
  const tlsUrl = `mqtts://localhost:${b.address(0).port}`;
  const mutual = await open(t, tlsUrl, { tls: { ca: readFileSync(c.caCert), cert: readFileSync(c.clientCert), key: readFileSync(c.clientKey) } });
  assert.equal(mutual.tlsSocket?.authorized, true);
  await mutual.subscribe('tls/x', { qos: 1 });
  const it = mutual.messages();
  await mutual.publish('tls/x', 'over mqtts', { qos: 1 });
  assert.equal(((await it.next()).value as Message).payload.toString(), 'over mqtts');
  assert.ok(usernames[0], 'the certificate CN became the user name');
  const wss = await open(t, `wss://localhost:${b.address(1).port}/mqtt`, { tls: { ca: readFileSync(c.caCert) } });
  await wss.subscribe('wss/x', { qos: 1 });
  const wssIt = wss.messages();
  await wss.publish('wss/x', 'over wss', { qos: 1 });
  assert.equal(((await wssIt.next()).value as Message).payload.toString(), 'over wss');
  await assert.rejects(connect(`wss://localhost:${b.address(1).port}/mqtt`, { reconnect: false, tls: { ca: readFileSync(c.otherCaCert) } }), /certificate signed by an unknown CA/);
});
