// Schema 4: messages queued for one session in one commit group go in one queue_runs row. A message leaving a
// run that still holds others is recorded as a gone range; the run and its ranges go with its last message.
// What comes back after a restart is exactly what was not acknowledged, in order.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { PublishPacket } from '../../src/protocol/packets.js';
import { RawClient } from '../helpers/raw-client.js';
import { delay } from '../helpers/wait.js';
import { brokerOn, dataDir, queuedOnDisk, rowCounts, runRows } from './helpers.js';

const v5 = (clientId: string, receiveMaximum?: number) => ({ clientId, protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600, ...(receiveMaximum === undefined ? {} : { receiveMaximum }) } });

/** `clientId` subscribed to `filter` and offline, with `count` QoS 1 messages queued in one burst (one commit). */
async function burstFor(port: number, clientId: string, filter: string, count: number): Promise<void> {
  const sub = (await RawClient.connect(port, v5(clientId))).client;
  sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: filter, qos: 1 }] });
  await sub.next(9);
  sub.send({ type: 14, reasonCode: 0 });
  await sub.waitClosed();
  const pub = (await RawClient.connect(port, { clientId: `${clientId}-pub`, protocolVersion: 4 })).client;
  pub.sendBytes(Buffer.concat(Array.from({ length: count }, (_, i) => encodePacket({ type: 3, topic: filter, payload: Buffer.from(`m${i}`), qos: 1, retain: false, dup: false, packetId: i + 1 }, 4))));
  for (let i = 0; i < count; i++) await pub.next(4);
  pub.destroy();
}

describe('storage: queue runs', () => {
  it('a run partly drained: the acknowledged messages are gone ranges; after a restart exactly the others come back, in order, the unacknowledged in flight with DUP', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    let { port } = await brokers.start();
    await burstFor(port, 'part', 'part/x', 40);
    assert.equal(runRows(dir).runs, 1, 'one burst, one run');
    // Five in flight at a time; twelve acknowledged.
    const back = (await RawClient.connect(port, v5('part', 5))).client;
    for (let i = 0; i < 12; i++) {
      const m = (await back.next(3)) as PublishPacket;
      assert.equal(m.payload.toString(), `m${i}`);
      back.send({ type: 4, packetId: m.packetId! });
    }
    const unacked: PublishPacket[] = [];
    for (let i = 0; i < 5; i++) unacked.push((await back.next(3)) as PublishPacket);
    await back.sync();
    await delay(50);
    assert.ok(runRows(dir).gone >= 1, 'the acknowledged ones recorded as gone from the run');
    assert.equal(queuedOnDisk(dir, 'part'), 28, 'the run still holds the 28 not acknowledged (5 of them in flight, recorded by it)');
    back.destroy();
    await brokers.stop();
    // A graceful stop marks the five in flight (small queue_runs_moved rows: the run still holds them).
    assert.equal(runRows(dir).moved, 5);
    assert.equal(rowCounts(dir).inflight, 0);
    assert.equal(queuedOnDisk(dir, 'part'), 23);

    ({ port } = await brokers.start());
    const again = (await RawClient.connect(port, v5('part'))).client;
    const got: string[] = [];
    for (let i = 0; i < 28; i++) {
      const m = (await again.next(3)) as PublishPacket;
      got.push(m.payload.toString());
      if (i < 5) {
        assert.equal(m.dup, true, '[MQTT-4.4.0-1] resent with DUP');
        assert.equal(m.packetId, unacked[i]!.packetId);
      }
      again.send({ type: 4, packetId: m.packetId! });
    }
    assert.deepEqual(got, Array.from({ length: 28 }, (_, i) => `m${i + 12}`));
    assert.deepEqual(await again.collect(100), [], 'nothing more: no message twice');
    await again.sync();
    await delay(50);
    assert.deepEqual(runRows(dir), { runs: 0, gone: 0, moved: 0 }, 'the run, its ranges and its marks went with its last message');
    assert.equal(queuedOnDisk(dir), 0);
    assert.equal(rowCounts(dir).inflight, 0);
    again.destroy();
  });

  it('a message of a run still unacknowledged after the deferral is marked in flight (the message not written again): on disk once all along', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    const { port } = await brokers.start();
    await burstFor(port, 'late', 'late/x', 3);
    assert.equal(runRows(dir).runs, 1);
    const back = (await RawClient.connect(port, v5('late', 1))).client;
    const m = (await back.next(3)) as PublishPacket;
    // Never acknowledged: after the deferral (1 s) it is marked in flight; the run holds it and the other two.
    const end = Date.now() + 2500;
    let marked = 0;
    while (Date.now() < end) {
      const queued = queuedOnDisk(dir, 'late');
      marked = runRows(dir).moved;
      assert.equal(queued + marked + rowCounts(dir).inflight!, 3, `each message on disk once: ${queued} queued, ${marked} marked in flight`);
      await delay(20);
    }
    assert.equal(marked, 1, 'marked in flight after the deferral');
    assert.equal(rowCounts(dir).inflight, 0, 'no in-flight row: the message is not written again');
    back.send({ type: 4, packetId: m.packetId! });
    for (let i = 1; i < 3; i++) {
      const next = (await back.next(3)) as PublishPacket;
      assert.equal(next.payload.toString(), `m${i}`);
      back.send({ type: 4, packetId: next.packetId! });
    }
    await back.sync();
    await delay(50);
    assert.deepEqual({ runs: runRows(dir), inflight: rowCounts(dir).inflight, queue: rowCounts(dir).queue }, { runs: { runs: 0, gone: 0, moved: 0 }, inflight: 0, queue: 0 });
    back.destroy();
  });

  it('a burst with a message that cannot go in a run (5.0 properties) is a run, a queue row and a run, read back in order after a restart', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    let { port } = await brokers.start();
    const sub = (await RawClient.connect(port, v5('mixed'))).client;
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'mix/#', qos: 1 }] });
    await sub.next(9);
    sub.send({ type: 14, reasonCode: 0 });
    await sub.waitClosed();
    const pub = (await RawClient.connect(port, { clientId: 'mixed-pub', protocolVersion: 5 })).client;
    const publish = (i: number) => encodePacket({ type: 3, topic: 'mix/x', payload: Buffer.from(`m${i}`), qos: 1, retain: false, dup: false, packetId: i + 1, properties: i === 2 ? { userProperties: [['k', 'v']] } : {} }, 5);
    pub.sendBytes(Buffer.concat([0, 1, 2, 3, 4].map(publish)));
    for (let i = 0; i < 5; i++) await pub.next(4);
    pub.destroy();
    assert.deepEqual(runRows(dir), { runs: 2, gone: 0, moved: 0 }, 'm0-m1 and m3-m4');
    assert.equal(rowCounts(dir).queue, 1, 'm2, with its user property, in a queue row of its own');
    await brokers.stop();
    ({ port } = await brokers.start());
    const back = (await RawClient.connect(port, v5('mixed'))).client;
    const got: string[] = [];
    for (let i = 0; i < 5; i++) {
      const m = (await back.next(3)) as PublishPacket;
      got.push(m.payload.toString());
      if (i === 2) assert.deepEqual(m.properties?.userProperties, [['k', 'v']]);
      back.send({ type: 4, packetId: m.packetId! });
    }
    assert.deepEqual(got, ['m0', 'm1', 'm2', 'm3', 'm4']);
    back.destroy();
  });
});
