// The SQLite file of a broker and its commit groups: changes recorded during one event-loop turn are committed
// in one transaction, and the callbacks waiting for them run after it (the broker acknowledges there). Also
// the rows of messages shared by queues and in-flight windows (stored once, deleted with the last reference;
// a message queued for one session only is stored inline in its queue row and has none), and the
// queue-to-in-flight moves written only when their PUBACK is late.
//
// Durability contract: a change recorded now is committed before the callbacks given to afterCommit() now
// run. A change made and undone within one turn (a message put in flight and acknowledged, queued and sent)
// never reaches the disk.
import { accessSync, constants, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { Message } from '../broker/message.js';
import type { InflightMessage } from '../broker/store/types.js';
import { toJson } from './codec.js';
import { DirectoryLock } from './lock.js';
import { prepareSchema, StorageError } from './schema.js';

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
export interface Op {
  run: () => void;
  dead: boolean;
}

/**
 * A message and the queue and in-flight rows that refer to it (`refs`). Its messages row is written at the
 * first commit with a row that needs it (messageId()): never while its only row is a queue row, which then
 * holds it inline.
 */
export interface MessageRef {
  message: Message;
  /** Its messages row, once written (undefined: none, as long as the message lives only inline). */
  id: number | undefined;
  refs: number;
  /** No row refers to it any more (its messages row deleted): a new reference makes a new MessageRef. */
  gone: boolean;
}

/** A queue or in-flight row of a session, with the group that wrote it last. */
export interface RowRef {
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
  /** That queue row is marked in flight (packet id, send order): the deferral ended before the PUBACK came. */
  moved?: boolean;
}

/** A queue-to-in-flight move not written yet, and when it is written if the PUBACK has not come. */
interface DeferredMove {
  journal: MoveWriter;
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

/** What writes a deferred move when it is due: the journal of its session. */
export interface MoveWriter {
  writeMove(row: RowRef, m: InflightMessage): void;
}

export class SqliteStorage {
  readonly file: string;
  readonly dir: string;
  readonly db: Database.Database;
  private readonly lock: DirectoryLock;
  private pending: Op[] = [];
  /** Callbacks waiting for the next commit, side by side (no object per acknowledgement waiting). */
  private waitingDone: (() => void)[] = [];
  private waitingFailed: (((error: Error) => void) | undefined)[] = [];
  private scheduled = false;
  /** The current commit group: changes recorded now go out with it. */
  group = 0;
  /**
   * The messages some row refers to, so that another row referring to the same message in the same group
   * shares its MessageRef. Those held only inline leave it at their commit (forget()): it stays as small as
   * the messages with a messages row, not as large as every queue.
   */
  private readonly messages = new Map<Message, MessageRef>();
  /** Messages whose last reference went this group: deleted at the commit unless referred to again by then. */
  private orphans: MessageRef[] = [];
  /** Queue-to-in-flight moves not written yet, oldest first. */
  private deferred: DeferredMove[] = [];
  private deferredHead = 0;
  private deferTimer: NodeJS.Timeout | undefined;
  private nextMessageId = 1;
  /** Messages rows inserted by the commit under way: forgotten again if it fails (rolled back). */
  private inserted: MessageRef[] = [];
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
  defer(journal: MoveWriter, row: RowRef, m: InflightMessage): void {
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
      this.forget(ref);
      // Written by an earlier commit (a message only ever inline, or never committed, has no row).
      if (ref.id !== undefined) ids.push(ref.id);
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
    this.waitingDone.push(done);
    this.waitingFailed.push(failed);
  }

  /** Commits the changes recorded so far in one transaction, then runs the callbacks waiting for it. */
  readonly flush = (): void => {
    this.scheduled = false;
    if (this.closed) return;
    this.writeDeferred(false);
    this.dropOrphans();
    const ops = this.pending;
    const done = this.waitingDone;
    const failed = this.waitingFailed;
    this.pending = [];
    if (done.length > 0) {
      this.waitingDone = [];
      this.waitingFailed = [];
    }
    this.group++;
    let error: Error | undefined;
    if (ops.length > 0) {
      try {
        this.commit(ops);
        this.inserted.length = 0;
        this.stats.commits++;
        if (this.failing !== undefined) {
          this.warn('storage writes work again', { file: this.file });
          this.failing = undefined;
        }
      } catch (err) {
        error = err as Error;
        // Rolled back: those messages have no row after all (a later commit writes them again if needed).
        for (const ref of this.inserted) ref.id = undefined;
        this.inserted.length = 0;
        const cause = describeWriteError(err);
        if (this.failing !== cause) this.warn(`storage write failed: ${cause}; QoS 1/2 messages that cannot be stored are refused until it works again`, { file: this.file });
        this.failing = cause;
      }
    }
    if (error === undefined) for (let i = 0; i < done.length; i++) done[i]!();
    else for (let i = 0; i < failed.length; i++) failed[i]?.(error);
    if (this.deferTimer === undefined) this.armDeferTimer();
  };

  /** A queue or in-flight row now refers to `message` (its messages row is written only if one needs it). */
  refMessage(message: Message): MessageRef {
    let ref = this.messages.get(message);
    if (ref === undefined) {
      ref = { message, id: undefined, refs: 0, gone: false };
      this.messages.set(message, ref);
    }
    ref.refs++;
    return ref;
  }

  /**
   * `ref`'s message is held inline by its one row: no later row needs to find it (one that does gets a
   * MessageRef of its own and, if it cannot be inline, a messages row of its own).
   */
  forget(ref: MessageRef): void {
    if (this.messages.get(ref.message) === ref) this.messages.delete(ref.message);
  }

  /**
   * The id of `ref`'s messages row, inserting it now if it has none: called by the ops of a commit (inside
   * its transaction) whose row refers to the message rather than holding it inline.
   */
  messageId(ref: MessageRef): number {
    let id = ref.id;
    if (id === undefined) {
      ref.id = id = this.nextMessageId++;
      const m = ref.message;
      this.statements.insertMessage.run(id, m.topic, m.payload, m.qos, m.retain ? 1 : 0, toJson(m.properties), m.expiresAt ?? null, m.from ?? null);
      this.inserted.push(ref);
    }
    return id;
  }

  /** A row stopped referring to a message; its row goes at the commit if nothing refers to it by then. */
  unref(ref: MessageRef): void {
    if (--ref.refs > 0) return;
    this.orphans.push(ref);
    this.schedule();
  }

  /**
   * A message loaded from the file, from its messages row `id` or inline in a queue row (id undefined); its
   * references are counted as the rows referring to it are read.
   */
  adoptMessage(message: Message, id: number | undefined): MessageRef {
    const ref: MessageRef = { message, id, refs: 0, gone: false };
    if (id !== undefined) this.messages.set(message, ref);
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
  insertQueuedPlain: 'INSERT OR REPLACE INTO queue (client_id, seq, qos, retain, queued_at, topic, payload, message_qos, message_retain, from_client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  insertQueuedInline: 'INSERT OR REPLACE INTO queue (client_id, seq, qos, retain, subscription_ids, queued_at, share_key, topic, payload, message_qos, message_retain, properties, expires_at, from_client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  insertRun: 'INSERT OR REPLACE INTO queue_runs (client_id, seq, count, messages) VALUES (?, ?, ?, ?)',
  deleteRun: 'DELETE FROM queue_runs WHERE client_id = ? AND seq = ?',
  deleteRuns: 'DELETE FROM queue_runs WHERE client_id = ?',
  insertRunGone: 'INSERT OR REPLACE INTO queue_runs_gone (client_id, seq, to_seq) VALUES (?, ?, ?)',
  deleteRunGone: 'DELETE FROM queue_runs_gone WHERE client_id = ? AND seq BETWEEN ? AND ?',
  deleteRunsGone: 'DELETE FROM queue_runs_gone WHERE client_id = ?',
  markRunInflight: 'INSERT OR REPLACE INTO queue_runs_moved (client_id, seq, packet_id, send_order) VALUES (?, ?, ?, ?)',
  deleteRunMoved: 'DELETE FROM queue_runs_moved WHERE client_id = ? AND seq BETWEEN ? AND ?',
  deleteRunsMoved: 'DELETE FROM queue_runs_moved WHERE client_id = ?',
  markQueuedInflight: 'UPDATE queue SET packet_id = ?, send_order = ? WHERE client_id = ? AND seq = ?',
  deleteQueued: 'DELETE FROM queue WHERE client_id = ? AND seq BETWEEN ? AND ?',
  upsertInflight: 'INSERT OR REPLACE INTO inflight (client_id, packet_id, message_id, qos, state, retain, subscription_ids, share_key, send_order) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
  upsertInflightInline: 'INSERT OR REPLACE INTO inflight (client_id, packet_id, qos, state, retain, subscription_ids, share_key, send_order, topic, payload, message_qos, message_retain, properties, expires_at, from_client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  setInflightState: 'UPDATE inflight SET state = ? WHERE client_id = ? AND packet_id = ?',
  deleteInflightRows: 'DELETE FROM inflight WHERE client_id = ? AND packet_id BETWEEN ? AND ?',
  holdIncoming: 'INSERT OR IGNORE INTO incoming_qos2 (client_id, packet_id) VALUES (?, ?)',
  releaseIncoming: 'DELETE FROM incoming_qos2 WHERE client_id = ? AND packet_id = ?',
  upsertRetained: 'INSERT INTO retained (topic, payload, qos, properties, expires_at, from_client) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (topic) DO UPDATE SET payload = excluded.payload, qos = excluded.qos, properties = excluded.properties, expires_at = excluded.expires_at, from_client = excluded.from_client',
  deleteRetained: 'DELETE FROM retained WHERE topic = ?',
  setLiveWill: 'INSERT INTO live_wills (client_id, will) VALUES (?, ?) ON CONFLICT (client_id) DO UPDATE SET will = excluded.will',
  deleteLiveWill: 'DELETE FROM live_wills WHERE client_id = ?',
};

export type Statements = { [K in keyof typeof SQL]: Database.Statement };

function prepare(db: Database.Database): Statements {
  const out: Partial<Statements> = {};
  for (const key of Object.keys(SQL) as (keyof typeof SQL)[]) out[key] = db.prepare(SQL[key]);
  return out as Statements;
}
