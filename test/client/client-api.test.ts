// The public client API against docs/client.md, with Petrel's own broker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  connect,
  createClient,
  MqttClient,
  MqttClientError,
  ConnectionError,
  ConnackError,
  DisconnectError,
  ReasonCodeError,
  ClientClosedError,
  type ClientOptions,
  type Message,
} from '../../src/client/index.js';
import { createBroker } from '../../src/index.js';
import type { BrokerOptions } from '../../src/index.js';
import net from 'node:net';
import { TimeoutError } from '../../src/client/index.js';
import { delay, eventually } from '../helpers/wait.js';
import { freePort, rawServer } from '../helpers/servers.js';

type Ctx = { after: (fn: () => unknown) => void };

async function broker(t: Ctx, options: Partial<BrokerOptions> = {}): Promise<{ url: string; port: number; close: () => Promise<void> }> {
  const b = createBroker({ listeners: [{ type: 'tcp', host: '127.0.0.1', port: 0 }], ...options } as BrokerOptions);
  await b.listen();
  const port = b.address(0).port;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await b.close();
  };
  t.after(close);
  return { url: `mqtt://127.0.0.1:${port}`, port, close };
}

async function open(t: Ctx, url: string, options: ClientOptions = {}): Promise<MqttClient> {
  const c = await connect(url, { reconnect: { initialDelay: 20, maxDelay: 200, jitter: 0 }, connectTimeout: 3000, ...options });
  t.after(() => c.destroy());
  return c;
}

async function nextMessage(it: AsyncIterator<Message>, ms = 2000): Promise<Message | undefined> {
  const r = await Promise.race([it.next(), delay(ms).then(() => 'timeout' as const)]);
  if (r === 'timeout') return undefined;
  return r.done ? undefined : r.value;
}

async function rejectsWith(p: Promise<unknown>, check: (e: MqttClientError) => void): Promise<void> {
  try {
    await p;
  } catch (err) {
    check(err as MqttClientError);
    return;
  }
  assert.fail('expected a rejection');
}

// ------------------------------------------------------------------ connect / end / destroy

test('connect() resolves after the connect event with ConnackInfo; end() emits close without error', async (t) => {
  const b = await broker(t);
  const client = createClient(b.url, { clientId: 'audit-life' });
  const events: string[] = [];
  client.on('connect', (info) => {
    events.push('connect');
    assert.equal(info.sessionPresent, false);
    assert.equal(info.reasonCode, 0);
    assert.equal(info.clientId, 'audit-life');
    assert.equal(info.keepAlive, 60);
    assert.equal(typeof info.properties, 'object');
  });
  client.on('offline', () => events.push('offline'));
  client.on('close', (err) => events.push(`close:${err === undefined ? 'none' : err.code}`));
  const info = await client.connect();
  events.push('resolved');
  assert.equal(info.clientId, 'audit-life');
  assert.equal(client.connected, true);
  await client.end();
  events.push('ended');
  assert.deepEqual(events, ['connect', 'resolved', 'close:none', 'ended']);
  assert.equal(client.closed, true);
  // end() again is a no-op
  await client.end();
});

test('connect() twice rejects with INVALID_ARGUMENT', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  await rejectsWith(client.connect(), (e) => {
    assert.ok(e instanceof MqttClientError);
    assert.equal(e.code, 'INVALID_ARGUMENT');
  });
});

test('operations after end() reject with CLIENT_CLOSED "the client is closed"', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  await client.end();
  for (const p of [client.publish('a/b', 'x'), client.subscribe('a/#'), client.unsubscribe('a/#'), client.ping()]) {
    await rejectsWith(p, (e) => {
      assert.ok(e instanceof ClientClosedError);
      assert.equal(e.code, 'CLIENT_CLOSED');
      assert.match(e.message, /the client is closed/);
    });
  }
});

test('destroy() closes without DISCONNECT and the server publishes the will; end() discards it', async (t) => {
  const b = await broker(t);
  const watcher = await open(t, b.url);
  await watcher.subscribe('will/#', { qos: 1 });
  const it = watcher.messages('will/#');
  const a = await open(t, b.url, { will: { topic: 'will/a', payload: 'gone-a', qos: 1 } });
  const c = await open(t, b.url, { will: { topic: 'will/c', payload: 'gone-c', qos: 1 } });
  let closeErr: unknown = 'not emitted';
  c.on('close', (e) => (closeErr = e));
  await a.end();
  c.destroy();
  assert.equal(closeErr, undefined);
  assert.equal(c.closed, true);
  const m = await nextMessage(it);
  assert.equal(m?.topic, 'will/c');
  assert.equal(m?.payload.toString(), 'gone-c');
  assert.equal(await nextMessage(it, 300), undefined, 'will of the client that called end() must be discarded');
});

