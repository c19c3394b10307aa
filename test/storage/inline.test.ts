// Schema version 3: a message whose only row at its commit is one queue or in-flight row (queued for one
// offline session, or in flight to one session: the common cases) is held inline in that row: one insert per
// message, no messages row. A message with more than one row (several sessions, or a queue and an in-flight
// window) is still stored once in `messages`, and the rows refer to it.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { encodePacket } from '../../src/protocol/encoder.js';
import type { PublishPacket } from '../../src/protocol/packets.js';
import type { SqliteSessionStore } from '../../src/storage/sqlite-store.js';
import { RawClient } from '../helpers/raw-client.js';
import { brokerOn, dataDir, queuedOnDisk, rowCounts, runRows } from './helpers.js';

const v5 = (clientId: string) => ({ clientId, protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 3600 } });

/** A persistent 5.0 session subscribed to `filter` (with Retain As Published), left offline unless `stay`. */
async function subscribe(port: number, clientId: string, filter: string, stay = false): Promise<RawClient> {
  const c = (await RawClient.connect(port, v5(clientId))).client;
  c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: filter, qos: 1, retainAsPublished: true }] });
  await c.next(9);
  if (!stay) {
    c.send({ type: 14, reasonCode: 0 });
    await c.waitClosed();
  }
  return c;
}

function readOnly(dir: string): Database.Database {
  return new Database(join(dir, 'petrel.db'), { readonly: true, fileMustExist: true });
}

