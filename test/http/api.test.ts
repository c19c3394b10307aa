// The JSON API over real HTTP against a real broker with real MQTT clients: values checked, auth refusals,
// bad parameters answered 4xx with the field named.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { setPassword } from '../../src/auth/password-file.js';
import { eventually } from '../helpers/broker.js';
import { request, startHttpBroker, type HttpBroker } from '../helpers/http.js';
import { RawClient } from '../helpers/raw-client.js';

async function client(t: TestContext, h: HttpBroker, options: IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${h.mqttPort}`, { reconnectPeriod: 0, connectTimeout: 3000, ...options });
  t.after(() => c.end(true));
  return c;
}

describe('HTTP API: authentication', () => {
  it('refuses /api/* without the token, or with a wrong one (401, JSON, WWW-Authenticate); /metrics, /health, /ready answer without it', async (t) => {
    const h = await startHttpBroker(t);
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: `Basic ${h.token}` }, { authorization: `Bearer ${h.token}x` }]) {
      const r = await request(h.base, 'GET', '/api/v1/clients', undefined, headers);
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.equal(r.json.error, 'unauthorized');
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
    }
    assert.equal((await h.api('GET', '/api/v1/clients')).status, 200);
    // However the path is spelled, the route decides: no way around the token.
    for (const path of ['/%61pi/v1/clients', '/api/v1/clients/', '/api//v1/clients', '/api/v1/%63lients', '/api/v1/clients?x=/health']) {
      const r = await request(h.base, 'GET', path);
      assert.ok(r.status === 401 || r.status === 404, `${path}: ${r.status}`);
    }
    // A refused request with a body never reaches the handler: nothing was published.
    const refused = await request(h.base, 'POST', '/api/v1/publish', { topic: 'x', payload: 'y', retain: true });
    assert.equal(refused.status, 401);
    assert.equal(h.broker.inspect.counts().retained, 0);
    for (const path of ['/metrics', '/health', '/ready']) assert.equal((await request(h.base, 'GET', path)).status, 200, path);
  });

  it('publicEndpoints: [] puts /metrics, /health and /ready behind the token too', async (t) => {
    const h = await startHttpBroker(t, {}, { publicEndpoints: [] });
    for (const path of ['/metrics', '/health', '/ready']) {
      assert.equal((await request(h.base, 'GET', path)).status, 401, path);
      assert.equal((await h.api('GET', path)).status, 200, path);
    }
  });

  it('the token file is re-read when it changes and on reload() (SIGHUP); a broken file keeps the previous token', async (t) => {
    const h = await startHttpBroker(t);
    const { writeFileSync } = await import('node:fs');
    const next = 'the-next-token-abcdefghijklmnop';
    writeFileSync(h.tokenFile, `${next}\n`);
    const withToken = (token: string) => request(h.base, 'GET', '/api/v1/bans', undefined, { authorization: `Bearer ${token}` });
    const deadline = Date.now() + 3000;
    while ((await withToken(next)).status !== 200) {
      assert.ok(Date.now() < deadline, 'the changed token file was not picked up');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal((await withToken(h.token)).status, 401, 'the old token no longer works');
    writeFileSync(h.tokenFile, 'short\n');
    h.broker.reload();
    assert.equal((await withToken(next)).status, 200, 'a token file too short to be a token is refused; the previous token stays');
    writeFileSync(h.tokenFile, `${h.token}\n`);
    h.broker.reload();
    assert.equal((await withToken(h.token)).status, 200);
  });
});

describe('HTTP API: clients', () => {
  it('lists connected clients with their details; filters by clientId, username, address, listener, like; paginates', async (t) => {
    const h = await startHttpBroker(t);
    await client(t, h, { clientId: 'dev-a', username: 'alice', keepalive: 30 });
    await client(t, h, { clientId: 'dev-b', protocolVersion: 5, keepalive: 45 });
    await client(t, h, { clientId: 'other', username: 'bob' });
    const all = await h.api('GET', '/api/v1/clients');
    assert.equal(all.status, 200);
    assert.equal(all.json.total, 3);
    assert.deepEqual(all.json.items.map((c: { clientId: string }) => c.clientId), ['dev-a', 'dev-b', 'other']);
    const a = all.json.items[0];
    assert.equal(a.username, 'alice');
    assert.equal(a.protocolVersion, 4);
    assert.equal(a.keepAlive, 30);
    assert.match(a.remoteAddress, /^127\.0\.0\.1:\d+$/);
    assert.equal(a.listener, `tcp:${h.mqttPort}`);
    assert.ok(Math.abs(Date.parse(a.connectedAt) - Date.now()) < 10_000, a.connectedAt);
    assert.equal(all.json.items[1].protocolVersion, 5);

    const ids = async (query: string) => (await h.api('GET', `/api/v1/clients?${query}`)).json.items.map((c: { clientId: string }) => c.clientId);
    assert.deepEqual(await ids('username=bob'), ['other']);
    assert.deepEqual(await ids('clientId=dev-b'), ['dev-b']);
    assert.deepEqual(await ids('like=dev'), ['dev-a', 'dev-b']);
    assert.deepEqual(await ids('like=ali'), ['dev-a'], 'like matches user names too');
    assert.deepEqual(await ids('address=127.0.0.1'), ['dev-a', 'dev-b', 'other']);
    assert.deepEqual(await ids(`address=${encodeURIComponent(a.remoteAddress)}`), ['dev-a']);
    assert.deepEqual(await ids('address=10.0.0.1'), []);
    assert.deepEqual(await ids(`listener=tcp:${h.mqttPort}`), ['dev-a', 'dev-b', 'other']);
    assert.deepEqual(await ids('listener=ws:8083'), []);
    const page = await h.api('GET', '/api/v1/clients?offset=1&limit=1');
    assert.deepEqual([page.json.total, page.json.offset, page.json.limit, page.json.items.map((c: { clientId: string }) => c.clientId)], [3, 1, 1, ['dev-b']]);
  });

  it('answers bad parameters with 400 naming the field', async (t) => {
    const h = await startHttpBroker(t);
    const cases: [string, string, unknown, string][] = [
      ['GET', '/api/v1/clients?limit=0', undefined, 'limit'],
      ['GET', '/api/v1/clients?limit=1001', undefined, 'limit'],
      ['GET', '/api/v1/clients?offset=-1', undefined, 'offset'],
      ['GET', '/api/v1/clients?limit=ten', undefined, 'limit'],
      ['GET', '/api/v1/clients?user=bob', undefined, 'user'],
      ['GET', '/api/v1/sessions?connected=maybe', undefined, 'connected'],
      ['GET', '/api/v1/subscriptions?topic=a/%23', undefined, 'topic'],
      ['GET', '/api/v1/retained?filter=a/%23/b', undefined, 'filter'],
      ['POST', '/api/v1/publish', {}, 'topic'],
      ['POST', '/api/v1/publish', { topic: 'a/+' }, 'topic'],
      ['POST', '/api/v1/publish', { topic: 'a', qos: 3 }, 'qos'],
      ['POST', '/api/v1/publish', { topic: 'a', retian: true }, 'retian'],
      ['POST', '/api/v1/publish', { topic: 'a', payload: '%%%', payloadEncoding: 'base64' }, 'payload'],
      ['POST', '/api/v1/publish', { topic: 'a', messageExpiryInterval: 0 }, 'messageExpiryInterval'],
      ['POST', '/api/v1/bans', { type: 'ip', value: '1.2.3.4' }, 'type'],
      ['POST', '/api/v1/bans', { type: 'address', value: '1.2.3.4/99' }, 'value'],
      ['POST', '/api/v1/bans', { type: 'clientId' }, 'value'],
      ['DELETE', '/api/v1/bans/ip/x', undefined, 'type'],
    ];
    for (const [method, path, body, field] of cases) {
      const r = await h.api(method, path, body);
      assert.equal(r.status, 400, `${method} ${path} ${JSON.stringify(body)}: ${r.text}`);
      assert.equal(r.json.field, field, `${method} ${path} ${JSON.stringify(body)}: ${r.text}`);
      assert.ok(r.json.message.startsWith(`${field}: `), r.json.message);
    }
    const notJson = await fetch(`${h.base}/api/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${h.token}`, 'content-type': 'application/json' }, body: '{"topic":' });
    assert.equal(notJson.status, 400);
    assert.equal((await notJson.json()).error, 'bad request');
    const unknown = await h.api('GET', '/api/v1/nothing');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error, 'not found');
  });

  it('shows a client with its session: subscriptions, expiry, in flight; 404 for an unknown one; Client IDs with / and spaces', async (t) => {
    const h = await startHttpBroker(t);
    const id = 'site 1/device#7';
    const c = await client(t, h, { clientId: id, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 600 } });
    await c.subscribeAsync({ 'sensors/+/temp': { qos: 1 }, '$share/g/jobs/#': { qos: 0 } });
    const r = await h.api('GET', `/api/v1/clients/${encodeURIComponent(id)}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.clientId, id);
    assert.equal(r.json.connected, true);
    assert.equal(r.json.connection.protocolVersion, 5);
    assert.equal(r.json.session.expiryInterval, 600);
    assert.deepEqual(r.json.session.subscriptions.map((s: { topicFilter: string; qos: number }) => [s.topicFilter, s.qos]).sort(), [['$share/g/jobs/#', 0], ['sensors/+/temp', 1]]);
    assert.equal(r.json.session.inflight, 0);
    const missing = await h.api('GET', '/api/v1/clients/nobody');
    assert.equal(missing.status, 404);
    assert.equal(missing.json.field, 'clientId');
  });

  it('kicks a client: DELETE closes its connection (5.0: DISCONNECT 0x98), publishes its will, keeps its session; 404 when not connected', async (t) => {
    const h = await startHttpBroker(t);
    const watcher = await client(t, h, { clientId: 'watcher' });
    await watcher.subscribeAsync('wills/#');
    const wills: string[] = [];
    watcher.on('message', (topic) => wills.push(topic));
    const victim = await client(t, h, { clientId: 'victim', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 60 }, will: { topic: 'wills/victim', payload: Buffer.from('gone'), qos: 0, retain: false } });
    let disconnectCode: number | undefined;
    victim.on('disconnect', (p) => (disconnectCode = p.reasonCode));
    const closed = new Promise<void>((r) => victim.once('close', () => r()));
    const r = await h.api('DELETE', '/api/v1/clients/victim');
    assert.equal(r.status, 204, r.text);
    await closed;
    assert.equal(disconnectCode, 0x98);
    await eventually(() => wills.length === 1, 2000, 'the will');
    assert.equal(h.broker.inspect.hasSession('victim'), true);
    const history = await h.api('GET', '/api/v1/clients/victim/history');
    assert.deepEqual([history.json.connected, history.json.session], [false, true]);
    const last = history.json.events.at(-1);
    assert.deepEqual([last.event, last.cause, last.code, last.will], ['disconnect', 'administrative_action', '0x98', true]);
    assert.equal((await h.api('DELETE', '/api/v1/clients/victim')).status, 404);
  });
});

