// Session state (MQTT 4.1): what outlives a connection when the session is persistent.
// Plain data plus the bookkeeping rules; the channel drives it.
import type { QoS } from '../protocol/constants.js';
import type { Message } from './message.js';
import type { SubscriptionEntry } from './router.js';

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
  shareKey?: string;
}

/** A message waiting to be sent to this session (client offline, or its in-flight window full). */
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
  private _inflight: Map<number, InflightMessage> | undefined;
  private _incomingQos2: Set<number> | undefined;
  private _queue: QueuedMessage[] | undefined;
  /** Messages dropped because the queue was full (counted for metrics and logs). */
  dropped = 0;
  /** Session Expiry Interval in seconds; 0xFFFFFFFF never expires. */
  expiryInterval: number;
  /** When the session ends if nobody resumes it (ms, broker clock); undefined while connected. */
  expiresAt: number | undefined;
  private nextPacketId = 1;

  constructor(clientId: string, expiryInterval: number) {
    this.clientId = clientId;
    this.expiryInterval = expiryInterval;
  }

  /** Subscriptions by full filter (with any `$share/group/` prefix). */
  get subscriptions(): Map<string, SubscriptionEntry> {
    return (this._subscriptions ??= new Map());
  }

  /** Outgoing QoS 1/2 in flight, by packet id, in send order. */
  get inflight(): Map<number, InflightMessage> {
    return (this._inflight ??= new Map());
  }

  /** The in-flight message with this packet id (without making a window when there is none). */
  inflightMessage(packetId: number): InflightMessage | undefined {
    return this._inflight?.get(packetId);
  }

  /**
   * Ends the flow of an outgoing message. A window that empties is dropped, not kept: with one message in
   * flight at a time a Map that only grows and shrinks rehashes into a new table every few messages, and V8
   * links each old table to its successor, so one table that reached the old generation can keep every later
   * one (and the messages in them) alive until a major GC. fanin-q1-10k runs that promoted ~0.8 MB per
   * scavenge (2 ms pauses) had per-message objects as their sampled survivors.
   */
  releaseInflight(packetId: number): void {
    const inflight = this._inflight;
    if (inflight === undefined) return;
    inflight.delete(packetId);
    if (inflight.size === 0) this._inflight = undefined;
  }

  /** Incoming QoS 2 packet ids received (PUBREC sent) and not yet released (no PUBREL yet). */
  get incomingQos2(): Set<number> {
    return (this._incomingQos2 ??= new Set());
  }

  get subscriptionCount(): number {
    return this._subscriptions?.size ?? 0;
  }

  get inflightCount(): number {
    return this._inflight?.size ?? 0;
  }

  /** Messages waiting to be sent, oldest first. */
  get queue(): QueuedMessage[] {
    return (this._queue ??= []);
  }

  get queuedCount(): number {
    return this._queue?.length ?? 0;
  }

  /** A packet id not used by an in-flight message ([MQTT-2.2.1-3]); undefined when all 65535 are in use. */
  allocatePacketId(): number | undefined {
    const inflight = this._inflight;
    if (inflight !== undefined && inflight.size >= 65535) return undefined;
    let id = this.nextPacketId;
    if (inflight !== undefined) while (inflight.has(id)) id = id === 65535 ? 1 : id + 1;
    this.nextPacketId = id === 65535 ? 1 : id + 1;
    return id;
  }

  /**
   * Queues a message; applies the bound. Returns false when the message itself was dropped
   * (queue full with drop-newest).
   */
  enqueue(item: QueuedMessage, limit: number, overflow: 'drop-oldest' | 'drop-newest'): boolean {
    if (limit <= 0) {
      this.dropped++;
      return false;
    }
    if (this.queue.length >= limit) {
      this.dropped++;
      if (overflow === 'drop-newest') return false;
      this.queue.shift();
    }
    this.queue.push(item);
    return true;
  }
}