test('end({ reasonCode: 0x04 }) makes the server publish the will (5.0)', async (t) => {
  const b = await broker(t);
  const watcher = await open(t, b.url);
  await watcher.subscribe('will4/#');
  const it = watcher.messages();
  const a = await open(t, b.url, { will: { topic: 'will4/a', payload: 'w' } });
  await a.end({ reasonCode: 0x04 });
  const m = await nextMessage(it);
  assert.equal(m?.topic, 'will4/a');
});

test('end({ sessionExpiry }) after a CONNECT without one rejects INVALID_ARGUMENT and stays connected', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  await rejectsWith(client.end({ sessionExpiry: 60 }), (e) => assert.equal(e.code, 'INVALID_ARGUMENT'));
  assert.equal(client.connected, true);
  assert.ok((await client.ping()) >= 0);
  const kept = await open(t, b.url, { sessionExpiry: 10, clean: false, clientId: 'audit-exp' });
  await kept.end({ sessionExpiry: 0 });
  assert.equal(kept.closed, true);
});

test('end() waits for outstanding QoS 1 acknowledgements', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  const acks: number[] = [];
  const ps = [0, 1, 2, 3, 4].map((i) => client.publish(`drain/${i}`, 'x', { qos: 1 }).then(() => acks.push(i)));
  await client.end();
  assert.equal(acks.length, 5);
  await Promise.all(ps);
});

// ------------------------------------------------------------------ options and URLs

test('a bare host:port means mqtt://host:port; default ports per scheme', () => {
  assert.deepEqual(
    { ...new MqttClient('127.0.0.1:1884').address },
    { scheme: 'mqtt', host: '127.0.0.1', port: 1884, path: '' },
  );
  assert.equal(new MqttClient('mqtts://h').address.port, 8883);
  assert.equal(new MqttClient('ssl://h').address.scheme, 'mqtts');
  assert.equal(new MqttClient('tcp://h').address.port, 1883);
  assert.equal(new MqttClient('ws://h').address.port, 8083);
  assert.equal(new MqttClient('ws://h').address.path, '/mqtt');
  assert.equal(new MqttClient('wss://h').address.port, 8084);
});

test('URL credentials are used; username / password options win', async (t) => {
  const b = await broker(t);
  const seen: { username?: string; password?: string }[] = [];
  const b2 = await broker(t, {
    authenticate: (r) => {
      seen.push({ ...(r.username !== undefined ? { username: r.username } : {}), ...(r.password ? { password: r.password.toString() } : {}) });
      return true;
    },
  });
  void b;
  const c1 = await open(t, `mqtt://us%40r:pa%40ss@127.0.0.1:${b2.port}`);
  const c2 = await open(t, `mqtt://url-user:url-pass@127.0.0.1:${b2.port}`, { username: 'opt-user', password: Buffer.from('opt-pass') });
  await c1.end();
  await c2.end();
  assert.deepEqual(seen, [
    { username: 'us@r', password: 'pa@ss' },
    { username: 'opt-user', password: 'opt-pass' },
  ]);
});

test('protocolVersion spellings are accepted; an unknown one is refused naming the version', () => {
  for (const v of ['3.1', '3.1.1', 5, 3, 4, 'mqttv311', 'mqttv5', '5.0'] as const) new MqttClient('mqtt://h', { protocolVersion: v });
  assert.throws(() => new MqttClient('mqtt://h', { protocolVersion: '6' }), /protocol version "6"/);
});

test('bad URLs give a clear error', () => {
  assert.throws(() => new MqttClient('http://h'), /unsupported URL scheme "http:\/\/"/);
  assert.throws(() => new MqttClient('mqtt://h:99999'), /invalid (port in )?broker URL "mqtt:\/\/h:99999"/);
  assert.throws(() => new MqttClient(''), /empty broker URL/);
});

test('bad option values give a clear error naming the option', () => {
  assert.throws(() => new MqttClient('mqtt://h', { keepAlive: -1 }), /keepAlive/);
  assert.throws(() => new MqttClient('mqtt://h', { keepAlive: 70000 }), /keepAlive/);
  assert.throws(() => new MqttClient('mqtt://h', { connectTimeout: 0 }), /connectTimeout/);
  assert.throws(() => new MqttClient('mqtt://h', { connectTimeout: Number.NaN }), /connectTimeout/);
});

