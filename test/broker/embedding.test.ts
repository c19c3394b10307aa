// The embedding API and what an operator sees: events, log lines, broker.publish.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino, type Logger } from 'pino';
import { createBroker } from '../../src/server/broker.js';
import { FakeClock } from '../helpers/fake-core.js';
import { startBroker } from '../helpers/broker.js';
import { eventually } from '../helpers/wait.js';
import { RawClient } from '../helpers/raw-client.js';
import type { DisconnectPacket, PublishPacket } from '../../src/protocol/packets.js';

/** A pino logger whose JSON lines land in `lines`. */
function capture(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

describe('embedding and operations', () => {
  it('one log line per connect and per disconnect, with Client ID, version, address and the reason; no password', async (t) => {
    const { logger, lines } = capture();
    const { broker, port } = await startBroker({ logger });
    t.after(() => broker.close());
    const { client } = await RawClient.connect(port, { clientId: 'logged', protocolVersion: 5, keepAlive: 1, username: 'u', password: Buffer.from('hunter2') });
    await eventually(() => lines.some((l) => l.msg === 'client connected'), 1000, 'the connect line');
    client.destroy();
    await eventually(() => lines.some((l) => l.msg === 'client disconnected'), 1000, 'the disconnect line');
    const connected = lines.filter((l) => l.msg === 'client connected');
    const disconnected = lines.filter((l) => l.msg === 'client disconnected');
    assert.equal(connected.length, 1);
    assert.equal(disconnected.length, 1);
    assert.equal(connected[0]!.clientId, 'logged');
    assert.equal(connected[0]!.version, '5.0');
    assert.match(String(connected[0]!.address), /^127\.0\.0\.1:\d+$/);
    assert.equal(disconnected[0]!.clientId, 'logged');
    assert.equal(disconnected[0]!.version, '5.0');
    assert.match(String(disconnected[0]!.reason), /connection lost/);
    assert.ok(!JSON.stringify(lines).includes('hunter2'), 'the password never reaches the log');
  });

  it('connectionLogRate: per second, the first N connect and disconnect lines are written and the rest counted in one line', async (t) => {
    const { logger, lines } = capture();
    const clock = new FakeClock();
    const { broker, port } = await startBroker({ logger, clock, connectionLogRate: 2 });
    t.after(() => broker.close());
    const clients = [];
    for (let i = 0; i < 5; i++) clients.push((await RawClient.connect(port, { clientId: `storm-${i}` })).client);
    await eventually(() => broker.inspect.counts().connected === 5, 1000, 'five clients connected');
    const connected = () => lines.filter((l) => l.msg === 'client connected');
    assert.deepEqual(connected().map((l) => l.clientId), ['storm-0', 'storm-1']);
    assert.ok(!lines.some((l) => l.skipped !== undefined), 'no count before the second is over');
    clock.time += 1000;
    await eventually(() => lines.some((l) => l.skipped !== undefined), 1000, 'the count from the timer');
    const summary = lines.find((l) => l.skipped !== undefined)!;
    assert.equal(summary.skipped, 3);
    assert.equal(summary.connectionLogRate, 2);
    assert.equal(summary.msg, '3 "client connected" lines over connectionLogRate (2/s) not written');
    for (const c of clients) c.destroy();
    await eventually(() => broker.inspect.counts().connected === 0, 1000, 'all gone');
    await eventually(() => lines.filter((l) => l.msg === 'client disconnected').length === 2, 1000, 'two disconnect lines');
    clock.time += 1000;
    await eventually(() => lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('3 "client disconnected"')), 1000, 'the disconnect count');
    await RawClient.connect(port, { clientId: 'next-second' }).then((r) => t.after(() => r.client.destroy()));
    await eventually(() => connected().length === 3, 1000, 'a line again in the next second');
    assert.equal(connected()[2]!.clientId, 'next-second');
  });

  it('connectionLogRate 0 writes a line for every connection', async (t) => {
    const { logger, lines } = capture();
    const { broker, port } = await startBroker({ logger, clock: new FakeClock(), connectionLogRate: 0 });
    t.after(() => broker.close());
    for (let i = 0; i < 150; i++) (await RawClient.connect(port, { clientId: `all-${i}` })).client.destroy();
    await eventually(() => lines.filter((l) => l.msg === 'client connected').length === 150, 2000, '150 connect lines');
    assert.ok(!lines.some((l) => l.skipped !== undefined));
  });

  it('events: clientConnected, subscribed, published, unsubscribed, clientDisconnected (with its reason)', async (t) => {
    const { broker, port } = await startBroker();
    t.after(() => broker.close());
    const seen: string[] = [];
    broker.on('clientConnected', (c) => seen.push(`connected ${c.clientId}`));
    broker.on('subscribed', (c, subs) => seen.push(`subscribed ${c.clientId} ${subs.map((s) => `${s.topicFilter}@${s.qos}`).join(',')}`));
    broker.on('published', (m, c) => seen.push(`published ${c?.clientId} ${m.topic}`));
    broker.on('unsubscribed', (c, filters) => seen.push(`unsubscribed ${c.clientId} ${filters.join(',')}`));
    broker.on('clientDisconnected', (c, info) => seen.push(`disconnected ${c?.clientId} ${info.reason}`));
    const { client } = await RawClient.connect(port, { clientId: 'ev' });
    client.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'e/#', qos: 1 }] });
    await client.next(9);
    client.send({ type: 3, topic: 'e/1', payload: Buffer.from('x'), qos: 1, retain: false, dup: false, packetId: 2 });
    await client.next(4);
    client.send({ type: 10, packetId: 3, topicFilters: ['e/#'] });
    await client.next(11);
    client.send({ type: 14 });
    await eventually(() => seen.length === 5, 1000, 'five events');
    assert.deepEqual(seen, ['connected ev', 'subscribed ev e/#@1', 'published ev e/1', 'unsubscribed ev e/#', 'disconnected ev client disconnected']);
  });

  it('broker.disconnect: a 5.0 client gets DISCONNECT 0x98 (or the code given), a 3.1.1 client is closed, its will is published', async (t) => {
    const { broker, port } = await startBroker();
    t.after(() => broker.close());
    const { client: watcher } = await RawClient.connect(port, { clientId: 'watcher' });
    watcher.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'gone/#', qos: 0 }] });
    await watcher.next(9);
    const will = (id: string) => ({ topic: `gone/${id}`, payload: Buffer.from(id), qos: 0 as const, retain: false });
    const { client: five } = await RawClient.connect(port, { clientId: 'five', protocolVersion: 5, will: will('five') });
    const { client: four } = await RawClient.connect(port, { clientId: 'four', will: will('four') });
    assert.equal(broker.disconnect('five'), true);
    assert.equal(((await five.next(14)) as DisconnectPacket).reasonCode, 0x98);
    await five.waitClosed();
    assert.equal(broker.disconnect('four', 0x87, 'not wanted'), true);
    await four.waitClosed();
    const wills = [await watcher.next(3), await watcher.next(3)].map((p) => (p as PublishPacket).payload.toString()).sort();
    assert.deepEqual(wills, ['five', 'four']);
    assert.equal(broker.disconnect('five'), false, 'no longer connected');
  });

  it('broker.publish: the Message Expiry Interval becomes an expiry, and the topic is validated', () => {
    const clock = new FakeClock();
    const broker = createBroker({ clock, port: 0 });
    broker.publish('status/x', 'up', { retain: true, properties: { messageExpiryInterval: 10, contentType: 'text/plain' } });
    const kept = broker.inspect.retained('status/x')!;
    assert.equal(kept.expiresAt, clock.time + 10_000);
    assert.equal(kept.properties?.contentType, 'text/plain');
    assert.equal(kept.properties?.messageExpiryInterval, undefined, 'kept as expiresAt, not as a stale interval');
    clock.time += 11_000;
    assert.deepEqual(broker.inspect.retainedMatching('status/#'), []);
    assert.throws(() => broker.publish('a/+', 'x'), /invalid topic name/);
  });
});
