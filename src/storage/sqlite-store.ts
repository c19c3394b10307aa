// The SQLite store (store/types.ts SessionStore): a write-behind journal of every persistent session's
// changes (sqlite-journal.ts), committed in groups (sqlite-storage.ts), and the loader that gives the
// sessions back at start-up. The working copy stays in the broker's Session objects; this file only records.
import type Database from 'better-sqlite3';
import type { QoS } from '../protocol/constants.js';
import type { ClientInfo } from '../broker/hooks.js';
import type { QueuedMessage, SessionStore, StoredSession, StoredWill, SubscriptionEntry } from '../broker/store/types.js';
import { decodeRun, fromJson, idsFromText, messageFromRow, toJson, type MessageRow } from './codec.js';
import { SqliteJournal, type LoadedRows, type Run } from './sqlite-journal.js';
import { SqliteStorage, type MessageRef, type SqliteStoreOptions } from './sqlite-storage.js';

export { StorageError } from './schema.js';
export { DEFER_INFLIGHT_MS, ranges, SqliteStorage, type SqliteStoreOptions } from './sqlite-storage.js';

/** Session Expiry Interval that never expires (registry.ts NEVER_EXPIRES). */
const NEVER_EXPIRES = 0xffffffff;

/**
 * SQLite's order of text (BINARY: the bytes of UTF-8, which is code point order). JavaScript's `<` compares
 * UTF-16 units, which differs once a string holds a character beyond U+FFFF: surrogates (D800-DFFF) sort
 * after U+E000-FFFF here, as their code points do.
 */
export function compareText(a: string, b: string): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

/** A table read in client id order alongside the sessions: hands out the rows of one client id at a time. */
class Cursor<Row extends [string, ...unknown[]]> {
  private readonly rows: Iterator<Row>;
  private next: Row | undefined;

  constructor(statement: Database.Statement) {
    this.rows = (statement.raw().iterate() as IterableIterator<Row>)[Symbol.iterator]();
    this.advance();
  }

  private advance(): void {
    const r = this.rows.next();
    this.next = r.done === true ? undefined : r.value;
  }

  /** The rows of `clientId` (those of smaller ids, which belong to no session, are skipped). */
  *rowsOf(clientId: string): Generator<Row> {
    while (this.next !== undefined && this.next[0] !== clientId && compareText(this.next[0], clientId) < 0) this.advance();
    while (this.next !== undefined && this.next[0] === clientId) {
      const row = this.next;
      this.advance();
      yield row;
    }
  }

  close(): void {
    this.rows.return?.();
  }
}

export class SqliteSessionStore implements SessionStore {
  readonly durable = true;
  private loaded = new Map<string, LoadedRows>();

  constructor(readonly storage: SqliteStorage) {}

  /** Opens (or makes) the store in `options.dir`. Throws StorageError with a one-line reason. */
  static open(options: SqliteStoreOptions): SqliteSessionStore {
    return new SqliteSessionStore(new SqliteStorage(options));
  }