test('option errors are MqttClientError INVALID_ARGUMENT ("every failure is an MqttClientError")', () => {
  for (const make of [() => new MqttClient('mqtt://h', { keepAlive: -1 }), () => new MqttClient('http://h'), () => new MqttClient('mqtt://h', { protocolVersion: 9 })]) {
    assert.throws(make, (e: unknown) => e instanceof MqttClientError && e.code === 'INVALID_ARGUMENT');
  }
});

test('unchecked option values (pingInterval, pingTimeout, offlineQueueMax, reconnect delays) are refused naming the option', () => {
  const bad: [ClientOptions, RegExp][] = [
    [{ pingInterval: -5 }, /pingInterval/],
    [{ pingTimeout: Number.NaN }, /pingTimeout/],
    [{ offlineQueueMax: -1 }, /offlineQueueMax/],
    [{ reconnect: { initialDelay: -10 } }, /initialDelay/],
    [{ reconnect: { multiplier: Number.NaN } }, /multiplier/],
  ];
  for (const [o, re] of bad) assert.throws(() => new MqttClient('mqtt://h', o), re, JSON.stringify(o));
});

test('a CONNECT that cannot be sent rejects INVALID_ARGUMENT before a socket is opened', async () => {
  let opened = 0;
  const createStream = async () => {
    opened++;
    throw new Error('should not be called');
  };
  for (const o of [
    { sessionExpiry: -1 },
    { sessionExpiry: 2 ** 32 },
    { will: { topic: 'a/+' } },
    { clientId: 'x'.repeat(70000) },
    { username: 'u'.repeat(70000) },
  ] as ClientOptions[]) {
    await rejectsWith(connect('mqtt://127.0.0.1:1', { ...o, createStream, reconnect: false }), (e) => {
      assert.ok(e instanceof MqttClientError);
      assert.equal(e.code, 'INVALID_ARGUMENT', JSON.stringify(Object.keys(o)));
    });
  }
  assert.equal(opened, 0);
});

test("clientId '' gets the server-assigned ID as client.clientId (5.0)", async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url, { clientId: '' });
  assert.ok(client.clientId.length > 0);
});

// ------------------------------------------------------------------ errors

test('connection refused is a ConnectionError ECONNREFUSED with the documented message', async () => {
  const port = await freePort();
  await rejectsWith(connect(`mqtt://127.0.0.1:${port}`, { reconnect: false }), (e) => {
    assert.ok(e instanceof ConnectionError);
    assert.equal(e.code, 'ECONNREFUSED');
    assert.equal(e.step, 'tcp');
    assert.equal(e.message, `connection refused: nothing listens on 127.0.0.1:${port} (ECONNREFUSED)`);
    assert.ok(!(e instanceof ConnackError));
    assert.match(e.describe(), /hint: /);
  });
});

test('a refused CONNECT is a ConnackError CONNACK_REFUSED with reasonCode (5.0 and 3.1.1)', async (t) => {
  const b = await broker(t, { authenticate: () => false });
  await rejectsWith(connect(b.url, { reconnect: false }), (e) => {
    assert.ok(e instanceof ConnackError);
    assert.equal(e.code, 'CONNACK_REFUSED');
    assert.equal(e.reasonCode, 0x86);
    assert.match(e.message, /^connection refused by the server: 0x86 Bad User Name or Password/);
  });
  await rejectsWith(connect(b.url, { reconnect: false, protocolVersion: '3.1.1' }), (e) => {
    assert.ok(e instanceof ConnackError);
    assert.equal(e.reasonCode, 0x04);
    assert.match(e.message, /^connection refused by the server: 0x04 Bad user name or password/);
  });
});

test('a refused publish / subscribe rejects with ReasonCodeError REASON_CODE and per-filter results', async (t) => {
  const b = await broker(t, {
    authorizePublish: (_c, m) => !m.topic.startsWith('deny/'),
    authorizeSubscribe: (_c, s) => !s.topicFilter.startsWith('deny/'),
  });
  const client = await open(t, b.url);
  await rejectsWith(client.publish('deny/x', 'x', { qos: 1 }), (e) => {
    assert.ok(e instanceof ReasonCodeError);
    assert.equal(e.code, 'REASON_CODE');
    assert.equal(e.reasonCode, 0x87);
    assert.match(e.message, /^publish to "deny\/x" failed: 0x87 Not authorized/);
  });
  await rejectsWith(client.subscribe(['ok/#', 'deny/#'], { qos: 1 }), (e) => {
    assert.ok(e instanceof ReasonCodeError);
    assert.equal(e.reasonCode, 0x87);
    assert.match(e.message, /^subscribe to "deny\/#" failed: 0x87/);
    const results = (e as ReasonCodeError & { results?: unknown }).results;
    assert.deepEqual(results, [
      { topicFilter: 'ok/#', reasonCode: 1, qos: 1 },
      { topicFilter: 'deny/#', reasonCode: 0x87 },
    ]);
  });
});

