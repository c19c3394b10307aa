// Draining a stored offline queue: what reaches the file per delivered message. A QoS 1 message taken from
// a queue row on disk keeps that row as its record while it is in flight; a PUBACK within the deferral
// deletes just the row (in ranges per commit), a message still unacknowledged after it is written as in
// flight. At every moment the message is on disk exactly once, so nothing acknowledged to its publisher can
// be lost whenever the process dies.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import type { PublishPacket } from '../../src/protocol/packets.js';
import { DEFER_INFLIGHT_MS, ranges, type SqliteSessionStore } from '../../src/storage/sqlite-store.js';
import { RawClient } from '../helpers/raw-client.js';
import { delay } from '../helpers/wait.js';
import { brokerOn, dataDir, queuedOnDisk, rowCounts, runRows } from './helpers.js';

const session = (clientId: string) => ({ clientId, protocolVersion: 4 as const, clean: false });

/** Makes `clientId` a persistent subscriber of `filter`, offline, with `count` messages of `qos` queued. */
async function queueFor(port: number, clientId: string, filter: string, count: number, qos: 1 | 2 = 1): Promise<void> {
  const sub = (await RawClient.connect(port, session(clientId))).client;
  sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: filter, qos }] });
  await sub.next(9);
  sub.send({ type: 14 });
  await sub.waitClosed();
  const pub = (await RawClient.connect(port, { clientId: `${clientId}-pub` })).client;
  for (let i = 0; i < count; i++) pub.send({ type: 3, topic: filter, payload: Buffer.from(`m${i}`), qos, retain: false, dup: false, packetId: i + 1 });
  for (let i = 0; i < count; i++) {
    const ack = await pub.next(qos === 1 ? 4 : 5);
    if (qos === 2) {
      pub.send({ type: 6, packetId: (ack as { packetId: number }).packetId });
      await pub.next(7);
    }
  }
  pub.destroy();
}

/**
 * The queued and in-flight messages of `clientId` on disk: in flight are its in-flight rows and its queue rows
 * (or messages of runs) marked in flight (a move written after the deferral).
 */
function rowsOf(dir: string, clientId: string): { queue: number; inflight: { packet_id: number }[] } {
  const db = new Database(join(dir, 'petrel.db'), { readonly: true, fileMustExist: true });
  try {
    const queue = queuedOnDisk(dir, clientId);
    const inflight = db.prepare('SELECT packet_id FROM inflight WHERE client_id = ? UNION ALL SELECT packet_id FROM queue WHERE client_id = ? AND packet_id IS NOT NULL UNION ALL SELECT packet_id FROM queue_runs_moved WHERE client_id = ?').all(clientId, clientId, clientId) as { packet_id: number }[];
    return { queue, inflight };
  } finally {
    db.close();
  }
}

