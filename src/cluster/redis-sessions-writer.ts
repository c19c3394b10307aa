// The commit groups of the Redis session store: every change recorded during one event-loop turn goes to Redis
// in ONE MULTI/EXEC (numbered, safe to send again: redis-sessions-commit.ts), and the callbacks waiting for it run when its
// reply came (failed ones on an error reply or a lost connection). Also the messages shared by queues and
// in-flight windows: stored once under `${prefix}:msg:${id}` with a reference count, deleted by the last
// reference.
//
// Contract (as SQLite's, src/storage/sqlite-storage.ts): a change recorded now is committed before the
// callbacks given to afterCommit() now run. A change made and undone within one turn (queued and sent, put in
// flight and acknowledged) never reaches Redis.
//
// A commit that fails is kept and sent again, before anything newer and with the same number, so Redis ends
// with what the node holds: while commits fail the changes of later turns wait in one backlog (no commit of
// theirs is sent until the failed ones went through), tried again with a backoff and at once when the
// connection is ready again. Waiters of a failed commit still fail (their publishers were refused: never
// acknowledged late). A backlog past `maxKept` commands is replaced by its net effect (redis-sessions-compact.ts).
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Message } from '../broker/message.js';
import { fromJson, toJson } from '../storage/codec.js';
import { GUARD_LUA, GUARD_SHA, guardArgs, isGuarded, type Cmd } from './redis-sessions-commit.js';
import { compact } from './redis-sessions-compact.js';

/** One Redis command of a commit group; `dead` when a later change of the same group undid it. */
export interface Op {
  cmd: Cmd;
  dead: boolean;
  /** The fields it sets did not exist in Redis (a new record): compaction forgets them when deleted again. */
  creates?: boolean;
}

/** A stored message and how many of this node's queue and in-flight records refer to it. */
export interface MessageRef {
  readonly message: Message;
  readonly id: string;
  /** References held now by this node's sessions. */
  refs: number;
  /** Of refs, those counted in Redis once the commits made so far are applied (the rest at the next one). */
  committed: number;
  /** Its hash exists in Redis (or is written by a commit made already). */
  written: boolean;
  /** The message's cluster identity (origin, life, number: forward-codec.ts), stored with it; undefined off a cluster. */
  readonly identity: string | undefined;
}

export interface RedisWriterOptions {
  prefix: string;
  /** Where failed commits are reported (once per cause, and when commits work again). */
  warn?: (message: string, context: Record<string, unknown>) => void;
  /** Commands kept for a retry past which they are compacted to their net effect (default 100 000). */
  maxKept?: number;
  /** Backoff between retries while commits fail (ms): first, and the most it grows to (doubling). */
  retryMs?: { first: number; max: number };
}

interface Waiter {
  done: () => void;
  failed?: (error: Error) => void;
}

/** Commands committed together, with one number; kept until Redis has them. */
interface Batch {
  /** 0 until first sent; the same number every time it is sent again. */
  seq: number;
  cmds: Cmd[];
  waiters: Waiter[];
  /** open: the backlog, still taking changes; sent: the reply has not come; failed: to be sent again. */
  state: 'open' | 'sent' | 'failed';
  /** Times sent: a reply to an earlier sending (given up on when the connection closed) is ignored. */
  sent: number;
}

