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

/**
 * Messages queued on disk for `clientId` (all sessions when omitted) and not marked in flight: queue rows,
 * plus the messages of queue runs (schema 4) neither in a gone range nor marked in flight.
 */
export function queuedOnDisk(dir: string, clientId?: string): number {
  const db = new Database(join(dir, 'petrel.db'), { readonly: true, fileMustExist: true });
  try {
    const where = clientId === undefined ? '' : 'AND client_id = ?';
    const args = clientId === undefined ? [] : [clientId];
    const rows = (db.prepare(`SELECT count(*) AS n FROM queue WHERE packet_id IS NULL ${where}`).get(...args) as { n: number }).n;
    const inRuns = (db.prepare(`SELECT coalesce(sum(count), 0) AS n FROM queue_runs WHERE 1 ${where}`).get(...args) as { n: number }).n;
    const gone = (db.prepare(`SELECT coalesce(sum(to_seq - seq + 1), 0) AS n FROM queue_runs_gone WHERE 1 ${where}`).get(...args) as { n: number }).n;
    const marked = (db.prepare(`SELECT count(*) AS n FROM queue_runs_moved WHERE 1 ${where}`).get(...args) as { n: number }).n;
    return rows + inRuns - gone - marked;
  } finally {
    db.close();
  }
}

/** Rows of the queue run tables (schema 4): runs, gone ranges, messages of runs marked in flight. */
export function runRows(dir: string): { runs: number; gone: number; moved: number } {
  const db = new Database(join(dir, 'petrel.db'), { readonly: true, fileMustExist: true });
  try {
    const n = (table: string) => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { runs: n('queue_runs'), gone: n('queue_runs_gone'), moved: n('queue_runs_moved') };
  } finally {
    db.close();
  }
}