  /**
   * Every stored session, one at a time: the tables are read side by side in client id order (a merge of
   * their primary keys), so a session is given to the registry as soon as its rows are read and nothing
   * is held for all of them at once. Those whose expiry passed while the broker was down are deleted
   * (their wills given back to publish).
   */
  *load(): Iterable<StoredSession> {
    const storage = this.storage;
    const db = storage.db;
    const now = storage.clock.now();
    const aliveRow = db.prepare("SELECT value FROM meta WHERE key = 'alive_at'").get() as { value: string } | undefined;
    const aliveAt = aliveRow !== undefined ? Math.min(Number(aliveRow.value), now) : now;
    const s = storage.statements;
    type SubscriptionRow = [clientId: string, key: string, entry: string];
    // The last seven columns of a queue or in-flight row hold the message when it is inline (messageId null).
    type InlineColumns = [topic: string | null, payload: Buffer | null, messageQos: number | null, messageRetain: number | null, properties: string | null, expiresAt: number | null, from: string | null];
    // packetId set: the message is in flight, recorded by its queue row (a deferred move, sqlite-journal.ts).
    type QueueRow = [clientId: string, seq: number, messageId: number | null, qos: number, retain: number, subscriptionIds: string | null, queuedAt: number, shareKey: string | null, ...inline: InlineColumns, packetId: number | null, order: number | null];
    type InflightRow = [clientId: string, packetId: number, messageId: number | null, qos: number, state: string, retain: number, subscriptionIds: string | null, shareKey: string | null, order: number, ...inline: InlineColumns];
    const subscriptions = new Cursor<SubscriptionRow>(db.prepare('SELECT client_id, key, entry FROM subscriptions ORDER BY client_id, key'));
    const queue = new Cursor<QueueRow>(db.prepare('SELECT client_id, seq, message_id, qos, retain, subscription_ids, queued_at, share_key, topic, payload, message_qos, message_retain, properties, expires_at, from_client, packet_id, send_order FROM queue ORDER BY client_id, seq'));
    const inflight = new Cursor<InflightRow>(db.prepare('SELECT client_id, packet_id, message_id, qos, state, retain, subscription_ids, share_key, send_order, topic, payload, message_qos, message_retain, properties, expires_at, from_client FROM inflight ORDER BY client_id, packet_id'));
    const incoming = new Cursor<[clientId: string, packetId: number]>(db.prepare('SELECT client_id, packet_id FROM incoming_qos2 ORDER BY client_id, packet_id'));
    const runRows = new Cursor<[clientId: string, seq: number, count: number, messages: Buffer]>(db.prepare('SELECT client_id, seq, count, messages FROM queue_runs ORDER BY client_id, seq'));
    const goneRows = new Cursor<[clientId: string, seq: number, toSeq: number]>(db.prepare('SELECT client_id, seq, to_seq FROM queue_runs_gone ORDER BY client_id, seq'));
    const movedRows = new Cursor<[clientId: string, seq: number, packetId: number, order: number]>(db.prepare('SELECT client_id, seq, packet_id, send_order FROM queue_runs_moved ORDER BY client_id, seq'));
    const messages = new Map<number, MessageRef>();
    const selectMessage = db.prepare('SELECT topic, payload, qos, retain, properties, expires_at, from_client FROM messages WHERE id = ?');
    const messageOf = (id: number): MessageRef | undefined => {
      let ref = messages.get(id);
      if (ref === undefined) {
        const row = selectMessage.get(id) as MessageRow | undefined;
        if (row === undefined) return undefined;
        ref = storage.adoptMessage(messageFromRow(row, row.retain === 1), id);
        messages.set(id, ref);
      }
      ref.refs++;
      return ref;
    };
    /** The message held inline by a row (its columns from `at`; no messages row): its own MessageRef, one reference. */
    const inlineMessage = (r: unknown[], at: number): MessageRef | undefined => {
      const [topic, payload, qos, retain, properties, expiresAt, from] = r.slice(at) as InlineColumns;
      if (topic === null || payload === null) return undefined;
      const message = messageFromRow({ topic, payload, qos: qos ?? (r[3] as number), properties, expires_at: expiresAt, from_client: from }, retain === 1);
      const ref = storage.adoptMessage(message, undefined);
      ref.refs++;
      return ref;
    };
    // Rows as arrays (raw): a third faster than objects with 100k sessions.
    type SessionRow = [clientId: string, expiryInterval: number, expiresAt: number | null, client: string | null, will: string | null];
    try {
      for (const row of db.prepare('SELECT client_id, expiry_interval, expires_at, client, will FROM sessions ORDER BY client_id').raw().iterate() as Iterable<SessionRow>) {
        const [clientId, expiryInterval] = row;
        let expiresAt = row[2] ?? undefined;
        let will = fromJson<StoredWill>(row[4]);
        // Connected when the process died: offline since it was last alive (written back, so another crash
        // before the client returns does not move the deadline).
        if (expiresAt === undefined && expiryInterval !== NEVER_EXPIRES) {
          const deadline = (expiresAt = aliveAt + expiryInterval * 1000);
          storage.add(() => s.upsertSession.run(clientId, expiryInterval, deadline, null));
        }
        if (will !== undefined && will.publishAt === undefined) will = { ...will, publishAt: aliveAt + (will.will.properties?.willDelayInterval ?? 0) * 1000 };
        const session: StoredSession = { clientId, expiryInterval, expiresAt, client: fromJson<ClientInfo>(row[3]), subscriptions: [], queue: [], inflight: [], incomingQos2: [], will };
        for (const r of subscriptions.rowsOf(clientId)) session.subscriptions.push([r[1], fromJson<SubscriptionEntry>(r[2])!]);
        // The messages of its runs still queued (not in a gone range), merged in seq order with its queue rows.
        const gone: [number, number][] = [];
        for (const r of goneRows.rowsOf(clientId)) gone.push([r[1], r[2]]);
        const marks = new Map<number, [packetId: number, order: number]>();
        for (const r of movedRows.rowsOf(clientId)) marks.set(r[1], [r[2], r[3]]);
        const fromRuns: [number, QueuedMessage][] = [];
        let g = 0;
        const isGone = (seq: number) => {
          while (g < gone.length && gone[g]![1] < seq) g++;
          return g < gone.length && gone[g]![0] <= seq;
        };
        for (const r of runRows.rowsOf(clientId)) {
          const [, first, count, blob] = r;
          const run: Run = { seq: first, count, live: 0, gone: [], goneGroup: -1, marked: 0 };
          const rows = this.rowsOf(clientId);
          decodeRun(blob, count).forEach((item, i) => {
            const seq = first + i;
            if (isGone(seq)) return;
            run.live++;
            const mark = marks.get(seq);
            if (mark !== undefined) {
              // In flight (QoS 1, PUBLISH sent), recorded by its run: resent with DUP, gone with its PUBACK.
              run.marked++;
              const ref = storage.adoptMessage(item.message, undefined);
              ref.refs++;
              session.inflight.push({ packetId: mark[0], message: item.message, qos: item.qos, state: 'publish', subscriptionIds: undefined, retain: item.retain, shareKey: undefined, order: mark[1] });
              rows.inflight.set(mark[0], { key: mark[0], ref, group: -1, op: undefined, queueSeq: seq, moved: true });
              return;
            }
            fromRuns.push([seq, item]);
            rows.queue.set(item, seq);
          });
          rows.nextSeq = Math.max(rows.nextSeq, first + count);
          if (run.live > 0) rows.runs.push(run);
          else storage.add(() => { s.deleteRun.run(clientId, first); s.deleteRunGone.run(clientId, first, first + count - 1); });
        }
        let nextFromRun = 0;
        const runsBefore = (seq: number) => {
          while (nextFromRun < fromRuns.length && fromRuns[nextFromRun]![0] < seq) session.queue.push(fromRuns[nextFromRun++]![1]);
        };
        for (const r of queue.rowsOf(clientId)) {
          const ref = r[2] === null ? inlineMessage(r, 8) : messageOf(r[2]);
          if (ref === undefined) continue;
          const rows = this.rowsOf(clientId);
          rows.nextSeq = Math.max(rows.nextSeq, r[1] + 1);
          runsBefore(r[1]);
          const packetId = r[15];
          if (packetId !== null) {
            // In flight (QoS 1, PUBLISH sent), recorded by this row: resent with DUP, deleted by its PUBACK.
            session.inflight.push({ packetId, message: ref.message, qos: r[3] as QoS, state: 'publish', subscriptionIds: idsFromText(r[5]), retain: r[4] === 1, shareKey: r[7] ?? undefined, order: r[16] ?? 0 });
            rows.inflight.set(packetId, { key: packetId, ref, group: -1, op: undefined, queueSeq: r[1], moved: true });
            continue;
          }
          const item: QueuedMessage = { message: ref.message, qos: r[3] as QoS, retain: r[4] === 1, subscriptionIds: idsFromText(r[5]), queuedAt: r[6], shareKey: r[7] ?? undefined };
          session.queue.push(item);
          // An inline row is just its seq (nothing else refers to its message).
          rows.queue.set(item, r[2] === null ? r[1] : { key: r[1], ref, item: undefined });
        }
        runsBefore(Infinity);
        for (const r of inflight.rowsOf(clientId)) {
          const ref = r[2] === null ? inlineMessage(r, 9) : messageOf(r[2]);
          if (ref === undefined) continue;
          session.inflight.push({ packetId: r[1], message: ref.message, qos: r[3] as QoS, state: r[4] === 'pubrel' ? 'pubrel' : 'publish', subscriptionIds: idsFromText(r[6]), retain: r[5] === 1, shareKey: r[7] ?? undefined, order: r[8] });
          this.rowsOf(clientId).inflight.set(r[1], { key: r[1], ref, group: -1, op: undefined });
        }
        if (session.inflight.length > 1) session.inflight.sort((x, y) => x.order - y.order);
        for (const r of incoming.rowsOf(clientId)) session.incomingQos2.push(r[1]);
        // Expired while the broker was down: gone, as it would have gone had it run (its will is published).
        if (expiresAt !== undefined && expiresAt <= now) this.journal(clientId).deleted();
        yield session;
      }
    } finally {
      subscriptions.close();
      queue.close();
      inflight.close();
      incoming.close();
      runRows.close();
      goneRows.close();
      movedRows.close();
    }
    // Wills of clean-session connections open when the process died: their sessions ended with it, so they
    // are given back as sessions already expired (the registry publishes their wills at once).
    const ended: StoredSession[] = [];
    for (const [clientId, text] of db.prepare('SELECT client_id, will FROM live_wills').raw().iterate() as Iterable<[string, string]>) {
      const will = fromJson<StoredWill>(text)!;
      ended.push({ clientId, expiryInterval: 0, expiresAt: aliveAt, client: will.client, subscriptions: [], queue: [], inflight: [], incomingQos2: [], will: { ...will, publishAt: aliveAt } });
    }
    if (ended.length > 0) storage.add(() => db.prepare('DELETE FROM live_wills').run());
    // Messages no row refers to (left by a failed write): garbage.
    // (Inline queue rows have message_id NULL, and NOT IN over a list holding NULL is never true.)
    db.prepare('DELETE FROM messages WHERE id NOT IN (SELECT message_id FROM queue WHERE message_id IS NOT NULL UNION SELECT message_id FROM inflight WHERE message_id IS NOT NULL)').run();
    yield* ended;
  }

  private rowsOf(clientId: string): LoadedRows {
    let rows = this.loaded.get(clientId);
    if (rows === undefined) this.loaded.set(clientId, (rows = { queue: new Map(), inflight: new Map(), nextSeq: 0, runs: [] }));
    return rows;
  }

  journal(clientId: string): SqliteJournal {
    const loaded = this.loaded.get(clientId);
    if (loaded !== undefined) this.loaded.delete(clientId);
    return new SqliteJournal(this.storage, clientId, loaded);
  }

  afterCommit(done: () => void, failed?: (error: Error) => void): void {
    this.storage.afterCommit(done, failed);
  }

  liveWill(clientId: string, will: StoredWill | undefined): void {
    const s = this.storage.statements;
    const json = toJson(will);
    this.storage.add(json === null ? () => s.deleteLiveWill.run(clientId) : () => s.setLiveWill.run(clientId, json));
  }

  close(): void {
    this.storage.close();
  }
}
