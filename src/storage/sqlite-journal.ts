// The changes of one persistent session (store/types.ts SessionJournal), recorded for the next commit of
// its SqliteStorage. Deletes of one commit go out as ranges; a QoS 1 message taken from a stored queue into
// flight keeps its queue row as its record until its PUBACK, or until DEFER_INFLIGHT_MS has passed. A
// message whose only row at its commit is one queue or in-flight row is stored inline in it (one insert, no
// messages row).
import type { ClientInfo } from '../broker/hooks.js';
import type { InflightMessage, QueuedMessage, SessionJournal, StoredWill, SubscriptionEntry } from '../broker/store/types.js';
import { idsToText, toJson } from './codec.js';
import { ranges, type MessageRef, type MoveWriter, type RowRef, type SqliteStorage } from './sqlite-storage.js';

/**
 * A queue row of a session. Kept small (one per queued message, as long as the message is queued): no op or
 * closure of its own, and no MessageRef once it holds its message inline (nothing else refers to it then).
 */
export interface QueueRow {
  /** Its seq. */
  key: number;
  /** The message's MessageRef; undefined once the row is committed holding the message inline. */
  ref: MessageRef | undefined;
  /** Set while its insert waits for the commit of its group (cleared by the insert, or by a dequeue before it: then it is never written). */
  item: QueuedMessage | undefined;
}

/**
 * What the loader hands to a session's journal: the rows that already exist. A queue row holding its message
 * inline is just its seq (no object per queued message kept for as long as it is queued).
 */