test('session taken over: disconnect event, close with SERVER_DISCONNECT 0x8e, no reconnect, no crash without error listener', async (t) => {
  const b = await broker(t);
  const first = await open(t, b.url, { clientId: 'audit-takeover' });
  const events: string[] = [];
  first.on('disconnect', (p) => events.push(`disconnect:${p.reasonCode}`));
  first.on('reconnect', () => events.push('reconnect'));
  let closeErr: MqttClientError | undefined;
  const closed = new Promise<void>((r) =>
    first.on('close', (e) => {
      closeErr = e;
      r();
    }),
  );
  await open(t, b.url, { clientId: 'audit-takeover' });
  await closed;
  assert.ok(closeErr instanceof DisconnectError);
  assert.equal(closeErr.code, 'SERVER_DISCONNECT');
  assert.equal(closeErr.reasonCode, 0x8e);
  assert.match(closeErr.message, /^the server closed the connection: 0x8e Session taken over/);
  await delay(100);
  assert.deepEqual(events, [`disconnect:${0x8e}`]);
});

// ------------------------------------------------------------------ publish / subscribe / unsubscribe

test('subscribe() with several filters resolves one { topicFilter, reasonCode, qos } per filter', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  const granted = await client.subscribe(['s/a/+', 's/b/#'], { qos: 1, noLocal: false });
  assert.deepEqual(granted, [
    { topicFilter: 's/a/+', reasonCode: 1, qos: 1 },
    { topicFilter: 's/b/#', reasonCode: 1, qos: 1 },
  ]);
  const mixed = await client.subscribe([
    { topicFilter: 's/q0', qos: 0 },
    { topicFilter: 's/q2', qos: 2 },
  ]);
  assert.deepEqual(mixed.map((r) => r.qos), [0, 2]);
  const single = await client.subscribe('s/one');
  assert.deepEqual(single, [{ topicFilter: 's/one', reasonCode: 0, qos: 0 }]);
});

test('subscribe / unsubscribe / publish refuse invalid topics with INVALID_ARGUMENT', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  await rejectsWith(client.publish('a/+', 'x'), (e) => {
    assert.equal(e.code, 'INVALID_ARGUMENT');
    assert.match(e.message, /^invalid topic name "a\/\+": /);
  });
  await rejectsWith(client.publish('a', 'x', { qos: 3 as 0 }), (e) => assert.equal(e.code, 'INVALID_ARGUMENT'));
  await rejectsWith(client.subscribe('a/#/b'), (e) => assert.equal(e.code, 'INVALID_ARGUMENT'));
  await rejectsWith(client.subscribe([]), (e) => assert.equal(e.code, 'INVALID_ARGUMENT'));
  await rejectsWith(client.unsubscribe('a/b#'), (e) => assert.equal(e.code, 'INVALID_ARGUMENT'));
  await rejectsWith(client.publish('a', 'x', { properties: { subscriptionIdentifier: 3 } }), (e) => assert.equal(e.code, 'INVALID_ARGUMENT'));
  await rejectsWith(client.publish('a', 'x', { properties: { topicAlias: 0 } }), (e) => assert.equal(e.code, 'INVALID_ARGUMENT'));
});

test('publish resolves per QoS; 5.0 reports 0x10 when nobody listens', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  assert.deepEqual(await client.publish('nobody/0', 'x'), { reasonCode: 0 });
  const r1 = await client.publish('nobody/1', 'x', { qos: 1 });
  assert.equal(r1.reasonCode, 0x10);
  const r2 = await client.publish('nobody/2', Buffer.from([1, 2, 3]), { qos: 2 });
  assert.equal(r2.reasonCode, 0x10);
  await client.subscribe('somebody/#', { qos: 2 });
  assert.equal((await client.publish('somebody/1', 'x', { qos: 1 })).reasonCode, 0);
  assert.equal((await client.publish('somebody/2', 'x', { qos: 2 })).reasonCode, 0);
});