export class RedisSessionWriter {
  readonly prefix: string;
  private pending: Op[] = [];
  private waiting: Waiter[] = [];
  private scheduled = false;
  /** The current commit group: changes recorded now go out with it. */
  turn = 0;
  private readonly messages = new Map<Message, MessageRef>();
  private readonly byId = new Map<string, MessageRef>();
  /** Messages whose count changed this turn. */
  private touched = new Set<MessageRef>();
  /** Commits not yet known to be in Redis, oldest first. */
  private batches: Batch[] = [];
  /** Commits fail: new changes go to the backlog, retried with a backoff. */
  private retrying = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private backoff: number;
  /** Message ids: unique across nodes and restarts (a random part per store, then a counter). */
  private readonly idPrefix = randomBytes(6).toString('base64url');
  private nextId = 0;
  /** The number of the last commit made; the mark in Redis says which one was applied last. */
  private seq = 0;
  private readonly markKey: string;
  /** The script was sent whole on this connection (EVALSHA works); reset by NOSCRIPT. */
  private scriptSent = false;
  /** HSETs creating fields that did not exist (compaction forgets such a field when it is deleted again). */
  private readonly creating = new WeakSet<Cmd>();
  private readonly maxKept: number;
  private compactAt: number;
  private readonly retryMs: { first: number; max: number };
  private failing: string | undefined;
  private closed = false;
  /** Called when no commit is waiting for its reply. */
  private idle: (() => void)[] = [];
  private readonly warn: (message: string, context: Record<string, unknown>) => void;
  /**
   * The identity of a message being recorded now (a cluster node's Forwarder.identityOf, called while it is
   * dispatched): stored with it, so a node reading the session back can tell it from a copy it kept itself.
   */
  identify: ((message: Message) => string | undefined) | undefined;
  /** Commands added to each commit as it is built: a cluster node's inbox read position (forwarder.ts). */
  extraCommands: (() => (string | number | Buffer)[][]) | undefined;
  /** Commits sent (retries included), commands in them, changes skipped (undone within their turn), ... */
  readonly stats = { commits: 0, commands: 0, skipped: 0, failed: 0, retried: 0, compacted: 0 };

  constructor(
    /** Set once by bind() when the store was made before its connection (a broker's cluster). */
    public redis: Redis,
    options: RedisWriterOptions,
  ) {
    this.prefix = options.prefix;
    this.warn = options.warn ?? (() => {});
    this.markKey = `${this.prefix}:applied:${this.idPrefix}`;
    this.maxKept = this.compactAt = options.maxKept ?? 100_000;
    this.retryMs = options.retryMs ?? { first: 100, max: 2000 };
    this.backoff = this.retryMs.first;
  }

  messageKey(id: string): string {
    return `${this.prefix}:msg:${id}`;
  }

  /** Records a command for the next commit; `creates`: the fields it sets did not exist. */
  add(cmd: Cmd, creates = false): Op {
    const op: Op = { cmd, dead: false, creates };
    this.pending.push(op);
    this.schedule();
    return op;
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    // After this turn's I/O: everything the turn changed goes in one commit.
    setImmediate(this.flush);
  }

  /** A record now refers to `message`: its hash is written once, with the first reference. */
  ref(message: Message): MessageRef {
    let ref = this.messages.get(message);
    if (ref === undefined) {
      ref = { message, id: `${this.idPrefix}.${(this.nextId++).toString(36)}`, refs: 0, committed: 0, written: false, identity: this.identify?.(message) };
      this.messages.set(message, ref);
      this.byId.set(ref.id, ref);
    }
    ref.refs++;
    this.touched.add(ref);
    this.schedule();
    return ref;
  }

  unref(ref: MessageRef): void {
    ref.refs--;
    this.touched.add(ref);
    this.schedule();
  }

  /**
   * A record of this node that refers to `ref` now belongs to another node (its session moved there): the
   * count in Redis keeps it, only this node stops holding it. A count still to be written is written.
   */
  disown(ref: MessageRef): void {
    ref.refs--;
    ref.committed--;
    this.touched.add(ref);
    this.schedule();
  }

  /** A message read from Redis (loaded or fetched), with `refs` records of it now held here. */
  adopt(id: string, decode: () => StoredRecord | undefined, refs: number): MessageRef | undefined {
    let ref = this.byId.get(id);
    if (ref === undefined) {
      const stored = decode();
      if (stored === undefined) return undefined;
      const message = stored.message;
      ref = { message, id, refs: 0, committed: 0, written: true, identity: stored.identity };
      this.byId.set(id, ref);
      this.messages.set(message, ref);
    }
    ref.refs += refs;
    ref.committed += refs;
    return ref;
  }

  /** Why commits fail now (Redis unreachable, ...), or undefined while they work. */
  get writeProblem(): string | undefined {
    return this.failing;
  }

