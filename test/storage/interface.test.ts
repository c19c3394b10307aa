// How storage is chosen: `petrel broker` stores in ./petrel-data by default, --data-dir and --storage change
// it, the config key `storage` is checked field by field, createBroker() keeps memory unless told, and the
// start-up line says where data is kept and what was loaded.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { ConfigError, validateConfig } from '../../src/config/config.js';
import { createBroker } from '../../src/server/broker.js';
import type { SqliteSessionStore } from '../../src/storage/sqlite-store.js';
import { startBroker } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';
import { brokerOn, dataDir } from './helpers.js';
import { startChildBroker } from '../helpers/child-broker.js';

const BIN = fileURLToPath(new URL('../../../bin/petrel.js', import.meta.url));
const printConfig = (cwd: string, ...args: string[]) => spawnSync(process.execPath, [BIN, 'broker', ...args, '--print-config', 'json'], { encoding: 'utf8', cwd });

describe('storage: interface', () => {
  it('petrel broker is durable by default in ./petrel-data; --data-dir and --storage memory change it', (t) => {
    const cwd = dataDir(t);
    assert.deepEqual(JSON.parse(printConfig(cwd).stdout).storage, { type: 'sqlite', dir: './petrel-data', durability: 'process' });
    assert.deepEqual(JSON.parse(printConfig(cwd, '--data-dir', '/var/lib/petrel').stdout).storage, { type: 'sqlite', dir: '/var/lib/petrel', durability: 'process' });
    assert.equal(JSON.parse(printConfig(cwd, '--storage', 'memory').stdout).storage.type, 'memory');
    const bad = printConfig(cwd, '--storage', 'disk');
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--storage: must be sqlite or memory \(got "disk"\)/);
  });

  it('the config key storage is checked field by field', () => {
    assert.deepEqual(validateConfig({ storage: { type: 'sqlite', dir: '/data', durability: 'power' } }).storage, { type: 'sqlite', dir: '/data', durability: 'power' });
    assert.throws(() => validateConfig({ storage: { type: 'disk' } }), (e: Error) => e instanceof ConfigError && /storage\.type/.test(e.message));
    assert.throws(() => validateConfig({ storage: { type: 'sqlite', durability: 'always' } }), /storage\.durability/);
    assert.throws(() => validateConfig({ storage: { type: 'sqlite', path: '/x' } }), /storage\.path/);
    assert.throws(() => createBroker({ storage: { type: 'sqlite', dir: '' } }), /createBroker: storage\.dir: must be a non-empty path/);
  });

  it('createBroker() keeps memory unless given storage, and says so at start', async (t) => {
    const lines: { msg: string; storage?: string }[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(String(c))), cb()) }));
    const { broker } = await startBroker({ logger });
    t.after(() => broker.close());
    assert.equal(broker.core.store.durable, false);
    assert.ok(lines.some((l) => l.storage === 'memory' && /storage: memory/.test(l.msg)));
  });

  it('the start-up line names the file and the sessions and retained messages loaded', async (t) => {
    const dir = dataDir(t);
    const brokers = brokerOn(t, dir);
    const { port } = await brokers.start();
    const c = (await RawClient.connect(port, { clientId: 'kept', clean: false })).client;
    c.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: 'x', qos: 1 }] });
    await c.next(9);
    c.send({ type: 3, topic: 'r', payload: Buffer.from('v'), qos: 1, retain: true, dup: false, packetId: 2 });
    await c.next(4);
    c.destroy();
    await brokers.stop();
    const child = await startChildBroker(dir);
    t.after(() => child.kill());
    const line = child.lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('storage: sqlite'));
    assert.equal(line?.msg, `storage: sqlite in ${join(dir, 'petrel.db')} (durability process); loaded 1 sessions and 1 retained messages`);
    assert.equal(typeof line?.rssMB, 'number');
  });

  it('durability power: synchronous FULL; process: NORMAL (WAL either way)', async (t) => {
    for (const durability of ['power', 'process'] as const) {
      const dir = dataDir(t);
      const brokers = brokerOn(t, dir);
      const { broker } = await brokers.start({ storage: { type: 'sqlite', dir, durability } });
      const db = (broker.core.store as SqliteSessionStore).storage.db;
      assert.equal(db.pragma('synchronous', { simple: true }), durability === 'power' ? 2 : 1);
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      await brokers.stop();
      assert.ok(!existsSync(join(dir, 'petrel.lock')), 'the lock is released at close');
    }
  });
});
