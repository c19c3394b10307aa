// Edge cases of the client CLI (pub, sub, conn) and library as an MQTT user drives them: against the
// Petrel broker, against Mosquitto (skipped with the reason when it is not installed) and against raw
// TCP peers that misbehave. Covers argument validation (exit 2 before connecting, one line naming
// the flag), TLS / WebSocket mix-ups, packets before CONNACK, reconnect reporting and closed clients.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { createBroker } from '../../src/index.js';
import { run, start } from './cli-process.js';
import { MqttClient, connect, type MqttClientError } from '../../src/client/index.js';
import { encodePacket } from '../../src/protocol/index.js';
import { delay, eventually } from '../helpers/wait.js';
import { freePort, petrelWithPort as petrelBroker, rawServer } from '../helpers/servers.js';
import { hasMosquitto, startMosquitto } from '../helpers/mosquitto.js';

const CLIENT_MODULE = fileURLToPath(new URL('../../src/client/index.js', import.meta.url));
const hasMosquittoPasswd = existsSync('/usr/bin/mosquitto_passwd');


type Ctx = { after: (fn: () => unknown) => void; skip: (msg?: string) => void };

/** stderr lines that are not Node warnings. */
const errLines = (stderr: string) => stderr.split('\n').filter((l) => l.trim() !== '');

// ------------------------------------------------------------------ against real brokers

test('mosquitto from the CLI: -r / -q 2 / -R / --retain-handling 2 / -N / json, MQTT 5 and 3.1.1, over TCP and WebSocket', async (t) => {
  if (!hasMosquitto) return t.skip('mosquitto not installed (/usr/sbin/mosquitto)');
  const m = await startMosquitto({ websockets: true });
  t.after(() => m.stop());
  const tcp = ['-h', '127.0.0.1', '-p', String(m.port)];
  for (const v of ['5', '3.1.1']) {
    const a = await run(['pub', ...tcp, '-V', v, '-t', `ret${v}/a`, '-m', 'A', '-r', '-q', '2']);
    assert.equal(a.code, 0, a.stderr);
    const b = await run(['pub', ...tcp, '-V', v, '-t', `ret${v}/b`, '-m', 'B', '-r', '-q', '1']);
    assert.equal(b.code, 0, b.stderr);
    const json = await run(['sub', ...tcp, '-V', v, '-t', `ret${v}/#`, '-q', '2', '-C', '2', '--format', 'json']);
    assert.equal(json.code, 0, json.stderr);
    const rows = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { topic: string; payload: string; qos: number; retain: boolean });
    assert.deepEqual(rows.map((r) => [r.topic, r.payload, r.retain]).sort(), [[`ret${v}/a`, 'A', true], [`ret${v}/b`, 'B', true]]);
    const noEol = await run(['sub', ...tcp, '-V', v, '-t', `ret${v}/a`, '-N', '-C', '1']);
    assert.equal(noEol.stdout, 'A');
    // -R drops the retained ones: nothing left, -W expires with 27
    const skipped = await run(['sub', ...tcp, '-V', v, '-t', `ret${v}/#`, '-R', '-W', '0.5']);
    assert.equal(skipped.code, 27, skipped.stderr);
    assert.equal(skipped.stdout, '');
    // clearing with -n -r
    for (const k of ['a', 'b']) {
      const clear = await run(['pub', ...tcp, '-V', v, '-t', `ret${v}/${k}`, '-n', '-r']);
      assert.equal(clear.code, 0, `pub -n -r -V ${v}: ${clear.stderr}`);
    }
    const cleared = await run(['sub', ...tcp, '-V', v, '-t', `ret${v}/#`, '-W', '0.4']);
    assert.equal(cleared.code, 27);
    assert.equal(cleared.stdout, '');
  }
  const rh2 = await run(['pub', ...tcp, '-t', 'rh/x', '-m', 'kept', '-r']);
  assert.equal(rh2.code, 0);
  const never = await run(['sub', ...tcp, '-t', 'rh/#', '--retain-handling', '2', '-W', '0.4']);
  assert.equal(never.code, 27);
  assert.equal(never.stdout, '');

  // WebSocket: sub over ws://, pub over ws:// with the default /mqtt path
  const ws = `ws://127.0.0.1:${m.wsPort}`;
  const sub = start(['sub', '--url', ws, '-t', 'ws/#', '-v', '-C', '1', '-q', '1', '-d']);
  await sub.waitStderr('<- SUBACK');
  const p = await run(['pub', '--url', ws, '-t', 'ws/1', '-m', 'over websocket', '-q', '1', '-V', '3.1.1']);
  assert.equal(p.code, 0, p.stderr);
  const s = await sub.done;
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stdout, 'ws/1 over websocket\n');

  // mqtts:// to the plain port: the TLS handshake failure is explained and points at mqtt://
  const tlsToPlain = await run(['pub', '--url', `mqtts://127.0.0.1:${m.port}`, '-t', 'x', '-m', 'y', '--connect-timeout', '3']);
  assert.equal(tlsToPlain.code, 1);
  assert.match(tlsToPlain.stderr, /TLS/);
  assert.match(tlsToPlain.stderr, /mqtt:\/\//);
});