export interface LoadedRows {
  queue: Map<QueuedMessage, QueueRow | number>;
  inflight: Map<number, RowRef>;
  nextSeq: number;
}
/** The changes of one persistent session. */
export class SqliteJournal implements SessionJournal, MoveWriter {
  private readonly queueRows: Map<QueuedMessage, QueueRow | number>;
  private readonly inflightRows: Map<number, RowRef>;
  private nextSeq: number;
  private ended = false;
  /** This group's queue and in-flight deletes, written as ranges by one op each (acknowledgements come in order). */
  private queueDeletes: { group: number; keys: number[] } | undefined;
  private inflightDeletes: { group: number; keys: number[] } | undefined;
  /** The queue row just taken out (its delete the last of queueDeletes): a QoS 1 put in flight next moves it. */
  private taken: { ref: MessageRef | undefined; message: QueuedMessage['message']; seq: number; keys: number[] } | undefined;
  /** This group's new queue rows, inserted by one op at its commit (not an op and a closure per message). */
  private pendingRows: QueueRow[] | undefined;
  private pendingGroup = -1;

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
    // Rows inserted in this group are not written at all (and do not make messages rows for nothing).
    // (This group's queue inserts see `ended` at the commit and write nothing.)
    const group = this.storage.group;
    for (const row of this.inflightRows.values()) if (row.group === group && row.op !== undefined && row.inserted === true) row.op.dead = true;
    this.storage.add(() => {
      s.deleteSession.run(id);
      s.deleteSubscriptions.run(id);
      s.deleteQueue.run(id);
      s.deleteInflight.run(id);
      s.deleteIncoming.run(id);
    });
    for (const row of this.queueRows.values()) if (typeof row !== 'number' && row.ref !== undefined) this.storage.unref(row.ref);
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
    const row: QueueRow = { key: this.nextSeq++, ref: storage.refMessage(item.message), item };
    let rows = this.pendingRows;
    if (rows === undefined || this.pendingGroup !== storage.group) {
      const group = (this.pendingRows = rows = []);
      this.pendingGroup = storage.group;
      storage.add(() => this.insertQueued(group));
    }
    rows.push(row);
    this.queueRows.set(item, row);
  }

  /** The commit of a group inserts its queue rows (those not dequeued within it). */
  private insertQueued(rows: QueueRow[]): void {
    if (this.ended) return;
    const storage = this.storage;
    const s = storage.statements;
    const id = this.clientId;
    const queueRows = this.queueRows;
    for (const row of rows) {
      const item = row.item;
      if (item === undefined) continue;
      row.item = undefined;
      const ref = row.ref!;
      const ids = item.subscriptionIds === undefined ? null : idsToText(item.subscriptionIds);
      // Decided now, once every row this group makes is known: the message's only row (and no messages row
      // yet) holds it inline; otherwise the row refers to the messages row, written once.
      if (ref.id === undefined && ref.refs <= 1) {
        const m = item.message;
        // The common message (no properties, expiry, identifiers or share): fewer columns to bind.
        if (ids === null && item.shareKey === undefined && m.properties === undefined && m.expiresAt === undefined) s.insertQueuedPlain.run(id, row.key, item.qos, item.retain ? 1 : 0, item.queuedAt, m.topic, m.payload, m.qos, m.retain ? 1 : 0, m.from ?? null);
        else s.insertQueuedInline.run(id, row.key, item.qos, item.retain ? 1 : 0, ids, item.queuedAt, item.shareKey ?? null, m.topic, m.payload, m.qos, m.retain ? 1 : 0, toJson(m.properties), m.expiresAt ?? null, m.from ?? null);
        storage.forget(ref);
        row.ref = undefined;
        // From now on the row is just its seq (the QueueRow object dies young).
        queueRows.set(item, row.key);
      } else s.insertQueued.run(id, row.key, storage.messageId(ref), item.qos, item.retain ? 1 : 0, ids, item.queuedAt, item.shareKey ?? null);
    }
  }

  dequeued(item: QueuedMessage): void {
    const row = this.queueRows.get(item);
    if (row === undefined) return;
    this.queueRows.delete(item);
    if (typeof row === 'number') {
      // Inline, committed.
      const keys = this.deleteQueued(row);
      this.taken = { ref: undefined, message: item.message, seq: row, keys };
      return;
    }
    if (row.item !== undefined) {
      // Queued in this group: never written.
      row.item = undefined;
      this.taken = undefined;
    } else {
      const keys = this.deleteQueued(row.key);
      this.taken = { ref: row.ref, message: item.message, seq: row.key, keys };
    }
    if (row.ref !== undefined) this.storage.unref(row.ref);
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

  /**
   * A deferred move is due (or the broker stops): its queue row is marked in flight with the packet id and
   * send order (a small update: the message is not written again); the PUBACK deletes the row.
   */
  writeMove(row: RowRef, m: InflightMessage): void {
    const seq = row.queueSeq;
    if (this.ended || seq === undefined || this.inflightRows.get(m.packetId) !== row) return;
    const storage = this.storage;
    if (m.state === 'publish') {
      if (row.moved === true) return;
      row.moved = true;
      storage.stats.movesWritten++;
      const s = storage.statements;
      const id = this.clientId;
      const packetId = m.packetId;
      const order = m.order;
      storage.add(() => s.markQueuedInflight.run(packetId, order, id, seq));
      return;
    }
    // A step on (PUBREL sent; QoS 1 alone is deferred, so not expected): an in-flight row of its own.
    row.queueSeq = undefined;
    row.moved = undefined;
    storage.stats.movesWritten++;
    this.deleteQueued(seq);
    this.writeInflight(row, m);
  }

  private writeInflight(row: RowRef, m: InflightMessage): void {
    const storage = this.storage;
    const s = storage.statements;
    const id = this.clientId;
    const ref = row.ref;
    row.group = storage.group;
    row.inserted = true;
    row.op = storage.add(() => {
      // As for a queue row: inline when it is the message's only row at the commit and it has no messages
      // row; otherwise it refers to the messages row, made now if the message has none yet.
      const ids = idsToText(m.subscriptionIds);
      if (ref.id === undefined && ref.refs <= 1) {
        const msg = m.message;
        s.upsertInflightInline.run(id, m.packetId, m.qos, m.state, m.retain ? 1 : 0, ids, m.shareKey ?? null, m.order, msg.topic, msg.payload, msg.qos, msg.retain ? 1 : 0, toJson(msg.properties), msg.expiresAt ?? null, msg.from ?? null);
        storage.forget(ref);
      } else s.upsertInflight.run(id, m.packetId, storage.messageId(ref), m.qos, m.state, m.retain ? 1 : 0, ids, m.shareKey ?? null, m.order);
    });
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
    const fromQueue = taken !== undefined && taken.message === m.message;
    if (fromQueue && taken.ref !== undefined && !taken.ref.gone) {
      // Straight from the queue: the same message row (its reference just dropped is taken again).
      ref = taken.ref;
      ref.refs++;
    } else if (fromQueue && taken.ref === undefined) {
      // Straight from a queue row holding it inline, its only row: a reference of its own (no other row of
      // this group can share it: any other row of the message has a MessageRef of its own already).
      ref = { message: m.message, id: undefined, refs: 1, gone: false };
    } else ref = storage.refMessage(m.message);
    const next: RowRef = { key: m.packetId, ref, group: storage.group, op: undefined };
    this.inflightRows.set(m.packetId, next);
    if (m.qos === 1 && fromQueue && (taken.ref === undefined || taken.ref === ref) && taken.keys === this.queueDeletes?.keys && taken.keys[taken.keys.length - 1] === taken.seq) {
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
      // Recorded by its queue row (marked in flight or not): the row goes.
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
