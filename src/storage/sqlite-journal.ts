// The changes of one persistent session (store/types.ts SessionJournal), recorded for the next commit of
// its SqliteStorage. Deletes of one commit go out as ranges; a QoS 1 message taken from a stored queue into
// flight keeps its queue row as its record until its PUBACK, or until DEFER_INFLIGHT_MS has passed. A
// message whose only row at its commit is one queue or in-flight row is stored inline in it (one insert, no
// messages row).
import type { ClientInfo } from '../broker/hooks.js';
import type { InflightMessage, QueuedMessage, SessionJournal, StoredWill, SubscriptionEntry } from '../broker/store/types.js';
import { encodeRun, idsToText, isPlain, toJson } from './codec.js';
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
 * A queue_runs row: messages `seq` .. `seq + count - 1` of a session, `live` of them still queued (or in flight
 * recorded by it). Those gone this group are `gone` (written as queue_runs_gone ranges at the commit, or the
 * run deleted with its ranges once none is live).
 */
export interface Run {
  seq: number;
  count: number;
  live: number;
  gone: number[];
  goneGroup: number;
  /** Its messages marked in flight (queue_runs_moved rows) so far: their marks go with their gone ranges. */
  marked: number;
}

/**
 * What the loader hands to a session's journal: the rows that already exist. A queue row holding its message
 * inline is just its seq (no object per queued message kept for as long as it is queued).
 */