describe('storage: messages inline in their queue row', () => {
  it('a burst of 200 QoS 1 messages for one offline session is written as a few queue runs (schema 4), no messages rows: a row per commit, not per message', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    const { broker, port } = await brokers.start();
    await subscribe(port, 'solo', 'solo/#');
    const stats = (broker.core.store as SqliteSessionStore).storage.stats;
    const pub = (await RawClient.connect(port, { clientId: 'solo-pub', protocolVersion: 4 })).client;
    const before = { ...stats };
    pub.sendBytes(Buffer.concat(Array.from({ length: 200 }, (_, i) => encodePacket({ type: 3, topic: 'solo/x', payload: Buffer.from(`m${i}`), qos: 1, retain: false, dup: false, packetId: i + 1 }, 4))));
    for (let i = 0; i < 200; i++) await pub.next(4);
    const writes = stats.writes - before.writes;
    const commits = stats.commits - before.commits;
    const rows = runRows(dir);
    t.diagnostic(`200 publishes: ${writes} writes in ${commits} commits, ${rows.runs} runs, ${rowCounts(dir).queue} queue rows`);
    // Version 2 wrote a messages row and a queue row per message (400 and more), version 3 a queue row each.
    assert.ok(writes <= 2 * commits, `${writes} writes`);
    assert.ok(rows.runs >= 1 && rows.runs + rowCounts(dir).queue! <= commits, `${rows.runs} runs for ${commits} commits`);
    assert.equal(rowCounts(dir).messages, 0);
    assert.equal(queuedOnDisk(dir, 'solo'), 200);
    pub.destroy();
    // And they come back from the runs, in order, after a restart.
    await brokers.stop();
    const again = await brokers.start();
    const back = (await RawClient.connect(again.port, v5('solo'))).client;
    for (let i = 0; i < 200; i++) {
      const m = (await back.next(3)) as PublishPacket;
      assert.equal(m.payload.toString(), `m${i}`);
      back.send({ type: 4, packetId: m.packetId! });
    }
    back.destroy();
  });

  it('a message for an offline session and an online one in the same turn is stored once: the queue row and the in-flight row refer to one messages row', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    const { port } = await brokers.start();
    await subscribe(port, 'away', 'both/#');
    const here = await subscribe(port, 'here', 'both/#', true);
    const pub = (await RawClient.connect(port, { clientId: 'both-pub', protocolVersion: 4 })).client;
    pub.send({ type: 3, topic: 'both/x', payload: Buffer.from('shared'), qos: 1, retain: false, dup: false, packetId: 1 });
    await pub.next(4);
    await here.next(3); // not acknowledged: it stays in flight
    const db = readOnly(dir);
    t.after(() => db.close());
    const messages = db.prepare('SELECT id, payload FROM messages').all() as { id: number; payload: Buffer }[];
    assert.equal(messages.length, 1);
    assert.equal(messages[0]!.payload.toString(), 'shared');
    assert.deepEqual(db.prepare('SELECT message_id, topic FROM queue').all(), [{ message_id: messages[0]!.id, topic: null }]);
    assert.deepEqual(db.prepare('SELECT message_id FROM inflight').all(), [{ message_id: messages[0]!.id }]);
    here.destroy();
    pub.destroy();
  });

  it('[MQTT-4.4.0-1] a message in flight to one online session only is held inline in its in-flight row, and is resent whole with DUP after a restart', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    let { port } = await brokers.start();
    const here = await subscribe(port, 'online', 'on/#', true);
    const pub = (await RawClient.connect(port, { clientId: 'on-pub', protocolVersion: 5 })).client;
    pub.send({ type: 3, topic: 'on/x', payload: Buffer.from('flying'), qos: 1, retain: false, dup: false, packetId: 1, properties: { contentType: 'text/plain' } });
    await pub.next(4);
    const first = (await here.next(3)) as PublishPacket; // never acknowledged
    const db = readOnly(dir);
    assert.deepEqual(db.prepare('SELECT packet_id, message_id, topic, payload FROM inflight').all(), [{ packet_id: first.packetId!, message_id: null, topic: 'on/x', payload: Buffer.from('flying') }]);
    assert.equal(rowCounts(dir).messages, 0);
    db.close();
    here.destroy();
    pub.destroy();
    await brokers.stop();
    ({ port } = await brokers.start());
    const back = (await RawClient.connect(port, v5('online'))).client;
    const again = (await back.next(3)) as PublishPacket;
    assert.deepEqual([again.topic, again.payload.toString(), again.dup, again.packetId, again.properties?.contentType], ['on/x', 'flying', true, first.packetId, 'text/plain']);
    back.send({ type: 4, packetId: again.packetId! });
    await back.sync();
    back.destroy();
  });

  it('after a restart an inline message comes back whole (retain flag, properties, expiry), and a messages row no row refers to is deleted beside inline rows', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    let { port } = await brokers.start();
    await subscribe(port, 'back', 'back/#');
    const pub = (await RawClient.connect(port, { clientId: 'back-pub', protocolVersion: 5 })).client;
    pub.send({ type: 3, topic: 'back/r', payload: Buffer.from('kept'), qos: 1, retain: true, dup: false, packetId: 1, properties: { messageExpiryInterval: 3600, contentType: 'text/plain', correlationData: Buffer.from([9, 8]), userProperties: [['k', 'v']] } });
    await pub.next(4);
    pub.destroy();
    await brokers.stop();
    // Garbage a failed write can leave: a messages row no queue or in-flight row refers to.
    const db = new Database(join(dir, 'petrel.db'));
    db.prepare("INSERT INTO messages (id, topic, payload, qos, retain) VALUES (99, 'lost/x', x'00', 1, 0)").run();
    db.close();

    ({ port } = await brokers.start());
    assert.equal(rowCounts(dir).messages, 0, 'the unreferenced messages row is gone (NOT IN with inline rows, whose message_id is NULL)');
    const c = (await RawClient.connect(port, v5('back'))).client;
    const m = (await c.next(3)) as PublishPacket;
    assert.equal(m.topic, 'back/r');
    assert.equal(m.payload.toString(), 'kept');
    assert.equal(m.retain, true, 'Retain As Published: the flag it was published with');
    assert.equal(m.properties?.contentType, 'text/plain');
    assert.deepEqual(m.properties?.correlationData, Buffer.from([9, 8]));
    assert.deepEqual(m.properties?.userProperties, [['k', 'v']]);
    const expiry = m.properties?.messageExpiryInterval ?? 0;
    assert.ok(expiry > 3500 && expiry <= 3600, `expiry ${expiry}`);
    c.destroy();
  });
});