  /** Changes made and not yet known to be in Redis (commands), for the store's status. */
  get unwritten(): number {
    let n = 0;
    for (const b of this.batches) n += b.cmds.length;
    return n;
  }

  /**
   * Runs `done` once every change recorded so far is committed (after the reply of the commit that carries
   * it, or of the last one made when nothing is pending); `failed` instead if that commit failed.
   */
  afterCommit(done: () => void, failed?: (error: Error) => void): void {
    if (this.pending.length > 0 || this.touched.size > 0) {
      this.waiting.push({ done, failed });
      return;
    }
    // Nothing recorded this turn: the caller (a PUBLISH that changed no stored session) has nothing to wait for
    // while Redis is away; the changes kept for later were refused already. So local traffic goes on.
    if (this.retrying && this.redis.status !== 'ready') {
      done();
      return;
    }
    this.wait([{ done, failed }]);
  }

  /** Runs `done` once every change recorded so far, this turn's or earlier, is in Redis; `failed` if it cannot be now. */
  whenWritten(done: () => void, failed?: (error: Error) => void): void {
    if (this.scheduled || this.pending.length > 0 || this.touched.size > 0) this.waiting.push({ done, failed });
    else this.wait([{ done, failed }]);
  }

  /** Waiters for what was recorded before this turn: the last commit made, or the backlog while retrying. */
  private wait(waiters: Waiter[]): void {
    if (waiters.length === 0) return;
    if (this.retrying) {
      // Redis away: refused now rather than when the next retry fails.
      if (this.redis.status !== 'ready') {
        const error = new Error(this.failing ?? 'Redis not connected');
        for (const w of waiters) w.failed?.(error);
        return;
      }
      this.backlog().waiters.push(...waiters);
      return;
    }
    const last = this.batches[this.batches.length - 1];
    if (last === undefined) for (const w of waiters) w.done();
    else last.waiters.push(...waiters);
  }

  /** The open batch taking changes while commits fail. */
  private backlog(): Batch {
    const last = this.batches[this.batches.length - 1];
    if (last !== undefined && last.state === 'open') return last;
    const batch: Batch = { seq: 0, cmds: [], waiters: [], state: 'open', sent: 0 };
    this.batches.push(batch);
    return batch;
  }

  /** Sends the changes recorded so far in one commit; the callbacks waiting for it run at its reply. */
  readonly flush = (): void => {
    this.scheduled = false;
    const ops = this.pending;
    const waiting = this.waiting;
    const touched = this.touched;
    this.pending = [];
    this.waiting = [];
    this.touched = new Set();
    this.turn++;
    const cmds: Cmd[] = [];
    const releases: Cmd[] = [];
    for (const ref of touched) {
      const delta = ref.refs - ref.committed;
      ref.committed = ref.refs;
      if (delta > 0) {
        const key = this.messageKey(ref.id);
        if (!ref.written) {
          ref.written = true;
          cmds.push(['message', key, encodeMessage(ref.message, ref.identity)]);
        }
        cmds.push(['incr', key, delta]);
      } else if (delta < 0 && ref.written) releases.push(['release', this.messageKey(ref.id), -delta]);
      if (ref.refs <= 0) {
        this.messages.delete(ref.message);
        this.byId.delete(ref.id);
      }
    }
    // The stored messages (text, counts) go to the guard, which runs first in the MULTI: one atomic step with
    // the records that refer to them.
    for (const op of ops) {
      if (op.dead) this.stats.skipped++;
      else {
        cmds.push(op.cmd);
        if (op.creates === true) this.creating.add(op.cmd);
      }
    }
    for (const r of releases) cmds.push(r);
    if (this.extraCommands !== undefined) for (const c of this.extraCommands()) cmds.push(c);
    if (cmds.length === 0) {
      this.wait(waiting);
      return;
    }
    if (this.retrying || typeof this.redis.multi !== 'function') {
      // Commits fail, or no connection yet (bound when the cluster connects): kept for the next try.
      this.keep(cmds, waiting);
      return;
    }
    const batch: Batch = { seq: 0, cmds, waiters: waiting, state: 'open', sent: 0 };
    this.batches.push(batch);
    this.send(batch);
  };

