// A session (MQTT 4.1): what outlives a connection, and the owner of delivery to its client (EMQX's
// emqx_session): subscriptions, the in-flight window, the queue and resends. The connection it is linked
// to (a SessionLink, the channel) only encodes and writes. Every state change goes through a method here
// and, for a session that a store keeps, into its journal.
import type { QoS } from '../../protocol/constants.js';
import type { ClientInfo } from '../hooks.js';
import { messageExpired, type Message } from '../message.js';
import type { BrokerLimits } from '../options.js';
import type { ResourceGuard } from '../overload.js';
import type { BrokerStats } from '../sys-topics.js';
import { NOT_DUE } from '../timer-wheel.js';
import type { InflightMessage, QueuedMessage, SessionJournal, SubscriptionEntry } from '../store/types.js';
import { InflightWindow } from './inflight-window.js';
import { SessionQueue } from './session-queue.js';

/** Shared by every session of a broker. */
export interface SessionContext {
  readonly limits: BrokerLimits;
  readonly clock: { now(): number };
  readonly stats: BrokerStats;
  /** The overload guard: QoS 0 is shed while memory is high. */
  readonly guard?: Pick<ResourceGuard, 'shedQos0'>;
}

/** A PUBLISH's encodings shared by every subscriber of one fan-out, by (version, QoS, retain) slot. */
export type FanOutEncodings = (Buffer | undefined)[];

/** What a session needs of the connection it is delivering to (implemented by the channel). */
export interface SessionLink {
  /** QoS 1/2 messages that may be in flight at once: the client's Receive Maximum within maxInflight. */
  readonly sendWindow: number;
  /** The client reads slower than we write: its output is over the high-water mark. */
  outputFull(): boolean;
  /** Encodes and writes a PUBLISH; false when it was dropped (too large for the client). */
  writePublish(message: Message, qos: QoS, retain: boolean, ids: readonly number[] | undefined, packetId: number | undefined, dup: boolean, encodings?: FanOutEncodings): boolean;
  sendPubrel(packetId: number): void;
  /** Something waits (queue or output): look at the connection at every tick until it is gone. */
  watchOutput(): void;
}

/** Retained messages a new subscription matched, not all sent yet (Session.sendRetained). */
interface RetainedBatch {
  messages: Message[];
  next: number;
  /** The subscription's QoS: each message goes at the lower of it and its own. */
  qos: QoS;
  ids: readonly number[] | undefined;
}

/** A PUBACK, PUBREC or PUBCOMP from the client, by packet type. */
export type AckType = 4 | 5 | 7;

export class Session {
  /** The live connection, while there is one. First (after the constructor's context and journal): V8 lays
   * fields out in this order, so a delivery reads one cache line of the session. */
  link: SessionLink | undefined = undefined;
  readonly clientId: string;
  // The collections are made on first use: an idle connection's session then costs ~150 B instead of ~700 B.
  private _subscriptions: Map<string, SubscriptionEntry> | undefined;
  private window: InflightWindow | undefined;
  private _queue: SessionQueue | undefined;
  private _incomingQos2: Set<number> | undefined;
  /** Messages dropped because the queue was full (counted for metrics and logs). */
  dropped = 0;
  /** Session Expiry Interval in seconds; 0xFFFFFFFF never expires. */
  expiryInterval: number;
  /** When the session ends if nobody resumes it (ms, broker clock); undefined while connected. */
  expiresAt: number | undefined;
  /** Who last connected with this session (kept while it is offline, so a reloaded ACL can be applied to it). */
  client: ClientInfo | undefined = undefined;
  /** The core's timer slot for expiresAt (TimerWheel). */
  dueSlot = NOT_DUE;
  /**
   * While the session moves to another node of a cluster (offline here, no longer stored by this node): what
   * it is delivered goes there instead of into its queue (cluster/handover.ts); or it is held while the session
   * is adopted from a dead node (cluster/adoption.ts). A divert that returns false leaves the message to the queue.
   */
  divert: ((message: Message, shareKey: string | undefined) => boolean | void) | undefined = undefined;
  /**
   * In-flight messages of a resumed session not resent yet: the new connection's Receive Maximum is smaller
   * than what was in flight ([MQTT-4.9.0-2]), so the rest follow as acknowledgements free the window.
   */
  private heldResends: { order: InflightMessage[]; next: number; ids: Set<number> } | undefined;
  /**
   * Retained messages for new subscriptions, sent as the in-flight window and the output allow: a cursor over
   * the matches, not the queue, so a subscription matching more retained messages than maxQueuedMessages, or
   * larger ones than the output buffer holds, gets every one of them at every QoS.
   */
  private retainedBacklog: RetainedBatch[] | undefined;

