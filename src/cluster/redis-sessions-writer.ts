// The commit groups of the Redis session store: every change recorded during one event-loop turn goes to Redis
// in ONE MULTI/EXEC, and the callbacks waiting for it run when its reply came (failed ones on an error reply or
// a lost connection). Also the messages shared by queues and in-flight windows: stored once under
// `${prefix}:msg:${id}` with a reference count, deleted by the last reference.
//
// Contract (as SQLite's, src/storage/sqlite-storage.ts): a change recorded now is committed before the
// callbacks given to afterCommit() now run. A change made and undone within one turn (queued and sent, put in
// flight and acknowledged) never reaches Redis.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Message } from '../broker/message.js';
import { fromJson, toJson } from '../storage/codec.js';

/** One Redis command of a commit group; `dead` when a later change of the same group undid it. */
export interface Op {
  cmd: (string | number | Buffer)[];
  dead: boolean;
}

/** A stored message and how many of this node's queue and in-flight records refer to it. */
export interface MessageRef {
  readonly message: Message;
  readonly id: string;
  /** References held now by this node's sessions. */
  refs: number;
  /** Of refs, those already counted in Redis (the rest are counted at the next commit). */
  committed: number;
  /** Its hash exists in Redis (or is written by a commit already sent). */
  written: boolean;
}

/**
 * Decrements a message's count and deletes it at zero: one script, so the check and the delete are one
 * step even when several nodes release the same message.
 */
const RELEASE = "if redis.call('HINCRBY', KEYS[1], 'refs', -tonumber(ARGV[1])) <= 0 then redis.call('DEL', KEYS[1]) end return 0";

export interface RedisWriterOptions {
  prefix: string;
  /** Where failed commits are reported (once per cause, and when commits work again). */
  warn?: (message: string, context: Record<string, unknown>) => void;
}

export class RedisSessionWriter {
  readonly prefix: string;
  private pending: Op[] = [];
  private waiting: { done: () => void; failed?: (error: Error) => void }[] = [];
  private scheduled = false;
  /** The current commit group: changes recorded now go out with it. */
  turn = 0;
  private readonly messages = new Map<Message, MessageRef>();
  private readonly byId = new Map<string, MessageRef>();
  /** Messages whose count changed this turn. */
  private touched = new Set<MessageRef>();
  /** The last commit sent whose reply has not come yet: its outcome (an error or undefined). */
  private lastCommit: Promise<Error | undefined> | undefined;
  /** Message ids: unique across nodes and restarts (a random part per store, then a counter). */
  private readonly idPrefix = randomBytes(6).toString('base64url');
  private nextId = 0;
  private failing: string | undefined;
  private closed = false;
  private readonly warn: (message: string, context: Record<string, unknown>) => void;
  /** Commands added to each commit as it is built: a cluster node's inbox read position (forwarder.ts). */
  extraCommands: (() => (string | number | Buffer)[][]) | undefined;
  /** MULTI/EXECs sent, commands in them, and changes skipped (undone within their turn). */
  readonly stats = { commits: 0, commands: 0, skipped: 0, failed: 0 };

  constructor(
    /** Set once by bind() when the store was made before its connection (a broker's cluster). */
    public redis: Redis,
    options: RedisWriterOptions,
  ) {
    this.prefix = options.prefix;
    this.warn = options.warn ?? (() => {});
  }

  messageKey(id: string): string {
    return `${this.prefix}:msg:${id}`;
  }

  /** Records a command for the next commit. */
  add(cmd: (string | number | Buffer)[]): Op {
    const op: Op = { cmd, dead: false };
    this.pending.push(op);
    this.schedule();
    return op;
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    // After this turn's I/O: everything the turn changed goes in one MULTI/EXEC.
    setImmediate(this.flush);
  }