  /** Changes to the backlog, compacted when it grows past the bound. */
  private keep(cmds: Cmd[], waiting: Waiter[]): void {
    if (!this.retrying) this.startRetrying('Redis not connected yet');
    const backlog = this.backlog();
    for (const c of cmds) backlog.cmds.push(c);
    this.wait(waiting);
    if (backlog.cmds.length > this.compactAt) {
      const before = backlog.cmds.length;
      backlog.cmds = compact(backlog.cmds, this.creating);
      this.compactAt = Math.max(this.maxKept, 2 * backlog.cmds.length);
      if (this.stats.compacted++ === 0) this.warn(`redis session writes kept for a retry passed ${this.maxKept} commands: kept as their net effect from now on (${before} commands now ${backlog.cmds.length})`, {});
    }
  }

  private send(batch: Batch): void {
    if (batch.seq === 0) batch.seq = ++this.seq;
    else this.stats.retried++;
    // Every commit before this one is applied (none is waiting): a missing or older mark in Redis is passed over.
    const force = this.batches[0] === batch;
    batch.state = 'sent';
    const sending = ++batch.sent;
    const current = () => batch.state === 'sent' && batch.sent === sending;
    this.stats.commits++;
    this.stats.commands += batch.cmds.length;
    const multi = this.redis.multi();
    // The guard first: the counts, once. Once per connection the script goes whole (EVAL): the EVALSHAs sent
    // after it on the same connection find it.
    const guard = guardArgs(this.markKey, batch.seq, force, batch.cmds);
    if (this.scriptSent) multi.call('evalsha', GUARD_SHA, ...guard);
    else {
      this.scriptSent = true;
      multi.call('eval', GUARD_LUA, ...guard);
    }
    for (const cmd of batch.cmds) if (!isGuarded(cmd)) multi.call(...(cmd as [string, ...(string | number | Buffer)[]]));
    void multi.exec().then(
      (replies) => {
        if (!current()) return;
        if (replies === null) return this.replied(batch, new Error('MULTI aborted'), false);
        const [guardError] = replies[0] ?? [new Error('no reply')];
        if (guardError) {
          if (guardError.message.startsWith('NOSCRIPT')) this.scriptSent = false;
          return this.replied(batch, guardError, false);
        }
        // Applied; a command that failed (a key of another type: a bug or a foreign key) would fail again.
        const failed = replies.find(([err]) => err);
        this.replied(batch, failed?.[0] ?? undefined, true);
      },
      (err: unknown) => current() && this.replied(batch, err instanceof Error ? err : new Error(String(err)), false),
    );
  }

  /**
   * The connection closed: the commits sent on it get no reply (ioredis, not resending, drops them at the
   * reconnect without settling them). Whether Redis ran them is unknown: they are sent again.
   */
  connectionClosed(): void {
    for (const b of this.batches) if (b.state === 'sent') this.replied(b, new Error('connection to Redis lost before the reply'), false);
  }

  /** The reply of `batch`: `applied` when Redis ran it (a command of it may have failed: `error`). */
  private replied(batch: Batch, error: Error | undefined, applied: boolean): void {
    if (applied) {
      this.batches.splice(this.batches.indexOf(batch), 1);
      if (error !== undefined) {
        // Applied, one command refused (a key of another type): sending it again would not help.
        this.warn(`redis session write partly failed: ${error.message}`, {});
        for (const w of batch.waiters) w.failed?.(error);
      } else for (const w of batch.waiters) w.done();
      if (this.retrying) this.retry();
    } else {
      batch.state = 'failed';
      this.stats.failed++;
      const waiters = batch.waiters;
      batch.waiters = [];
      this.startRetrying(error!.message);
      for (const w of waiters) w.failed?.(error!);
      this.later();
    }
    if (!this.batches.some((b) => b.state === 'sent')) for (const f of this.idle.splice(0)) f();
  }