  constructor(
    clientId: string,
    expiryInterval: number,
    private readonly context: SessionContext,
    /** Where a store records this session's changes; undefined when nothing is recorded. */
    readonly journal: SessionJournal | undefined = undefined,
  ) {
    this.clientId = clientId;
    this.expiryInterval = expiryInterval;
  }

  // ---- expiry ----

  /** The Session Expiry Interval and the deadline while offline (undefined: connected, or never). */
  setExpiry(expiryInterval: number, expiresAt: number | undefined): void {
    this.expiryInterval = expiryInterval;
    this.expiresAt = expiresAt;
    this.journal?.expiry(expiryInterval, expiresAt, this.client);
  }

  // ---- subscriptions (the index of the broker follows: see SessionRegistry.subscribe) ----

  /** Subscriptions by full filter (with any `$share/group/` prefix). */
  get subscriptions(): ReadonlyMap<string, SubscriptionEntry> {
    return (this._subscriptions ??= new Map());
  }

  get subscriptionCount(): number {
    return this._subscriptions?.size ?? 0;
  }

  /** Adds or replaces the subscription `key`. */
  putSubscription(key: string, entry: SubscriptionEntry): void {
    (this._subscriptions ??= new Map()).set(key, entry);
    this.journal?.subscribed(key, entry);
  }

  deleteSubscription(key: string): SubscriptionEntry | undefined {
    const entry = this._subscriptions?.get(key);
    if (entry === undefined) return undefined;
    this._subscriptions!.delete(key);
    this.journal?.unsubscribed(key);
    return entry;
  }

  // ---- incoming QoS 2 (4.3.3: the receiver's side of exactly once) ----

  /** Packet ids of incoming QoS 2 messages received (PUBREC sent) and not yet released by PUBREL. */
  get incomingQos2Count(): number {
    return this._incomingQos2?.size ?? 0;
  }

  hasIncomingQos2(packetId: number): boolean {
    return this._incomingQos2?.has(packetId) ?? false;
  }

  holdIncomingQos2(packetId: number): void {
    (this._incomingQos2 ??= new Set()).add(packetId);
    this.journal?.incomingQos2(packetId, true);
  }

  /** PUBREL came: false when the id was not held. */
  releaseIncomingQos2(packetId: number): boolean {
    const known = this._incomingQos2?.delete(packetId) ?? false;
    if (known) this.journal?.incomingQos2(packetId, false);
    return known;
  }

  // ---- outgoing: the in-flight window and the queue ----

  get inflightCount(): number {
    return this.window?.size ?? 0;
  }

  inflightMessage(packetId: number): InflightMessage | undefined {
    return this.window?.get(packetId);
  }

  /** The in-flight messages in the order they were sent (a copy). */
  inflightInOrder(): InflightMessage[] {
    return this.window?.inOrder() ?? [];
  }

  /** Ends the outgoing flow of `packetId` (acknowledged, refused, or handed to another member). */
  releaseInflight(packetId: number): void {
    if (this.window?.release(packetId)) this.journal?.released(packetId);
  }

  get queuedCount(): number {
    return this._queue?.length ?? 0;
  }

  get queuedBytes(): number {
    return this._queue?.byteSize ?? 0;
  }

  /** The oldest queued message, without taking it. */
  peekQueued(): QueuedMessage | undefined {
    return this._queue?.peek();
  }

  /** Takes the queued messages `leave` says so out of the queue, in order. */
  removeQueuedWhere(leave: (item: QueuedMessage) => boolean): QueuedMessage[] {
    if (this._queue === undefined) return [];
    const removed = this._queue.removeWhere(leave);
    if (this.journal !== undefined) for (const item of removed) this.journal.dequeued(item);
    return removed;
  }

  /** Queues a message within the limits; false when the message itself was dropped. */
  enqueue(item: QueuedMessage): boolean {
    const queue = (this._queue ??= new SessionQueue());
    const queued = queue.push(item, this.context.limits, this.context.clock.now(), this.onQueueDrop);
    if (!queued) {
      this.countDrop();
      return false;
    }
    this.journal?.queued(item);
    return true;
  }

