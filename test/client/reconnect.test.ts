// Reconnect backoff: it starts over only after a connection proved stable, so a server that
// accepts and drops at once is not hammered; the client says once, in words, that this happens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MqttClient, type MqttClientError } from '../../src/client/index.js';
import { ReconnectBackoff, UNSTABLE_AFTER } from '../../src/client/reconnect.js';
import { eventually, startFakeServer } from './helpers.js';

const noJitter = { initialDelay: 100, maxDelay: 10_000, multiplier: 2, jitter: 0 };

test('backoff on a fake clock: connections dropped at once keep the delay growing', () => {
  const b = new ReconnectBackoff(noJitter, () => 0);
  let now = 0;
  b.connected(now, 60);
  const delays: number[] = [];
  for (let i = 0; i < 5; i++) {
    now += 20; // accepted, then dropped 20 ms later
    b.lost(now);
    const { delay } = b.next();
    delays.push(delay);
    now += delay;
    b.connected(now, 60);
  }
  assert.deepEqual(delays, [100, 200, 400, 800, 1600]);
});

test('backoff on a fake clock: a connection up longer than the next delay starts it over', () => {
  const b = new ReconnectBackoff(noJitter, () => 0);
  b.connected(0, 60);
  b.lost(10);
  assert.equal(b.next().delay, 100);
  b.connected(200, 60);
  b.lost(250);
  assert.equal(b.next().delay, 200, '50 ms up: not stable');
  b.connected(1000, 60);
  b.lost(1000 + 400); // up 400 ms, the next delay would be 400 ms: stable
  assert.deepEqual(b.next(), { attempt: 1, delay: 100 });
});

test('backoff on a fake clock: one keep-alive period up is stable even when the delay has grown longer', () => {
  const b = new ReconnectBackoff({ ...noJitter, initialDelay: 5_000, maxDelay: 60_000 }, () => 0);
  b.connected(0, 2);
  b.lost(10);
  b.next(); // 5 s
  b.next(); // a failed attempt: 10 s
  b.connected(100_000, 2);
  assert.equal(b.lost(100_000 + 2_500), 0, 'up 2.5 s with a keep alive of 2 s');
  assert.equal(b.next().delay, 5_000);
});

test('backoff on a fake clock: the short-lived connections are counted in a row, reset by a stable one', () => {
  const b = new ReconnectBackoff(noJitter, () => 0);
  let now = 0;
  const counts: number[] = [];
  for (let i = 0; i < 4; i++) {
    b.connected(now, 60);
    now += 5;
    counts.push(b.lost(now));
    now += b.next().delay;
  }
  assert.deepEqual(counts, [1, 2, 3, 4]);
  b.connected(now, 60);
  assert.equal(b.lost(now + 60_000), 0);
});

test('a server that accepts and drops the connection 20 ms later: reconnect gaps grow, and one UNSTABLE_CONNECTION warning says why', async (t) => {
  const server = await startFakeServer();
  t.after(() => server.close());
  const client = new MqttClient(server.url, { protocolVersion: '3.1.1', clientId: 'twin', reconnect: { initialDelay: 20, maxDelay: 2000, multiplier: 2, jitter: 0 }, connectTimeout: 2000 });
  t.after(() => client.destroy());
  client.on('error', () => {});
  const warnings: MqttClientError[] = [];
  client.on('warning', (w) => warnings.push(w));
  const connectedAt: number[] = [];
  client.on('connect', () => connectedAt.push(Date.now()));
  // every connection: CONNACK, then closed 20 ms later (what a 3.1.1 takeover loop looks like to the client)
  let served = 0;
  const serve = async () => {
    for (;;) {
      const conn = await server.connection(served, 10_000).catch(() => undefined);
      if (!conn) return;
      served++;
      await conn.accept();
      setTimeout(() => conn.destroy(), 20);
    }
  };
  void serve();
  await client.connect();
  await eventually(() => connectedAt.length >= 6, 8000, 'six connections');
  const gaps = connectedAt.slice(1).map((at, i) => at - connectedAt[i]!);
  // 20 ms up + 20, 40, 80, 160, 320 ms of delay; without the fix every gap is about 20 + 20 ms
  assert.ok(gaps[4]! > 250, `the delay grew: gaps ${gaps.join(', ')} ms`);
  assert.ok(gaps[4]! > 2 * gaps[1]!, `gaps ${gaps.join(', ')} ms`);
  assert.equal(warnings.length, 1, 'warned once');
  assert.equal(warnings[0]!.code, 'UNSTABLE_CONNECTION');
  assert.match(warnings[0]!.message, new RegExp(`closed the connection ${UNSTABLE_AFTER} times in a row soon after accepting it`));
  assert.match(warnings[0]!.message, /another client using Client ID "twin" may be taking the session over/);
  assert.match(warnings[0]!.hint ?? '', /its own Client ID/);
});