test('received messages carry topic, payload Buffer, qos, retain, dup and 5.0 properties', async (t) => {
  const b = await broker(t);
  const pub = await open(t, b.url);
  await pub.publish('m/retained', 'kept', { qos: 1, retain: true });
  const sub = await open(t, b.url);
  const it = sub.messages();
  await sub.subscribe('m/#', { qos: 2 });
  const retained = await nextMessage(it);
  assert.equal(retained?.topic, 'm/retained');
  assert.equal(retained?.retain, true);
  assert.equal(retained?.dup, false);
  assert.ok(Buffer.isBuffer(retained?.payload));
  await pub.publish('m/live', Buffer.from([0, 255]), {
    qos: 2,
    retain: true,
    properties: { contentType: 'application/octet-stream', userProperties: [['source', 'audit']] },
  });
  const live = await nextMessage(it);
  assert.equal(live?.topic, 'm/live');
  assert.deepEqual([...live!.payload], [0, 255]);
  assert.equal(live?.qos, 2);
  assert.equal(live?.retain, false, 'retain is cleared for a live message without retainAsPublished');
  assert.equal(live?.dup, false);
  assert.equal(live?.properties?.contentType, 'application/octet-stream');
  assert.deepEqual(live?.properties?.userProperties, [['source', 'audit']]);
});

test('the message event fires for every received message', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  const got: string[] = [];
  client.on('message', (m) => got.push(`${m.topic}=${m.payload.toString()}`));
  await client.subscribe(['e/a/+', 'e/b/#'], { qos: 1 });
  await client.publish('e/a/1', 'x', { qos: 1 });
  await client.publish('e/b', 'y', { qos: 1 });
  await eventually(() => got.length === 2, 2000, 'two messages');
  assert.deepEqual(got.sort(), ['e/a/1=x', 'e/b=y']);
});

test('unsubscribe() resolves per filter and stops delivery', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  await client.subscribe(['u/a', 'u/b'], { qos: 1 });
  const res = await client.unsubscribe(['u/a', 'u/b']);
  assert.deepEqual(res, [
    { topicFilter: 'u/a', reasonCode: 0 },
    { topicFilter: 'u/b', reasonCode: 0 },
  ]);
  const it = client.messages();
  await client.publish('u/a', 'x', { qos: 1 });
  assert.equal(await nextMessage(it, 200), undefined);
  const none = await client.unsubscribe('u/never');
  assert.equal(none[0]!.reasonCode, 0x11);
});

test('noLocal and retainHandling 2 subscription options are honoured', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  await client.publish('opt/r', 'retained', { qos: 1, retain: true });
  const it = client.messages();
  await client.subscribe('opt/#', { qos: 1, noLocal: true, retainHandling: 2 });
  await client.publish('opt/x', 'mine', { qos: 1 });
  assert.equal(await nextMessage(it, 300), undefined);
});

test('5.0 topicAlias above the server maximum is refused with 0x94', async (t) => {
  const b = await broker(t, { topicAliasMaximum: 2 } as Partial<BrokerOptions>);
  const client = await open(t, b.url);
  await rejectsWith(client.publish('ta', 'x', { properties: { topicAlias: 3 } }), (e) => {
    assert.ok(e instanceof ReasonCodeError);
    assert.equal(e.reasonCode, 0x94);
  });
  await client.publish('ta', 'x', { properties: { topicAlias: 2 } });
});

test('3.1.1 publish / subscribe / unsubscribe results', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url, { protocolVersion: '3.1.1' });
  const g = await client.subscribe(['v4/a', 'v4/b'], { qos: 2 });
  assert.deepEqual(g.map((r) => r.qos), [2, 2]);
  const it = client.messages();
  assert.equal((await client.publish('v4/a', 'x', { qos: 2 })).reasonCode, 0);
  const m = await nextMessage(it);
  assert.equal(m?.properties, undefined);
  assert.deepEqual(await client.unsubscribe('v4/a'), [{ topicFilter: 'v4/a', reasonCode: 0 }]);
});

// ------------------------------------------------------------------ messages()

test('messages(filter) matches wildcards on the client side', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  await client.subscribe('w/#', { qos: 1 });
  const plus = client.messages('w/+/c');
  const hash = client.messages('w/a/#');
  for (const topic of ['w/a/c', 'w/a', 'w/b/c', 'w/a/b/c', 'w/a/c/d']) await client.publish(topic, topic, { qos: 1 });
  const collect = async (it: AsyncIterator<Message>) => {
    const out: string[] = [];
    for (;;) {
      const m = await nextMessage(it, 200);
      if (!m) return out;
      out.push(m.topic);
    }
  };
  assert.deepEqual(await collect(plus), ['w/a/c', 'w/b/c']);
  assert.deepEqual(await collect(hash), ['w/a/c', 'w/a', 'w/a/b/c', 'w/a/c/d']);
});

