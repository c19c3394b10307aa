// What docs/storage.md tells operators to do, done: an online backup of a running broker's file with the
// sqlite3 command (and with better-sqlite3), restored into a new data directory, gives the sessions, queues
// and retained messages back; the inspection queries of the docs run against a live file.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import Database from 'better-sqlite3';
import type { PublishPacket } from '../../src/protocol/packets.js';
import { RawClient } from '../helpers/raw-client.js';
import { describeOrSkip } from '../helpers/skip.js';
import { brokerOn, dataDir } from './helpers.js';

const SQLITE3 = spawnSync('sqlite3', ['-version'], { encoding: 'utf8' }).status === 0 ? 'sqlite3' : undefined;

/** A running broker with a persistent session holding a queued message, and a retained message. */
async function populated(t: Parameters<typeof dataDir>[0], dir: string) {
  const brokers = brokerOn(t, dir);
  const { port } = await brokers.start();
  const sub = (await RawClient.connect(port, { clientId: 'kept', clean: false })).client;
  sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'ops/#', qos: 1 }] });
  await sub.next(9);
  sub.destroy();
  await sub.waitClosed();
  const pub = (await RawClient.connect(port, { clientId: 'p' })).client;
  pub.send({ type: 3, topic: 'ops/q', payload: Buffer.from('queued'), qos: 1, retain: false, dup: false, packetId: 1 });
  await pub.next(4);
  pub.send({ type: 3, topic: 'ops/r', payload: Buffer.from('retained'), qos: 1, retain: true, dup: false, packetId: 2 });
  await pub.next(4);
  pub.destroy();
  return brokers;
}

/** Starts a broker on a directory holding `copy` as its petrel.db; the session and the retained message are there. */
async function restoredFrom(t: Parameters<typeof dataDir>[0], copy: string): Promise<void> {
  const dir = dataDir(t);
  copyFileSync(copy, join(dir, 'petrel.db'));
  const brokers = brokerOn(t, dir);
  const { port } = await brokers.start();
  const back = await RawClient.connect(port, { clientId: 'kept', clean: false });
  assert.equal(back.connack.sessionPresent, true);
  const got = new Map<string, string>();
  while (got.size < 2) {
    const m = (await back.client.next(3)) as PublishPacket;
    got.set(m.topic, m.payload.toString());
    if (m.qos > 0) back.client.send({ type: 4, packetId: m.packetId! });
  }
  back.client.destroy();
  // The queued message, and the retained one it was queued too (the subscription matched it when published).
  assert.deepEqual(Object.fromEntries(got), { 'ops/q': 'queued', 'ops/r': 'retained' });
  const reader = (await RawClient.connect(port, { clientId: 'reader' })).client;
  reader.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'ops/r', qos: 0 }] });
  await reader.next(9);
  assert.equal(((await reader.next(3)) as PublishPacket).payload.toString(), 'retained');
  reader.destroy();
  await brokers.stop();
}

describeOrSkip('storage: operations (docs/storage.md)', !SQLITE3 && 'the sqlite3 command is not installed (apt-get install sqlite3)', () => {
  it('sqlite3 ".backup" of a running broker restores into a working data directory', async (t) => {
    const dir = dataDir(t);
    await populated(t, dir);
    const copy = join(dataDir(t), 'backup.db');
    const r = spawnSync(SQLITE3!, [join(dir, 'petrel.db'), `.backup ${copy}`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    await restoredFrom(t, copy);
  });

  it("better-sqlite3's backup() from a read-only connection does too", async (t) => {
    const dir = dataDir(t);
    await populated(t, dir);
    const copy = join(dataDir(t), 'backup.db');
    const db = new Database(join(dir, 'petrel.db'), { readonly: true });
    await db.backup(copy);
    db.close();
    await restoredFrom(t, copy);
  });

  it('the inspection queries of the docs run on a live file with sqlite3 -readonly', async (t) => {
    const dir = dataDir(t);
    await populated(t, dir);
    const query = (sql: string) => {
      const r = spawnSync(SQLITE3!, ['-readonly', '-separator', '|', join(dir, 'petrel.db'), sql], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${sql}: ${r.stderr}`);
      return r.stdout.trim();
    };
    assert.match(query("SELECT client_id, expiry_interval, datetime(expires_at / 1000, 'unixepoch') FROM sessions;"), /^kept\|\d+\|/);
    assert.equal(query("SELECT client_id, key, json_extract(entry, '$.qos') FROM subscriptions;"), 'kept|ops/#|1');
    // The deepest-queues query of the docs: queue rows, plus run messages not gone.
    const deepest = 'SELECT client_id, sum(n) FROM (SELECT client_id, count(*) AS n FROM queue WHERE packet_id IS NULL GROUP BY client_id UNION ALL SELECT client_id, sum(count) FROM queue_runs GROUP BY client_id UNION ALL SELECT client_id, -sum(to_seq - seq + 1) FROM queue_runs_gone GROUP BY client_id) GROUP BY client_id ORDER BY 2 DESC LIMIT 10;';
    assert.equal(query(deepest), 'kept|2');
    assert.equal(query("SELECT count(*) FROM queue_runs WHERE client_id = 'kept';"), '0', 'two messages in two commits: a queue row each');
    assert.equal(query('SELECT topic, length(payload) FROM retained ORDER BY topic LIMIT 20;'), 'ops/r|8');
    assert.match(query('PRAGMA user_version;'), /^\d+$/);
  });
});