  /** A record now refers to `message`: its hash is written once, with the first reference. */
  ref(message: Message): MessageRef {
    let ref = this.messages.get(message);
    if (ref === undefined) {
      ref = { message, id: `${this.idPrefix}.${(this.nextId++).toString(36)}`, refs: 0, committed: 0, written: false };
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
  adopt(id: string, decode: () => Message | undefined, refs: number): MessageRef | undefined {
    let ref = this.byId.get(id);
    if (ref === undefined) {
      const message = decode();
      if (message === undefined) return undefined;
      ref = { message, id, refs: 0, committed: 0, written: true };
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

  /**
   * Runs `done` once every change recorded so far is committed (after the reply of the commit that carries
   * it, or of the last one sent when nothing is pending); `failed` instead if that commit failed.
   */
  afterCommit(done: () => void, failed?: (error: Error) => void): void {
    if (this.pending.length > 0 || this.touched.size > 0) {
      this.waiting.push({ done, failed });
      return;
    }
    const last = this.lastCommit;
    if (last === undefined) {
      done();
      return;
    }
    void last.then((error) => (error === undefined ? done() : failed?.(error)));
  }

  /** Sends the changes recorded so far in one MULTI/EXEC; the callbacks waiting for it run at its reply. */
  readonly flush = (): void => {
    this.scheduled = false;
    const ops = this.pending;
    const waiting = this.waiting;
    const touched = this.touched;
    this.pending = [];
    this.waiting = [];
    this.touched = new Set();
    this.turn++;
    const cmds: (string | number | Buffer)[][] = [];
    const releases: (string | number | Buffer)[][] = [];
    for (const ref of touched) {
      const delta = ref.refs - ref.committed;
      ref.committed = ref.refs;
      if (delta > 0) {
        const key = this.messageKey(ref.id);
        if (!ref.written) {
          ref.written = true;
          cmds.push(['hset', key, 'm', encodeMessage(ref.message)]);
        }
        cmds.push(['hincrby', key, 'refs', delta]);
      } else if (delta < 0 && ref.written) releases.push(['eval', RELEASE, 1, this.messageKey(ref.id), -delta]);
      if (ref.refs <= 0) {
        this.messages.delete(ref.message);
        this.byId.delete(ref.id);
      }
    }
    // Counts go up before the records that refer to them are written, and down after they are deleted.
    for (const op of ops) {
      if (op.dead) this.stats.skipped++;
      else cmds.push(op.cmd);
    }
    for (const r of releases) cmds.push(r);
    if (this.extraCommands !== undefined) for (const c of this.extraCommands()) cmds.push(c);
    if (cmds.length === 0) {
      for (const w of waiting) this.afterCommit(w.done, w.failed);
      return;
    }
    if (typeof this.redis.multi !== 'function') {
      // Made before its connection (bound when the cluster connects): nothing can be stored yet.
      const error = new Error('Redis not connected yet');
      for (const w of waiting) w.failed?.(error);
      return;
    }
    const multi = this.redis.multi();
    for (const cmd of cmds) multi.call(...(cmd as [string, ...(string | number | Buffer)[]]));
    this.stats.commits++;
    this.stats.commands += cmds.length;
    const previous = this.lastCommit;
    const outcome: Promise<Error | undefined> = multi.exec().then(
      (replies) => {
        if (replies === null) return new Error('MULTI aborted');
        for (const [err] of replies) if (err) return err;
        return undefined;
      },
      (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
    ).then(async (error) => error ?? (previous === undefined ? undefined : await previous));
    this.lastCommit = outcome;
    void outcome.then((error) => {
      if (this.lastCommit === outcome) this.lastCommit = undefined;
      if (error === undefined) {
        if (this.failing !== undefined) {
          this.warn('redis session writes work again', {});
          this.failing = undefined;
        }
      } else {
        this.stats.failed++;
        if (this.failing !== error.message) this.warn(`redis session write failed: ${error.message}; QoS 1/2 messages that cannot be stored are refused until it works again`, {});
        this.failing = error.message;
      }
      for (const w of waiting) {
        if (error === undefined) w.done();
        else w.failed?.(error);
      }
    });
  };

  /** Sends what is pending; resolves when every commit sent has its reply. */
  close(): Promise<void> {
    if (!this.closed) {
      this.flush();
      this.closed = true;
    }
    const last = this.lastCommit;
    return last === undefined ? Promise.resolve() : last.then(() => undefined);
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
}

export function encodeMessage(m: Message): string {
  const stored: StoredMessage = { topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, properties: m.properties, expiresAt: m.expiresAt, from: m.from };
  return toJson(stored)!;
}

export function decodeMessage(text: string): Message {
  const m = fromJson<StoredMessage>(text)!;
  // Field order of createMessage (one hidden class).
  return { topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain, properties: m.properties ?? undefined, expiresAt: m.expiresAt ?? undefined, from: m.from ?? undefined };
}
