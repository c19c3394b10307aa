// Bad data files and failing disks: a corrupt, foreign or newer file stops start-up with one line naming
// the file and the problem, and the file is left as it was; an unwritable data directory is named; a disk
// that fills up refuses the QoS 1/2 messages it cannot store (5.0: 0x97; 3.1.1: the connection is closed)
// while the broker goes on serving and what was stored stays; a second broker on a directory refuses to start.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import type { PubAckLikePacket, PublishPacket } from '../../src/protocol/packets.js';
import { createBroker } from '../../src/server/broker.js';
import { SCHEMA_VERSION } from '../../src/storage/schema.js';
import { RawClient } from '../helpers/raw-client.js';
import { brokerOn, dataDir, queuedOnDisk, rowCounts } from './helpers.js';
import { startChildBroker } from '../helpers/child-broker.js';

const hash = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

function refusal(dir: string): string {
  try {
    const broker = createBroker({ port: 0, storage: { type: 'sqlite', dir } });
    void broker.close();
  } catch (err) {
    return (err as Error).message;
  }
  return '(started)';
}

describe('storage: bad files', () => {
  it('a file that is not a database: one line naming the file, the file untouched', (t) => {
    const dir = dataDir(t);
    const file = join(dir, 'petrel.db');
    writeFileSync(file, Buffer.alloc(8192, 'not sqlite at all '));
    const before = hash(file);
    const message = refusal(dir);
    assert.match(message, /petrel\.db: not a SQLite database or corrupt/);
    assert.ok(message.includes(file));
    assert.ok(!message.includes('\n'), 'one line');
    assert.equal(hash(file), before);
  });

  it("a SQLite database of something else: refused as not Petrel's, untouched", (t) => {
    const dir = dataDir(t);
    const file = join(dir, 'petrel.db');
    const db = new Database(file);
    db.exec('CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);');
    db.close();
    const before = hash(file);
    assert.match(refusal(dir), /petrel\.db: not a Petrel data file/);
    assert.equal(hash(file), before);
  });

  it('a file from a newer Petrel: refused naming the schema version, untouched', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    await brokers.start();
    await brokers.stop();
    const file = join(dir, 'petrel.db');
    const db = new Database(file);
    db.pragma('user_version = 99');
    db.close();
    const before = hash(file);
    assert.match(refusal(dir), new RegExp(`petrel\\.db: written by a newer Petrel \\(schema version 99, this one knows up to ${SCHEMA_VERSION}\\)`));
    assert.equal(hash(file), before);
  });

  it('a Petrel file damaged inside: refused as corrupt', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    const { port } = await brokers.start();
    const pub = (await RawClient.connect(port, { clientId: 'p' })).client;
    for (let i = 0; i < 50; i++) {
      pub.send({ type: 3, topic: `r/${i}`, payload: Buffer.alloc(500, i), qos: 1, retain: true, dup: false, packetId: i + 1 });
      await pub.next(4);
    }
    pub.destroy();
    await brokers.stop();
    const file = join(dir, 'petrel.db');
    const bytes = readFileSync(file);
    bytes.fill(0xa5, 4096 * 2, 4096 * 4); // pages 3 and 4: b-tree pages
    writeFileSync(file, bytes);
    assert.match(refusal(dir), /petrel\.db: (the database is corrupt|not a SQLite database or corrupt)/);
  });

  it('the petrel command: one line on stderr, exit code 1', async (t) => {
    const dir = dataDir(t);
    writeFileSync(join(dir, 'petrel.db'), 'hello');
    await assert.rejects(startChildBroker(dir), (err: Error) => /exited \(1\) before listening: petrel: cannot start: .*petrel\.db: not a SQLite database or corrupt/.test(err.message) && !/\n/.test(err.message.trim()));
  });
});