test('mosquitto password_file: refusals in words with exit 3 (5.0 and 3.1.1, pub and conn); URL credentials work', async (t) => {
  if (!hasMosquitto) return t.skip('mosquitto not installed (/usr/sbin/mosquitto)');
  if (!hasMosquittoPasswd) return t.skip('mosquitto_passwd not installed');
  const m = await startMosquitto({ users: { alice: 'secret' } });
  t.after(() => m.stop());
  const tcp = ['-h', '127.0.0.1', '-p', String(m.port)];
  // mosquitto 2 answers a wrong password with Not authorized (0x87 / 0x05), not 0x86 / 0x04
  const v5 = await run(['pub', ...tcp, '-u', 'alice', '-P', 'wrong', '-t', 'a', '-m', 'x']);
  assert.equal(v5.code, 3);
  assert.match(v5.stderr, /^petrel pub: connection refused by the server: 0x87 Not authorized$/m);
  const v311 = await run(['pub', ...tcp, '-u', 'alice', '-P', 'wrong', '-t', 'a', '-m', 'x', '-V', '3.1.1']);
  assert.equal(v311.code, 3);
  assert.match(v311.stderr, /connection refused by the server: 0x05 Not authorized/);
  const anonymous = await run(['sub', ...tcp, '-t', 'a', '-V', 'mqttv311']);
  assert.equal(anonymous.code, 3);
  assert.match(anonymous.stderr, /0x05 Not authorized/);
  const diag = await run(['conn', `mqtt://127.0.0.1:${m.port}`, '-u', 'alice', '-P', 'wrong', '-V', '3.1.1']);
  assert.equal(diag.code, 3);
  assert.match(diag.stdout, /^\[FAIL\] CONNACK {4}connection refused by the server: 0x05 Not authorized/m);
  const ok = await run(['pub', '--url', `mqtt://alice:secret@127.0.0.1:${m.port}`, '-t', 'a', '-m', 'x', '-q', '1']);
  assert.equal(ok.code, 0, ok.stderr);
  const okConn = await run(['conn', `mqtt://alice:secret@127.0.0.1:${m.port}`, '--pings', '1']);
  assert.equal(okConn.code, 0, okConn.stdout);
  assert.match(okConn.stdout, /user "alice"/);
});

