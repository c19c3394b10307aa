// Sans-I/O parts of the client: URLs, options, packet ids, keep alive, backoff, error wording.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBrokerUrl, formatBrokerUrl } from '../../src/client/url.js';
import { parseProtocolVersion, resolveOptions, randomClientId } from '../../src/client/options.js';
import { KeepAlive, MAX_TIMER_MS, PacketIdAllocator, backoffDelay, timerDelay } from '../../src/client/session-state.js';
import { connackError, explainNetworkError, formatDuration, serverDisconnectError } from '../../src/client/errors.js';

test('broker URLs: schemes, default ports and paths, credentials', () => {
  assert.deepEqual(parseBrokerUrl('mqtt://example.com'), { scheme: 'mqtt', host: 'example.com', port: 1883, path: '' });
  assert.equal(parseBrokerUrl('mqtts://example.com').port, 8883);
  assert.deepEqual(parseBrokerUrl('ws://example.com'), { scheme: 'ws', host: 'example.com', port: 8083, path: '/mqtt' });
  assert.deepEqual(parseBrokerUrl('wss://example.com:443/custom'), { scheme: 'wss', host: 'example.com', port: 443, path: '/custom' });
  assert.equal(parseBrokerUrl('wss://example.com').port, 8084);
  assert.equal(parseBrokerUrl('tcp://h:1999').scheme, 'mqtt');
  assert.equal(parseBrokerUrl('ssl://h').scheme, 'mqtts');
  assert.deepEqual(parseBrokerUrl('localhost:1884'), { scheme: 'mqtt', host: 'localhost', port: 1884, path: '' });
  const withCreds = parseBrokerUrl('mqtt://us%40er:p%3Ass@h');
  assert.equal(withCreds.username, 'us@er');
  assert.equal(withCreds.password, 'p:ss');
  assert.equal(parseBrokerUrl('mqtt://[::1]:1884').host, '::1');
  assert.equal(formatBrokerUrl(parseBrokerUrl('mqtt://[::1]:1884')), 'mqtt://[::1]:1884');
  assert.throws(() => parseBrokerUrl('http://h'), /unsupported URL scheme "http:\/\/"/);
  assert.throws(() => parseBrokerUrl('mqttsn://h:1884'), /MQTT-SN over UDP: use connect\(\) from 'petrel\/mqttsn'/, 'an MQTT-SN URL points to its own client');
  assert.throws(() => parseBrokerUrl('mqtt://h:70000'), /invalid/);
});

test('protocol versions in the spellings people use', () => {
  for (const v of ['3.1', 'mqttv31', '31', 3]) assert.equal(parseProtocolVersion(v), 3);
  for (const v of ['3.1.1', 'mqttv311', '311', 4]) assert.equal(parseProtocolVersion(v), 4);
  for (const v of ['5', '5.0', 'mqttv5', 'v5', 5]) assert.equal(parseProtocolVersion(v), 5);
  assert.throws(() => parseProtocolVersion('6'), /unknown MQTT protocol version "6"/);
});

test('options: defaults, credentials from the URL, empty Client ID rules', () => {
  const o = resolveOptions('mqtt://u:pw@h');
  assert.equal(o.protocolVersion, 5);
  assert.equal(o.keepAlive, 60);
  assert.equal(o.connectTimeout, 30_000);
  assert.equal(o.clean, true);
  assert.equal(o.username, 'u');
  assert.deepEqual(o.password, Buffer.from('pw'));
  assert.match(o.clientId, /^petrel_[0-9a-f]{16}$/);
  assert.notEqual(randomClientId(), randomClientId());
  assert.equal(resolveOptions('mqtt://u:pw@h', { username: 'other' }).username, 'other');
  assert.equal(resolveOptions('mqtt://h', { clientId: '' }).clientId, '');
  assert.equal(resolveOptions('mqtt://h', { clientId: '', protocolVersion: '3.1.1' }).clientId, '');
  assert.throws(() => resolveOptions('mqtt://h', { clientId: '', protocolVersion: '3.1.1', clean: false }), /clean session/);
  assert.throws(() => resolveOptions('mqtt://h', { clientId: '', protocolVersion: '3.1' }), /MQTT 3.1 needs a Client ID/);
  assert.equal(resolveOptions({ host: 'h', scheme: 'wss' }).address.port, 8084);
});

test('packet ids: 1..65535, skip ids in use, wrap around, exhaustion', () => {
  const ids = new PacketIdAllocator();
  assert.equal(ids.allocate(), 1);
  assert.equal(ids.allocate(), 2);
  ids.release(1);
  for (let i = 3; i <= 65535; i++) assert.equal(ids.allocate(), i);
  assert.equal(ids.allocate(), 1, 'wraps to the freed id 1');
  assert.equal(ids.allocate(), undefined, 'all 65535 in use');
  ids.release(300);
  assert.equal(ids.allocate(), 300);
});

test('keep alive: ping when idle, dead without PINGRESP, sending postpones the ping', () => {
  const ka = new KeepAlive(1000, 500, 0);
  assert.deepEqual(ka.poll(500), { action: 'none', nextCheckAt: 1000 });
  ka.sent(800); // a PUBLISH at 800 ms
  assert.deepEqual(ka.poll(1000), { action: 'none', nextCheckAt: 1800 });
  const ping = ka.poll(1800);
  assert.equal(ping.action, 'ping');
  ka.pingSent(1800);
  assert.deepEqual(ka.poll(2000), { action: 'none', nextCheckAt: 2300 });
  assert.deepEqual(ka.poll(2300), { action: 'dead' });
  // answered in time: alive, next ping one interval after the last send
  const ok = new KeepAlive(1000, 500, 0);
  ok.pingSent(1000);
  ok.pingResponse();
  assert.deepEqual(ok.poll(1400), { action: 'none', nextCheckAt: 2000 });
  assert.deepEqual(new KeepAlive(0, 0, 0).poll(1e9), { action: 'none', nextCheckAt: Infinity });
});