  /** Arrow: passed to the queue as is, no closure per message. */
  private readonly onQueueDrop = (item: QueuedMessage, expired: boolean): void => {
    if (!expired) this.countDrop();
    this.journal?.dequeued(item);
  };

  private countDrop(): void {
    this.dropped++;
    this.context.stats.droppedMessages++;
  }

  private takeQueued(): QueuedMessage | undefined {
    const item = this._queue?.shift();
    if (item !== undefined) this.journal?.dequeued(item);
    return item;
  }

  // ---- delivery ----

  /**
   * A routed message for this client: QoS 0 right away, QoS 1/2 into the in-flight window or, when it is
   * full (or older messages wait), into the queue. Offline: queued (QoS 0 only with queueQos0).
   * Kept small (the rare cases are methods of their own): V8 inlines a function of at most 460 bytes of
   * bytecode into the fan-out loop, and this one is called once per subscriber of every message.
   */
  deliver(message: Message, qos: QoS, retain: boolean, ids: readonly number[] | undefined, shareKey: string | undefined, encodings?: FanOutEncodings): void {
    const link = this.link;
    if (link === undefined) {
      this.deliverOffline(message, qos, retain, ids, shareKey);
      return;
    }
    if (message.expiresAt !== undefined && this.expiredNow(message)) return;
    if (qos === 0) {
      // A slow reader loses QoS 0 messages rather than growing the broker's memory; so does everyone while
      // the overload guard sheds them.
      if (link.outputFull() || this.context.guard?.shedQos0 === true) this.dropQos0(link);
      else link.writePublish(message, 0, retain, ids, undefined, false, encodings);
      return;
    }
    this.deliverTracked(link, message, qos, retain, ids, shareKey, encodings);
  }

  /** QoS 1/2 online: into the in-flight window, or the queue when it or the output is full, or older messages wait. */
  private deliverTracked(link: SessionLink, message: Message, qos: QoS, retain: boolean, ids: readonly number[] | undefined, shareKey: string | undefined, encodings: FanOutEncodings | undefined): void {
    if (link.outputFull() || this.hasBacklog || this.inflightCount >= link.sendWindow) this.queueBehind(link, message, qos, retain, ids, shareKey);
    else this.sendTracked(link, message, qos, retain, ids, shareKey, encodings);
  }

  /** Offline: queued (QoS 0 only with queueQos0). */
  private deliverOffline(message: Message, qos: QoS, retain: boolean, ids: readonly number[] | undefined, shareKey: string | undefined): void {
    if (this.divert !== undefined && this.divert(message, shareKey) !== false) return;
    if (qos === 0 && !this.context.limits.queueQos0) return;
    this.enqueue({ message, qos, retain, subscriptionIds: ids, queuedAt: this.context.clock.now(), shareKey });
  }

  /** A message whose Message Expiry Interval ran out before it could go out: counted and not sent. */
  private expiredNow(message: Message): boolean {
    if (message.expiresAt! >= this.context.clock.now()) return false;
    this.context.stats.droppedExpired++;
    return true;
  }

  /** A QoS 0 message not sent: its client's output is full (watched until it drains), or the guard sheds. */
  private dropQos0(link: SessionLink): void {
    const stats = this.context.stats;
    stats.droppedMessages++;
    if (link.outputFull()) {
      stats.droppedOutputFull++;
      link.watchOutput();
    } else {
      stats.droppedShed++;
    }
  }

  /** A QoS 1/2 message that must wait: the window or the output is full, or older messages wait. */
  private queueBehind(link: SessionLink, message: Message, qos: QoS, retain: boolean, ids: readonly number[] | undefined, shareKey: string | undefined): void {
    this.enqueue({ message, qos, retain, subscriptionIds: ids, queuedAt: this.context.clock.now(), shareKey });
    link.watchOutput();
  }

  private sendTracked(link: SessionLink, message: Message, qos: QoS, retain: boolean, ids: readonly number[] | undefined, shareKey: string | undefined, encodings?: FanOutEncodings): void {
    const window = (this.window ??= new InflightWindow());
    const packetId = window.allocate();
    if (packetId === undefined) return;
    const journal = this.journal;
    if (qos === 2 && journal?.afterCommit !== undefined) {
      // Durable QoS 2: the PUBLISH goes out once it is recorded in flight, so a restart resends it with the
      // same packet id and DUP rather than as a new message.
      const m = window.add(packetId, message, qos, retain, ids, shareKey);
      journal.inflight(m);
      journal.afterCommit(() => {
        if (this.link !== link || this.window?.get(packetId) !== m) return; // resent on resume instead
        if (!link.writePublish(message, qos, retain, ids, packetId, false)) this.releaseInflight(packetId);
      });
      return;
    }
    if (link.writePublish(message, qos, retain, ids, packetId, false, encodings)) {
      const m = window.add(packetId, message, qos, retain, ids, shareKey);
      journal?.inflight(m);
    }
  }

