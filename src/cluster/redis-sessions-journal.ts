// The changes of one persistent session (store/types.ts SessionJournal) as Redis commands for the next commit
// group of its RedisSessionWriter. Keys of a session share the hash tag `{clientId}` (one slot):
//   ${p}:session:{id}           hash: expiry, expiresAt ('' while connected), client, will
//   ${p}:session:{id}:subs      hash: subscription key -> SubscriptionEntry (JSON)
//   ${p}:session:{id}:queue     hash: seq -> queued record (JSON, the message by id)
//   ${p}:session:{id}:inflight  hash: packet id -> in-flight record (JSON, the message by id)
//   ${p}:session:{id}:qos2      set: incoming QoS 2 packet ids held (PUBREC sent, PUBREL not yet come)
import type { ClientInfo } from '../broker/hooks.js';
import type { InflightMessage, QueuedMessage, SessionJournal, StoredWill, SubscriptionEntry } from '../broker/store/types.js';
import { toJson } from '../storage/codec.js';
import type { MessageRef, Op, RedisSessionWriter } from './redis-sessions-writer.js';

/** The keys of session `clientId` under `prefix`. */
export function sessionKeys(prefix: string, clientId: string): { main: string; subs: string; queue: string; inflight: string; qos2: string } {
  const main = `${prefix}:session:{${clientId}}`;
  return { main, subs: `${main}:subs`, queue: `${main}:queue`, inflight: `${main}:inflight`, qos2: `${main}:qos2` };
}

/** A queued message as stored: `m` the message id, the rest as in QueuedMessage. */
export interface QueueRecord {
  m: string;
  q: QueuedMessage['qos'];
  r: 0 | 1;
  i?: readonly number[];
  t: number;
  s?: string;
}

/** An in-flight message as stored. */
export interface InflightRecord {
  m: string;
  q: InflightMessage['qos'];
  st: InflightMessage['state'];
  r: 0 | 1;
  i?: readonly number[];
  s?: string;
  o: number;
}

/** A queue or in-flight record of this session, and the command of this turn that writes it (if any). */
export interface Row {
  ref: MessageRef;
  turn: number;
  op: Op | undefined;
  /** That command creates the record (rather than overwriting one written before). */
  inserted: boolean;
}

/** What the loader hands to the session's journal: the records that exist. */
export interface LoadedRows {
  queue: Map<QueuedMessage, Row & { seq: number }>;
  inflight: Map<number, Row>;
  nextSeq: number;
}

export class RedisSessionJournal implements SessionJournal {
  private readonly keys: ReturnType<typeof sessionKeys>;
  private readonly queueRows: Map<QueuedMessage, Row & { seq: number }>;
  private readonly inflightRows: Map<number, Row>;
  private nextSeq: number;
  private ended = false;
  /** This turn's HDEL of queue and in-flight fields: one command each, fields added as they go. */
  private queueDeletes: { turn: number; op: Op } | undefined;
  private inflightDeletes: { turn: number; op: Op } | undefined;

  constructor(
    private readonly writer: RedisSessionWriter,
    clientId: string,
    loaded: LoadedRows | undefined,
  ) {
    this.keys = sessionKeys(writer.prefix, clientId);
    this.queueRows = loaded?.queue ?? new Map();
    this.inflightRows = loaded?.inflight ?? new Map();
    this.nextSeq = loaded?.nextSeq ?? 0;
  }

  expiry(expiryInterval: number, expiresAt: number | undefined, client?: ClientInfo): void {
    if (this.ended) return;
    const cmd: (string | number)[] = ['hset', this.keys.main, 'expiry', expiryInterval, 'expiresAt', expiresAt ?? ''];
    if (client !== undefined) cmd.push('client', toJson(client)!);
    this.writer.add(cmd);
  }

  deleted(): void {
    if (this.ended) return;
    this.ended = true;
    const k = this.keys;
    this.writer.add(['del', k.main, k.subs, k.queue, k.inflight, k.qos2]);
    for (const row of this.queueRows.values()) this.writer.unref(row.ref);
    for (const row of this.inflightRows.values()) this.writer.unref(row.ref);
    this.queueRows.clear();
    this.inflightRows.clear();
  }

  subscribed(key: string, entry: SubscriptionEntry): void {
    if (this.ended) return;
    this.writer.add(['hset', this.keys.subs, key, toJson(entry)!]);
  }

  unsubscribed(key: string): void {
    if (this.ended) return;
    this.writer.add(['hdel', this.keys.subs, key]);
  }

