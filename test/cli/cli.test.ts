// The built CLI (bin/petrel.js) as a child process: pub → sub round trips, exit codes, conn output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBroker } from '../../src/index.js';
import { run, start } from './cli-process.js';
import { hasOpenssl, makeCertificates } from '../client/helpers.js';
import { freePort, petrelPort as petrelBroker } from '../helpers/servers.js';
import { hasMosquitto, startMosquitto, tempDir } from '../helpers/mosquitto.js';



type Ctx = { after: (fn: () => unknown) => void; skip: (msg?: string) => void };

test('pub → sub round trip: -v, -C, -l line mode, QoS 1 and 2, -V 3.1.1', async (t) => {
  const port = await petrelBroker(t);
  const sub = start(['sub', '-h', '127.0.0.1', '-p', port, '-t', 'cli/#', '-v', '-q', '2', '-C', '3', '-d', '-V', 'mqttv311']);
  await sub.waitStderr('<- SUBACK');
  const one = await run(['pub', '-h', '127.0.0.1', '-p', port, '-t', 'cli/one', '-m', 'hello world', '-q', '1']);
  assert.equal(one.code, 0, one.stderr);
  const lines = await run(['pub', '-h', '127.0.0.1', '-p', port, '-t', 'cli/lines', '-l', '-q', '2', '-V', '3.1'], 'first\nsecond\n');
  assert.equal(lines.code, 0, lines.stderr);
  const r = await sub.done;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'cli/one hello world\ncli/lines first\ncli/lines second\n');
});

test('sub --format json: text and binary payloads, user properties; pub -s from stdin and -f file', async (t) => {
  const port = await petrelBroker(t);
  const url = `mqtt://127.0.0.1:${port}`;
  const sub = start(['sub', '--url', url, '-t', 'j/#', '--format', 'json', '-C', '2', '-d']);
  await sub.waitStderr('<- SUBACK');
  const bin = await run(['pub', '--url', url, '-t', 'j/bin', '-s', '-D', 'source=test', '-D', 'k=v'], Buffer.from([0, 255, 1]));
  assert.equal(bin.code, 0, bin.stderr);
  const dir = tempDir();
  const file = join(dir, 'payload.txt');
  writeFileSync(file, 'from a file');
  const fromFile = await run(['pub', '--url', url, '-t', 'j/file', '-f', file, '-q', '1', '-r']);
  assert.equal(fromFile.code, 0, fromFile.stderr);
  const r = await sub.done;
  assert.equal(r.code, 0, r.stderr);
  const [a, b] = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(a, { topic: 'j/bin', payload: 'AP8B', encoding: 'base64', qos: 0, retain: false, properties: { userProperties: { source: 'test', k: 'v' } } });
  assert.deepEqual(b, { topic: 'j/file', payload: 'from a file', qos: 0, retain: false });
});

test('exit codes: refused connection 1, bad password 3, bad arguments 2, publish denied 4, -W timeout 27', async (t) => {
  const closed = String(await freePort());
  const refused = await run(['pub', '-h', '127.0.0.1', '-p', closed, '-t', 'x', '-m', 'y']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, new RegExp(`nothing listens on 127\\.0\\.0\\.1:${closed} \\(ECONNREFUSED\\)`));

  const port = await petrelBroker(t, {
    authenticate: (r) => r.username === 'alice' && r.password?.toString() === 'pw',
    authorizePublish: (_c, m) => !m.topic.startsWith('forbidden/'),
  });
  const badPassword = await run(['pub', '-h', '127.0.0.1', '-p', port, '-u', 'alice', '-P', 'nope', '-t', 'x', '-m', 'y']);
  assert.equal(badPassword.code, 3);
  assert.match(badPassword.stderr, /connection refused by the server: 0x86 Bad User Name or Password/);
  const badPassword311 = await run(['sub', '-h', '127.0.0.1', '-p', port, '-u', 'alice', '-P', 'nope', '-t', 'x', '-V', '3.1.1']);
  assert.equal(badPassword311.code, 3);
  assert.match(badPassword311.stderr, /0x04 Bad user name or password/);

  const denied = await run(['pub', '-h', '127.0.0.1', '-p', port, '-u', 'alice', '-P', 'pw', '-t', 'forbidden/x', '-m', 'y', '-q', '1']);
  assert.equal(denied.code, 4);
  assert.match(denied.stderr, /publish to "forbidden\/x" failed: 0x87 Not authorized/);

  const usage = await run(['pub', '-h', '127.0.0.1', '-p', port, '-m', 'no topic']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /a topic is needed/);
  const badQos = await run(['pub', '-t', 'x', '-m', 'y', '-q', '3']);
  assert.equal(badQos.code, 2);
  assert.match(badQos.stderr, /QoS must be 0, 1 or 2/);
  const unknownFlag = await run(['sub', '--bogus']);
  assert.equal(unknownFlag.code, 2);
  const badVersion = await run(['pub', '-t', 'x', '-m', 'y', '-V', '4.0']);
  assert.equal(badVersion.code, 2);
  assert.match(badVersion.stderr, /unknown MQTT protocol version "4.0"/);

  const waited = await run(['sub', '-h', '127.0.0.1', '-p', port, '-u', 'alice', '-P', 'pw', '-t', 'quiet/#', '-W', '0.2']);
  assert.equal(waited.code, 27);
  assert.match(waited.stderr, /timed out after 200 ms/);
});