test('conn pinpoints DNS, CONNACK timeout and a server that hangs up; bad URL scheme and port are usage errors', async (t) => {
  const dns = await run(['conn', 'mqtt://no-such-host.invalid:1883']);
  assert.equal(dns.code, 1);
  assert.match(dns.stdout, /^\[FAIL\] DNS {8}DNS lookup failed: host "no-such-host\.invalid" not found \(ENOTFOUND\)$/m);
  const pubDns = await run(['pub', '-h', 'no-such-host.invalid', '-t', 'a', '-m', 'x']);
  assert.equal(pubDns.code, 1);
  assert.match(pubDns.stderr, /DNS lookup failed: host "no-such-host\.invalid" not found/);

  const silent = await rawServer(t, 'silent');
  const started = Date.now();
  const timeout = await run(['conn', `127.0.0.1:${silent}`, '--connect-timeout', '0.5']);
  assert.equal(timeout.code, 1);
  assert.match(timeout.stdout, /^\[ok\] {3}TCP /m);
  assert.match(timeout.stdout, /^\[FAIL\] CONNACK {4}timed out waiting for CONNACK after 500 ms$/m);
  assert.ok(Date.now() - started < 5000);
  const subTimeout = await run(['sub', '-h', '127.0.0.1', '-p', silent, '-t', 'a', '--connect-timeout', '0.5']);
  assert.equal(subTimeout.code, 1);
  assert.match(subTimeout.stderr, /timed out waiting for CONNACK after 500 ms/);

  const closing = await rawServer(t, 'close');
  // the CONNECT may race the server's close: "closed before CONNACK" or "reset by the server"
  const hangup = await run(['conn', `mqtt://127.0.0.1:${closing}`]);
  assert.equal(hangup.code, 1);
  assert.match(hangup.stdout, /^\[FAIL\] CONNACK {4}connection to 127\.0\.0\.1:\d+ (closed by the server before CONNACK|reset by the server \(ECONNRESET\))$/m);
  const pubHangup = await run(['pub', '-h', '127.0.0.1', '-p', closing, '-t', 'a', '-m', 'x']);
  assert.equal(pubHangup.code, 1);
  assert.match(pubHangup.stderr, /closed by the server before CONNACK|reset by the server/);

  for (const [args, re] of [
    [['conn', 'http://127.0.0.1:1883'], /unsupported URL scheme "http:\/\/"/],
    [['pub', '-L', 'foo://127.0.0.1', '-t', 'a', '-m', 'x'], /unsupported URL scheme "foo:\/\/"/],
    [['conn', 'mqtt://127.0.0.1:0'], /invalid port in broker URL/],
    [['conn', 'mqtt://127.0.0.1:99999'], /invalid broker URL/],
    [['pub', '-h', '127.0.0.1', '-p', '70000', '-t', 'a', '-m', 'x'], /invalid port "70000"/],
  ] as const) {
    const r = await run([...args]);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stderr, re, args.join(' '));
  }
});

test('keep alive: an idle client sends PINGREQ and gets PINGRESP (petrel; mosquitto when installed)', async (t) => {
  const { port } = await petrelBroker(t);
  const targets: [string, string][] = [['petrel', port]];
  let mosq: Awaited<ReturnType<typeof startMosquitto>> | undefined;
  if (hasMosquitto) {
    mosq = await startMosquitto();
    t.after(() => mosq!.stop());
    targets.push(['mosquitto', String(mosq.port)]);
  } else t.diagnostic('mosquitto not installed: petrel only');
  for (const [name, p] of targets) {
    const sub = start(['sub', '-h', '127.0.0.1', '-p', p, '-t', 'idle', '-k', '1', '-d', '-V', name === 'petrel' ? '5' : '3.1.1']);
    try {
      await sub.waitStderr('<- SUBACK');
      await sub.waitStderr(/-> PINGREQ[^\n]*\n<- PINGRESP/, 4000);
    } finally {
      sub.kill();
    }
    const r = await sub.done;
    assert.equal(r.code, 0, `${name}: SIGTERM ends sub cleanly`);
  }
});

test('sub survives a broker restart: says so on stderr and prints what arrives afterwards', async (t) => {
  const port = await freePort();
  let b = createBroker({ port, host: '127.0.0.1' });
  await b.listen();
  t.after(() => b.close());
  const sub = start(['sub', '-h', '127.0.0.1', '-p', String(port), '-t', 'rs/#', '-v', '-C', '1', '-q', '1']);
  await eventually(() => b.inspect.counts().sessions > 0, 5000, 'sub connected');
  await delay(100);
  await b.close();
  await sub.waitStderr(/connection lost: .*0x8b Server shutting down.*; reconnecting/);
  b = createBroker({ port, host: '127.0.0.1' });
  await b.listen();
  await sub.waitStderr('petrel sub: reconnected', 8000);
  await delay(100); // resubscribe goes out right after CONNACK
  const p = await run(['pub', '-h', '127.0.0.1', '-p', String(port), '-t', 'rs/after', '-m', 'back', '-q', '1']);
  assert.equal(p.code, 0, p.stderr);
  const r = await sub.done;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'rs/after back\n');
});

