// Slow consumers: one subscriber that stops reading must not slow the others nor grow the broker's memory.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { startBroker } from '../helpers/broker.js';
import { eventually } from '../helpers/wait.js';
import { RawClient } from '../helpers/raw-client.js';

/** A client subscribed to `topic` at QoS 1 that has stopped reading (its socket is paused). */
async function stalledQos1Subscriber(t: TestContext, port: number, clientId: string, topic: string, clean = true): Promise<RawClient> {
  const client = (await RawClient.connect(port, { clientId, clean })).client;
  t.after(() => client.destroy());
  client.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: topic, qos: 1 }] });
  await client.next(9);
  client.socket.pause();
  return client;
}

/** `count` QoS 1 PUBLISHes to `topic` from a new client, yielding every 200; resolves once the broker has routed them all. */
async function publishQos1(t: TestContext, port: number, topic: string, count: number, payloadOf: (i: number) => Buffer): Promise<void> {
  const publisher = (await RawClient.connect(port, { clientId: 'pub' })).client;
  t.after(() => publisher.destroy());
  for (let i = 0; i < count; i++) {
    publisher.send({ type: 3, topic, payload: payloadOf(i), qos: 1, retain: false, dup: false, packetId: (i % 65535) + 1 });
    if (i % 200 === 199) await new Promise((r) => setImmediate(r));
  }
  await publisher.sync();
}

