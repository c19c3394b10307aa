// Session state (MQTT 4.1): what outlives a connection when the session is persistent.
// Plain data plus the bookkeeping rules; the channel drives it.
import type { QoS } from '../protocol/constants.js';
import { Deque } from './deque.js';
import { messageExpired, type Message } from './message.js';
import type { BrokerLimits } from './options.js';
import type { ClientInfo } from './hooks.js';
import type { SubscriptionEntry } from './router.js';
import { NOT_DUE } from './timer-wheel.js';

/** An outgoing QoS 1/2 message the client has not finished acknowledging. */
export interface InflightMessage {
  packetId: number;
  message: Message;
  qos: QoS;
  /** 'publish': waiting for PUBACK / PUBREC. 'pubrel': PUBREC came, PUBREL sent, waiting for PUBCOMP. */
  state: 'publish' | 'pubrel';
  /** Subscription identifiers and retain flag chosen for this subscriber. */
  subscriptionIds?: readonly number[];
  retain: boolean;
  /** Shared subscription (group/filter) it came through, so it can go to another member if this one leaves. */
  shareKey: string | undefined;
  /** Send order within the session: a resumed session resends in this order ([MQTT-4.4.0-1]). */
  readonly order: number;
}

/** Slots of a new in-flight window (a power of two: a packet id's slot is `id & (length - 1)`). */
const FIRST_WINDOW_SLOTS = 8;

/** A message waiting to be sent to this session (client offline, or its in-flight window full). */
/** The limits a session queue follows. */
export type QueueLimits = Pick<BrokerLimits, 'maxQueuedMessages' | 'maxQueuedBytes' | 'queueOverflow' | 'offlineMessageExpiry'>;

export interface QueuedMessage {
  message: Message;
  qos: QoS;
  retain: boolean;
  subscriptionIds?: readonly number[];
  /** When it was queued, for offlineMessageExpiry. */
  queuedAt: number;
  shareKey?: string;
}

export class Session {
  readonly clientId: string;
  // The collections are created on first use: an idle connection's session then costs ~150 B instead of ~700 B.
  private _subscriptions: Map<string, SubscriptionEntry> | undefined;
  /**
   * Outgoing QoS 1/2 in flight, in slots indexed by packet id (`id & (length - 1)`). Not a Map: with one or
   * two messages in flight at a time (the common case) a Map made and dropped per message, or kept and
   * rehashed every few messages, allocates per message, and V8 links a rehashed Map's old table to its
   * successor, so one promoted table keeps every later one alive until a major GC. Packet ids are chosen
   * here (allocatePacketId) so that each in-flight message has a slot of its own.
   */
  private slots: (InflightMessage | undefined)[] | undefined;
  private _inflightCount = 0;
  /** Messages put in flight so far: the next one's `order`. */
  private sent = 0;
  private _incomingQos2: Set<number> | undefined;
  private _queue: Deque<QueuedMessage> | undefined;
  /** Payload bytes of the queued messages (maxQueuedBytes). */
  private _queuedBytes = 0;
  /** Messages dropped because the queue was full (counted for metrics and logs). */
  dropped = 0;
  /** Earliest Message Expiry among queued messages since the queue was last scanned (maybe already gone). */
  private queueExpiresFirst: number | undefined = undefined;
  /** Session Expiry Interval in seconds; 0xFFFFFFFF never expires. */
  expiryInterval: number;
  /** When the session ends if nobody resumes it (ms, broker clock); undefined while connected. */
  expiresAt: number | undefined;
  /** Who last connected with this session (kept while it is offline, so a reloaded ACL can be applied to it). */
  client: ClientInfo | undefined = undefined;
  /** The core's timer slot for expiresAt (TimerWheel). */
  dueSlot = NOT_DUE;
  private nextPacketId = 1;

  constructor(clientId: string, expiryInterval: number) {
    this.clientId = clientId;
    this.expiryInterval = expiryInterval;
  }

  /** Subscriptions by full filter (with any `$share/group/` prefix). */
  get subscriptions(): Map<string, SubscriptionEntry> {
    return (this._subscriptions ??= new Map());
  }

  /**
   * A packet id not used by an in-flight message ([MQTT-2.2.1-3]) whose slot is free; undefined when all
   * 65535 are in use. The next one after the last given, so ids go on in sequence while acknowledgements
   * come in order.
   */
  allocatePacketId(): number | undefined {
    if (this._inflightCount >= 65535) return undefined;
    let slots = this.slots;
    if (slots === undefined) slots = this.slots = new Array<InflightMessage | undefined>(FIRST_WINDOW_SLOTS).fill(undefined);
    else if (this._inflightCount * 2 >= slots.length && slots.length < 65536) slots = this.grow(slots);
    const mask = slots.length - 1;
    let id = this.nextPacketId;
    // A slot is taken only by an in-flight message, so a free slot's id is not in use; at most half the
    // slots are taken (below 65536 slots), so this ends within a few steps when acknowledgements come in order.
    while (slots[id & mask] !== undefined) id = id === 65535 ? 1 : id + 1;
    this.nextPacketId = id === 65535 ? 1 : id + 1;
    return id;
  }

  /** Twice the slots: two ids in different slots before are in different slots after. */
  private grow(slots: (InflightMessage | undefined)[]): (InflightMessage | undefined)[] {
    const bigger = new Array<InflightMessage | undefined>(slots.length * 2).fill(undefined);
    const mask = bigger.length - 1;
    for (const m of slots) if (m !== undefined) bigger[m.packetId & mask] = m;
    return (this.slots = bigger);
  }