test('library against a restarting petrel: offline → reconnect → connect, resubscribed, offline publishes delivered; closed client rejects', async (t) => {
  const port = await freePort();
  let b = createBroker({ port, host: '127.0.0.1' });
  await b.listen();
  t.after(() => b.close());
  const url = `mqtt://127.0.0.1:${port}`;
  const c = await connect(url, { reconnect: { initialDelay: 50, maxDelay: 200, jitter: 0 }, connectTimeout: 2000 });
  t.after(() => c.destroy());
  const events: string[] = [];
  for (const ev of ['offline', 'reconnect', 'connect', 'close'] as const) c.on(ev, () => events.push(ev));
  c.on('error', () => events.push('error'));
  await c.subscribe('lib/#', { qos: 1 });
  const got: string[] = [];
  c.on('message', (msg) => got.push(`${msg.topic}=${msg.payload.toString()}`));
  await b.close();
  await eventually(() => events.includes('offline'), 3000, 'offline');
  assert.equal(c.connected, false);
  const q1 = c.publish('lib/q1', 'one', { qos: 1 });
  const q0 = c.publish('lib/q0', 'zero', { qos: 0 });
  assert.deepEqual(c.pending.queued, 2);
  b = createBroker({ port, host: '127.0.0.1' });
  await b.listen();
  assert.equal((await q1).reasonCode, 0);
  assert.equal((await q0).reasonCode, 0);
  const other = await connect(url, { reconnect: false });
  await other.publish('lib/other', 'two', { qos: 1 });
  await other.end();
  await eventually(() => got.length === 3, 3000, 'three messages');
  assert.deepEqual(got, ['lib/q1=one', 'lib/q0=zero', 'lib/other=two']);
  assert.equal(events[0], 'offline');
  assert.ok(events.indexOf('reconnect') > 0 && events.lastIndexOf('connect') > events.indexOf('reconnect'), events.join(','));
  await c.end();
  assert.equal(events.at(-1), 'close');
  await assert.rejects(c.publish('lib/x', 'late'), (e: MqttClientError) => e.code === 'CLIENT_CLOSED');
  await assert.rejects(c.subscribe('lib/x'), (e: MqttClientError) => e.code === 'CLIENT_CLOSED');
  await c.end(); // a second end() resolves
  await assert.rejects(c.connect(), (e: MqttClientError) => e.code === 'INVALID_ARGUMENT');
});

// ------------------------------------------------------------------ misuse and misbehaving peers

test('an invalid topic / filter is a usage error (exit 2) found before connecting', async (t) => {
  const { broker, port } = await petrelBroker(t);
  let connects = 0;
  broker.on('clientConnected', () => connects++);
  const pub = await run(['pub', '-h', '127.0.0.1', '-p', port, '-t', 'a/+', '-m', 'x']);
  assert.match(pub.stderr, /invalid topic name "a\/\+"/);
  const sub = await run(['sub', '-h', '127.0.0.1', '-p', port, '-t', 'a/#/b']);
  assert.match(sub.stderr, /invalid topic filter "a\/#\/b"/);
  assert.equal(pub.code, 2, 'pub exit code');
  assert.equal(sub.code, 2, 'sub exit code');
  assert.equal(connects, 0, 'no connection for a command line that cannot work');
});