test('backoff: exponential, capped, jitter only shortens', () => {
  const o = { initialDelay: 100, maxDelay: 1000, multiplier: 2, jitter: 0.5 };
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((a) => backoffDelay(a, o, 0)), [100, 200, 400, 800, 1000, 1000]);
  assert.equal(backoffDelay(2, o, 0.999), 200);
  assert.equal(backoffDelay(2, { ...o, jitter: 0 }, 0.999), 400);
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(3, o);
    assert.ok(d >= 400 && d <= 800, `${d}`);
  }
});

test('errors are explained in words, with the code', () => {
  const refused = explainNetworkError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), { host: '127.0.0.1', port: 1883 });
  assert.equal(refused.message, 'connection refused: nothing listens on 127.0.0.1:1883 (ECONNREFUSED)');
  assert.equal(refused.code, 'ECONNREFUSED');
  const dns = explainNetworkError(Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }), { host: 'nope.invalid', port: 1883 });
  assert.match(dns.message, /DNS lookup failed: host "nope.invalid" not found \(ENOTFOUND\)/);
  const ca = explainNetworkError(Object.assign(new Error('self-signed certificate in certificate chain'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' }), { host: 'h', port: 8883, tls: true });
  assert.match(ca.message, /certificate signed by an unknown CA/);
  assert.match(ca.hint ?? '', /--cafile/);
  const alt = explainNetworkError(Object.assign(new Error('x'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID', reason: "Host: foo. is not in the cert's altnames: DNS:localhost" }), { host: 'foo', port: 8883 });
  assert.match(alt.message, /hostname mismatch/);
  const certReq = explainNetworkError(Object.assign(new Error('x'), { code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' }), { host: 'h', port: 8883 });
  assert.match(certReq.message, /client certificate required/);
  // A wrong passphrase that gets past the decryption's padding check (about 1 in 256) fails as an undecodable key.
  const undecodable = explainNetworkError(Object.assign(new Error('error:1E08010C:DECODER routines::unsupported'), { code: 'ERR_OSSL_UNSUPPORTED' }), { host: 'h', port: 8883, tls: true });
  assert.equal(undecodable.code, 'INVALID_ARGUMENT');
  assert.doesNotMatch(undecodable.message, /^connection to /);
  assert.match(undecodable.message, /passphrase/);
  assert.equal(connackError(0x86, 5).message, 'connection refused by the server: 0x86 Bad User Name or Password');
  assert.equal(connackError(4, 4).message, 'connection refused by the server: 0x04 Bad user name or password');
  assert.match(connackError(0x87, 5, 'no access to tenant').message, /0x87 Not authorized: no access to tenant/);
  assert.equal(serverDisconnectError(0x8e).message, 'the server closed the connection: 0x8e Session taken over');
  assert.match(serverDisconnectError(0x98, 'kicked by admin').message, /0x98 Administrative action: kicked by admin/);
  assert.equal(formatDuration(30_000), '30 s');
  assert.equal(formatDuration(250), '250 ms');
  assert.equal(formatDuration(1500), '1.5 s');
});

test('timers: connectTimeout and other delays never overflow setTimeout', () => {
  assert.equal(resolveOptions('mqtt://h', { connectTimeout: 2 ** 40 }).connectTimeout, MAX_TIMER_MS);
  assert.equal(resolveOptions('mqtt://h', { connectTimeout: Infinity }).connectTimeout, MAX_TIMER_MS);
  assert.equal(resolveOptions('mqtt://h', { connectTimeout: 250 }).connectTimeout, 250);
  for (const bad of [0, -1, NaN]) assert.throws(() => resolveOptions('mqtt://h', { connectTimeout: bad }), /connectTimeout must be a positive number/);
  assert.equal(timerDelay(2 ** 33), 2 ** 31 - 1);
  assert.equal(timerDelay(-5), 0);
  assert.equal(timerDelay(NaN), 0);
  assert.equal(timerDelay(1500), 1500);
});

test('WebSocket handshake failures are explained as WebSocket problems, not TLS ones', () => {
  const target = { host: '127.0.0.1', port: 1883, webSocket: true, phase: 'handshake' as const };
  const hangup = explainNetworkError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), target);
  assert.equal(hangup.message, 'WebSocket upgrade to 127.0.0.1:1883 failed: the server closed the connection without an HTTP answer (ECONNRESET)');
  assert.match(hangup.hint ?? '', /WebSocket listener/);
  assert.doesNotMatch(hangup.hint ?? '', /TLS port/);
  const notHttp = explainNetworkError(Object.assign(new Error('Parse Error: Expected HTTP/'), { code: 'HPE_INVALID_CONSTANT' }), target);
  assert.match(notHttp.message, /WebSocket upgrade to 127\.0\.0\.1:1883 failed: the server's answer is not HTTP/);
  // wss:// reset during the TLS handshake stays a TLS explanation
  const tlsReset = explainNetworkError(
    Object.assign(new Error('Client network socket disconnected before secure TLS connection was established'), { code: 'ECONNRESET' }),
    { ...target, tls: true },
  );
  assert.match(tlsReset.message, /during the TLS handshake/);
  // plain TCP keeps its TLS-port hint
  const tcp = explainNetworkError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), { host: 'h', port: 1883 });
  assert.match(tcp.hint ?? '', /mqtts/);
});
