// The SQLite store (store/types.ts SessionStore): a write-behind journal of every persistent session's
// changes, committed in groups (one transaction per event-loop turn), and the loader that gives the sessions
// back at start-up. The working copy stays in the broker's Session objects; this file only records.
//
// Durability contract: a change recorded now is committed before the callbacks given to afterCommit() now
// run; the broker acknowledges a QoS 1/2 PUBLISH and a SUBACK there. A change made and undone within one
// turn (a message put in flight and acknowledged, queued and sent) never reaches the disk.
import { accessSync, constants, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { QoS } from '../protocol/constants.js';
import type { ClientInfo } from '../broker/hooks.js';
import type { Message } from '../broker/message.js';
import type { InflightMessage, QueuedMessage, SessionJournal, SessionStore, StoredSession, StoredWill, SubscriptionEntry } from '../broker/store/types.js';
import { fromJson, idsFromText, idsToText, messageFromRow, toJson, type MessageRow } from './codec.js';
import { DirectoryLock } from './lock.js';
import { prepareSchema, StorageError } from './schema.js';

export { StorageError } from './schema.js';

/** Session Expiry Interval that never expires (registry.ts NEVER_EXPIRES). */
const NEVER_EXPIRES = 0xffffffff;

export interface SqliteStoreOptions {
  /** The data directory (made if missing); the file is `petrel.db` in it. */
  dir: string;
  /** 'process' (default): survives kill -9 (WAL, synchronous NORMAL). 'power': survives power loss (synchronous FULL). */
  durability?: 'process' | 'power';
  /** Where failed writes are reported (once per cause, and when writes work again). */
  warn?: (message: string, context: Record<string, unknown>) => void;
  /** Time source (the broker's clock). */
  clock?: { now(): number };
  /** The most the file may grow to (MB): writes beyond it fail as on a full disk. */
  maxSizeMB?: number;
}

/** One change waiting for the next commit; `dead` when a later change in the same group undid it. */
interface Op {
  run: () => void;
  dead: boolean;
}

/** A message row shared by the queue and in-flight rows that refer to it. */
interface MessageRef {
  message: Message;
  id: number;
  refs: number;
  /** Its row is deleted (or its insert undone): a new reference makes a new row. */
  gone: boolean;
  /** The group its insert is in (still pending while it is the current group). */
  group: number;
  insert: Op | undefined;
}

/** A queue or in-flight row of a session, with the group that wrote it last. */
interface RowRef {
  key: number;
  /** The message row it refers to (held directly: no lookup per change). */
  ref: MessageRef;
  group: number;
  op: Op | undefined;
  /** The op of the current group inserts the row (rather than updating it). */
  inserted?: boolean;
  /**
   * In flight but not written yet: a QoS 1 message taken from a queue row that is still on disk (seq). A
   * PUBACK before the deferral ends deletes just that queue row; otherwise the move is written then.
   */
  queueSeq?: number;
}

/** A queue-to-in-flight move not written yet, and when it is written if the PUBACK has not come. */
interface DeferredMove {
  journal: SqliteJournal;
  row: RowRef;
  m: InflightMessage;
  due: number;
}

/**
 * How long a QoS 1 message taken from a stored queue may stay in flight before its in-flight row is written
 * (ms). Nothing acknowledged depends on it: the queue row keeps the message durable meanwhile. A PUBACK
 * within it saves an in-flight insert and delete; a crash within it resends the message from the queue
 * (at least once) instead of with DUP and the same packet id.
 */
export const DEFER_INFLIGHT_MS = 1000;

/** Sorted runs of consecutive integers: a batch of deletes goes out as a few `BETWEEN` ranges. */
export function ranges(ids: number[]): [number, number][] {
  ids.sort((a, b) => a - b);
  const out: [number, number][] = [];
  for (const id of ids) {
    const last = out[out.length - 1];
    if (last !== undefined && id <= last[1] + 1) {
      if (id > last[1]) last[1] = id;
    } else out.push([id, id]);
  }
  return out;
}

/** What the loader hands to a session's journal: the rows that already exist. */
interface LoadedRows {
  queue: Map<QueuedMessage, RowRef>;
  inflight: Map<number, RowRef>;
  nextSeq: number;
}

export class SqliteStorage {
  readonly file: string;
  readonly dir: string;
  readonly db: Database.Database;
  private readonly lock: DirectoryLock;
  private pending: Op[] = [];
  private waiting: { done: () => void; failed?: (error: Error) => void }[] = [];
  private scheduled = false;
  /** The current commit group: changes recorded now go out with it. */
  group = 0;
  private readonly messages = new Map<Message, MessageRef>();
  /** Messages whose last reference went this group: deleted at the commit unless referred to again by then. */
  private orphans: MessageRef[] = [];
  /** Queue-to-in-flight moves not written yet, oldest first. */
  private deferred: DeferredMove[] = [];
  private deferredHead = 0;
  private deferTimer: NodeJS.Timeout | undefined;
  private nextMessageId = 1;
  private failing: string | undefined;
  /**
   * Transactions committed, changes written and skipped (undone in their group), and queue-to-in-flight
   * moves deferred and of those written (for tests and benchmarks: group commit at work).
   */
  readonly stats = { commits: 0, writes: 0, skipped: 0, deferred: 0, movesWritten: 0 };
  private readonly warn: (message: string, context: Record<string, unknown>) => void;
  readonly clock: { now(): number };
  private heartbeat: NodeJS.Timeout | undefined;
  private closed = false;
  readonly statements: Statements;
  private readonly commit: (ops: Op[]) => void;

  constructor(options: SqliteStoreOptions) {
    this.dir = resolve(options.dir);
    this.file = join(this.dir, 'petrel.db');
    this.warn = options.warn ?? (() => {});
    this.clock = options.clock ?? { now: () => Date.now() };
    try {
      mkdirSync(this.dir, { recursive: true });
      accessSync(this.dir, constants.W_OK);
    } catch (err) {
      throw new StorageError(`data directory ${this.dir} is not writable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): choose another --data-dir or fix its permissions`);
    }
    this.lock = DirectoryLock.acquire(join(this.dir, 'petrel.lock'), this.dir);
    let db: Database.Database | undefined;
    try {
      db = new Database(this.file);
      // Checked before any pragma that writes: a foreign or newer file stays as it was.
      prepareSchema(db, this.file);
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${options.durability === 'power' ? 'FULL' : 'NORMAL'}`);
      // Checkpoint the WAL into the file every ~40 MB rather than every 4 MB: fewer stalls under a flood.
      db.pragma('wal_autocheckpoint = 10000');
      if (options.maxSizeMB !== undefined) {
        const pageSize = db.pragma('page_size', { simple: true }) as number;
        db.pragma(`max_page_count = ${Math.max(1, Math.floor((options.maxSizeMB * 1048576) / pageSize))}`);
      }
      this.statements = prepare(db);
      this.commit = db.transaction((ops: Op[]) => {
        let writes = 0;
        for (const op of ops) {
          if (op.dead) continue;
          op.run();
          writes++;
        }
        this.stats.writes += writes;
        this.stats.skipped += ops.length - writes;
      });
    } catch (err) {
      db?.close();
      this.lock.release();
      if (err instanceof StorageError) throw err;
      const code = (err as { code?: string }).code;
      if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') throw new StorageError(`${this.file}: not a SQLite database or corrupt (${(err as Error).message}); restore a backup or move the file away`);
      throw new StorageError(`${this.file}: cannot be opened (${(err as Error).message})`);
    }
    this.db = db;
    const maxId = (this.db.prepare('SELECT max(id) AS id FROM messages').get() as { id: number | null }).id;
    this.nextMessageId = (maxId ?? 0) + 1;
    // When the process was last alive: a session connected when it died counts its expiry from then.
    this.heartbeat = setInterval(() => this.add(() => this.statements.setMeta.run('alive_at', String(this.clock.now()))), 1000);
    this.heartbeat.unref();
  }

  /** Records a change for the next commit. */
  add(run: () => void): Op {
    const op: Op = { run, dead: false };
    this.pending.push(op);
    this.schedule();
    return op;
  }

  private schedule(): void {
    if (!this.scheduled) {
      this.scheduled = true;
      // After this turn's I/O: everything the turn changed goes in one transaction.
      setImmediate(this.flush);
    }
  }

  /** A move from a stored queue into flight, written after DEFER_INFLIGHT_MS unless acknowledged before. */
  defer(journal: SqliteJournal, row: RowRef, m: InflightMessage): void {
    this.deferred.push({ journal, row, m, due: performance.now() + DEFER_INFLIGHT_MS });
    this.stats.deferred++;
    if (this.deferTimer === undefined) this.armDeferTimer();
  }

  private armDeferTimer(): void {
    const next = this.deferred[this.deferredHead];
    if (next === undefined) return;
    this.deferTimer = setTimeout(
      () => {
        this.deferTimer = undefined;
        this.schedule();
      },
      Math.max(1, next.due - performance.now()),
    );
    this.deferTimer.unref();
  }

  /** Writes the deferred moves that are due (all of them when `all`). */
  private writeDeferred(all: boolean): void {
    const list = this.deferred;
    if (list.length === this.deferredHead) return;
    const now = performance.now();
    let i = this.deferredHead;
    for (; i < list.length && (all || list[i]!.due <= now); i++) list[i]!.journal.writeMove(list[i]!.row, list[i]!.m);
    if (i === list.length) {
      this.deferred = [];
      this.deferredHead = 0;
    } else if (i > 1024 && i * 2 > list.length) {
      this.deferred = list.slice(i);
      this.deferredHead = 0;
    } else this.deferredHead = i;
  }

  /** Deletes the rows of messages no queue or in-flight row refers to any more, in ranges of ids. */
  private dropOrphans(): void {
    const orphans = this.orphans;
    if (orphans.length === 0) return;
    this.orphans = [];
    const ids: number[] = [];
    for (const ref of orphans) {
      // Referred to again (taken from a queue into flight), or already handled.
      if (ref.refs > 0 || ref.gone) continue;
      ref.gone = true;
      this.messages.delete(ref.message);
      if (ref.group === this.group && ref.insert !== undefined) ref.insert.dead = true;
      else ids.push(ref.id);
    }
    if (ids.length === 0) return;
    const s = this.statements;
    this.pending.push({ run: () => { for (const [from, to] of ranges(ids)) s.deleteMessages.run(from, to); }, dead: false });
  }

  /** Why writes fail now (a full disk, ...), or undefined while they work: what a readiness probe reports. */
  get writeProblem(): string | undefined {
    return this.failing;
  }

  /** Runs `done` once every change recorded so far is committed; `failed` if that commit fails. */
  afterCommit(done: () => void, failed?: (error: Error) => void): void {
    if (this.pending.length === 0) {
      done();
      return;
    }
    this.waiting.push({ done, failed });
  }

  /** Commits the changes recorded so far in one transaction, then runs the callbacks waiting for it. */
  readonly flush = (): void => {
    this.scheduled = false;
    if (this.closed) return;
    this.writeDeferred(false);
    this.dropOrphans();
    const ops = this.pending;
    const waiting = this.waiting;
    this.pending = [];
    this.waiting = [];
    this.group++;
    let error: Error | undefined;
    if (ops.length > 0) {
      try {
        this.commit(ops);
        this.stats.commits++;
        if (this.failing !== undefined) {
          this.warn('storage writes work again', { file: this.file });
          this.failing = undefined;
        }
      } catch (err) {
        error = err as Error;
        const cause = describeWriteError(err);
        if (this.failing !== cause) this.warn(`storage write failed: ${cause}; QoS 1/2 messages that cannot be stored are refused until it works again`, { file: this.file });
        this.failing = cause;
      }
    }
    for (const w of waiting) {
      if (error === undefined) w.done();
      else if (w.failed !== undefined) w.failed(error);
    }
    if (this.deferTimer === undefined) this.armDeferTimer();
  };

  /** A queue or in-flight row now refers to `message`: its row is written once, with the first reference. */
  refMessage(message: Message): MessageRef {
    let ref = this.messages.get(message);
    if (ref === undefined) {
      const id = this.nextMessageId++;
      const insert = this.add(() => this.statements.insertMessage.run(id, message.topic, message.payload, message.qos, message.retain ? 1 : 0, toJson(message.properties), message.expiresAt ?? null, message.from ?? null));
      ref = { message, id, refs: 0, gone: false, group: this.group, insert };
      this.messages.set(message, ref);
    }
    ref.refs++;
    return ref;
  }

  /** A row stopped referring to a message; its row goes at the commit if nothing refers to it by then. */
  unref(ref: MessageRef): void {
    if (--ref.refs > 0) return;
    this.orphans.push(ref);
    this.schedule();
  }

  /** A message loaded from the file (its references are counted as the rows referring to it are read). */
  adoptMessage(message: Message, id: number): MessageRef {
    const ref: MessageRef = { message, id, refs: 0, gone: false, group: -1, insert: undefined };
    this.messages.set(message, ref);
    return ref;
  }

  close(): void {
    if (this.closed) return;
    // A graceful stop writes every message in flight as such: resent with DUP after the restart.
    this.writeDeferred(true);
    this.flush();
    this.closed = true;
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat);
    if (this.deferTimer !== undefined) clearTimeout(this.deferTimer);
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // a full disk: the WAL stays, SQLite replays it at the next open
    }
    this.db.close();
    this.lock.release();
  }
}

function describeWriteError(err: unknown): string {
  const code = (err as { code?: string }).code;
  if (code === 'SQLITE_FULL') return 'the disk is full (SQLITE_FULL)';
  if (code === 'SQLITE_IOERR' || code?.startsWith('SQLITE_IOERR')) return `an I/O error (${code})`;
  if (code === 'SQLITE_READONLY') return 'the database became read-only (SQLITE_READONLY)';
  return `${code ?? 'error'}: ${(err as Error).message}`;
}

const SQL = {
  setMeta: 'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
  upsertSession: 'INSERT INTO sessions (client_id, expiry_interval, expires_at, client) VALUES (?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET expiry_interval = excluded.expiry_interval, expires_at = excluded.expires_at, client = coalesce(excluded.client, client)',
  setWill: 'UPDATE sessions SET will = ? WHERE client_id = ?',
  deleteSession: 'DELETE FROM sessions WHERE client_id = ?',
  deleteSubscriptions: 'DELETE FROM subscriptions WHERE client_id = ?',
  deleteQueue: 'DELETE FROM queue WHERE client_id = ?',
  deleteInflight: 'DELETE FROM inflight WHERE client_id = ?',
  deleteIncoming: 'DELETE FROM incoming_qos2 WHERE client_id = ?',
  upsertSubscription: 'INSERT INTO subscriptions (client_id, key, entry) VALUES (?, ?, ?) ON CONFLICT (client_id, key) DO UPDATE SET entry = excluded.entry',
  deleteSubscription: 'DELETE FROM subscriptions WHERE client_id = ? AND key = ?',
  insertMessage: 'INSERT INTO messages (id, topic, payload, qos, retain, properties, expires_at, from_client) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  deleteMessages: 'DELETE FROM messages WHERE id BETWEEN ? AND ?',
  insertQueued: 'INSERT OR REPLACE INTO queue (client_id, seq, message_id, qos, retain, subscription_ids, queued_at, share_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  deleteQueued: 'DELETE FROM queue WHERE client_id = ? AND seq BETWEEN ? AND ?',
  upsertInflight: 'INSERT OR REPLACE INTO inflight (client_id, packet_id, message_id, qos, state, retain, subscription_ids, share_key, send_order) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
  setInflightState: 'UPDATE inflight SET state = ? WHERE client_id = ? AND packet_id = ?',
  deleteInflightRows: 'DELETE FROM inflight WHERE client_id = ? AND packet_id BETWEEN ? AND ?',
  holdIncoming: 'INSERT OR IGNORE INTO incoming_qos2 (client_id, packet_id) VALUES (?, ?)',
  releaseIncoming: 'DELETE FROM incoming_qos2 WHERE client_id = ? AND packet_id = ?',
  upsertRetained: 'INSERT INTO retained (topic, payload, qos, properties, expires_at, from_client) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (topic) DO UPDATE SET payload = excluded.payload, qos = excluded.qos, properties = excluded.properties, expires_at = excluded.expires_at, from_client = excluded.from_client',
  deleteRetained: 'DELETE FROM retained WHERE topic = ?',
  setLiveWill: 'INSERT INTO live_wills (client_id, will) VALUES (?, ?) ON CONFLICT (client_id) DO UPDATE SET will = excluded.will',
  deleteLiveWill: 'DELETE FROM live_wills WHERE client_id = ?',
};

type Statements = { [K in keyof typeof SQL]: Database.Statement };

function prepare(db: Database.Database): Statements {
  const out: Partial<Statements> = {};
  for (const key of Object.keys(SQL) as (keyof typeof SQL)[]) out[key] = db.prepare(SQL[key]);
  return out as Statements;
}

/** The changes of one persistent session. */
class SqliteJournal implements SessionJournal {
  private readonly queueRows: Map<QueuedMessage, RowRef>;
  private readonly inflightRows: Map<number, RowRef>;
  private nextSeq: number;
  private ended = false;
  /** This group's queue and in-flight deletes, written as ranges by one op each (acknowledgements come in order). */
  private queueDeletes: { group: number; keys: number[] } | undefined;
  private inflightDeletes: { group: number; keys: number[] } | undefined;
  /** The queue row just taken out (its delete the last of queueDeletes): a QoS 1 put in flight next moves it. */
  private taken: { ref: MessageRef; seq: number; keys: number[] } | undefined;

  constructor(
    private readonly storage: SqliteStorage,
    private readonly clientId: string,
    loaded: LoadedRows | undefined,
  ) {
    this.queueRows = loaded?.queue ?? new Map();
    this.inflightRows = loaded?.inflight ?? new Map();
    this.nextSeq = loaded?.nextSeq ?? 0;
  }

  expiry(expiryInterval: number, expiresAt: number | undefined, client?: ClientInfo): void {
    if (this.ended) return;
    const s = this.storage.statements;
    const id = this.clientId;
    const clientJson = client === undefined ? null : toJson(client);
    this.storage.add(() => s.upsertSession.run(id, expiryInterval, expiresAt ?? null, clientJson));
  }

  deleted(): void {
    if (this.ended) return;
    this.ended = true;
    const s = this.storage.statements;
    const id = this.clientId;
    this.storage.add(() => {
      s.deleteSession.run(id);
      s.deleteSubscriptions.run(id);
      s.deleteQueue.run(id);
      s.deleteInflight.run(id);
      s.deleteIncoming.run(id);
    });
    for (const row of this.queueRows.values()) this.storage.unref(row.ref);
    for (const row of this.inflightRows.values()) this.storage.unref(row.ref);
    this.queueRows.clear();
    this.inflightRows.clear();
  }

  subscribed(key: string, entry: SubscriptionEntry): void {
    if (this.ended) return;
    const s = this.storage.statements;
    const id = this.clientId;
    const json = toJson(entry);
    this.storage.add(() => s.upsertSubscription.run(id, key, json));
  }

  unsubscribed(key: string): void {
    if (this.ended) return;
    const s = this.storage.statements;
    const id = this.clientId;
    this.storage.add(() => s.deleteSubscription.run(id, key));
  }

  queued(item: QueuedMessage): void {
    if (this.ended) return;
    const storage = this.storage;
    const s = storage.statements;
    const id = this.clientId;
    const ref = storage.refMessage(item.message);
    const messageId = ref.id;
    const seq = this.nextSeq++;
    const op = storage.add(() => s.insertQueued.run(id, seq, messageId, item.qos, item.retain ? 1 : 0, idsToText(item.subscriptionIds), item.queuedAt, item.shareKey ?? null));
    this.queueRows.set(item, { key: seq, ref, group: storage.group, op });
  }

  dequeued(item: QueuedMessage): void {
    const row = this.queueRows.get(item);
    if (row === undefined) return;
    this.queueRows.delete(item);
    const storage = this.storage;
    if (row.group === storage.group && row.op !== undefined) {
      row.op.dead = true;
      this.taken = undefined;
    } else {
      const keys = this.deleteQueued(row.key);
      this.taken = { ref: row.ref, seq: row.key, keys };
    }
    storage.unref(row.ref);
  }

  /** Deletes queue row `seq` at this group's commit; gives the batch it joined. */
  private deleteQueued(seq: number): number[] {
    const storage = this.storage;
    let batch = this.queueDeletes;
    if (batch === undefined || batch.group !== storage.group) {
      const keys: number[] = [];
      this.queueDeletes = batch = { group: storage.group, keys };
      const s = storage.statements;
      const id = this.clientId;
      storage.add(() => { for (const [from, to] of ranges(keys)) s.deleteQueued.run(id, from, to); });
    }
    batch.keys.push(seq);
    return batch.keys;
  }

  private deleteInflight(packetId: number): void {
    const storage = this.storage;
    let batch = this.inflightDeletes;
    if (batch === undefined || batch.group !== storage.group) {
      const keys: number[] = [];
      this.inflightDeletes = batch = { group: storage.group, keys };
      const s = storage.statements;
      const id = this.clientId;
      storage.add(() => { for (const [from, to] of ranges(keys)) s.deleteInflightRows.run(id, from, to); });
    }
    batch.keys.push(packetId);
  }

  /** A deferred move is due (or the broker stops): the queue row goes and the in-flight row is written. */
  writeMove(row: RowRef, m: InflightMessage): void {
    const seq = row.queueSeq;
    if (this.ended || seq === undefined || this.inflightRows.get(m.packetId) !== row) return;
    row.queueSeq = undefined;
    this.storage.stats.movesWritten++;
    this.deleteQueued(seq);
    this.writeInflight(row, m);
  }

  private writeInflight(row: RowRef, m: InflightMessage): void {
    const storage = this.storage;
    const s = storage.statements;
    const id = this.clientId;
    const messageId = row.ref.id;
    row.group = storage.group;
    row.inserted = true;
    row.op = storage.add(() => s.upsertInflight.run(id, m.packetId, messageId, m.qos, m.state, m.retain ? 1 : 0, idsToText(m.subscriptionIds), m.shareKey ?? null, m.order));
  }

  inflight(m: InflightMessage): void {
    if (this.ended) return;
    const storage = this.storage;
    const taken = this.taken;
    this.taken = undefined;
    const row = this.inflightRows.get(m.packetId);
    if (row !== undefined && row.ref.message === m.message) {
      // A step on (PUBREL sent): a row written in this group is written with the state it has then.
      if (row.queueSeq !== undefined) return this.writeMove(row, m);
      if (row.group === storage.group && row.op !== undefined) return;
      const s = storage.statements;
      const id = this.clientId;
      row.group = storage.group;
      row.inserted = false;
      row.op = storage.add(() => s.setInflightState.run(m.state, id, m.packetId));
      return;
    }
    if (row !== undefined) this.dropInflight(row);
    let ref: MessageRef;
    if (taken !== undefined && taken.ref.message === m.message && !taken.ref.gone) {
      // Straight from the queue: the same message row (its reference just dropped is taken again).
      ref = taken.ref;
      ref.refs++;
    } else ref = storage.refMessage(m.message);
    const next: RowRef = { key: m.packetId, ref, group: storage.group, op: undefined };
    this.inflightRows.set(m.packetId, next);
    if (m.qos === 1 && taken !== undefined && taken.ref === ref && taken.keys === this.queueDeletes?.keys && taken.keys[taken.keys.length - 1] === taken.seq) {
      // Straight from a queue row on disk, which keeps standing for it: written as in flight only if no
      // PUBACK comes within DEFER_INFLIGHT_MS (in a drain, most come within a few ms).
      taken.keys.pop();
      next.queueSeq = taken.seq;
      storage.defer(this, next, m);
      return;
    }
    this.writeInflight(next, m);
  }

  released(packetId: number): void {
    const row = this.inflightRows.get(packetId);
    if (row === undefined) return;
    this.inflightRows.delete(packetId);
    this.dropInflight(row);
  }

  private dropInflight(row: RowRef): void {
    const storage = this.storage;
    if (row.queueSeq !== undefined) {
      // Never written as in flight: its queue row goes.
      this.deleteQueued(row.queueSeq);
      row.queueSeq = undefined;
    } else if (row.group === storage.group && row.op !== undefined && row.inserted === true) {
      // An insert still pending goes with it; a state update pending is harmless before the delete.
      row.op.dead = true;
    } else this.deleteInflight(row.key);
    storage.unref(row.ref);
  }

  incomingQos2(packetId: number, held: boolean): void {
    if (this.ended) return;
    const s = this.storage.statements;
    const id = this.clientId;
    this.storage.add(held ? () => s.holdIncoming.run(id, packetId) : () => s.releaseIncoming.run(id, packetId));
  }

  will(will: StoredWill | undefined): void {
    if (this.ended) return;
    const s = this.storage.statements;
    const id = this.clientId;
    const json = toJson(will);
    this.storage.add(() => s.setWill.run(json, id));
  }

  afterCommit(done: () => void): void {
    // A failed commit was logged; the broker goes on serving from memory.
    this.storage.afterCommit(done, done);
  }
}

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
    type QueueRow = [clientId: string, seq: number, messageId: number, qos: number, retain: number, subscriptionIds: string | null, queuedAt: number, shareKey: string | null];
    type InflightRow = [clientId: string, packetId: number, messageId: number, qos: number, state: string, retain: number, subscriptionIds: string | null, shareKey: string | null, order: number];
    const subscriptions = new Cursor<SubscriptionRow>(db.prepare('SELECT client_id, key, entry FROM subscriptions ORDER BY client_id, key'));
    const queue = new Cursor<QueueRow>(db.prepare('SELECT client_id, seq, message_id, qos, retain, subscription_ids, queued_at, share_key FROM queue ORDER BY client_id, seq'));
    const inflight = new Cursor<InflightRow>(db.prepare('SELECT client_id, packet_id, message_id, qos, state, retain, subscription_ids, share_key, send_order FROM inflight ORDER BY client_id, packet_id'));
    const incoming = new Cursor<[clientId: string, packetId: number]>(db.prepare('SELECT client_id, packet_id FROM incoming_qos2 ORDER BY client_id, packet_id'));
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
        for (const r of queue.rowsOf(clientId)) {
          const ref = messageOf(r[2]);
          if (ref === undefined) continue;
          const item: QueuedMessage = { message: ref.message, qos: r[3] as QoS, retain: r[4] === 1, subscriptionIds: idsFromText(r[5]), queuedAt: r[6], shareKey: r[7] ?? undefined };
          session.queue.push(item);
          const rows = this.rowsOf(clientId);
          rows.queue.set(item, { key: r[1], ref, group: -1, op: undefined });
          rows.nextSeq = r[1] + 1;
        }
        for (const r of inflight.rowsOf(clientId)) {
          const ref = messageOf(r[2]);
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
    db.prepare('DELETE FROM messages WHERE id NOT IN (SELECT message_id FROM queue UNION SELECT message_id FROM inflight)').run();
    yield* ended;
  }

  private rowsOf(clientId: string): LoadedRows {
    let rows = this.loaded.get(clientId);
    if (rows === undefined) this.loaded.set(clientId, (rows = { queue: new Map(), inflight: new Map(), nextSeq: 0 }));
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
