// connect() options: an unknown name is an INVALID_ARGUMENT error naming it (and the Petrel
// option to use); MQTT.js's names that mean the same are accepted as they are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type ClientOptions, type MqttClientError } from '../../src/client/index.js';
import { resolveOptions } from '../../src/client/options.js';
import type { ConnectPacket } from '../../src/protocol/index.js';
import { startFakeServer } from './helpers.js';

const invalid = (re: RegExp) => (e: MqttClientError) => e.code === 'INVALID_ARGUMENT' && re.test(e.message);
const loose = (o: Record<string, unknown>) => o as ClientOptions;

test('an unknown option is an INVALID_ARGUMENT error naming it, with the nearest Petrel option', () => {
  assert.throws(() => resolveOptions('mqtt://h', loose({ bogusOption: true })), invalid(/^unknown option "bogusOption" \(the options are listed in docs\/client\.md\)$/));
  assert.throws(() => resolveOptions('mqtt://h', loose({ keepAlve: 5 })), invalid(/unknown option "keepAlve": did you mean keepAlive\?/));
  assert.throws(() => resolveOptions('mqtt://h', loose({ sessionExpiryInterval: 5 })), invalid(/unknown option "sessionExpiryInterval"/));
  // an option with the value undefined is no option (spreading partial objects is common)
  assert.equal(resolveOptions('mqtt://h', loose({ whatever: undefined })).keepAlive, 60);
});

test('MQTT.js names with another meaning name the Petrel option to use', () => {
  assert.throws(() => resolveOptions('mqtt://h', loose({ queueQoSZero: false })), invalid(/unknown option "queueQoSZero" \(an MQTT\.js option\): .*queueWhileOffline/));
  assert.throws(() => resolveOptions('mqtt://h', loose({ manualConnect: true })), invalid(/createClient\(\)/));
  assert.throws(() => resolveOptions('mqtt://h', loose({ wsOptions: {} })), invalid(/wsHeaders/));
});

test('MQTT.js names that mean the same are accepted: keepalive, reconnectPeriod, protocol, hostname, TLS options', () => {
  const o = resolveOptions(loose({ hostname: 'broker', port: 1999, protocol: 'mqtts', keepalive: 1, reconnectPeriod: 5000, connectTimeout: 4000, clean: false, clientId: 'c', ca: 'CA', rejectUnauthorized: false, protocolVersion: 4, protocolId: 'MQTT' }));
  assert.equal(o.address.host, 'broker');
  assert.equal(o.address.scheme, 'mqtts');
  assert.equal(o.keepAlive, 1, 'keepalive (seconds) is keepAlive');
  assert.equal(o.pingInterval, 1000);
  assert.deepEqual(o.reconnect, { initialDelay: 5000 }, 'reconnectPeriod (ms) is reconnect.initialDelay');
  assert.equal(o.connectTimeout, 4000);
  assert.equal(o.clean, false);
  assert.deepEqual(o.tls, { ca: 'CA', rejectUnauthorized: false });
  assert.equal(resolveOptions('mqtt://h', loose({ reconnectPeriod: 0 })).reconnect, false, 'reconnectPeriod 0 turns reconnecting off, as in MQTT.js');
  assert.throws(() => resolveOptions('mqtt://h', loose({ keepalive: 1, keepAlive: 2 })), invalid(/keepalive and keepAlive both given/));
  assert.throws(() => resolveOptions('mqtt://h', loose({ protocolId: 'MQIsdp', protocolVersion: 4 })), invalid(/protocolId "MQIsdp" does not match protocolVersion 4/));
  assert.throws(() => resolveOptions('mqtt://h', loose({ reconnectPeriod: -1 })), invalid(/reconnectPeriod must be/));
});

test('connect(url, { keepalive: 1, reconnectPeriod: 5000, bogusOption: true }) fails at once naming bogusOption; without it CONNECT carries Keep Alive 1', async (t) => {
  const server = await startFakeServer();
  t.after(() => server.close());
  await assert.rejects(connect(server.url, loose({ keepalive: 1, reconnectPeriod: 5000, bogusOption: true })), invalid(/unknown option "bogusOption"/));
  assert.equal(server.connections.length, 0, 'refused before connecting');
  const pending = connect(server.url, loose({ keepalive: 1, reconnectPeriod: 5000, will: { topic: 'w', payload: 'gone', qos: 1, retain: true } }));
  const conn = await server.connection(0);
  const packet = (await conn.accept()) as ConnectPacket;
  const client = await pending;
  t.after(() => client.destroy());
  assert.equal(packet.keepAlive, 1, 'the user asked for 1 s');
  assert.equal(packet.will?.topic, 'w');
  assert.equal(packet.will?.qos, 1);
  assert.equal(packet.will?.retain, true);
  assert.equal(client.connack?.keepAlive, 1);
});