  /** Something waits to be sent: queued messages or retained ones for a new subscription. */
  get hasBacklog(): boolean {
    return this.queuedCount > 0 || this.retainedBacklog !== undefined;
  }

  /**
   * Retained messages matched by a new subscription, after its SUBACK ([MQTT-3.3.1-9]: with RETAIN set), at
   * the lower of their QoS and the subscription's; they go out as the window and the output allow.
   */
  sendRetained(messages: Message[], qos: QoS, ids: readonly number[] | undefined): void {
    if (messages.length === 0 || this.link === undefined) return;
    (this.retainedBacklog ??= []).push({ messages, next: 0, qos, ids });
    this.drain();
  }

  /** Sends retained messages while there is room; false while some wait. */
  private drainRetained(link: SessionLink): boolean {
    const batches = this.retainedBacklog!;
    const now = this.context.clock.now();
    while (batches.length > 0) {
      const batch = batches[0]!;
      while (batch.next < batch.messages.length) {
        if (link.outputFull() || this.link !== link) return false;
        const m = batch.messages[batch.next]!;
        const qos = (m.qos < batch.qos ? m.qos : batch.qos) as QoS;
        if (qos > 0 && this.inflightCount >= link.sendWindow) return false;
        batch.next++;
        if (m.expiresAt !== undefined && m.expiresAt < now) {
          this.context.stats.droppedExpired++;
          continue;
        }
        if (qos === 0) link.writePublish(m, 0, true, batch.ids, undefined, false);
        else this.sendTracked(link, m, qos, true, batch.ids, undefined);
      }
      batches.shift();
    }
    this.retainedBacklog = undefined;
    return true;
  }

  /** Moves queued messages into the in-flight window while it and the output have room, dropping expired ones. */
  drain(): void {
    const link = this.link;
    if (link === undefined) return;
    if (this.heldResends !== undefined && !this.resendHeld(link)) {
      link.watchOutput();
      return;
    }
    if (this.retainedBacklog !== undefined && !this.drainRetained(link)) {
      link.watchOutput();
      return;
    }
    if (this.queuedCount === 0) return;
    const now = this.context.clock.now();
    const offlineLimitMs = this.context.limits.offlineMessageExpiry * 1000;
    while (this.queuedCount > 0 && this.inflightCount < link.sendWindow && !link.outputFull() && this.link === link) {
      const item = this.takeQueued()!;
      if (messageExpired(item.message, item.queuedAt, now, offlineLimitMs)) {
        this.context.stats.droppedExpired++;
        continue;
      }
      if (item.qos === 0) link.writePublish(item.message, 0, item.retain, item.subscriptionIds, undefined, false);
      else this.sendTracked(link, item.message, item.qos, item.retain, item.subscriptionIds, item.shareKey);
    }
    if (this.queuedCount > 0 && this.link === link) link.watchOutput();
  }

  /**
   * A connection takes the session up: [MQTT-4.4.0-1] unacknowledged PUBLISH (with DUP) and PUBREL are sent
   * again, in order, but no more at once than the client's Receive Maximum allows ([MQTT-4.9.0-2]); then
   * the queue drains.
   */
  resume(link: SessionLink): void {
    this.link = link;
    this.heldResends = undefined;
    if (this.inflightCount > 0) {
      const order = this.inflightInOrder();
      const window = link.sendWindow;
      for (let i = 0; i < order.length && i < window; i++) this.resend(link, order[i]!);
      if (order.length > window) this.heldResends = { order, next: window, ids: new Set(order.slice(window).map((m) => m.packetId)) };
    }
    this.drain();
  }

