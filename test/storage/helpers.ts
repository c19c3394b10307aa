// Shared by the storage tests: a broker on a data directory that can be stopped and started again, and a
// read-only look into its file.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import Database from 'better-sqlite3';
import type { Broker, BrokerOptions } from '../../src/server/broker.js';
import { startBroker } from '../helpers/broker.js';

export function dataDir(t: TestContext, prefix = 'petrel-storage-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Starts brokers on `dir` one after the other; the last one is closed when the test ends. */
export function brokerOn(t: TestContext, dir: string, options: BrokerOptions = {}) {
  let current: Broker | undefined;
  t.after(async () => {
    await current?.close();
  });
  return {
    async start(extra: BrokerOptions = {}): Promise<{ broker: Broker; port: number }> {
      const { broker, port } = await startBroker({ storage: { type: 'sqlite', dir }, ...options, ...extra });
      current = broker;
      return { broker, port };
    },
    async stop(): Promise<void> {
      const b = current;
      current = undefined;
      await b?.close();
    },
  };
}

/** Row counts of the tables of the data file, read while the broker may be running (WAL readers do not block it). */
export function rowCounts(dir: string): Record<string, number> {
  const db = new Database(join(dir, 'petrel.db'), { readonly: true, fileMustExist: true });
  try {
    const out: Record<string, number> = {};
    for (const table of ['sessions', 'subscriptions', 'messages', 'queue', 'inflight', 'incoming_qos2', 'retained']) {
      out[table] = (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    }
    return out;
  } finally {
    db.close();
  }
}