test('a CONNECT that cannot be encoded is reported, not a crash', async (t) => {
  const { broker, port } = await petrelBroker(t);
  let connects = 0;
  broker.on('clientConnected', () => connects++);
  const long = 'a'.repeat(70_000);
  for (const extra of [['-x', '5000000000'], ['-i', long], ['-u', long], ['-P', long], ['-I', long], ['-P', 'pw', '-V', '3.1.1']]) {
    const r = await run(['pub', '-h', '127.0.0.1', '-p', port, '-t', 'a', '-m', 'x', ...extra]);
    const what = extra[0]!;
    assert.doesNotMatch(r.stderr, /^\s+at /m, `${what}: no stack trace`);
    assert.match(r.stderr, /^petrel pub: /, `${what}: one explained line`);
    assert.equal(errLines(r.stderr).length, 1, `${what}: one line: ${r.stderr.slice(0, 300)}`);
    assert.ok(r.stderr.includes(what), `${what}: names the flag: ${r.stderr.slice(0, 300)}`);
    assert.equal(r.code, 2, `${what}: bad arguments`);
  }
  assert.equal(connects, 0, 'refused before connecting');
  // in-process: a too long user name is refused by connect() before a socket is opened
  const c = new MqttClient(`mqtt://127.0.0.1:${port}`, { username: long, reconnect: false });
  await assert.rejects(c.connect(), (e: MqttClientError) => e.code === 'INVALID_ARGUMENT' && /^cannot encode CONNECT: .*65535 bytes/.test(e.message));
  assert.equal(c.closed, true);
  assert.equal(connects, 0);
  // the library: connect() rejects at once with a readable error, no unhandled rejection
  const script = `
    import { MqttClient } from ${JSON.stringify(CLIENT_MODULE)};
    process.on('unhandledRejection', (e) => console.log('UNHANDLED ' + (e && e.message)));
    const c = new MqttClient('mqtt://127.0.0.1:${port}', { sessionExpiry: 2 ** 33, connectTimeout: 3000, reconnect: false });
    const t0 = Date.now();
    try { await c.connect(); console.log('CONNECTED'); } catch (e) { console.log('REJECTED ' + e.code + ' ' + (Date.now() - t0)); }
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  await new Promise((r) => child.on('close', r));
  assert.doesNotMatch(out, /UNHANDLED/, out);
  const m = /REJECTED (\S+) (\d+)/.exec(out);
  assert.ok(m, out);
  assert.notEqual(m[1], 'CONNECT_TIMEOUT', out);
  assert.ok(Number(m[2]) < 1000, `rejected at once: ${out}`);
});

test('a huge --connect-timeout waits (or is refused), it does not time out at once', async (t) => {
  const silent = await rawServer(t, 'silent');
  const child = start(['pub', '-h', '127.0.0.1', '-p', silent, '-t', 'a', '-m', 'x', '--connect-timeout', '3000000']);
  const r = await Promise.race([child.done, delay(1500).then(() => undefined)]);
  child.kill('SIGKILL');
  await child.done;
  if (r === undefined) return; // still waiting for CONNACK: right
  assert.doesNotMatch(r.stderr, /TimeoutOverflowWarning|timed out/, r.stderr);
  assert.equal(r.code, 2, 'or refused as a bad argument');
  // refused: one line naming the flag and the largest value a timer takes
  assert.deepEqual(errLines(r.stderr), ['petrel pub: --connect-timeout must be a number of seconds more than 0 and at most 2147483 (got "3000000")']);
  const longest = start(['pub', '-h', '127.0.0.1', '-p', silent, '-t', 'a', '-m', 'x', '--connect-timeout', '2147483']);
  const largest = await Promise.race([longest.done, delay(1000).then(() => 'waiting')]);
  longest.kill('SIGKILL');
  await longest.done;
  assert.equal(largest, 'waiting', 'the largest accepted value waits');

  // the library caps connectTimeout instead of letting setTimeout fire at once
  const c = new MqttClient(`mqtt://127.0.0.1:${silent}`, { connectTimeout: 2 ** 40, reconnect: false });
  t.after(() => c.destroy());
  assert.equal(c.options.connectTimeout, 2 ** 31 - 1);
  const outcome = await Promise.race([c.connect().then(() => 'connected', (e: MqttClientError) => e.code), delay(800).then(() => 'waiting')]);
  assert.equal(outcome, 'waiting');
});