describe('HTTP API: connection history', () => {
  it('records CONNECT seen, CONNACK code, refusals with their reason, takeover, protocol errors and wills, per Client ID', async (t) => {
    const { mkdtempSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const passwordFile = join(mkdtempSync(join(tmpdir(), 'petrel-http-pw-')), 'passwd');
    await setPassword(passwordFile, 'meter', 'right-password');
    const h = await startHttpBroker(t, { passwordFile, allowAnonymous: true });

    // A refused login (wrong password): the client never connected, its history says why.
    await assert.rejects(client(t, h, { clientId: 'meter-1', username: 'meter', password: 'wrong', protocolVersion: 5 }));
    // Accepted, then taken over by a second connection with the same Client ID.
    const first = await client(t, h, { clientId: 'meter-1', username: 'meter', password: 'right-password', protocolVersion: 5 });
    const firstClosed = new Promise<void>((r) => first.once('close', () => r()));
    await client(t, h, { clientId: 'meter-1', username: 'meter', password: 'right-password', protocolVersion: 5 });
    await firstClosed;
    await eventually(() => (h.broker.inspect.isConnected('meter-1')), 2000, 'the second connection');

    const r = await h.api('GET', '/api/v1/clients/meter-1/history');
    assert.equal(r.status, 200, r.text);
    const events = r.json.events.map((e: Record<string, unknown>) => [e.event, e.code ?? '', e.cause ?? e.reason ?? '']);
    assert.deepEqual(events, [
      ['connect', '', ''],
      ['connack', '0x86', 'refused by authentication'],
      ['connect', '', ''],
      ['connack', '0x00', ''],
      ['connect', '', ''],
      ['disconnect', '0x8e', 'takeover'],
      ['connack', '0x00', ''],
    ]);
    const refused = r.json.events[1];
    assert.equal(refused.accepted, false);
    assert.equal(refused.codeName, 'Bad User Name or Password');
    assert.equal(r.json.events[0].username, 'meter');
    assert.equal(r.json.events[0].protocolVersion, 5);

    // A protocol error: a raw client sends a malformed packet (a PUBLISH with QoS 3) [MQTT-3.3.1-4].
    const { client: raw } = await RawClient.connect(h.mqttPort, { clientId: 'broken', will: { topic: 'w/broken', payload: Buffer.from('x'), qos: 0, retain: false } });
    raw.sendBytes([0x36, 0x03, 0x00, 0x01, 0x61]);
    await raw.waitClosed();
    await eventually(() => h.broker.inspect.isConnected('broken') === false);
    const broken = (await h.api('GET', '/api/v1/clients/broken/history')).json.events.at(-1);
    assert.equal(broken.event, 'disconnect');
    assert.equal(broken.cause, 'malformed_packet');
    assert.equal(broken.will, true, 'closed by the server for a protocol error: the will is published [MQTT-3.1.2-8]');
    assert.deepEqual((await h.api('GET', '/api/v1/clients/nobody/history')).json, { clientId: 'nobody', connected: false, session: false, events: [] });
    const recent = await h.api('GET', '/api/v1/history?limit=2');
    assert.deepEqual(recent.json.items.map((i: { clientId: string }) => i.clientId), ['broken', 'meter-1']);
  });
});
