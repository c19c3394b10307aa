// /metrics in Prometheus text format: values checked against what real MQTT clients did.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { setPassword } from '../../src/auth/password-file.js';
import { eventually } from '../helpers/broker.js';
import { metric, request, startHttpBroker, type HttpBroker } from '../helpers/http.js';
import { RawClient } from '../helpers/raw-client.js';

async function client(t: TestContext, h: HttpBroker, options: IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${h.mqttPort}`, { reconnectPeriod: 0, connectTimeout: 3000, ...options });
  t.after(() => c.end(true));
  return c;
}

const scrape = async (h: HttpBroker) => {
  const r = await request(h.base, 'GET', '/metrics');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return r.text;
};

describe('/metrics', () => {
  it('counts connections by listener and protocol version, sessions, subscriptions, retained, messages by QoS, bytes', async (t) => {
    const h = await startHttpBroker(t);
    const listener = `tcp:${h.mqttPort}`;
    const sub = await client(t, h, { clientId: 's', protocolVersion: 5 });
    await sub.subscribeAsync({ 'm/#': { qos: 1 }, 'other/+': { qos: 0 } });
    const got: string[] = [];
    sub.on('message', (topic) => got.push(topic));
    const pub = await client(t, h, { clientId: 'p', protocolVersion: 4 });
    await client(t, h, { clientId: 'old', protocolId: 'MQIsdp', protocolVersion: 3 });
    const offline = await client(t, h, { clientId: 'offline', clean: false });
    await offline.subscribeAsync('m/#', { qos: 1 });
    await offline.endAsync();
    for (let i = 0; i < 3; i++) await pub.publishAsync('m/0', 'x', { qos: 0 });
    for (let i = 0; i < 2; i++) await pub.publishAsync('m/1', 'y', { qos: 1 });
    await pub.publishAsync('m/2', 'z', { qos: 2, retain: true });
    await eventually(() => got.length === 6, 2000, 'six messages');

    const text = await scrape(h);
    const m = (name: string, labels?: Record<string, string>) => metric(text, name, labels);
    assert.equal(m('petrel_connections', { listener, protocol: '5.0' }), 1);
    assert.equal(m('petrel_connections', { listener, protocol: '3.1.1' }), 1);
    assert.equal(m('petrel_connections', { listener, protocol: '3.1' }), 1);
    assert.equal(m('petrel_connections_maximum'), 4);
    assert.equal(m('petrel_sessions', { state: 'online' }), 3);
    assert.equal(m('petrel_sessions', { state: 'offline' }), 1);
    assert.equal(m('petrel_subscriptions'), 3);
    assert.equal(m('petrel_retained_messages'), 1);
    assert.equal(m('petrel_messages_received_total', { qos: '0' }), 3);
    assert.equal(m('petrel_messages_received_total', { qos: '1' }), 2);
    assert.equal(m('petrel_messages_received_total', { qos: '2' }), 1);
    // The subscriber gets 3 at QoS 0, 2 at QoS 1 and the QoS 2 one downgraded to its QoS 1.
    assert.equal(m('petrel_messages_sent_total', { qos: '0' }), 3);
    assert.equal(m('petrel_messages_sent_total', { qos: '1' }), 3);
    // The offline session queued the QoS 1 and 2 messages (3) and the QoS 0 ones are not queued for it.
    assert.equal(m('petrel_queued_messages'), 3);
    assert.equal(m('petrel_connects_total'), 4);
    assert.equal(m('petrel_connacks_total', { code: '0x00', reason: 'success' }), 4);
    assert.equal(m('petrel_disconnects_total', { reason: 'client_disconnect' }), 1);
    const stats = h.broker.inspect.stats();
    assert.equal(m('petrel_bytes_received_total'), stats.bytesReceived);
    assert.ok(m('petrel_bytes_sent_total')! > 0);
    assert.ok(m('petrel_heap_used_bytes')! > 1e6);
    assert.ok(m('petrel_resident_memory_bytes')! > m('petrel_heap_used_bytes')!);
    assert.ok(m('petrel_event_loop_lag_seconds')! >= 0);
    assert.equal(m('petrel_info', { version: (await import('../../src/version.js')).PETREL_VERSION }), 1);
    assert.equal(m('petrel_messages_dropped_total', { reason: 'queue_full' }), 0);
    // Metric names all carry the prefix.
    const names = new Set([...text.matchAll(/^# TYPE (\S+)/gm)].map((x) => x[1]!));
    assert.ok(names.size > 30, `${names.size} metrics`);
    assert.deepEqual([...names].filter((n) => !n.startsWith('petrel_')), []);
  });

  it('counts refusals by CONNACK code, authentication failures, takeovers and dropped messages by reason', async (t) => {
    const { mkdtempSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const passwordFile = join(mkdtempSync(join(tmpdir(), 'petrel-http-m-')), 'passwd');
    await setPassword(passwordFile, 'u', 'good-password');
    const h = await startHttpBroker(t, { passwordFile, maxQueuedMessages: 2, queueOverflow: 'drop-oldest' });
    for (let i = 0; i < 2; i++) await assert.rejects(client(t, h, { clientId: `bad${i}`, username: 'u', password: 'nope' }));
    const { connack } = await RawClient.connect(h.mqttPort, { clientId: 'x'.repeat(30), protocolVersion: 3, protocolName: 'MQIsdp' });
    assert.equal(connack.reasonCode, 2);
    const first = await client(t, h, { clientId: 'twin' });
    const closed = new Promise<void>((r) => first.once('close', () => r()));
    await client(t, h, { clientId: 'twin' });
    await closed;
    // Queue of 2 for an offline session: 5 QoS 1 messages drop 3.
    const away = await client(t, h, { clientId: 'away', clean: false });
    await away.subscribeAsync('q', { qos: 1 });
    await away.endAsync();
    const pub = await client(t, h, { clientId: 'pub' });
    for (let i = 0; i < 5; i++) await pub.publishAsync('q', String(i), { qos: 1 });

    const text = await scrape(h);
    const m = (name: string, labels?: Record<string, string>) => metric(text, name, labels);
    assert.equal(m('petrel_connacks_total', { code: '0x86', reason: 'bad_user_name_or_password' }), 2);
    assert.equal(m('petrel_connacks_total', { code: '0x85', reason: 'client_identifier_not_valid' }), 1);
    assert.equal(m('petrel_auth_failures_total'), 2);
    assert.equal(m('petrel_disconnects_total', { reason: 'takeover' }), 1);
    assert.equal(m('petrel_messages_dropped_total', { reason: 'queue_full' }), 3);
    assert.equal(m('petrel_queued_messages'), 2);
    assert.equal(m('petrel_messages_dropped_total', { reason: 'too_large' }), 0);
  });

  it('counts a keep-alive timeout (on a fake clock) as a disconnect cause, and the history has it [MQTT-3.1.2-24]', async (t) => {
    let now = Date.now();
    const h = await startHttpBroker(t, { clock: { now: () => now } });
    const { client: raw, connack } = await RawClient.connect(h.mqttPort, { clientId: 'sleepy', keepAlive: 10 });
    assert.equal(connack.reasonCode, 0);
    now += 14_000; // within 1.5 x keep alive
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(raw.closed, false);
    now += 2_000;
    await raw.waitClosed();
    const text = await scrape(h);
    assert.equal(metric(text, 'petrel_disconnects_total', { reason: 'keep_alive_timeout' }), 1);
    const last = (await h.api('GET', '/api/v1/clients/sleepy/history')).json.events.at(-1);
    assert.deepEqual([last.event, last.cause, last.code], ['disconnect', 'keep_alive_timeout', '0x8d']);
  });

  it('files a connection cut while its CONNECT waits for authentication under the Client ID it asked for', async (t) => {
    let now = Date.now();
    const h = await startHttpBroker(t, { clock: { now: () => now }, connectTimeout: 5000, authenticate: () => new Promise<boolean>(() => {}) });
    const raw = await RawClient.open(h.mqttPort);
    raw.send({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 30, clientId: 'stuck-1' });
    await eventually(() => h.broker.inspect.counts().connections === 1);
    await new Promise((r) => setTimeout(r, 100)); // the CONNECT is read
    now += 6000;
    await raw.waitClosed();
    const events = (await h.api('GET', '/api/v1/clients/stuck-1/history')).json.events;
    assert.deepEqual(events.map((e: { event: string; cause?: string }) => [e.event, e.cause]), [['connect', undefined], ['disconnect', 'connect_timeout']]);
    assert.equal(events[1].reason, 'authentication not finished within the connect timeout');
  });
});