test('--tls / --cafile / --insecure with an mqtt:// URL do not silently fall back to plain TCP', async (t) => {
  const { broker, port } = await petrelBroker(t);
  let connects = 0;
  broker.on('clientConnected', () => connects++);
  for (const [flags, url, scheme] of [
    [['--tls'], `mqtt://127.0.0.1:${port}`, 'mqtts'],
    [['--insecure'], `mqtt://127.0.0.1:${port}`, 'mqtts'],
    [['--cafile', 'ca.pem'], `tcp://127.0.0.1:${port}`, 'mqtts'],
    [['--tls'], `ws://127.0.0.1:${port}/mqtt`, 'wss'],
  ] as const) {
    const r = await run(['pub', '-L', url, ...flags, '-t', 'a', '-m', 'x', '--connect-timeout', '2']);
    const what = `${flags[0]} with ${url}`;
    assert.equal(r.code, 2, `${what}: TLS was asked for; a plain-text success hides that (stderr: ${r.stderr})`);
    const lines = errLines(r.stderr);
    assert.equal(lines.length, 1, `${what}: ${r.stderr}`);
    assert.ok(lines[0]!.startsWith(`petrel pub: ${flags[0]} asks for TLS`), lines[0]);
    assert.ok(lines[0]!.includes(`use ${scheme}://`), lines[0]);
  }
  // conn and sub refuse the same way
  const diag = await run(['conn', `mqtt://127.0.0.1:${port}`, '--tls']);
  assert.equal(diag.code, 2, diag.stderr);
  const sub = await run(['sub', '--url', `mqtt://127.0.0.1:${port}`, '--insecure', '-t', 'a']);
  assert.equal(sub.code, 2, sub.stderr);
  assert.equal(connects, 0, 'nothing connected in clear text');
});

test('a stalled handshake names the step: TLS handshake, WebSocket upgrade', async (t) => {
  const silent = await rawServer(t, 'silent');
  const tls = await run(['pub', '-L', `mqtts://127.0.0.1:${silent}`, '-t', 'a', '-m', 'x', '--connect-timeout', '0.3']);
  assert.equal(tls.code, 1);
  assert.match(tls.stderr, /^petrel pub: timed out after 300 ms in the TLS handshake with 127\.0\.0\.1:\d+$/m);
  assert.doesNotMatch(tls.stderr, /firewall/);
  const ws = await run(['pub', '-L', `ws://127.0.0.1:${silent}/mqtt`, '-t', 'a', '-m', 'x', '--connect-timeout', '0.3']);
  assert.equal(ws.code, 1);
  assert.match(ws.stderr, /^petrel pub: timed out after 300 ms waiting for the WebSocket upgrade from 127\.0\.0\.1:\d+$/m);
  const wss = await run(['pub', '-L', `wss://127.0.0.1:${silent}/mqtt`, '-t', 'a', '-m', 'x', '--connect-timeout', '0.3']);
  assert.equal(wss.code, 1);
  assert.match(wss.stderr, /in the TLS handshake/);
  // petrel conn words its steps the same way
  const diagTls = await run(['conn', `mqtts://127.0.0.1:${silent}`, '--connect-timeout', '0.3']);
  assert.equal(diagTls.code, 1);
  assert.match(diagTls.stdout, /^\[FAIL\] TLS {8}timed out after 300 ms in the TLS handshake with 127\.0\.0\.1:\d+$/m);
  const diagWs = await run(['conn', `ws://127.0.0.1:${silent}/mqtt`, '--connect-timeout', '0.3']);
  assert.equal(diagWs.code, 1);
  assert.match(diagWs.stdout, /^\[FAIL\] WebSocket  timed out after 300 ms waiting for the WebSocket upgrade from 127\.0\.0\.1:\d+$/m);
});