describe('storage: faults', () => {
  it('an unwritable data directory stops start-up naming it', (t) => {
    const dir = dataDir(t);
    writeFileSync(join(dir, 'a-file'), '');
    const target = join(dir, 'a-file', 'data');
    assert.match(refusal(target), new RegExp(`data directory ${target.replace(/[/.]/g, '\\$&')} is not writable \\(ENOTDIR\\)`));
  });

  it('a second broker on the same directory refuses to start, naming the first', async (t) => {
    const dir = dataDir(t);
    const first = await startChildBroker(dir);
    t.after(() => first.kill());
    assert.match(refusal(dir), new RegExp(`data directory .* is in use by another broker \\(pid ${first.child.pid}`));
    // In the same process, too.
    const other = dataDir(t);
    const brokers = brokerOn(t, other);
    await brokers.start();
    assert.match(refusal(other), new RegExp(`is in use by another broker \\(pid ${process.pid}`));
    await first.kill();
  });

  it('a lock left by a killed broker is taken over', async (t) => {
    const dir = dataDir(t);
    const first = await startChildBroker(dir);
    await first.kill('SIGKILL');
    const brokers = brokerOn(t, dir);
    await brokers.start();
  });

  it('a full disk: QoS 1 messages that cannot be stored are refused (5.0: 0x97, 3.1.1: connection closed), the broker goes on, nothing stored is lost', async (t) => {
    const dir = dataDir(t);
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, new Writable({ write: (chunk, _e, cb) => (lines.push(String(chunk)), cb()) }));
    // A file limited to ~100 KB: SQLite fails writes beyond it as on a full disk (SQLITE_FULL).
    const brokers = brokerOn(t, dir, { logger });
    const started = await brokers.start({ storage: { type: 'sqlite', dir, maxSizeMB: 0.1 } });
    let port = started.port;
    assert.equal(started.broker.ready, true, 'ready while writes work');
    const sub = (await RawClient.connect(port, { clientId: 'away', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } })).client;
    sub.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'big/#', qos: 1 }] });
    await sub.next(9);
    sub.send({ type: 14, reasonCode: 0 });
    await sub.waitClosed();
    const live = (await RawClient.connect(port, { clientId: 'live' })).client;
    live.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'big/#', qos: 0 }] });
    await live.next(9);

    const pub = (await RawClient.connect(port, { clientId: 'p5', protocolVersion: 5 })).client;
    const stored: number[] = [];
    let refusedCode: number | undefined;
    for (let i = 1; i <= 40 && refusedCode === undefined; i++) {
      pub.send({ type: 3, topic: 'big/x', payload: Buffer.alloc(8000, i), qos: 1, retain: false, dup: false, packetId: i });
      const ack = (await pub.next(4)) as PubAckLikePacket;
      if ((ack.reasonCode ?? 0) >= 0x80) refusedCode = ack.reasonCode;
      else stored.push(i);
    }
    assert.equal(refusedCode, 0x97, 'Quota exceeded');
    assert.ok(stored.length > 0);
    assert.ok(lines.some((l) => l.includes('storage write failed: the disk is full (SQLITE_FULL)') && l.includes('petrel.db')), 'the log names the cause and the file');
    assert.equal(started.broker.ready, false, 'not ready while the store cannot write (what /ready answers)');
    assert.match(started.broker.storageStatus().problem ?? '', /disk is full/);

    // The broker goes on: QoS 0 still flows, 3.1.1 QoS 1 that cannot be stored closes the connection.
    await live.collect(100);
    pub.send({ type: 3, topic: 'big/y', payload: Buffer.from('small'), qos: 0, retain: false, dup: false });
    assert.equal(((await live.next(3)) as PublishPacket).payload.toString(), 'small');
    const old = (await RawClient.connect(port, { clientId: 'p4', protocolVersion: 4 })).client;
    old.send({ type: 3, topic: 'big/z', payload: Buffer.alloc(8000, 1), qos: 1, retain: false, dup: false, packetId: 1 });
    await old.waitClosed();
    assert.equal(old.packets.filter((p) => p.type === 4).length, 0, 'no PUBACK');
    pub.destroy();
    live.destroy();

    // What was acknowledged is all there after a restart without the limit.
    await brokers.stop();
    assert.ok(queuedOnDisk(dir) >= stored.length);
    ({ port } = await brokers.start({ storage: { type: 'sqlite', dir } }));
    const back = (await RawClient.connect(port, { clientId: 'away', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } })).client;
    const got = new Set<number>();
    for (;;) {
      const more = (await back.collect(300, 3)) as PublishPacket[];
      if (more.length === 0) break;
      for (const m of more) {
        got.add(m.payload[0] ?? -1);
        back.send({ type: 4, packetId: m.packetId! });
      }
    }
    for (const i of stored) assert.ok(got.has(i), `acknowledged message ${i} is back`);
    back.destroy();
  });
});