// Both TCP socket layers (libuv handles, and node:net as TLS and the fallbacks use it): each reports its own
// backlog through bufferedBytes().
for (const directSockets of [true, false]) {
  const listeners = [{ type: 'tcp' as const, host: '127.0.0.1', port: 0, directSockets }];
  describe(`slow consumers (${directSockets ? 'direct handles' : 'node:net'})`, () => {
    it('a stalled QoS 0 subscriber loses messages (counted), others get all of them, its buffer stays bounded, and it is cut after slowConsumerTimeout', async (t) => {
      const maxOutputBuffer = 64 * 1024;
      const { broker, port } = await startBroker({ listeners, maxOutputBuffer, slowConsumerTimeout: 1500 });
      t.after(() => broker.close());
      const stalled = (await RawClient.connect(port, { clientId: 'stalled' })).client;
      const healthy = (await RawClient.connect(port, { clientId: 'healthy' })).client;
      t.after(() => {
        stalled.destroy();
        healthy.destroy();
      });
      for (const c of [stalled, healthy]) {
        c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'flood', qos: 0 }] });
        await c.next(9);
      }
      stalled.socket.pause(); // stops reading: the kernel buffers fill, then the broker's
      let received = 0;
      healthy.socket.on('data', () => {
        received = healthy.packets.length;
      });
      const publisher = (await RawClient.connect(port, { clientId: 'pub' })).client;
      t.after(() => publisher.destroy());
      const payload = Buffer.alloc(1024, 0x61);
      const total = 20_000;
      let maxBuffered = 0;
      for (let i = 0; i < total; i++) {
        publisher.send({ type: 3, topic: 'flood', payload, qos: 0, retain: false, dup: false });
        if (i % 500 === 499) {
          await new Promise((r) => setImmediate(r));
          maxBuffered = Math.max(maxBuffered, broker.inspect.connection('stalled')?.bufferedBytes ?? 0);
        }
      }
      await eventually(() => healthy.packets.length >= total, 10_000, `healthy subscriber to get ${total} (has ${received})`);
      assert.equal(healthy.packets.length, total, 'the healthy subscriber got every message');
      assert.ok(broker.inspect.counts().droppedMessages > 0, 'messages to the stalled subscriber were dropped and counted');
      // One chunk of writes may go over the mark before it is noticed.
      assert.ok(maxBuffered <= maxOutputBuffer + 256 * 1024, `stalled output stayed bounded (max ${maxBuffered} B)`);
      await eventually(() => !broker.inspect.isConnected('stalled'), 5000, 'the stalled client to be disconnected');
    });

    it('a QoS 1 subscriber that stalls and then reads again gets every message, in order, once its backlog drains', async (t) => {
      // The kernel takes a few MB before the broker's writes to the stalled socket wait; past 1 MB of those
      // the broker queues. On reading again, the waiting writes finish and the queue drains after them.
      const { broker, port } = await startBroker({ listeners, maxOutputBuffer: 1024 * 1024, maxQueuedMessages: 10_000, slowConsumerTimeout: 0 });
      t.after(() => broker.close());
      const sub = await stalledQos1Subscriber(t, port, 'resumer', 'r');
      const total = 3000;
      await publishQos1(t, port, 'r', total, (i) => {
        const payload = Buffer.alloc(8192, 0x63);
        payload.writeUInt32BE(i, 0);
        return payload;
      });
      // The broker's writes to the stalled socket went asynchronous: its backlog is over the mark.
      assert.ok((broker.inspect.connection('resumer')?.bufferedBytes ?? 0) > 0, 'writes are waiting on the socket');
      assert.ok(broker.inspect.session('resumer')!.queued > 0, 'and messages in the session queue');
      sub.socket.resume();
      const seen: number[] = [];
      while (seen.length < total) {
        const p = (await sub.next(3, 10_000)) as { packetId: number; payload: Buffer };
        seen.push(p.payload.readUInt32BE(0));
        sub.send({ type: 4, packetId: p.packetId });
      }
      assert.deepEqual(seen, Array.from({ length: total }, (_, i) => i), 'all of them, in order');
      assert.equal(broker.inspect.session('resumer')!.dropped, 0);
      await eventually(() => (broker.inspect.connection('resumer')?.bufferedBytes ?? 0) === 0, 5000, 'the backlog to drain');
    });

    it('one message bigger than the socket takes leaves a stalled subscriber over the mark: it is cut after slowConsumerTimeout', async (t) => {
      // Nothing more is routed to it after this message, so only its output's backlog can say it is stalled.
      const size = 24 * 1024 * 1024;
      const { broker, port } = await startBroker({ listeners, maxOutputBuffer: 1024 * 1024, slowConsumerTimeout: 300, maxPacketSize: size + 1024 });
      t.after(() => broker.close());
      const stalled = (await RawClient.connect(port, { clientId: 'stalled' })).client;
      t.after(() => stalled.destroy());
      stalled.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'big', qos: 0 }] });
      await stalled.next(9);
      stalled.socket.pause();
      const publisher = (await RawClient.connect(port, { clientId: 'pub' })).client;
      t.after(() => publisher.destroy());
      publisher.send({ type: 3, topic: 'big', payload: Buffer.alloc(size, 0x63), qos: 0, retain: false, dup: false });
      await eventually(() => (broker.inspect.connection('stalled')?.bufferedBytes ?? 0) > 1024 * 1024, 5000, 'the message to back up in the broker');
      await eventually(() => !broker.inspect.isConnected('stalled'), 5000, 'the stalled client to be disconnected');
      assert.equal(broker.inspect.counts().droppedMessages, 0, 'nothing was dropped: the one message was written');
    });

    it('QoS 1 to a stalled subscriber waits in its session queue, bounded by maxQueuedMessages', async (t) => {
      const { broker, port } = await startBroker({ listeners, maxOutputBuffer: 16 * 1024, maxQueuedMessages: 100, slowConsumerTimeout: 0 });
      t.after(() => broker.close());
      await stalledQos1Subscriber(t, port, 'stalled', 'q1', false);
      const payload = Buffer.alloc(2048, 0x62);
      await publishQos1(t, port, 'q1', 5000, () => payload); // resolves once the broker has routed all 5000
      const session = broker.inspect.session('stalled')!;
      // Each message is in flight (written to a socket the client does not read), queued, or dropped and
      // counted. The queue is not necessarily full now: when the socket's buffer drains into the kernel's,
      // queued messages move into the in-flight window.
      assert.equal(session.inflight + session.queued + session.dropped, 5000, 'every message accounted for');
      assert.ok(session.queued <= 100, `queue ${session.queued} within maxQueuedMessages`);
      assert.ok(session.dropped >= 5000 - 100 - session.inflight && session.dropped > 0, 'the overflow was counted');
      assert.ok(broker.inspect.isConnected('stalled'), 'slowConsumerTimeout 0 never disconnects');
    });
  });
}