  /** Commits fail: said once until they work again (the first cause; writeProblem follows the latest). */
  private startRetrying(reason: string): void {
    if (this.failing === undefined) this.warn(`redis session write failed: ${reason}; QoS 1/2 messages that cannot be stored are refused until it works again, the changes are written then`, {});
    // A gap only follows the failure that caused it.
    if (!reason.startsWith('PETRELGAP') || this.failing === undefined) this.failing = reason;
    this.retrying = true;
  }

  /** A retry after the backoff (doubling up to its most). */
  private later(): void {
    if (this.retryTimer !== undefined || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.retry();
    }, this.backoff);
    this.retryTimer.unref?.();
    this.backoff = Math.min(this.backoff * 2, this.retryMs.max);
  }

  /** The connection is ready again: retry now rather than at the end of the backoff. */
  connectionReady(): void {
    // A new connection has no script yet (another server, or one restarted).
    this.scriptSent = false;
    if (!this.retrying) return;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.backoff = this.retryMs.first;
    this.retry();
  }

  /**
   * Sends the failed commits again, in order; once they are all in, the backlog as the next commit; once that
   * is in too, commits work again.
   */
  private retry(): void {
    if (this.batches.some((b) => b.state === 'sent')) return; // its reply calls back
    if (typeof this.redis.multi !== 'function') return; // bind() and its 'ready' come first
    if (this.redis.status !== 'ready') {
      // It would fail at once: wait for 'ready' (connectionReady), or the backoff for a client not watched.
      this.later();
      return;
    }
    const failed = this.batches.filter((b) => b.state === 'failed');
    if (failed.length > 0) {
      for (const b of failed) this.send(b);
      return;
    }
    const backlog = this.batches[0];
    if (backlog !== undefined && backlog.cmds.length > 0) {
      // The changes of many turns as one commit: their net effect (a message stored and let go meanwhile is not).
      if (backlog.seq === 0) backlog.cmds = compact(backlog.cmds, this.creating);
      this.send(backlog);
      return;
    }
    this.batches = [];
    this.retrying = false;
    this.backoff = this.retryMs.first;
    this.compactAt = this.maxKept;
    if (this.failing !== undefined) {
      this.warn('redis session writes work again; the changes kept meanwhile are written', {});
      this.failing = undefined;
    }
    for (const w of backlog?.waiters ?? []) w.done();
  }

  /**
   * Sends what is pending (and, while commits fail, tries the kept ones once more); resolves when every commit
   * sent has its reply.
   */
  async close(): Promise<void> {
    if (!this.closed) {
      this.flush();
      this.closed = true;
      if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      await this.settled();
      // The failed commits, then the backlog: a few rounds, if Redis answers.
      for (let round = 0; round < 3 && this.retrying && this.redis.status === 'ready'; round++) {
        this.retry();
        await this.settled();
      }
      const left = this.unwritten;
      if (left > 0) this.warn(`redis session store closed with ${left} changes not written to Redis`, {});
    }
    await this.settled();
  }

  /** Resolves when no commit waits for its reply. */
  private settled(): Promise<void> {
    if (!this.batches.some((b) => b.state === 'sent')) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }
}

interface StoredMessage {
  topic: string;
  payload: Buffer;
  qos: Message['qos'];
  retain: boolean;
  properties?: Message['properties'];
  expiresAt?: number;
  from?: string;
  /** Its cluster identity (MessageRef.identity). */
  id?: string;
}

export function encodeMessage(m: Message, identity?: string): string {
  const stored: StoredMessage = { topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, properties: m.properties, expiresAt: m.expiresAt, from: m.from, id: identity };
  return toJson(stored)!;
}

/** A stored message and its cluster identity. */
export interface StoredRecord {
  message: Message;
  identity: string | undefined;
}

export function decodeMessage(text: string): StoredRecord {
  const m = fromJson<StoredMessage>(text)!;
  // Field order of createMessage (one hidden class).
  const message: Message = { topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, properties: m.properties ?? undefined, expiresAt: m.expiresAt ?? undefined, from: m.from ?? undefined };
  return { message, identity: m.id ?? undefined };
}