test('messages() ends when the client closes; break ends only that iteration', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  await client.subscribe('it/#', { qos: 1 });
  const a = client.messages('it/#');
  const other = client.messages();
  await client.publish('it/1', 'one', { qos: 1 });
  for await (const m of a) {
    assert.equal(m.topic, 'it/1');
    break;
  }
  await client.publish('it/2', 'two', { qos: 1 });
  assert.equal((await nextMessage(other))?.topic, 'it/1');
  assert.equal((await nextMessage(other))?.topic, 'it/2');
  const done = (async () => {
    const seen: string[] = [];
    for await (const m of other) seen.push(m.topic);
    return seen;
  })();
  await client.end();
  assert.deepEqual(await done, []);
  const after = client.messages();
  assert.equal((await after.next()).done, true);
});

test('messages(): messages that arrived while nothing consumed them go to the first iterator (the latest 1000), then what arrives', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  await client.subscribe('early/#', { qos: 1 });
  await client.publish('early/before', 'x', { qos: 1 });
  await delay(100);
  const it = client.messages();
  await client.publish('early/after', 'y', { qos: 1 });
  assert.equal((await nextMessage(it))?.topic, 'early/before', 'kept for the first messages() call, as docs/client.md says');
  assert.equal((await nextMessage(it))?.topic, 'early/after');
  const second = client.messages();
  await client.publish('early/later', 'z', { qos: 1 });
  assert.equal((await nextMessage(second))?.topic, 'early/later', 'a second iterator starts from its call');
});

// ------------------------------------------------------------------ ping, reconnect, offline queue

test('ping() resolves with a round trip in ms; OFFLINE while reconnecting', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url, { reconnect: { initialDelay: 2000, jitter: 0 } });
  const rtt = await client.ping();
  assert.equal(typeof rtt, 'number');
  assert.ok(rtt >= 0 && rtt < 2000);
  client.simulateNetworkFailure();
  await rejectsWith(client.ping(), (e) => {
    assert.ok(e instanceof ClientClosedError);
    assert.equal(e.code, 'OFFLINE');
    assert.equal(e.message, 'not connected');
  });
});

test('reconnect: offline, reconnect { attempt, delay } with backoff, connect again; resubscribes', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url, { reconnect: { initialDelay: 20, maxDelay: 1000, multiplier: 2, jitter: 0 } });
  await client.subscribe('rc/#', { qos: 1 });
  const events: string[] = [];
  client.on('offline', (e) => events.push(`offline:${e.code}`));
  client.on('reconnect', (r) => events.push(`reconnect:${r.attempt}:${r.delay}`));
  client.on('connect', (i) => events.push(`connect:${i.sessionPresent}`));
  client.on('error', (e) => events.push(`error:${e.code}`));
  client.simulateNetworkFailure();
  await eventually(() => client.connected, 3000, 'reconnected');
  assert.deepEqual(events, ['offline:ECONNRESET', 'error:ECONNRESET', 'reconnect:1:20', 'connect:false']);
  const it = client.messages();
  const pub = await open(t, b.url);
  await pub.publish('rc/x', 'x', { qos: 1 });
  assert.equal((await nextMessage(it))?.topic, 'rc/x', 'resubscribed after reconnect');
});

test('failed reconnect attempts back off exponentially and emit error', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url, { reconnect: { initialDelay: 20, maxDelay: 100, multiplier: 2, jitter: 0 } });
  const delays: number[] = [];
  const attempts: number[] = [];
  const errors: string[] = [];
  client.on('reconnect', (r) => {
    attempts.push(r.attempt);
    delays.push(r.delay);
  });
  client.on('error', (e) => errors.push(e.code));
  await b.close();
  await eventually(() => delays.length >= 4, 3000, 'four attempts');
  client.destroy();
  assert.deepEqual(attempts.slice(0, 4), [1, 2, 3, 4]);
  assert.deepEqual(delays.slice(0, 4), [20, 40, 80, 100]);
  assert.ok(errors.includes('ECONNREFUSED'), errors.join());
});

test('reconnect: false closes the client on a lost connection', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url, { reconnect: false });
  const events: string[] = [];
  client.on('offline', () => events.push('offline'));
  client.on('reconnect', () => events.push('reconnect'));
  client.on('close', (e) => events.push(`close:${e?.code}`));
  client.simulateNetworkFailure();
  await delay(50);
  assert.deepEqual(events, ['offline', 'close:ECONNRESET']);
  assert.equal(client.closed, true);
});