export interface LoadedRows {
  queue: Map<QueuedMessage, QueueRow | number>;
  inflight: Map<number, RowRef>;
  nextSeq: number;
  /** Its runs, in seq order. */
  runs: Run[];
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
  private taken: { ref: MessageRef | undefined; message: QueuedMessage['message']; seq: number; keys: number[]; run: Run | undefined } | undefined;
  /** The session's runs (queue_runs rows) with a message still queued, in seq order. */
  private readonly runs: Run[];
  /** The runs a message left this group (their gone ranges or deletes written by one op at the commit). */
  private runsTouched: { group: number; runs: Run[] } | undefined;
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
    this.runs = loaded?.runs ?? [];
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
      s.deleteRuns.run(id);
      s.deleteRunsGone.run(id);
      s.deleteRunsMoved.run(id);
      s.deleteInflight.run(id);
      s.deleteIncoming.run(id);
    });
    for (const row of this.queueRows.values()) if (typeof row !== 'number' && row.ref !== undefined) this.storage.unref(row.ref);
    for (const row of this.inflightRows.values()) this.storage.unref(row.ref);
    this.queueRows.clear();
    this.inflightRows.clear();
    this.runs.length = 0;
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

  /**
   * The commit of a group inserts its queue rows (those not dequeued within it). Consecutive messages held
   * inline and plain go as one run row; a message alone, or with properties, expiry, identifiers or a share,
   * as a queue row of its own.
   */
  private insertQueued(rows: QueueRow[]): void {
    if (this.ended) return;
    const storage = this.storage;
    const s = storage.statements;
    const id = this.clientId;
    const queueRows = this.queueRows;
    let run: QueueRow[] = [];
    const endRun = () => {
      if (run.length === 1) this.insertInline(run[0]!);
      else if (run.length > 1) {
        const items = run.map((r) => r.item!);
        const first = run[0]!.key;
        s.insertRun.run(id, first, run.length, encodeRun(items));
        this.runs.push({ seq: first, count: run.length, live: run.length, gone: [], goneGroup: -1, marked: 0 });
        for (const r of run) {
          queueRows.set(r.item!, r.key);
          r.item = undefined;
        }
      }
      run = [];
    };
    for (const row of rows) {
      const item = row.item;
      if (item === undefined) continue;
      const ref = row.ref!;
      // Decided now, once every row this group makes is known: the message's only row (and no messages row
      // yet) holds it inline; otherwise the row refers to the messages row, written once.
      if (ref.id === undefined && ref.refs <= 1) {
        storage.forget(ref);
        row.ref = undefined;
        if (isPlain(item)) {
          if (run.length > 0 && run[run.length - 1]!.key + 1 !== row.key) endRun();
          run.push(row);
        } else this.insertInline(row);
      } else {
        row.item = undefined;
        s.insertQueued.run(id, row.key, storage.messageId(ref), item.qos, item.retain ? 1 : 0, item.subscriptionIds === undefined ? null : idsToText(item.subscriptionIds), item.queuedAt, item.shareKey ?? null);
      }
    }
    endRun();
  }

  /** A queue row holding its message (its MessageRef already let go); from now on the row is just its seq. */
  private insertInline(row: QueueRow): void {
    const item = row.item!;
    row.item = undefined;
    const m = item.message;
    const s = this.storage.statements;
    if (isPlain(item)) s.insertQueuedPlain.run(this.clientId, row.key, item.qos, item.retain ? 1 : 0, item.queuedAt, m.topic, m.payload, m.qos, m.retain ? 1 : 0, m.from ?? null);
    else s.insertQueuedInline.run(this.clientId, row.key, item.qos, item.retain ? 1 : 0, idsToText(item.subscriptionIds), item.queuedAt, item.shareKey ?? null, m.topic, m.payload, m.qos, m.retain ? 1 : 0, toJson(m.properties), m.expiresAt ?? null, m.from ?? null);
    this.queueRows.set(item, row.key);
  }

  /** The run holding message `seq`, if a run does. */
  private runOf(seq: number): Run | undefined {
    const runs = this.runs;
    let lo = 0;
    let hi = runs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const run = runs[mid]!;
      if (seq < run.seq) hi = mid - 1;
      else if (seq >= run.seq + run.count) lo = mid + 1;
      else return run;
    }
    return undefined;
  }

  /** Message `seq` of `run` leaves it at this group's commit; gives the list it joined. */
  private goneFromRun(run: Run, seq: number): number[] {
    const storage = this.storage;
    if (run.goneGroup !== storage.group) {
      run.goneGroup = storage.group;
      run.gone = [];
      let touched = this.runsTouched;
      if (touched === undefined || touched.group !== storage.group) {
        const list: Run[] = [];
        this.runsTouched = touched = { group: storage.group, runs: list };
        storage.add(() => this.writeGone(list));
      }
      touched.runs.push(run);
    }
    run.gone.push(seq);
    run.live--;
    return run.gone;
  }

  /** The commit: a run none of whose messages is left goes with its ranges; otherwise its new gone ranges are written. */
  private writeGone(runs: Run[]): void {
    if (this.ended) return;
    const s = this.storage.statements;
    const id = this.clientId;
    for (const run of runs) {
      if (run.live <= 0) {
        s.deleteRun.run(id, run.seq);
        s.deleteRunGone.run(id, run.seq, run.seq + run.count - 1);
        if (run.marked > 0) s.deleteRunMoved.run(id, run.seq, run.seq + run.count - 1);
        const i = this.runs.indexOf(run);
        if (i >= 0) this.runs.splice(i, 1);
      } else if (run.gone.length > 0) {
        for (const [from, to] of ranges(run.gone)) {
          s.insertRunGone.run(id, from, to);
          if (run.marked > 0) s.deleteRunMoved.run(id, from, to);
        }
      }
    }
  }

  dequeued(item: QueuedMessage): void {
    const row = this.queueRows.get(item);
    if (row === undefined) return;
    this.queueRows.delete(item);
    if (typeof row === 'number') {
      // Inline (in a queue row or a run), committed.
      const run = this.runs.length > 0 ? this.runOf(row) : undefined;
      const keys = run !== undefined ? this.goneFromRun(run, row) : this.deleteQueued(row);
      this.taken = { ref: undefined, message: item.message, seq: row, keys, run };
      return;
    }
    if (row.item !== undefined) {
      // Queued in this group: never written.
      row.item = undefined;
      this.taken = undefined;
    } else {
      const keys = this.deleteQueued(row.key);
      this.taken = { ref: row.ref, message: item.message, seq: row.key, keys, run: undefined };
    }
    if (row.ref !== undefined) this.storage.unref(row.ref);
  }

  /** Deletes queue row `seq` at this group's commit; gives the batch it joined. */
  private deleteQueued(seq: number): number[] {
    if (this.runs.length > 0) {
      const run = this.runOf(seq);
      if (run !== undefined) return this.goneFromRun(run, seq);
    }
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
      // A message of a run is marked by a small queue_runs_moved row (the run cannot be updated in place).
      const run = this.runs.length > 0 ? this.runOf(seq) : undefined;
      if (run !== undefined) {
        run.marked++;
        storage.add(() => s.markRunInflight.run(id, seq, packetId, order));
      } else storage.add(() => s.markQueuedInflight.run(packetId, order, id, seq));
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
    const sameGroup = taken !== undefined && (taken.run !== undefined ? taken.run.goneGroup === storage.group && taken.keys === taken.run.gone : taken.keys === this.queueDeletes?.keys);
    if (m.qos === 1 && fromQueue && sameGroup && (taken.ref === undefined || taken.ref === ref) && taken.keys[taken.keys.length - 1] === taken.seq) {
      // Straight from a queue row on disk, which keeps standing for it: written as in flight only if no
      // PUBACK comes within DEFER_INFLIGHT_MS (in a drain, most come within a few ms).
      taken.keys.pop();
      if (taken.run !== undefined) taken.run.live++;
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