test('connect timeout from the CLI: a server that never answers CONNACK', async (t) => {
  const net = await import('node:net');
  const sockets: import('node:net').Socket[] = [];
  const server = net.createServer((s) => sockets.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const port = String((server.address() as import('node:net').AddressInfo).port);
  const r = await run(['pub', '-h', '127.0.0.1', '-p', port, '-t', 'x', '-m', 'y', '--connect-timeout', '0.3']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /timed out waiting for CONNACK after 300 ms/);
});

test('petrel conn: every step on success, and the failing step pinpointed', async (t) => {
  const port = await petrelBroker(t);
  const r = await run(['conn', `mqtt://localhost:${port}`, '--pings', '2']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /^\[ok\] {3}DNS {8}localhost → /m);
  assert.match(r.stdout, /^\[ok\] {3}TCP {8}connected to /m);
  assert.match(r.stdout, /^\[ok\] {3}CONNECT {4}sending: MQTT 5\.0, client ID "petrel_[0-9a-f]{16}", clean start, keep alive 60 s/m);
  assert.match(r.stdout, /^\[ok\] {3}CONNACK {4}0x00 Success in [\d.]+ ms, session present: no/m);
  assert.match(r.stdout, /CONNACK properties:/);
  assert.match(r.stdout, /^\[ok\] {3}PING {7}PINGREQ → PINGRESP round trip min\/avg\/max [\d.]+\/[\d.]+\/[\d.]+ ms \(2\)/m);
  assert.match(r.stdout, /^connection OK: mqtt:\/\/localhost:\d+ accepts MQTT 5\.0/m);

  const v3 = await run(['conn', `127.0.0.1:${port}`, '-V', '3.1.1', '-i', 'diag']);
  assert.equal(v3.code, 0, v3.stderr);
  assert.match(v3.stdout, /0x00 Connection accepted/);
  assert.match(v3.stdout, /client ID "diag"/);

  const closed = String(await freePort());
  const down = await run(['conn', `mqtt://127.0.0.1:${closed}`]);
  assert.equal(down.code, 1);
  assert.match(down.stdout, /^\[FAIL\] TCP {8}connection refused: nothing listens on 127\.0\.0\.1:\d+ \(ECONNREFUSED\)$/m);
  assert.match(down.stdout, /hint: is the broker running\?/);
  assert.match(down.stderr, /TCP failed/);
});

test('petrel conn: a peer that accepts TCP and never answers the TLS or WebSocket handshake fails that step within --connect-timeout', async (t) => {
  const { createServer } = await import('node:net');
  const sockets = new Set<import('node:net').Socket>();
  const silent = createServer((s) => sockets.add(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const port = (silent.address() as { port: number }).port;
  for (const [url, step] of [[`mqtts://127.0.0.1:${port}`, 'TLS'], [`ws://127.0.0.1:${port}/mqtt`, 'WebSocket']] as const) {
    const started = Date.now();
    const r = await run(['conn', url, '--connect-timeout', '1']);
    assert.equal(r.code, 1, url);
    assert.match(r.stdout, new RegExp(`^\\[FAIL\\] ${step}\\b`, 'm'), url);
    assert.ok(Date.now() - started < 10_000, `${url} gave up in time`);
  }
});

test('petrel conn: v5 CONNACK limits and refusals are shown', async (t) => {
  const port = await petrelBroker(t, { receiveMaximum: 7, maxQos: 1, authenticate: (r) => r.username !== 'mallory' });
  const r = await run(['conn', `mqtt://127.0.0.1:${port}`, '-i', '']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /Receive Maximum: 7/);
  assert.match(r.stdout, /Maximum QoS: 1/);
  assert.match(r.stdout, /Assigned Client Identifier: \S+/);
  const refused = await run(['conn', `mqtt://127.0.0.1:${port}`, '-u', 'mallory', '-P', 'x']);
  assert.equal(refused.code, 3);
  assert.match(refused.stdout, /^\[FAIL\] CONNACK {4}connection refused by the server: 0x86 Bad User Name or Password/m);
});

test('petrel conn: TLS certificate chain, unknown CA and the fix', async (t) => {
  if (!hasMosquitto) return t.skip('mosquitto not installed');
  if (!hasOpenssl) return t.skip('openssl not installed');
  const c = makeCertificates();
  const m = await startMosquitto({ tls: { cafile: c.caCert, certfile: c.serverCert, keyfile: c.serverKey } });
  t.after(() => m.stop());
  const unknown = await run(['conn', `mqtts://localhost:${m.tlsPort}`]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stdout, /^\[ok\] {3}TLS {8}TLSv1\.[23], \S+/m);
  assert.match(unknown.stdout, /0: CN=localhost {2}issued by CN=Petrel Test CA/);
  assert.match(unknown.stdout, /^\[FAIL\] TLS {8}TLS: certificate signed by an unknown CA/m);
  assert.match(unknown.stdout, /hint: pass --cafile/);
  const good = await run(['conn', `mqtts://localhost:${m.tlsPort}`, '--cafile', c.caCert]);
  assert.equal(good.code, 0, good.stdout);
  assert.match(good.stdout, /server certificate verified/);
  const pub = await run(['pub', '--url', `mqtts://localhost:${m.tlsPort}`, '--cafile', c.caCert, '-t', 'tls/x', '-m', 'y', '-q', '1']);
  assert.equal(pub.code, 0, pub.stderr);
  const insecure = await run(['pub', '-h', 'localhost', '-p', String(m.tlsPort), '--insecure', '-t', 'tls/x', '-m', 'y']);
  assert.equal(insecure.code, 0, insecure.stderr);
});

test('--help: -h is the host, examples are shown', async () => {
  for (const cmd of ['pub', 'sub', 'conn']) {
    const r = await run([cmd, '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /-h, --host <host>/);
    assert.match(r.stdout, /Examples:\n {2}petrel /);
  }
});

test('will flags, -k, --session-expiry and --clean=false reach the broker; the will fires when the CLI dies', async (t) => {
  const connects: { clientId: string; keepAlive: number; clean: boolean }[] = [];
  const b = createBroker({ port: 0, host: '127.0.0.1' });
  await b.listen();
  t.after(() => b.close());
  b.on('clientConnected', (c, d) => connects.push({ clientId: c.clientId, keepAlive: d.keepAlive, clean: d.clean }));
  const port = String(b.address().port);
  const watcher = start(['sub', '-h', '127.0.0.1', '-p', port, '-t', 'wills/#', '-v', '-C', '1', '-d']);
  await watcher.waitStderr('<- SUBACK');
  const dying = start([
    'sub', '-h', '127.0.0.1', '-p', port, '-t', 'x', '-i', 'dying', '-k', '17', '--clean=false', '--session-expiry', '300',
    '--will-topic', 'wills/dying', '--will-message', 'gone', '--will-qos', '1', '--will-retain', '-d',
  ]);
  await dying.waitStderr('<- SUBACK');
  const session = b.inspect.session('dying');
  assert.ok(session, 'the session exists');
  assert.equal(session.expiryInterval, 300);
  assert.deepEqual(connects.find((c) => c.clientId === 'dying'), { clientId: 'dying', keepAlive: 17, clean: false });
  dying.kill('SIGKILL'); // no DISCONNECT: the will goes out
  const w = await watcher.done;
  assert.equal(w.code, 0, w.stderr);
  assert.equal(w.stdout.trim(), 'wills/dying gone');
  assert.equal(b.inspect.retained('wills/dying')?.payload.toString(), 'gone', '--will-retain made it retained');
});

test('petrel --version prints the package version and exits 0', async () => {
  const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  const r = await run(['--version']);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), version);
});
