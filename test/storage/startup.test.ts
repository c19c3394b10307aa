// Start-up on a data file: retained messages come back as topics, their payloads read when first asked for;
// sessions are read table by table side by side in SQLite's order of client ids, so every session gets its
// own subscriptions, queue and in-flight messages back whatever characters its client id holds.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import type { PublishPacket } from '../../src/protocol/packets.js';
import { compareText } from '../../src/storage/sqlite-store.js';
import { RawClient } from '../helpers/raw-client.js';
import { brokerOn, dataDir } from './helpers.js';

describe('storage: start-up', () => {
  it('retained messages are loaded as topics; a payload is read from the file when a subscription first matches it, then kept', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    let { port } = await brokers.start();
    const pub = (await RawClient.connect(port, { clientId: 'p', protocolVersion: 5 })).client;
    for (let i = 0; i < 20; i++) {
      pub.send({ type: 3, topic: `lazy/${i}`, payload: Buffer.from(`v${i}`), qos: 1, retain: true, dup: false, packetId: i + 1, properties: { contentType: `type/${i}`, userProperties: [['i', String(i)]] } });
      await pub.next(4);
    }
    pub.destroy();
    await brokers.stop();
    ({ port } = await brokers.start());
    // Seen from outside: rows changed in the file after start-up (never do this to a live broker) show
    // what the broker reads on demand, and what it had read before.
    const file = new Database(join(dir, 'petrel.db'));
    t.after(() => file.close());
    const setPayload = (topic: string, text: string) => file.prepare('UPDATE retained SET payload = ? WHERE topic = ?').run(Buffer.from(text), topic);
    setPayload('lazy/7', 'read on demand');
    const retainedOf = async (filter: string, count: number): Promise<Map<string, PublishPacket>> => {
      const c = (await RawClient.connect(port, { clientId: `r-${filter}`, protocolVersion: 5 })).client;
      c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: filter, qos: 1 }] });
      await c.next(9);
      const got = new Map<string, PublishPacket>();
      while (got.size < count) {
        const m = (await c.next(3)) as PublishPacket;
        got.set(m.topic, m);
        c.send({ type: 4, packetId: m.packetId! });
      }
      c.destroy();
      return got;
    };
    const one = (await retainedOf('lazy/7', 1)).get('lazy/7')!;
    assert.equal(one.payload.toString(), 'read on demand', 'not loaded at start: read when first matched');
    assert.equal(one.properties?.contentType, 'type/7');
    assert.deepEqual(one.properties?.userProperties, [['i', '7']]);
    assert.equal(one.retain, true);
    setPayload('lazy/7', 'changed again');
    const all = await retainedOf('lazy/#', 20);
    assert.equal(all.get('lazy/7')!.payload.toString(), 'read on demand', 'read once, then kept in memory');
    for (let i = 0; i < 20; i++) if (i !== 7) assert.equal(all.get(`lazy/${i}`)!.payload.toString(), `v${i}`);
    // A topic cleared after start-up is gone, and never read from the file again.
    const p2 = (await RawClient.connect(port, { clientId: 'p2' })).client;
    p2.send({ type: 3, topic: 'lazy/3', payload: Buffer.alloc(0), qos: 1, retain: true, dup: false, packetId: 1 });
    await p2.next(4);
    p2.destroy();
    assert.equal((await retainedOf('lazy/#', 19)).has('lazy/3'), false);
  });

  it('compareText orders strings as SQLite does (UTF-8 bytes), not as UTF-16 units', () => {
    const db = new Database(':memory:');
    const words = ['a', 'b', '\u{1F600}', '\uFFFD', '\uE000', 'z\u{10000}', 'z\uFFFF', '', 'ab', 'a\u{1F600}b', '\u00e9', 'Z'];
    const sqlite = (db.prepare('SELECT value FROM json_each(?) ORDER BY value').all(JSON.stringify(words)) as { value: string }[]).map((r) => r.value);
    db.close();
    assert.deepEqual([...words].sort(compareText), sqlite);
    // JavaScript's own order differs for these: the point of compareText.
    assert.notDeepEqual([...words].sort(), sqlite);
  });

  it('sessions whose client ids sort differently in UTF-16 and UTF-8 each get their own subscriptions and queues back', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    let { port } = await brokers.start();
    const ids = ['dev-\u{1F600}', 'dev-\uFFFD', 'dev-\uE000', 'dev-a', 'dev-\u00e9', 'dev-\u{10000}'];
    for (const [i, id] of ids.entries()) {
      const c = (await RawClient.connect(port, { clientId: id, clean: false })).client;
      c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: `to/${i}`, qos: 1 }] });
      await c.next(9);
      c.send({ type: 14 });
      await c.waitClosed();
    }
    const pub = (await RawClient.connect(port, { clientId: 'p' })).client;
    // dev-\uFFFD (1) gets nothing queued: the queue's next row then belongs to a session that SQLite sorts
    // after it but UTF-16 before it (dev-\u{10000}), which must not be skipped as an orphan.
    for (const [i] of ids.entries()) {
      if (i === 1) continue;
      pub.send({ type: 3, topic: `to/${i}`, payload: Buffer.from(`for ${i}`), qos: 1, retain: false, dup: false, packetId: i + 1 });
      await pub.next(4);
    }
    pub.destroy();
    await brokers.stop();
    // Orphan rows (of no session) between them must not be taken for anyone's.
    const db = new Database(join(dir, 'petrel.db'));
    db.prepare('INSERT INTO subscriptions VALUES (?, ?, ?)').run('dev-b', 'to/x', JSON.stringify({ clientId: 'dev-b', filter: 'to/x', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 }));
    db.close();
    ({ port } = await brokers.start());
    for (const [i, id] of ids.entries()) {
      const back = await RawClient.connect(port, { clientId: id, clean: false });
      assert.equal(back.connack.sessionPresent, true, id);
      if (i !== 1) {
        const m = (await back.client.next(3)) as PublishPacket;
        assert.equal(m.payload.toString(), `for ${i}`, `${id} gets its own queued message`);
        back.client.send({ type: 4, packetId: m.packetId! });
      }
      // Its subscription is its own: a new message on its topic reaches it.
      const p = (await RawClient.connect(port, { clientId: `p-${i}` })).client;
      p.send({ type: 3, topic: `to/${i}`, payload: Buffer.from('live'), qos: 1, retain: false, dup: false, packetId: 1 });
      await p.next(4);
      assert.equal(((await back.client.next(3)) as PublishPacket).payload.toString(), 'live');
      const stray = await back.client.collect(30, 3);
      assert.equal(stray.length, 0, `${id} gets nothing of another session`);
      p.destroy();
      back.client.destroy();
    }
  });
});