  /** Puts a message in flight under a packet id from allocatePacketId. */
  addInflight(packetId: number, message: Message, qos: QoS, retain: boolean, subscriptionIds: readonly number[] | undefined, shareKey: string | undefined): void {
    const slots = this.slots!;
    slots[packetId & (slots.length - 1)] = { packetId, message, qos, state: 'publish', subscriptionIds, retain, shareKey, order: this.sent++ };
    this._inflightCount++;
  }

  /** The in-flight message with this packet id. */
  inflightMessage(packetId: number): InflightMessage | undefined {
    const slots = this.slots;
    if (slots === undefined) return undefined;
    const m = slots[packetId & (slots.length - 1)];
    return m !== undefined && m.packetId === packetId ? m : undefined;
  }

  /** Ends the flow of an outgoing message. A window that empties keeps its slots if there are few of them. */
  releaseInflight(packetId: number): void {
    const slots = this.slots;
    if (slots === undefined) return;
    const i = packetId & (slots.length - 1);
    const m = slots[i];
    if (m === undefined || m.packetId !== packetId) return;
    slots[i] = undefined;
    if (--this._inflightCount === 0 && slots.length > FIRST_WINDOW_SLOTS) this.slots = undefined;
  }

  /** The in-flight messages in the order they were sent (a copy: the caller may release them while walking it). */
  inflightInOrder(): InflightMessage[] {
    if (this._inflightCount === 0) return [];
    const out: InflightMessage[] = [];
    for (const m of this.slots!) if (m !== undefined) out.push(m);
    return out.sort((a, b) => a.order - b.order);
  }

  /** Incoming QoS 2 packet ids received (PUBREC sent) and not yet released (no PUBREL yet). */
  get incomingQos2(): Set<number> {
    return (this._incomingQos2 ??= new Set());
  }

  get subscriptionCount(): number {
    return this._subscriptions?.size ?? 0;
  }

  get inflightCount(): number {
    return this._inflightCount;
  }

  /** Messages waiting to be sent, oldest first (read only: takeQueued / removeQueuedWhere keep the byte count). */
  get queue(): Readonly<Pick<Deque<QueuedMessage>, 'length' | 'peek'>> {
    return (this._queue ??= new Deque());
  }

  get queuedCount(): number {
    return this._queue?.length ?? 0;
  }

  get queuedBytes(): number {
    return this._queuedBytes;
  }

  /** The oldest queued message, out of the queue. */
  takeQueued(): QueuedMessage | undefined {
    const item = this._queue?.shift();
    if (item !== undefined) this._queuedBytes -= item.message.payload.length;
    return item;
  }

  /** Takes the queued messages `leave` says so out of the queue, in order. */
  removeQueuedWhere(leave: (item: QueuedMessage) => boolean): QueuedMessage[] {
    if (this._queue === undefined) return [];
    const removed = this._queue.removeWhere(leave);
    for (const item of removed) this._queuedBytes -= item.message.payload.length;
    return removed;
  }

  /**
   * Queues a message; applies the bound. Returns false when the message itself was dropped
   * (queue full with drop-newest).
   */
  enqueue(item: QueuedMessage, limits: QueueLimits, now: number): boolean {
    const limit = limits.maxQueuedMessages;
    const maxBytes = limits.maxQueuedBytes;
    const size = item.message.payload.length;
    if (limit <= 0 || (maxBytes > 0 && size > maxBytes)) {
      this.dropped++;
      return false;
    }
    const queue = (this._queue ??= new Deque());
    // [MQTT-3.3.2-5] expired messages are deleted: they give their places up before a live one is dropped.
    if (this.noRoom(limit, maxBytes, size)) this.dropExpired(now, limits.offlineMessageExpiry * 1000);
    if (this.noRoom(limit, maxBytes, size) && limits.queueOverflow === 'drop-newest') {
      this.dropped++;
      return false;
    }
    while (this.noRoom(limit, maxBytes, size)) {
      this.dropped++;
      this.takeQueued();
    }
    queue.push(item);
    this._queuedBytes += size;
    const expiresAt = item.message.expiresAt;
    if (expiresAt !== undefined && (this.queueExpiresFirst === undefined || expiresAt < this.queueExpiresFirst)) this.queueExpiresFirst = expiresAt;
    return true;
  }

  /** No room for `size` more payload bytes within the queue's count and byte limits. */
  private noRoom(limit: number, maxBytes: number, size: number): boolean {
    return this.queuedCount >= limit || (maxBytes > 0 && this._queuedBytes + size > maxBytes);
  }

  /**
   * Deletes the queued messages past their lifetime. Scans the queue only when one may be: the earliest
   * Message Expiry seen since the last scan has passed, or the oldest message is past offlineMessageExpiry.
   */
  private dropExpired(now: number, offlineLimitMs: number): void {
    const oldest = this.queue.peek();
    const offlineDue = offlineLimitMs > 0 && oldest !== undefined && oldest.queuedAt + offlineLimitMs <= now;
    if (!offlineDue && !(this.queueExpiresFirst !== undefined && this.queueExpiresFirst < now)) return;
    let first = Infinity;
    this.removeQueuedWhere((q) => {
      if (messageExpired(q.message, q.queuedAt, now, offlineLimitMs)) return true;
      const e = q.message.expiresAt;
      if (e !== undefined && e < first) first = e;
      return false;
    });
    this.queueExpiresFirst = first === Infinity ? undefined : first;
  }
}
