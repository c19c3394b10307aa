// Retained messages on SQLite (store/types.ts RetainedStore): the in-memory tree answers every lookup, and
// each change is recorded in the same commit group as the session changes, so a QoS 1/2 retained PUBLISH is
// acknowledged only once its retained update is committed. The broker's own $SYS topics are not stored.
//
// Start-up loads the topics only (with QoS and expiry, from an index): the tree holds a stand-in for each,
// and the payload and properties are read when a subscription or a lookup first asks for the message.
import { Buffer } from 'node:buffer';
import type Database from 'better-sqlite3';
import type { Message } from '../broker/message.js';
import { MemoryRetainedStore } from '../broker/retained.js';
import type { RetainedStore } from '../broker/store/types.js';
import { isSysTopic } from '../broker/sys-topics.js';
import { messageFromRow, toJson, type MessageRow } from './codec.js';
import type { SqliteStorage } from './sqlite-storage.js';

/** The payload of a stand-in: a message loaded at start-up whose row has not been read yet. */
const NOT_READ = Buffer.from([0]);

interface PendingWrite {
  op: { dead: boolean };
  group: number;
}

export class SqliteRetainedStore implements RetainedStore {
  private readonly memory = new MemoryRetainedStore();
  /** The write of each topic in the current commit group: a newer one in the same group replaces it. */
  private readonly pending = new Map<string, PendingWrite>();
  /** Retained messages loaded at start-up. */
  readonly loaded: number;

  private readonly selectRow: Database.Statement;

  constructor(private readonly storage: SqliteStorage) {
    const now = storage.clock.now();
    let count = 0;
    const expired: string[] = [];
    type Raw = [topic: string, qos: number, expiresAt: number | null];
    for (const [topic, qos, expiresAt] of storage.db.prepare('SELECT topic, qos, expires_at FROM retained INDEXED BY retained_topics').raw().iterate() as Iterable<Raw>) {
      if (expiresAt !== null && expiresAt < now) {
        expired.push(topic);
        continue;
      }
      // The same fields as a message read in full (messageFromRow), so both share one object shape.
      this.memory.set({ topic, payload: NOT_READ, qos: qos as Message['qos'], retain: true, properties: undefined, expiresAt: expiresAt ?? undefined, from: undefined });
      count++;
    }
    const s = storage.statements;
    if (expired.length > 0) storage.add(() => { for (const topic of expired) s.deleteRetained.run(topic); });
    this.loaded = count;
    this.selectRow = storage.db.prepare('SELECT topic, payload, qos, properties, expires_at, from_client FROM retained WHERE topic = ?');
  }

  /** The message in full: a stand-in's row is read (once: the message then replaces it in the tree). */
  private full(m: Message): Message | undefined {
    if (m.payload !== NOT_READ) return m;
    // A stand-in is never changed in place: any set() of its topic replaced it, so the row is the one it stands for.
    const row = this.selectRow.get(m.topic) as MessageRow | undefined;
    if (row === undefined) {
      this.memory.set({ ...m, payload: Buffer.alloc(0) }); // gone from the file: gone
      return undefined;
    }
    const message = messageFromRow(row, true);
    this.memory.set(message);
    return message;
  }

  get size(): number {
    return this.memory.size;
  }

  get limitedSize(): number {
    return this.memory.limitedSize;
  }

  /**
   * Payload bytes held in memory (maxRetainedBytes): a topic loaded at start-up counts once its payload is read,
   * since the cap is about the broker's memory, not the file's size.
   */
  get payloadBytes(): number {
    return this.memory.payloadBytes;
  }

  /** The in-memory tree holds a level (leak checks). */
  get holdsLevels(): boolean {
    return this.memory.holdsLevels;
  }

  set(message: Message, limit?: number): boolean {
    if (!this.memory.set(message, limit)) return false;
    const topic = message.topic;
    if (isSysTopic(topic)) return true;
    const storage = this.storage;
    const earlier = this.pending.get(topic);
    if (earlier !== undefined && earlier.group === storage.group) earlier.op.dead = true;
    const s = storage.statements;
    const op =
      message.payload.length === 0
        ? storage.add(() => s.deleteRetained.run(topic))
        : storage.add(() => s.upsertRetained.run(topic, message.payload, message.qos, toJson(message.properties), message.expiresAt ?? null, message.from ?? null));
    this.pending.set(topic, { op, group: storage.group });
    // Only this group's writes are worth remembering.
    if (this.pending.size > 1024) for (const [t, w] of this.pending) if (w.group !== storage.group) this.pending.delete(t);
    return true;
  }

  get(topic: string): Message | undefined {
    const m = this.memory.get(topic);
    return m === undefined ? undefined : this.full(m);
  }

  match(filter: string, now: number): Message[] {
    const found = this.memory.match(filter, now);
    let kept = 0;
    for (const m of found) {
      const message = this.full(m);
      if (message !== undefined) found[kept++] = message;
    }
    found.length = kept;
    return found;
  }

  sweep(now: number): void {
    this.memory.sweep(now);
  }
}
