// A session's queue of messages waiting to be sent, with its limits: count, payload bytes, overflow policy
// and expiry (MQTT 4.1: messages queued for a disconnected client are part of the session).
import { Deque } from '../deque.js';
import { messageExpired } from '../message.js';
import type { BrokerLimits } from '../options.js';
import type { QueuedMessage } from '../store/types.js';

/** The limits a session queue follows. */
export type QueueLimits = Pick<BrokerLimits, 'maxQueuedMessages' | 'maxQueuedBytes' | 'queueOverflow' | 'offlineMessageExpiry'>;

export class SessionQueue {
  private readonly items = new Deque<QueuedMessage>();
  /** Payload bytes of the queued messages (maxQueuedBytes). */
  private bytes = 0;
  /** Earliest Message Expiry among queued messages since the queue was last scanned (maybe already gone). */
  private expiresFirst: number | undefined = undefined;

  get length(): number {
    return this.items.length;
  }

  get byteSize(): number {
    return this.bytes;
  }

  peek(): QueuedMessage | undefined {
    return this.items.peek();
  }

  /** The oldest message, out of the queue. */
  shift(): QueuedMessage | undefined {
    const item = this.items.shift();
    if (item !== undefined) this.bytes -= item.message.payload.length;
    return item;
  }

  /** Takes the messages `leave` says so out of the queue, in order. */
  removeWhere(leave: (item: QueuedMessage) => boolean): QueuedMessage[] {
    const removed = this.items.removeWhere(leave);
    for (const item of removed) this.bytes -= item.message.payload.length;
    return removed;
  }

  /**
   * Queues `item` within the limits. Returns the messages that left to make room (dropped), and whether
   * `item` itself was queued (false: dropped, with drop-newest or when it can never fit).
   */
  push(item: QueuedMessage, limits: QueueLimits, now: number, dropped: (item: QueuedMessage, expired: boolean) => void): boolean {
    const limit = limits.maxQueuedMessages;
    const maxBytes = limits.maxQueuedBytes;
    const size = item.message.payload.length;
    if (limit <= 0 || (maxBytes > 0 && size > maxBytes)) return false;
    // [MQTT-3.3.2-5] expired messages are deleted: they give their places up before a live one is dropped.
    if (this.noRoom(limit, maxBytes, size)) this.dropExpired(now, limits.offlineMessageExpiry * 1000, dropped);
    if (this.noRoom(limit, maxBytes, size) && limits.queueOverflow === 'drop-newest') return false;
    while (this.noRoom(limit, maxBytes, size)) dropped(this.shift()!, false);
    this.items.push(item);
    this.bytes += size;
    const expiresAt = item.message.expiresAt;
    if (expiresAt !== undefined && (this.expiresFirst === undefined || expiresAt < this.expiresFirst)) this.expiresFirst = expiresAt;
    return true;
  }

  /** A message restored from a store, in order, without the limits (they held when it was queued). */
  restore(item: QueuedMessage): void {
    this.items.push(item);
    this.bytes += item.message.payload.length;
    const expiresAt = item.message.expiresAt;
    if (expiresAt !== undefined && (this.expiresFirst === undefined || expiresAt < this.expiresFirst)) this.expiresFirst = expiresAt;
  }

  /** No room for `size` more payload bytes within the count and byte limits. */
  private noRoom(limit: number, maxBytes: number, size: number): boolean {
    return this.items.length >= limit || (maxBytes > 0 && this.bytes + size > maxBytes);
  }

  /**
   * Deletes the messages past their lifetime. Scans only when one may be: the earliest Message Expiry seen
   * since the last scan has passed, or the oldest message is past offlineMessageExpiry.
   */
  private dropExpired(now: number, offlineLimitMs: number, dropped: (item: QueuedMessage, expired: boolean) => void): void {
    const oldest = this.items.peek();
    const offlineDue = offlineLimitMs > 0 && oldest !== undefined && oldest.queuedAt + offlineLimitMs <= now;
    if (!offlineDue && !(this.expiresFirst !== undefined && this.expiresFirst < now)) return;
    let first = Infinity;
    const gone = this.removeWhere((q) => {
      if (messageExpired(q.message, q.queuedAt, now, offlineLimitMs)) return true;
      const e = q.message.expiresAt;
      if (e !== undefined && e < first) first = e;
      return false;
    });
    this.expiresFirst = first === Infinity ? undefined : first;
    for (const item of gone) dropped(item, true);
  }
}