test('publishes while offline are queued and sent after reconnecting; offlineQueueMax rejects OFFLINE_QUEUE_FULL', async (t) => {
  const b = await broker(t);
  const watcher = await open(t, b.url);
  await watcher.subscribe('off/#', { qos: 1 });
  const it = watcher.messages();
  const client = await open(t, b.url, { offlineQueueMax: 2, reconnect: { initialDelay: 150, jitter: 0 } });
  client.simulateNetworkFailure();
  const p1 = client.publish('off/1', 'a', { qos: 1 });
  const p2 = client.publish('off/2', 'b', { qos: 0 });
  await rejectsWith(client.publish('off/3', 'c', { qos: 1 }), (e) => {
    assert.ok(e instanceof ClientClosedError);
    assert.equal(e.code, 'OFFLINE_QUEUE_FULL');
  });
  await p1;
  await p2;
  assert.equal((await nextMessage(it))?.topic, 'off/1');
  assert.equal((await nextMessage(it))?.topic, 'off/2');
});

test('queueWhileOffline: false rejects publishes while offline with OFFLINE', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url, { queueWhileOffline: false, reconnect: { initialDelay: 2000, jitter: 0 } });
  client.simulateNetworkFailure();
  await rejectsWith(client.publish('x', 'y'), (e) => {
    assert.ok(e instanceof ClientClosedError);
    assert.equal(e.code, 'OFFLINE');
  });
});

test('end() while waiting to reconnect closes at once; pending publishes reject CLIENT_CLOSED', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url, { reconnect: { initialDelay: 2000, jitter: 0 } });
  client.simulateNetworkFailure();
  const p = client.publish('x', 'y', { qos: 1 });
  const started = Date.now();
  await client.end();
  assert.ok(Date.now() - started < 1000);
  await rejectsWith(p, (e) => assert.equal(e.code, 'CLIENT_CLOSED'));
});

test('packetsend / packetreceive events report traffic', async (t) => {
  const b = await broker(t);
  const client = createClient(b.url, { reconnect: false });
  t.after(() => client.destroy());
  const sent: number[] = [];
  const received: number[] = [];
  client.on('packetsend', (p) => sent.push(p.type));
  client.on('packetreceive', (p) => received.push(p.type));
  await client.connect();
  await client.ping();
  await client.end();
  assert.deepEqual(sent, [1, 12, 14]);
  assert.deepEqual(received, [2, 13]);
});

// ------------------------------------------------------------------ failures with a raw server

test('no CONNACK within connectTimeout is a TimeoutError CONNECT_TIMEOUT', async (t) => {
  const port = await rawServer(t, () => {});
  const started = Date.now();
  await rejectsWith(connect(`mqtt://127.0.0.1:${port}`, { connectTimeout: 200, reconnect: false }), (e) => {
    assert.ok(e instanceof TimeoutError);
    assert.equal(e.code, 'CONNECT_TIMEOUT');
    assert.match(e.message, /^timed out waiting for CONNACK after /);
  });
  assert.ok(Date.now() - started < 1500);
});

test('an HTTP answer to CONNECT fails with PROTOCOL_ERROR naming the HTTP status line', async (t) => {
  const port = await rawServer(t, (s) => s.once('data', () => s.end('HTTP/1.1 400 Bad Request\r\n\r\n')));
  await rejectsWith(connect(`mqtt://127.0.0.1:${port}`, { reconnect: false }), (e) => {
    assert.equal(e.code, 'PROTOCOL_ERROR');
    assert.equal(e.message, 'protocol error: the server did not answer CONNECT with CONNACK: it answered in HTTP ("HTTP/1.1 400 Bad Request")');
  });
});

test('a server closing before CONNACK is a DisconnectError CONNECTION_CLOSED with a hint', async (t) => {
  const port = await rawServer(t, (s) => s.once('data', () => s.destroy()));
  await rejectsWith(connect(`mqtt://127.0.0.1:${port}`, { reconnect: false }), (e) => {
    assert.ok(e instanceof DisconnectError);
    assert.equal(e.code, 'CONNECTION_CLOSED');
    assert.equal(e.message, `connection to 127.0.0.1:${port} closed by the server before CONNACK`);
    assert.ok(e.hint);
  });
});

test('no PINGRESP within pingTimeout: offline with TimeoutError KEEPALIVE_TIMEOUT', async (t) => {
  const b = await broker(t);
  // a proxy that forwards the CONNACK, then swallows everything the broker sends
  const port = await rawServer(t, (s) => {
    const up = net.connect(b.port, '127.0.0.1');
    up.on('error', () => {});
    let first = true;
    up.on('data', (d) => {
      if (first) s.write(d);
      first = false;
    });
    s.on('data', (d) => up.write(d));
    s.on('close', () => up.destroy());
  });
  const client = await open(t, `mqtt://127.0.0.1:${port}`, { pingInterval: 100, pingTimeout: 150, reconnect: false });
  const err = await new Promise<MqttClientError>((r) => client.once('offline', r));
  assert.ok(err instanceof TimeoutError);
  assert.equal(err.code, 'KEEPALIVE_TIMEOUT');
  assert.match(err.message, /^no PINGRESP from the server within .+: connection considered dead$/);
});

