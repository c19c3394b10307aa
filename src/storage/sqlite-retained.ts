// Retained messages on SQLite (store/types.ts RetainedStore): the in-memory tree answers every lookup, and
// each change is recorded in the same commit group as the session changes, so a QoS 1/2 retained PUBLISH is
// acknowledged only once its retained update is committed. The broker's own $SYS topics are not stored.
import type { Message } from '../broker/message.js';
import { MemoryRetainedStore } from '../broker/retained.js';
import type { RetainedStore } from '../broker/store/types.js';
import { isSysTopic } from '../broker/sys-topics.js';
import { messageFromRow, toJson, type MessageRow } from './codec.js';
import type { SqliteStorage } from './sqlite-store.js';

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

  constructor(private readonly storage: SqliteStorage) {
    const now = storage.clock.now();
    let count = 0;
    const expired: string[] = [];
    type Raw = [topic: string, payload: Buffer, qos: number, properties: string | null, expiresAt: number | null, from: string | null];
    for (const raw of storage.db.prepare('SELECT topic, payload, qos, properties, expires_at, from_client FROM retained').raw().iterate() as Iterable<Raw>) {
      const row: MessageRow = { topic: raw[0], payload: raw[1], qos: raw[2], properties: raw[3], expires_at: raw[4], from_client: raw[5] };
      if (row.expires_at !== null && row.expires_at < now) {
        expired.push(row.topic);
        continue;
      }
      this.memory.set(messageFromRow(row, true));
      count++;
    }
    const s = storage.statements;
    if (expired.length > 0) storage.add(() => { for (const topic of expired) s.deleteRetained.run(topic); });
    this.loaded = count;
  }

  get size(): number {
    return this.memory.size;
  }

  get limitedSize(): number {
    return this.memory.limitedSize;
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
    return this.memory.get(topic);
  }

  match(filter: string, now: number): Message[] {
    return this.memory.match(filter, now);
  }

  sweep(now: number): void {
    this.memory.sweep(now);
  }
}
