// An older schema is migrated in one transaction: a data file of schema version 1 or 2 (their DDL written out
// here, as the Petrel of each made it) is opened by this Petrel, its data survives and its version goes up; a
// migration that fails half-way leaves the file exactly as it was and stops start-up with one line naming
// the file. Version 2 -> 3 rebuilds the queue table (message_id optional: a message queued for one session
// is held inline in its queue row); 3 -> 4 adds the queue run tables (a burst queued for one session in one
// commit is one row), the queue rows staying as they are.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import type { PublishPacket } from '../../src/protocol/packets.js';
import { createBroker } from '../../src/server/broker.js';
import { APPLICATION_ID, SCHEMA_VERSION } from '../../src/storage/schema.js';
import { RawClient } from '../helpers/raw-client.js';
import { brokerOn, dataDir } from './helpers.js';

/** Schema version 1, as the first Petrel with storage wrote it. */
const V1 = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE sessions (client_id TEXT PRIMARY KEY, expiry_interval INTEGER NOT NULL, expires_at INTEGER, client TEXT, will TEXT) WITHOUT ROWID;
CREATE TABLE subscriptions (client_id TEXT NOT NULL, key TEXT NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (client_id, key)) WITHOUT ROWID;
CREATE TABLE messages (id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, properties TEXT, expires_at INTEGER, from_client TEXT);
CREATE TABLE queue (client_id TEXT NOT NULL, seq INTEGER NOT NULL, message_id INTEGER NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, subscription_ids TEXT, queued_at INTEGER NOT NULL, share_key TEXT, PRIMARY KEY (client_id, seq)) WITHOUT ROWID;
CREATE TABLE inflight (client_id TEXT NOT NULL, packet_id INTEGER NOT NULL, message_id INTEGER NOT NULL, qos INTEGER NOT NULL, state TEXT NOT NULL, retain INTEGER NOT NULL, subscription_ids TEXT, share_key TEXT, send_order INTEGER NOT NULL, PRIMARY KEY (client_id, packet_id)) WITHOUT ROWID;
CREATE TABLE incoming_qos2 (client_id TEXT NOT NULL, packet_id INTEGER NOT NULL, PRIMARY KEY (client_id, packet_id)) WITHOUT ROWID;
CREATE TABLE live_wills (client_id TEXT PRIMARY KEY, will TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE retained (topic TEXT PRIMARY KEY, payload BLOB NOT NULL, qos INTEGER NOT NULL, properties TEXT, expires_at INTEGER, from_client TEXT) WITHOUT ROWID;
`;

/** Version 2: version 1 and the index of the retained topics. */
const V2 = `${V1}CREATE INDEX retained_topics ON retained (topic, qos, expires_at);\n`;

/** Version 3: version 2 with queue and in-flight rows that may hold their message inline. */
const V3 = V2.replace(/CREATE TABLE queue \(.*\n/, `CREATE TABLE queue (client_id TEXT NOT NULL, seq INTEGER NOT NULL, message_id INTEGER, qos INTEGER NOT NULL, retain INTEGER NOT NULL, subscription_ids TEXT, queued_at INTEGER NOT NULL, share_key TEXT, topic TEXT, payload BLOB, message_qos INTEGER, message_retain INTEGER, properties TEXT, expires_at INTEGER, from_client TEXT, packet_id INTEGER, send_order INTEGER, PRIMARY KEY (client_id, seq)) WITHOUT ROWID;\n`).replace(
  /CREATE TABLE inflight \(.*\n/,
  `CREATE TABLE inflight (client_id TEXT NOT NULL, packet_id INTEGER NOT NULL, message_id INTEGER, qos INTEGER NOT NULL, state TEXT NOT NULL, retain INTEGER NOT NULL, subscription_ids TEXT, share_key TEXT, send_order INTEGER NOT NULL, topic TEXT, payload BLOB, message_qos INTEGER, message_retain INTEGER, properties TEXT, expires_at INTEGER, from_client TEXT, PRIMARY KEY (client_id, packet_id)) WITHOUT ROWID;\n`,
);

/** A version 3 file: a session with a message queued inline at seq 4. */
function writeV3(dir: string, extraSql = ''): string {
  const file = join(dir, 'petrel.db');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(V3);
  db.pragma(`application_id = ${APPLICATION_ID}`);
  db.pragma('user_version = 3');
  const entry = { clientId: 'old-3', filter: 'old/#', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 };
  db.prepare('INSERT INTO sessions VALUES (?, ?, NULL, ?, NULL)').run('old-3', 0xffffffff, JSON.stringify({ clientId: 'old-3', protocolVersion: 4, remoteAddress: '127.0.0.1:1', listener: 'tcp' }));
  db.prepare('INSERT INTO subscriptions VALUES (?, ?, ?)').run('old-3', 'old/#', JSON.stringify(entry));
  db.prepare('INSERT INTO queue (client_id, seq, qos, retain, queued_at, topic, payload, message_qos, message_retain) VALUES (?, 4, 1, 0, ?, ?, ?, 1, 0)').run('old-3', Date.now(), 'old/inline', Buffer.from('inline in v3'));
  if (extraSql) db.exec(extraSql);
  db.close();
  return file;
}

/** A version 1 (or 2) file holding a session with a subscription and a queued message, and a retained message. */
function writeV1(dir: string, extraSql = '', version: 1 | 2 = 1): string {
  const file = join(dir, 'petrel.db');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(version === 1 ? V1 : V2);
  db.pragma(`application_id = ${APPLICATION_ID}`);
  db.pragma(`user_version = ${version}`);
  const entry = { clientId: 'old-1', filter: 'old/+', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 };
  db.prepare('INSERT INTO sessions VALUES (?, ?, NULL, ?, NULL)').run('old-1', 0xffffffff, JSON.stringify({ clientId: 'old-1', protocolVersion: 4, remoteAddress: '127.0.0.1:1', listener: 'tcp' }));
  db.prepare('INSERT INTO subscriptions VALUES (?, ?, ?)').run('old-1', 'old/+', JSON.stringify(entry));
  db.prepare('INSERT INTO messages VALUES (7, ?, ?, 1, 0, NULL, NULL, ?)').run('old/q', Buffer.from('queued in v1'), 'someone');
  db.prepare('INSERT INTO queue VALUES (?, 0, 7, 1, 0, NULL, ?, NULL)').run('old-1', Date.now());
  db.prepare('INSERT INTO retained VALUES (?, ?, 1, ?, NULL, NULL)').run('old/r', Buffer.from('retained in v1'), JSON.stringify({ contentType: 'text/plain' }));
  if (extraSql) db.exec(extraSql);
  db.close();
  return file;
}

/** The error a broker on `dir` stops start-up with ('(started)' when it starts). */
function startError(dir: string): string {
  try {
    const broker = createBroker({ port: 0, storage: { type: 'sqlite', dir } });
    void broker.close();
    return '(started)';
  } catch (err) {
    return (err as Error).message;
  }
}

const hash = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

describe('storage: schema migration', () => {
  for (const version of [1, 2] as const) {
  it(`a version ${version} file is migrated at start: the version goes up, the retained index is there, the queue table takes inline messages, and the session, its queue and the retained message are back`, async (t) => {
    assert.equal(SCHEMA_VERSION, 4, 'this test migrates 1 -> 4 and 2 -> 4 (and 3 -> 4 below); add the next step when the schema changes again');
    const dir = dataDir(t);
    const file = writeV1(dir, '', version);
    const brokers = brokerOn(t, dir);
    const { port } = await brokers.start();

    const db = new Database(file, { readonly: true });
    t.after(() => db.close());
    assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    assert.ok(db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'retained_topics'").get(), 'the index of version 2');
    // Version 3: the old queue row as it was (referring to message 7), and message_id may be NULL now.
    assert.deepEqual(db.prepare('SELECT client_id, seq, message_id, topic FROM queue').all(), [{ client_id: 'old-1', seq: 0, message_id: 7, topic: null }]);
    const columns = db.prepare("SELECT name, \"notnull\" AS required FROM pragma_table_info('queue')").all() as { name: string; required: number }[];
    assert.equal(columns.find((c) => c.name === 'message_id')?.required, 0);
    assert.deepEqual(columns.map((c) => c.name).slice(8), ['topic', 'payload', 'message_qos', 'message_retain', 'properties', 'expires_at', 'from_client', 'packet_id', 'send_order']);
    const inflightColumns = db.prepare("SELECT name, \"notnull\" AS required FROM pragma_table_info('inflight')").all() as { name: string; required: number }[];
    assert.equal(inflightColumns.find((c) => c.name === 'message_id')?.required, 0);
    assert.deepEqual(inflightColumns.map((c) => c.name).slice(9), ['topic', 'payload', 'message_qos', 'message_retain', 'properties', 'expires_at', 'from_client']);
    assert.deepEqual(db.prepare("SELECT name FROM sqlite_master WHERE name LIKE '%_v3'").all(), [], 'no table of the rebuild left');
    assert.deepEqual(db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'queue_runs%' ORDER BY name").all(), [{ name: 'queue_runs' }, { name: 'queue_runs_gone' }, { name: 'queue_runs_moved' }], 'the tables of version 4');

    const back = await RawClient.connect(port, { clientId: 'old-1', clean: false });
    assert.equal(back.connack.sessionPresent, true, 'the session of the v1 file');
    const m = (await back.client.next(3)) as PublishPacket;
    assert.equal(m.topic, 'old/q');
    assert.equal(m.payload.toString(), 'queued in v1');
    back.client.send({ type: 4, packetId: m.packetId! });
    const reader = (await RawClient.connect(port, { clientId: 'reader', protocolVersion: 5 })).client;
    reader.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'old/#', qos: 1 }] });
    await reader.next(9);
    const r = (await reader.next(3)) as PublishPacket;
    assert.equal(r.payload.toString(), 'retained in v1');
    assert.equal(r.properties?.contentType, 'text/plain');
    // And the subscription: a new message reaches the old session.
    reader.send({ type: 3, topic: 'old/new', payload: Buffer.from('after'), qos: 1, retain: false, dup: false, packetId: 2 });
    await reader.next(4);
    const after = (await back.client.next(3)) as PublishPacket;
    assert.equal(after.payload.toString(), 'after');
    back.client.send({ type: 4, packetId: after.packetId! });
    // Queued for it alone after the migration: inline, no messages row (the others went with their PUBACKs).
    back.client.send({ type: 14 });
    await back.client.waitClosed();
    reader.send({ type: 3, topic: 'old/later', payload: Buffer.from('inline'), qos: 1, retain: false, dup: false, packetId: 3 });
    await reader.next(4);
    assert.deepEqual(db.prepare('SELECT message_id, topic, payload FROM queue').all(), [{ message_id: null, topic: 'old/later', payload: Buffer.from('inline') }]);
    assert.equal((db.prepare('SELECT count(*) AS n FROM messages').get() as { n: number }).n, 0);
    reader.destroy();
  });
  }

  it('a migration that fails half-way is rolled back: one line naming the file and the versions, the file byte for byte as it was', (t) => {
    const dir = dataDir(t);
    // A table already named like the index version 2 makes: CREATE INDEX fails inside the migration.
    const file = writeV1(dir, 'CREATE TABLE retained_topics (x);');
    const before = hash(file);
    const message = startError(dir);
    assert.match(message, /petrel\.db: migrating the schema from version 1 to 4 failed \(.*retained_topics.*\); the file is left as it was/);
    assert.ok(message.includes(file));
    assert.ok(!message.includes('\n'), 'one line');
    assert.equal(hash(file), before, 'the file is untouched');
    const db = new Database(file, { readonly: true });
    assert.equal(db.pragma('user_version', { simple: true }), 1);
    assert.equal((db.prepare('SELECT count(*) AS n FROM queue').get() as { n: number }).n, 1);
    db.close();
  });

  it('a migration from version 2 to 3 that fails half-way is rolled back: the queue table and its rows as they were', (t) => {
    const dir = dataDir(t);
    // A table already named like the one the rebuild makes: the migration fails at its first statement.
    const file = writeV1(dir, 'CREATE TABLE queue_v3 (x);', 2);
    const before = hash(file);
    const message = startError(dir);
    assert.match(message, /petrel\.db: migrating the schema from version 2 to 4 failed \(.*queue_v3.*\); the file is left as it was/);
    assert.equal(hash(file), before, 'the file is untouched');
    const db = new Database(file, { readonly: true });
    assert.equal(db.pragma('user_version', { simple: true }), 2);
    assert.deepEqual(db.prepare('SELECT client_id, message_id FROM queue').all(), [{ client_id: 'old-1', message_id: 7 }]);
    db.close();
  });

  it('a version 3 file is migrated at start: the queue run tables are added, its inline queue row stays as it is and is delivered', async (t) => {
    const dir = dataDir(t);
    const file = writeV3(dir);
    const brokers = brokerOn(t, dir);
    const { port } = await brokers.start();
    const db = new Database(file, { readonly: true });
    t.after(() => db.close());
    assert.equal(db.pragma('user_version', { simple: true }), 4);
    assert.deepEqual(db.prepare('SELECT client_id, seq, message_id, topic FROM queue').all(), [{ client_id: 'old-3', seq: 4, message_id: null, topic: 'old/inline' }]);
    assert.deepEqual(db.prepare('SELECT count(*) AS n FROM queue_runs').get(), { n: 0 });
    const back = await RawClient.connect(port, { clientId: 'old-3', clean: false });
    assert.equal(back.connack.sessionPresent, true);
    const m = (await back.client.next(3)) as PublishPacket;
    assert.equal(m.payload.toString(), 'inline in v3');
    back.client.send({ type: 4, packetId: m.packetId! });
    // Queued after it: the seqs go on from the old row's.
    back.client.send({ type: 14 });
    await back.client.waitClosed();
    const pub = (await RawClient.connect(port, { clientId: 'p3' })).client;
    for (let i = 0; i < 3; i++) pub.send({ type: 3, topic: 'old/burst', payload: Buffer.from(`b${i}`), qos: 1, retain: false, dup: false, packetId: i + 1 });
    for (let i = 0; i < 3; i++) await pub.next(4);
    pub.destroy();
    const seqs = [...(db.prepare('SELECT seq FROM queue UNION ALL SELECT seq FROM queue_runs').all() as { seq: number }[])].map((r) => r.seq);
    assert.ok(seqs.every((seq) => seq > 4), `new seqs after the old row's: ${seqs.join(',')}`);
  });

  it('a migration from version 3 to 4 that fails half-way is rolled back: the file byte for byte as it was', (t) => {
    const dir = dataDir(t);
    const file = writeV3(dir, 'CREATE TABLE queue_runs_gone (x);');
    const before = hash(file);
    const message = startError(dir);
    assert.match(message, /petrel\.db: migrating the schema from version 3 to 4 failed \(.*queue_runs_gone.*\); the file is left as it was/);
    assert.equal(hash(file), before, 'the file is untouched');
    const db = new Database(file, { readonly: true });
    assert.equal(db.pragma('user_version', { simple: true }), 3);
    assert.equal(db.prepare("SELECT name FROM sqlite_master WHERE name = 'queue_runs'").get(), undefined, 'the first table of the step is gone with the rollback');
    db.close();
  });
});