test('end({ timeout }) gives up waiting for acknowledgements after timeout ms', async (t) => {
  const b = await broker(t, { authorizePublish: () => delay(3000).then(() => true) } as Partial<BrokerOptions>);
  const client = await open(t, b.url);
  const p = client.publish('slow', 'x', { qos: 1 });
  p.catch(() => {});
  const started = Date.now();
  await client.end({ timeout: 150 });
  const took = Date.now() - started;
  assert.ok(took >= 140 && took < 1500, `took ${took} ms`);
  await rejectsWith(p, (e) => assert.equal(e.code, 'CLIENT_CLOSED'));
});

test('connect(options) with host / port instead of a URL', async (t) => {
  const b = await broker(t);
  const client = await connect({ host: '127.0.0.1', port: b.port, reconnect: false });
  t.after(() => client.destroy());
  assert.equal(client.connected, true);
  await client.end();
});

// ------------------------------------------------------------------ server limits and sessions

test('CONNACK limits: Maximum QoS (0x9B), Retain Available (0x9A), Maximum Packet Size (0x95), Receive Maximum', async (t) => {
  const b = await broker(t, { maxQos: 1, retainAvailable: false, maxPacketSize: 200, receiveMaximum: 2 } as Partial<BrokerOptions>);
  const client = await open(t, b.url);
  await rejectsWith(client.publish('lim/q2', 'x', { qos: 2 }), (e) => {
    assert.ok(e instanceof ReasonCodeError);
    assert.equal(e.reasonCode, 0x9b);
  });
  await rejectsWith(client.publish('lim/r', 'x', { retain: true }), (e) => assert.equal(e.reasonCode, 0x9a));
  await rejectsWith(client.publish('lim/big', Buffer.alloc(500), { qos: 1 }), (e) => assert.equal(e.reasonCode, 0x95));
  await client.subscribe('lim/#', { qos: 1 });
  const it = client.messages();
  const ps = Array.from({ length: 20 }, (_, i) => client.publish(`lim/${i}`, String(i), { qos: 1 }));
  assert.ok(client.pending.inflight <= 2, `inflight ${client.pending.inflight}`);
  await Promise.all(ps);
  const got: string[] = [];
  for (let i = 0; i < 20; i++) got.push((await nextMessage(it))!.payload.toString());
  assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => String(i)));
});

test('reconnect with a kept session: connect event sessionPresent true, messages queued on the server arrive', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url, { clientId: 'audit-persist', clean: false, sessionExpiry: 60, reconnect: { initialDelay: 300, jitter: 0 } });
  await client.subscribe('persist/#', { qos: 1 });
  const it = client.messages();
  const infos: boolean[] = [];
  client.on('connect', (i) => infos.push(i.sessionPresent));
  client.simulateNetworkFailure();
  const pub = await open(t, b.url);
  await pub.publish('persist/x', 'while away', { qos: 1 });
  const m = await nextMessage(it, 3000);
  assert.equal(m?.payload.toString(), 'while away');
  assert.deepEqual(infos, [true]);
});

test('end() called twice concurrently resolves both; end() during the first connect rejects connect() with CLIENT_CLOSED', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  await Promise.all([client.end(), client.end()]);
  const port = await rawServer(t, () => {});
  const c2 = createClient(`mqtt://127.0.0.1:${port}`, { reconnect: false });
  const p = c2.connect();
  await delay(50);
  await c2.end();
  await rejectsWith(p, (e) => assert.equal(e.code, 'CLIENT_CLOSED'));
});

test('messages(): two next() calls pending at once both settle (async iterator contract)', async (t) => {
  const b = await broker(t);
  const client = await open(t, b.url);
  await client.subscribe('cc/#', { qos: 1 });
  const it = client.messages();
  const first = it.next();
  const second = it.next();
  await client.publish('cc/1', '1', { qos: 1 });
  await client.publish('cc/2', '2', { qos: 1 });
  const r = await Promise.race([Promise.all([first, second]), delay(1000).then(() => 'hung' as const)]);
  assert.notEqual(r, 'hung', 'a pending next() never settled');
  if (r !== 'hung') assert.deepEqual(r.map((x) => x.value?.topic), ['cc/1', 'cc/2']);
});