  queued(item: QueuedMessage): void {
    if (this.ended) return;
    const writer = this.writer;
    const ref = writer.ref(item.message);
    const seq = this.nextSeq++;
    const record: QueueRecord = { m: ref.id, q: item.qos, r: item.retain ? 1 : 0, i: item.subscriptionIds, t: item.queuedAt, s: item.shareKey };
    const op = writer.add(['hset', this.keys.queue, seq, JSON.stringify(record)], true);
    this.queueRows.set(item, { seq, ref, turn: writer.turn, op, inserted: true });
  }

  dequeued(item: QueuedMessage): void {
    const row = this.queueRows.get(item);
    if (row === undefined) return;
    this.queueRows.delete(item);
    if (row.turn === this.writer.turn && row.op !== undefined) row.op.dead = true;
    else this.queueDeletes = this.deleteField(this.queueDeletes, this.keys.queue, row.seq);
    this.writer.unref(row.ref);
  }

  /** Deletes `field` of `key` with this turn's HDEL (made on the first delete of the turn). */
  private deleteField(batch: { turn: number; op: Op } | undefined, key: string, field: number): { turn: number; op: Op } {
    if (batch !== undefined && batch.turn === this.writer.turn && !batch.op.dead) {
      batch.op.cmd.push(field);
      return batch;
    }
    return { turn: this.writer.turn, op: this.writer.add(['hdel', key, field]) };
  }

  inflight(m: InflightMessage): void {
    if (this.ended) return;
    const writer = this.writer;
    const record: InflightRecord = { m: '', q: m.qos, st: m.state, r: m.retain ? 1 : 0, i: m.subscriptionIds, s: m.shareKey, o: m.order };
    const row = this.inflightRows.get(m.packetId);
    if (row !== undefined && row.ref.message === m.message) {
      // A step on (PUBREL sent): the record is written again with its new state.
      record.m = row.ref.id;
      const cmd = ['hset', this.keys.inflight, m.packetId, JSON.stringify(record)];
      if (row.turn === writer.turn && row.op !== undefined) row.op.cmd = cmd;
      else {
        row.turn = writer.turn;
        row.op = writer.add(cmd);
        row.inserted = false;
      }
      return;
    }
    if (row !== undefined) this.drop(m.packetId, row);
    const ref = writer.ref(m.message);
    record.m = ref.id;
    // A new packet id: its field is not in Redis (a reused one may be: then its HDEL comes first).
    const op = writer.add(['hset', this.keys.inflight, m.packetId, JSON.stringify(record)], row === undefined);
    this.inflightRows.set(m.packetId, { ref, turn: writer.turn, op, inserted: true });
  }

  released(packetId: number): void {
    const row = this.inflightRows.get(packetId);
    if (row === undefined) return;
    this.inflightRows.delete(packetId);
    this.drop(packetId, row);
  }

  private drop(packetId: number, row: Row): void {
    // A write of this turn goes (it could come after this turn's HDEL); a record written before is deleted.
    const pending = row.turn === this.writer.turn && row.op !== undefined;
    if (pending) row.op!.dead = true;
    if (!pending || !row.inserted) this.inflightDeletes = this.deleteField(this.inflightDeletes, this.keys.inflight, packetId);
    this.writer.unref(row.ref);
  }

  incomingQos2(packetId: number, held: boolean): void {
    if (this.ended) return;
    this.writer.add([held ? 'sadd' : 'srem', this.keys.qos2, packetId]);
  }

  will(will: StoredWill | undefined): void {
    if (this.ended) return;
    this.writer.add(will === undefined ? ['hdel', this.keys.main, 'will'] : ['hset', this.keys.main, 'will', toJson(will)!]);
  }

  /**
   * The session went on to another node: nothing more is written for it from here (a late close of its old
   * connection included), and this node's references to its messages are let go without touching Redis (the
   * records, and the counts they hold, now belong to the node that fetches the session).
   */
  movedAway(): void {
    if (this.ended) return;
    this.ended = true;
    for (const row of this.queueRows.values()) this.writer.disown(row.ref);
    for (const row of this.inflightRows.values()) this.writer.disown(row.ref);
    this.queueRows.clear();
    this.inflightRows.clear();
  }

  afterCommit(done: () => void): void {
    // A failed commit was logged; the broker goes on serving from memory (as with SQLite).
    this.writer.afterCommit(done, done);
  }
}