test('the client treats packets before CONNACK as a protocol error', async (t) => {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => {
      s.write(encodePacket({ type: 3, topic: 'early', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, 5));
      setTimeout(() => s.write(encodePacket({ type: 2, sessionPresent: false, reasonCode: 0 }, 5)), 30);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const c = new MqttClient(`mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`, { reconnect: false, connectTimeout: 2000 });
  t.after(() => c.destroy());
  const got: string[] = [];
  c.on('message', (m) => got.push(m.topic));
  const outcome = await c.connect().then(
    () => 'connected',
    (e: MqttClientError) => e.code,
  );
  assert.deepEqual(got, [], 'nothing delivered before CONNACK');
  assert.equal(outcome, 'PROTOCOL_ERROR');

  const http = await rawServer(t, 'http');
  const r = await run(['pub', '-h', '127.0.0.1', '-p', http, '-t', 'a', '-m', 'x', '--connect-timeout', '2']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /CONNACK/, `names what was expected: ${r.stderr}`);
  assert.match(r.stderr, /^petrel pub: protocol error: the server did not answer CONNECT with CONNACK: it answered in HTTP \("HTTP\/1\.1 400 Bad Request"\)$/m);
  assert.doesNotMatch(r.stderr, /PUBACK/, 'the bytes are not explained as a broken PUBACK');
});

test('sub --no-reconnect reports a lost connection once', async (t) => {
  const b = createBroker({ port: 0, host: '127.0.0.1' });
  await b.listen();
  t.after(() => b.close());
  const sub = start(['sub', '-h', '127.0.0.1', '-p', String(b.address().port), '-t', 'x', '--no-reconnect', '-d']);
  await sub.waitStderr('<- SUBACK');
  await b.close();
  const r = await sub.done;
  assert.equal(r.code, 1);
  const lines = errLines(r.stderr).filter((l) => !/^(->|<-) /.test(l));
  assert.equal(lines.length, 1, lines.join('\n'));
  assert.match(lines[0]!, /0x8b Server shutting down/);
});

test('ws:// to a port that does not speak WebSocket is explained as a WebSocket problem', async (t) => {
  const { port } = await petrelBroker(t);
  const r = await run(['pub', '-L', `ws://127.0.0.1:${port}/mqtt`, '-t', 'a', '-m', 'x', '--connect-timeout', '2']);
  assert.equal(r.code, 1);
  assert.doesNotMatch(r.stderr, /TLS port/, r.stderr);
  assert.match(r.stderr, /WebSocket/, r.stderr);
  assert.match(r.stderr, /^petrel pub: WebSocket upgrade to 127\.0\.0\.1:\d+ failed: /m);
  assert.match(r.stderr, /hint: is this a WebSocket listener\?/);
  const diag = await run(['conn', `ws://127.0.0.1:${port}/mqtt`]);
  assert.equal(diag.code, 1);
  assert.match(diag.stdout, /^\[FAIL\] WebSocket  WebSocket upgrade to 127\.0\.0\.1:\d+ failed: /m);
  assert.doesNotMatch(diag.stdout, /TLS port/);
});

test('an invalid will topic is a usage error', async (t) => {
  const { port } = await petrelBroker(t);
  const r = await run(['pub', '-h', '127.0.0.1', '-p', port, '-t', 'a', '-m', 'x', '--will-topic', 'w/+']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /will topic/i);
  assert.deepEqual(errLines(r.stderr).length, 1, r.stderr);
  assert.match(r.stderr, /--will-topic/);
  // the library refuses it at connect(), before opening a socket
  const c = new MqttClient(`mqtt://127.0.0.1:${port}`, { will: { topic: 'w/#' }, reconnect: false });
  await assert.rejects(c.connect(), (e: MqttClientError) => e.code === 'INVALID_ARGUMENT' && /invalid will topic "w\/#"/.test(e.message));
});

test('numeric flags are validated', async (t) => {
  const { port } = await petrelBroker(t);
  const closedHex = `0x${(await freePort()).toString(16)}`;
  const base = ['-h', '127.0.0.1', '-t', 'a', '-m', 'x'];
  for (const [extra, flag] of [
    [['-p', port, '--repeat-delay', 'abc'], '--repeat-delay'],
    [['-p', port, '-k', ''], '-k'],
    [['-p', port, '-k', '1e3'], '-k'],
    [['-p', port, '-q', ''], '-q'],
    [['-p', port, '-q', '1.0'], '-q'],
    [['-p', closedHex], '-p'],
    [['-p', port, '--message-expiry', '5000000000'], '--message-expiry'],
    [['-p', port, '--repeat', '-1'], '--repeat'],
    [['-p', port, '--will-topic', 'w', '--will-qos', '3'], '--will-qos'],
  ] as const) {
    const r = await run(['pub', ...base, ...extra]);
    assert.equal(r.code, 2, `${extra.join(' ')}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /cannot encode PUBLISH: cannot encode PUBLISH/);
    const lines = errLines(r.stderr);
    assert.equal(lines.length, 1, `${extra.join(' ')}: one line: ${r.stderr}`);
    assert.ok(lines[0]!.includes(flag), `${extra.join(' ')}: names ${flag}: ${lines[0]}`);
  }
  for (const [args, flag] of [
    [['sub', '-p', port, '-t', 'a', '-C', 'x'], '--count (-C)'],
    [['sub', '-p', port, '-t', 'a', '-W', '-1'], '-W'],
    [['sub', '-p', port, '-t', 'a', '--retain-handling', '3'], '--retain-handling'],
    [['conn', `mqtt://127.0.0.1:${port}`, '--pings', 'many'], '--pings'],
  ] as const) {
    const r = await run([...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.ok(errLines(r.stderr).some((l) => l.includes(flag)), `${args.join(' ')}: names ${flag}: ${r.stderr}`);
  }
  // the library: a PUBLISH that cannot be encoded says so once
  const c = await connect(`mqtt://127.0.0.1:${port}`, { reconnect: false });
  t.after(() => c.destroy());
  await assert.rejects(c.publish('a', 'x', { properties: { messageExpiryInterval: 2 ** 33 } }), (e: MqttClientError) => {
    assert.equal(e.code, 'INVALID_ARGUMENT');
    assert.match(e.message, /^cannot encode PUBLISH: /);
    assert.doesNotMatch(e.message, /cannot encode PUBLISH: cannot encode/);
    return true;
  });
  await c.end();
});

test('MQTT 5 flags with -V 3.1.1 are refused, not silently dropped', async (t) => {
  const { broker, port } = await petrelBroker(t);
  let connects = 0;
  broker.on('clientConnected', () => connects++);
  const tcp = ['-h', '127.0.0.1', '-p', port, '-V', '3.1.1'];
  for (const [args, flag] of [
    [['pub', ...tcp, '-t', 'a', '-m', 'x', '-D', 'k=v'], '-D (MQTT 5 properties)'],
    [['pub', ...tcp, '-t', 'a', '-m', 'x', '--message-expiry', '10'], '--message-expiry'],
    [['pub', ...tcp, '-t', 'a', '-m', 'x', '-e', 'reply/to'], '--response-topic (-e)'],
    [['sub', ...tcp, '-t', 'a', '-x', '60'], '--session-expiry (-x)'],
    [['sub', ...tcp, '-t', 'a', '--retain-handling', '2'], '--retain-handling'],
    [['sub', ...tcp, '-t', 'a', '--no-local'], '--no-local'],
  ] as const) {
    const r = await run([...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.deepEqual(errLines(r.stderr), [`petrel ${args[0]}: ${flag} exists only in MQTT 5, not with -V 3.1.1: drop it or use -V 5`]);
  }
  assert.equal(connects, 0);
  // the same flags with MQTT 5 work
  const ok = await run(['pub', '-h', '127.0.0.1', '-p', port, '-t', 'a', '-m', 'x', '-D', 'k=v', '--message-expiry', '10', '-x', '60']);
  assert.equal(ok.code, 0, ok.stderr);
});

test('operations on an ended client reject with CLIENT_CLOSED', async (t) => {
  const { port } = await petrelBroker(t);
  const c = await connect(`mqtt://127.0.0.1:${port}`, { reconnect: false });
  await c.end();
  await assert.rejects(c.ping(), (e: MqttClientError) => e.code === 'CLIENT_CLOSED');
  await assert.rejects(c.publish('a'), (e: MqttClientError) => e.code === 'CLIENT_CLOSED');
  await assert.rejects(c.subscribe('a'), (e: MqttClientError) => e.code === 'CLIENT_CLOSED');
  await assert.rejects(c.unsubscribe('a'), (e: MqttClientError) => e.code === 'CLIENT_CLOSED');
  const destroyed = await connect(`mqtt://127.0.0.1:${port}`, { reconnect: false });
  destroyed.destroy();
  await assert.rejects(destroyed.ping(), (e: MqttClientError) => e.code === 'CLIENT_CLOSED');
});

test('conn takes the common -L/--url flag like pub and sub', async (t) => {
  const { port } = await petrelBroker(t);
  const r = await run(['conn', '--url', `mqtt://127.0.0.1:${port}`, '--pings', '0']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^connection OK: /m);
  const short = await run(['conn', '-L', `mqtt://127.0.0.1:${port}`, '--pings', '0']);
  assert.equal(short.code, 0, short.stderr);
  const positional = await run(['conn', `mqtt://127.0.0.1:${port}`, '--pings', '0']);
  assert.equal(positional.code, 0, positional.stderr);
  const both = await run(['conn', `mqtt://127.0.0.1:${port}`, '--url', `mqtt://127.0.0.1:${port}`]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /give the broker URL once/);
});
