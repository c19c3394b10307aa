// Chaos: subscribers that stop reading, beside clients that keep working. One stops in the middle of a large
// PUBLISH (it read the first bytes of the packet, then nothing), one stops reading its socket entirely while
// subscribed at QoS 1 to a busy topic. Meanwhile a normal pair exchanges QoS 1 messages: every one of them
// arrives, the broker's output for each slow client stays bounded (maxOutputBuffer plus the packet being
// written), and the slow clients are disconnected after slowConsumerTimeout (small here, so the test is short).
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import type { Broker } from '../../src/server/broker.js';
import type { PublishPacket, SubackPacket } from '../../src/protocol/packets.js';
import { eventually, startBroker } from '../helpers/broker.js';
import { pub } from '../helpers/packets.js';
import { RawClient } from '../helpers/raw-client.js';

const MAX_OUTPUT = 64 * 1024;

async function connected(port: number, clientId: string): Promise<RawClient> {
  const { client, connack } = await RawClient.connect(port, { clientId });
  assert.equal(connack.reasonCode, 0, `CONNACK for ${clientId}`);
  return client;
}

async function subscribe(client: RawClient, topicFilter: string, qos: 0 | 1): Promise<void> {
  client.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter, qos }] });
  assert.deepEqual(((await client.next(9)) as SubackPacket).reasonCodes, [qos]);
}

/** A normal publisher and subscriber exchanging `count` QoS 1 messages one at a time; resolves with how many arrived. */
async function normalTraffic(port: number, count: number, tag: string): Promise<number> {
  const sub = await connected(port, `${tag}-normal-sub`);
  const pubber = await connected(port, `${tag}-normal-pub`);
  try {
    await subscribe(sub, `normal/${tag}`, 1);
    let arrived = 0;
    for (let i = 0; i < count; i++) {
      pubber.send(pub(`normal/${tag}`, `n${i}`, { qos: 1, packetId: (i % 60_000) + 1 }));
      await pubber.next(4, 10_000);
      const p = (await sub.next(3, 10_000)) as PublishPacket;
      assert.equal(p.payload.toString(), `n${i}`);
      sub.send({ type: 4, packetId: p.packetId! });
      arrived++;
    }
    return arrived;
  } finally {
    sub.destroy();
    pubber.destroy();
  }
}

/** Samples the broker's output buffer for `clientId` at every turn of the event loop until `stop`. */
function watchOutput(broker: Broker, clientId: string): { max: number; maxQueued: number; stop(): void } {
  const watch = { max: 0, maxQueued: 0, stopped: false, stop: () => void (watch.stopped = true) };
  const sample = () => {
    if (watch.stopped) return;
    watch.max = Math.max(watch.max, broker.inspect.connection(clientId)?.bufferedBytes ?? 0);
    watch.maxQueued = Math.max(watch.maxQueued, broker.inspect.session(clientId)?.queued ?? 0);
    setImmediate(sample);
  };
  sample();
  return watch;
}

describe('chaos: clients that stop reading', () => {
  it('a subscriber that stops in the middle of a large PUBLISH: output bounded, others unaffected, cut after slowConsumerTimeout', async (t) => {
    const { broker, port } = await startBroker({ maxOutputBuffer: MAX_OUTPUT, slowConsumerTimeout: 500 });
    t.after(() => broker.close());
    const reasons = new Map<string, string>();
    broker.on('clientDisconnected', (c, info) => c && reasons.set(c.clientId, info.reason));

    const slow = await connected(port, 'slow-mid-publish');
    t.after(() => slow.destroy());
    await subscribe(slow, 'big/#', 0);
    // Reads the first chunk of the first PUBLISH, then nothing more: the kernel's buffers fill, then the broker's.
    let readBytes = 0;
    slow.socket.removeAllListeners('data');
    slow.socket.on('data', (chunk: Buffer) => {
      readBytes += chunk.length;
      slow.socket.pause();
    });

    const flooder = await connected(port, 'big-flooder');
    t.after(() => flooder.destroy());
    const big = Buffer.alloc(256 * 1024, 0x62);
    const watch = watchOutput(broker, 'slow-mid-publish');
    const normal = normalTraffic(port, 200, 'mid');
    for (let i = 0; i < 60; i++) {
      flooder.send(pub('big/blob', '', { payload: big }));
      await new Promise((r) => setImmediate(r));
    }
    await flooder.sync();
    assert.equal(await normal, 200, 'every QoS 1 message of the normal pair arrived');
    await eventually(() => !broker.inspect.isConnected('slow-mid-publish'), 5000, 'the slow reader to be disconnected');
    watch.stop();

    t.diagnostic(`read ${readBytes} bytes; output max ${watch.max} bytes`);
    assert.ok(readBytes > 0 && readBytes < big.length, `stopped in the middle of a PUBLISH (read ${readBytes} bytes)`);
    assert.match(reasons.get('slow-mid-publish') ?? '', /slow consumer/);
    assert.ok(watch.max > MAX_OUTPUT, 'the output did fill up to the mark (the sampling sees it)');
    assert.ok(watch.max <= MAX_OUTPUT + big.length + 64, `output held at most the mark plus one packet (max ${watch.max} bytes)`);
    assert.ok(broker.inspect.counts().droppedMessages > 0, 'QoS 0 over the mark was dropped, not buffered');
    assert.ok(broker.inspect.isConnected('big-flooder'), 'the publisher is not punished for the slow reader');
  });

  it('a QoS 1 subscriber that never reads a busy topic: queued in its session within limits, others unaffected, cut after slowConsumerTimeout', async (t) => {
    const { broker, port } = await startBroker({ maxOutputBuffer: MAX_OUTPUT, slowConsumerTimeout: 500, maxQueuedMessages: 1000 });
    t.after(() => broker.close());
    const reasons = new Map<string, string>();
    broker.on('clientDisconnected', (c, info) => c && reasons.set(c.clientId, info.reason));

    const stalled = await connected(port, 'never-reads');
    t.after(() => stalled.destroy());
    await subscribe(stalled, 'busy/#', 1);
    stalled.socket.pause();

    const flooder = await connected(port, 'busy-flooder');
    t.after(() => flooder.destroy());
    const payload = Buffer.alloc(1024, 0x61);
    const watch = watchOutput(broker, 'never-reads');
    const normal = normalTraffic(port, 200, 'busy');
    for (let i = 0; i < 10_000; i++) {
      flooder.send(pub('busy/topic', '', { payload, qos: 1, packetId: (i % 60_000) + 1 }));
      if (i % 200 === 199) await new Promise((r) => setImmediate(r));
    }
    await flooder.sync();
    assert.equal(await normal, 200, 'every QoS 1 message of the normal pair arrived');
    await eventually(() => !broker.inspect.isConnected('never-reads'), 5000, 'the stalled reader to be disconnected');
    watch.stop();

    const maxQueued = watch.maxQueued;
    t.diagnostic(`output max ${watch.max} bytes; queue max ${maxQueued}`);
    assert.match(reasons.get('never-reads') ?? '', /slow consumer/);
    assert.ok(watch.max > MAX_OUTPUT, 'the output did fill up to the mark (the sampling sees it)');
    assert.ok(watch.max <= MAX_OUTPUT + 2 * 1024, `output held at most the mark plus one packet (max ${watch.max} bytes)`);
    assert.ok(maxQueued > 0 && maxQueued <= 1000, `the backlog waited in the session queue, within maxQueuedMessages (max ${maxQueued})`);
    assert.ok(broker.inspect.isConnected('busy-flooder'));
    await eventually(() => broker.inspect.counts().connections === 1, 3000, 'only the flooder left connected');
  });
});