  /**
   * The connection ended: the session waits, offline. Retained messages not sent yet join the queue (QoS 1/2,
   * within its limits), as any message for an offline session would.
   */
  unlink(link: SessionLink): void {
    if (this.link !== link) return;
    this.link = undefined;
    this.heldResends = undefined;
    const backlog = this.retainedBacklog;
    if (backlog === undefined) return;
    this.retainedBacklog = undefined;
    const now = this.context.clock.now();
    for (const batch of backlog) {
      for (let i = batch.next; i < batch.messages.length; i++) {
        const m = batch.messages[i]!;
        const qos = (m.qos < batch.qos ? m.qos : batch.qos) as QoS;
        if (qos > 0 || this.context.limits.queueQos0) this.enqueue({ message: m, qos, retain: true, subscriptionIds: batch.ids, queuedAt: now });
      }
    }
  }

  private resend(link: SessionLink, m: InflightMessage): void {
    if (m.state === 'pubrel') link.sendPubrel(m.packetId);
    else link.writePublish(m.message, m.qos, m.retain, m.subscriptionIds, m.packetId, true);
  }

  /** Resends held-back in-flight messages while the window has room. False while some are still held. */
  private resendHeld(link: SessionLink): boolean {
    const held = this.heldResends!;
    while (held.next < held.order.length && this.inflightCount - held.ids.size < link.sendWindow && !link.outputFull()) {
      const m = held.order[held.next++]!;
      // Acknowledged meanwhile (the client had it from the last connection): nothing to resend.
      if (!held.ids.delete(m.packetId)) continue;
      this.resend(link, m);
    }
    if (held.ids.size > 0) return false;
    this.heldResends = undefined;
    return true;
  }

  /**
   * PUBACK, PUBREC or PUBCOMP from the client. PUBACK ends a QoS 1 flow, PUBREC answers a QoS 2 PUBLISH
   * (PUBREL goes out, or the flow ends when it refuses; a repeated PUBREC gets PUBREL again), PUBCOMP ends a
   * QoS 2 flow once PUBREL was sent. 'unknown': no message is in flight under the id (a 5.0 PUBREC then gets
   * PUBREL 0x92). 'mismatch': an acknowledgement of the wrong kind for the flow (PUBCOMP before PUBREC, PUBACK
   * for QoS 2, PUBREC or PUBCOMP for QoS 1): a protocol violation, the flow left as it was.
   */
  acknowledge(type: AckType, packetId: number, reasonCode: number): 'done' | 'unknown' | 'mismatch' {
    const window = this.window;
    const m = window?.get(packetId);
    if (m === undefined) return 'unknown';
    if (type === 4 && m.qos === 1 && this.heldResends === undefined) {
      // PUBACK of a QoS 1 message, once per message of every QoS 1 subscriber: kept small enough for V8 to
      // inline it into the channel's packet handling, the rest is acknowledgeFlow.
      window!.release(packetId);
      this.journal?.released(packetId);
      if (this.hasBacklog) this.drain();
      return 'done';
    }
    return this.acknowledgeFlow(m, type, packetId, reasonCode);
  }

  /** acknowledge() for PUBREC, PUBCOMP, a held-back resend, or an acknowledgement of the wrong kind. */
  private acknowledgeFlow(m: InflightMessage, type: AckType, packetId: number, reasonCode: number): 'done' | 'mismatch' {
    if (type === 4 ? m.qos !== 1 : m.qos !== 2 || (type === 7 && m.state !== 'pubrel')) return 'mismatch';
    // A message held back on resume that the client acknowledges now had reached it already: not resent.
    this.heldResends?.ids.delete(packetId);
    if (type === 5 && reasonCode < 0x80) {
      m.state = 'pubrel';
      const journal = this.journal;
      journal?.inflight(m);
      const link = this.link;
      // Durable: PUBREL once 'pubrel' is recorded, so a restart never sends the PUBLISH again.
      if (journal?.afterCommit !== undefined) journal.afterCommit(() => this.link === link && this.window?.get(packetId) === m && link?.sendPubrel(packetId));
      else link?.sendPubrel(packetId);
      return 'done';
    }
    this.releaseInflight(packetId);
    this.drain();
    return 'done';
  }

  // ---- restored from a store ----

  restoreInflight(m: InflightMessage): void {
    (this.window ??= new InflightWindow()).restore(m);
  }

  restoreQueued(item: QueuedMessage): void {
    (this._queue ??= new SessionQueue()).restore(item);
  }

  restoreIncomingQos2(packetId: number): void {
    (this._incomingQos2 ??= new Set()).add(packetId);
  }

  restoreSubscription(key: string, entry: SubscriptionEntry): void {
    (this._subscriptions ??= new Map()).set(key, entry);
  }
}
