// The JSON API's sessions, subscriptions, retained messages, publish, bans, config, probes and OpenAPI
// document, over real HTTP against a real broker with MQTT clients connected.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { createBroker } from '../../src/server/broker.js';
import { eventually } from '../helpers/broker.js';
import { request, startHttpBroker, type HttpBroker } from '../helpers/http.js';
import { RawClient } from '../helpers/raw-client.js';

async function client(t: TestContext, h: HttpBroker, options: IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${h.mqttPort}`, { reconnectPeriod: 0, connectTimeout: 3000, ...options });
  t.after(() => c.end(true));
  return c;
}

const ids = (items: { clientId: string }[]) => items.map((i) => i.clientId);

describe('HTTP API: sessions and subscriptions', () => {
  it('lists sessions online and offline with queue figures; deletes one', async (t) => {
    const h = await startHttpBroker(t);
    const away = await client(t, h, { clientId: 'away', clean: false });
    await away.subscribeAsync('jobs/#', { qos: 1 });
    await away.endAsync();
    await client(t, h, { clientId: 'here' });
    const pub = await client(t, h, { clientId: 'pub' });
    await pub.publishAsync('jobs/1', 'a', { qos: 1 });
    await pub.publishAsync('jobs/2', 'bc', { qos: 1 });

    const all = await h.api('GET', '/api/v1/sessions');
    assert.deepEqual(ids(all.json.items), ['away', 'here', 'pub']);
    const awayView = all.json.items[0];
    assert.deepEqual([awayView.connected, awayView.queued, awayView.queuedBytes, awayView.subscriptions], [false, 2, 3, 1]);
    assert.deepEqual(ids((await h.api('GET', '/api/v1/sessions?connected=false')).json.items), ['away']);
    assert.deepEqual(ids((await h.api('GET', '/api/v1/sessions?connected=true&like=e')).json.items), ['here']);

    assert.equal((await h.api('DELETE', '/api/v1/sessions/away')).status, 204);
    assert.equal(h.broker.inspect.hasSession('away'), false);
    const again = await h.api('DELETE', '/api/v1/sessions/away');
    assert.equal(again.status, 404);
    assert.equal(again.json.field, 'clientId');
  });

  it('lists subscriptions, searches by exact filter, by a topic they match (shared ones included), by client', async (t) => {
    const h = await startHttpBroker(t);
    const a = await client(t, h, { clientId: 'a', protocolVersion: 5 });
    await a.subscribeAsync({ 'sensors/+/temp': { qos: 1 }, 'alerts/#': { qos: 0 } });
    const b = await client(t, h, { clientId: 'b', protocolVersion: 5 });
    await b.subscribeAsync({ '$share/workers/sensors/#': { qos: 2 } });
    const list = async (query = '') => (await h.api('GET', `/api/v1/subscriptions${query}`)).json;
    const all = await list();
    assert.equal(all.total, 3);
    assert.deepEqual(all.items.map((s: { clientId: string; topicFilter: string; qos: number }) => `${s.clientId} ${s.topicFilter} ${s.qos}`), ['a alerts/# 0', 'a sensors/+/temp 1', 'b $share/workers/sensors/# 2']);
    assert.equal(all.items[2].shareGroup, 'workers');
    const pairs = (r: { items: { clientId: string; topicFilter: string }[] }) => r.items.map((s) => `${s.clientId} ${s.topicFilter}`);
    assert.deepEqual(pairs(await list('?topic=sensors/7/temp')), ['a sensors/+/temp', 'b $share/workers/sensors/#']);
    assert.deepEqual(pairs(await list('?topic=alerts')), ['a alerts/#']);
    assert.deepEqual(pairs(await list(`?filter=${encodeURIComponent('sensors/+/temp')}`)), ['a sensors/+/temp']);
    assert.deepEqual(pairs(await list('?clientId=b')), ['b $share/workers/sensors/#']);
    assert.deepEqual(pairs(await list('?like=alert')), ['a alerts/#']);
  });
});

describe('HTTP API: retained messages and publish', () => {
  it('lists retained messages by filter, gets one by topic (slashes, spaces, binary payloads), deletes it', async (t) => {
    const h = await startHttpBroker(t);
    const pub = await client(t, h, { clientId: 'pub', protocolVersion: 5 });
    await pub.publishAsync('home/kitchen/temp', '21.5', { qos: 1, retain: true, properties: { contentType: 'text/plain' } });
    await pub.publishAsync('home/living room/temp', Buffer.from([0xff, 0x00, 0x01]), { qos: 0, retain: true });
    await pub.publishAsync('garden/rain', '0', { retain: true });
    await eventually(() => h.broker.inspect.counts().retained === 3);

    const home = await h.api('GET', `/api/v1/retained?filter=${encodeURIComponent('home/#')}`);
    assert.deepEqual(home.json.items.map((m: { topic: string }) => m.topic), ['home/kitchen/temp', 'home/living room/temp']);
    const kitchen = home.json.items[0];
    assert.deepEqual([kitchen.qos, kitchen.payload, kitchen.payloadBytes, kitchen.contentType], [1, '21.5', 4, 'text/plain']);
    const binary = home.json.items[1];
    assert.deepEqual([binary.payload, binary.payloadBase64], [null, Buffer.from([0xff, 0x00, 0x01]).toString('base64')]);
    assert.equal((await h.api('GET', '/api/v1/retained')).json.total, 3, 'the default filter is #');

    const one = await h.api('GET', '/api/v1/retained/home/living%20room/temp');
    assert.equal(one.status, 200, one.text);
    assert.equal(one.json.topic, 'home/living room/temp');
    assert.equal((await h.api('GET', '/api/v1/retained/home/none')).status, 404);
    assert.equal((await h.api('DELETE', '/api/v1/retained/garden/rain')).status, 204);
    assert.equal(h.broker.inspect.retained('garden/rain'), undefined);
    assert.equal((await h.api('DELETE', '/api/v1/retained/garden/rain')).status, 404);
  });

  it('publishes a message that subscribers receive, with QoS, retain, base64 payloads and 5.0 properties', async (t) => {
    const h = await startHttpBroker(t);
    const sub = await client(t, h, { clientId: 'sub', protocolVersion: 5 });
    await sub.subscribeAsync('cmd/#', { qos: 1 });
    const got: { topic: string; payload: Buffer; qos: number; props: unknown }[] = [];
    sub.on('message', (topic, payload, packet) => got.push({ topic, payload, qos: packet.qos, props: packet.properties }));
    const r = await h.api('POST', '/api/v1/publish', { topic: 'cmd/reboot', payload: 'now', qos: 1, contentType: 'text/plain', userProperties: { by: 'ops' } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { topic: 'cmd/reboot', subscribers: 1 });
    const b = await h.api('POST', '/api/v1/publish', { topic: 'cmd/blob', payload: Buffer.from([1, 2, 255]).toString('base64'), payloadEncoding: 'base64', retain: true });
    assert.equal(b.status, 200, b.text);
    await eventually(() => got.length === 2, 2000, 'both messages');
    assert.deepEqual([got[0]!.topic, got[0]!.payload.toString(), got[0]!.qos], ['cmd/reboot', 'now', 1]);
    assert.deepEqual(JSON.parse(JSON.stringify(got[0]!.props)), { contentType: 'text/plain', userProperties: { by: 'ops' } });
    assert.deepEqual([...got[1]!.payload], [1, 2, 255]);
    assert.deepEqual([...h.broker.inspect.retained('cmd/blob')!.payload], [1, 2, 255]);
  });
});

describe('HTTP API: bans and config', () => {
  it('bans a Client ID (the connected client is disconnected, the next CONNECT refused with 0x8A), lists and lifts bans', async (t) => {
    const h = await startHttpBroker(t);
    const c = await client(t, h, { clientId: 'rogue', protocolVersion: 5 });
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    const added = await h.api('POST', '/api/v1/bans', { type: 'clientId', value: 'rogue' });
    assert.equal(added.status, 201, added.text);
    assert.deepEqual(added.json.disconnected, ['rogue']);
    await closed;
    const { connack } = await RawClient.connect(h.mqttPort, { clientId: 'rogue', protocolVersion: 5 });
    assert.equal(connack.reasonCode, 0x8a);
    assert.equal((await h.api('POST', '/api/v1/bans', { type: 'address', value: '10.0.0.0/8' })).status, 201);
    assert.equal((await h.api('POST', '/api/v1/bans', { type: 'username', value: 'mallory' })).status, 201);
    assert.deepEqual((await h.api('GET', '/api/v1/bans')).json, { clientIds: ['rogue'], usernames: ['mallory'], addresses: ['10.0.0.0/8'] });
    assert.equal((await h.api('DELETE', '/api/v1/bans/address/10.0.0.0%2F8')).status, 204);
    assert.equal((await h.api('DELETE', '/api/v1/bans/clientId/rogue')).status, 204);
    assert.equal((await h.api('DELETE', '/api/v1/bans/clientId/rogue')).status, 404);
    assert.deepEqual((await h.api('GET', '/api/v1/bans')).json, { clientIds: [], usernames: ['mallory'], addresses: [] });
    const { connack: again } = await RawClient.connect(h.mqttPort, { clientId: 'rogue', protocolVersion: 5 });
    assert.equal(again.reasonCode, 0);
    const history = (await h.api('GET', '/api/v1/clients/rogue/history')).json.events.filter((e: { event: string }) => e.event === 'connack');
    assert.deepEqual(history.map((e: { code: string }) => e.code), ['0x00', '0x8a', '0x00']);
  });

  it('shows the configuration in force with secrets hidden', async (t) => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const file = join(mkdtempSync(join(tmpdir(), 'petrel-http-cfg-')), 'passwd');
    writeFileSync(file, '');
    const b = await startHttpBroker(t, { passwordFile: file, maxQos: 1 });
    const r = await b.api('GET', '/api/v1/config');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.passwordFile, file, 'a file name is not a secret');
    assert.equal(r.json.maxQos, 1);
    assert.equal(r.json.maxInflight !== undefined, true, 'defaults are filled in');
    const http = r.json.listeners.find((l: { type: string }) => l.type === 'http');
    assert.equal(http.tokenFile, b.tokenFile);
    assert.equal(http.host, '127.0.0.1');
    assert.ok(!JSON.stringify(r.json).includes(b.token), 'the token is not shown');
  });
});

describe('HTTP probes and the OpenAPI document', () => {
  it('/health is up; /ready lists the listeners, and answers 503 when a listener failed to start', async (t) => {
    const h = await startHttpBroker(t);
    const health = await request(h.base, 'GET', '/health');
    assert.equal(health.json.status, 'ok');
    const ready = await request(h.base, 'GET', '/ready');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.json.listeners.map((l: { type: string }) => l.type), ['tcp', 'http']);

    // The HTTP listener first, then an MQTT listener on the port already taken: the broker never gets ready.
    const broken = createBroker({ listeners: [{ type: 'http', port: 0, tokenFile: h.tokenFile }, { type: 'tcp', host: '127.0.0.1', port: h.mqttPort }] });
    t.after(() => broken.close());
    await assert.rejects(broken.listen(), /EADDRINUSE/);
    const notReady = await request(`http://127.0.0.1:${broken.address(0).port}`, 'GET', '/ready');
    assert.equal(notReady.status, 503);
    assert.equal(notReady.json.ready, false);
  });

  it('serves an OpenAPI 3 document describing every route, without the token', async (t) => {
    const h = await startHttpBroker(t);
    const r = await request(h.base, 'GET', '/api/v1/openapi.json');
    assert.equal(r.status, 200);
    assert.equal(r.json.openapi, '3.0.3');
    const paths = Object.keys(r.json.paths).sort();
    for (const p of ['/api/v1/clients', '/api/v1/clients/{clientId}', '/api/v1/clients/{clientId}/history', '/api/v1/sessions', '/api/v1/subscriptions', '/api/v1/retained', '/api/v1/publish', '/api/v1/bans', '/api/v1/config', '/metrics', '/health', '/ready']) {
      assert.ok(paths.includes(p), `${p} in ${paths.join(', ')}`);
    }
    assert.ok(r.json.paths['/api/v1/clients/{clientId}'].delete, 'kick is documented');
    const limit = r.json.paths['/api/v1/clients'].get.parameters.find((p: { name: string }) => p.name === 'limit');
    assert.equal(limit.schema.maximum, 1000);
    assert.deepEqual(r.json.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer' });
  });
});