describe('storage: draining a queue', () => {
  it('ranges: sorted runs of consecutive ids', () => {
    assert.deepEqual(ranges([5, 3, 4, 9, 1, 10, 4]), [[1, 1], [3, 5], [9, 10]]);
    assert.deepEqual(ranges([]), []);
  });

  it('a drained queue acknowledged promptly writes no in-flight rows: a few range deletes per commit, and no row is left', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    const { broker, port } = await brokers.start();
    const N = 300;
    await queueFor(port, 'drainer', 'd/x', N);
    assert.equal(queuedOnDisk(dir), N);
    const stats = (broker.core.store as SqliteSessionStore).storage.stats;
    const before = { ...stats };
    const back = (await RawClient.connect(port, session('drainer'))).client;
    const seen = new Set<string>();
    while (seen.size < N) {
      const m = (await back.next(3)) as PublishPacket;
      seen.add(m.payload.toString());
      back.send({ type: 4, packetId: m.packetId! });
    }
    await back.sync();
    await delay(DEFER_INFLIGHT_MS + 100);
    const writes = stats.writes - before.writes;
    t.diagnostic(`${N} messages drained: ${writes} writes in ${stats.commits - before.commits} commits`);
    // One queue-range delete and one message-range delete per commit, at most: before, 4-6 writes per message.
    assert.ok(writes <= (stats.commits - before.commits) * 2 + 4, `${writes} writes`);
    assert.ok(writes < N / 2, `${writes} writes for ${N} messages`);
    assert.deepEqual({ ...rowCounts(dir), sessions: undefined, subscriptions: undefined }, { sessions: undefined, subscriptions: undefined, messages: 0, queue: 0, inflight: 0, incoming_qos2: 0, retained: 0 });
    assert.deepEqual(runRows(dir), { runs: 0, gone: 0, moved: 0 }, 'the runs went with their last messages, and their gone ranges with them');
    back.destroy();
  });

  it('a message taken from the queue is on disk exactly once while unacknowledged: as queued, then as in flight once the deferral ends', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    const { port } = await brokers.start();
    await queueFor(port, 'slow', 'slow/x', 1);
    const back = (await RawClient.connect(port, session('slow'))).client;
    const m = (await back.next(3)) as PublishPacket;
    // Never acknowledged: watch the rows through the deferral and after it.
    const seen = new Set<string>();
    const end = Date.now() + DEFER_INFLIGHT_MS * 3;
    while (Date.now() < end) {
      const rows = rowsOf(dir, 'slow');
      assert.equal(rows.queue + rows.inflight.length, 1, `on disk once: ${JSON.stringify(rows)}`);
      seen.add(rows.queue === 1 ? 'queued' : 'in flight');
      await delay(10);
    }
    assert.ok(seen.has('in flight'), 'written as in flight after the deferral');
    assert.deepEqual(rowsOf(dir, 'slow').inflight, [{ packet_id: m.packetId! }], 'with the packet id it was sent with');
    // Recorded by marking its queue row (the message is not written a second time).
    const db = new Database(join(dir, 'petrel.db'), { readonly: true, fileMustExist: true });
    t.after(() => db.close());
    assert.deepEqual(db.prepare('SELECT packet_id, payload FROM queue').all(), [{ packet_id: m.packetId!, payload: Buffer.from('m0') }]);
    assert.deepEqual({ inflight: rowCounts(dir).inflight, messages: rowCounts(dir).messages }, { inflight: 0, messages: 0 });
    back.destroy();
  });

  it('[MQTT-4.4.0-1] a graceful stop within the deferral writes the message as in flight: resent with DUP and the same packet id', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    let { port } = await brokers.start();
    await queueFor(port, 'stopper', 'stop/x', 3);
    const back = (await RawClient.connect(port, session('stopper'))).client;
    const first = (await back.next(3)) as PublishPacket;
    back.destroy(); // none acknowledged
    await brokers.stop();
    assert.equal(rowsOf(dir, 'stopper').inflight.length, 3);
    ({ port } = await brokers.start());
    const again = (await RawClient.connect(port, session('stopper'))).client;
    const resent = (await again.next(3)) as PublishPacket;
    assert.equal(resent.payload.toString(), first.payload.toString());
    assert.equal(resent.dup, true);
    assert.equal(resent.packetId, first.packetId);
    // Acknowledged after the restart: the queue rows that recorded them in flight go.
    again.send({ type: 4, packetId: resent.packetId! });
    for (let i = 1; i < 3; i++) {
      const p = (await again.next(3)) as PublishPacket;
      again.send({ type: 4, packetId: p.packetId! });
    }
    await again.sync();
    await delay(50);
    assert.deepEqual({ queue: rowCounts(dir).queue, inflight: rowCounts(dir).inflight, messages: rowCounts(dir).messages }, { queue: 0, inflight: 0, messages: 0 });
    assert.deepEqual(runRows(dir), { runs: 0, gone: 0, moved: 0 });
    again.destroy();
  });

  it('a QoS 2 message taken from the queue is written in flight at once: its inline queue row gives way to an inline in-flight row in one commit', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    const { port } = await brokers.start();
    await queueFor(port, 'q2', 'q2/x', 1, 2);
    const db = new Database(join(dir, 'petrel.db'), { readonly: true, fileMustExist: true });
    t.after(() => db.close());
    // Queued for one session only: held inline by its queue row.
    assert.deepEqual(db.prepare('SELECT message_id, topic FROM queue WHERE client_id = ?').all('q2'), [{ message_id: null, topic: 'q2/x' }]);
    assert.equal(rowCounts(dir).messages, 0);
    const back = (await RawClient.connect(port, session('q2'))).client;
    const m = (await back.next(3)) as PublishPacket;
    assert.equal(m.qos, 2);
    // Exactly once: the PUBLISH goes out only once it is recorded in flight, and the message is on disk once.
    assert.deepEqual(db.prepare('SELECT packet_id, message_id, topic, payload FROM inflight WHERE client_id = ?').all('q2'), [{ packet_id: m.packetId!, message_id: null, topic: 'q2/x', payload: Buffer.from('m0') }]);
    assert.equal(rowCounts(dir).messages, 0);
    assert.equal(rowsOf(dir, 'q2').queue, 0);
    back.destroy();
  });
});
