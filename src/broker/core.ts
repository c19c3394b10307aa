// The broker core, sans I/O: sessions, routing, retained messages, wills and timers.
// Transports hand it connections (`openChannel`); time comes from a Clock and `tick()`.
import { randomBytes } from 'node:crypto';
import type { QoS } from '../protocol/constants.js';
import type { WillMessage } from '../protocol/packets.js';
import { Channel, type ChannelOutput, type TransportInfo } from './channel.js';
import type { AuthMethod } from './enhanced-auth.js';
import type { BrokerEvents, BrokerHooks, ClientInfo } from './hooks.js';
import { createMessage, detach, messageExpired, type Message } from './message.js';
import { DEFAULT_LIMITS, type BrokerLimits } from './options.js';
import { RetainedStore } from './retained.js';
import { TopicRouter, type MatchResult, type RouteMemo, type SubscriptionEntry } from './router.js';
import { Session } from './session.js';
import { newStats, SysTopics, type SysTopicsOptions } from './sys-topics.js';
import { PETREL_VERSION } from '../version.js';
import { TimerWheel } from './timer-wheel.js';

export interface Clock {
  now(): number;
}
export const systemClock: Clock = { now: () => Date.now() };

export interface CoreOptions {
  limits?: Partial<BrokerLimits>;
  /** 5.0 enhanced authentication methods, by name (e.g. scramSha256(...)). */
  authMethods?: AuthMethod[];
  hooks?: BrokerHooks;
  events?: BrokerEvents;
  clock?: Clock;
  /** What the $SYS topics say about the process (version, heap); see sys-topics.ts. */
  sys?: Partial<SysTopicsOptions>;
}

/** A will waiting for its Will Delay Interval (5.0) to pass. */
interface PendingWill {
  /** The will as the CONNECT gave it: its message is made when it is published (its expiry starts then). */
  will: WillMessage;
  client: ClientInfo;
  publishAt: number;
}

/** Width of a timer slot: connect timeouts, keep alives and session expiries are seen at most this much late. */
const TIMER_SLOT_MS = 100;

/** A never-expiring session (Session Expiry Interval 0xFFFFFFFF). */
export const NEVER_EXPIRES = 0xffffffff;

export class BrokerCore {
  readonly limits: BrokerLimits;
  readonly hooks: BrokerHooks;
  readonly events: BrokerEvents;
  readonly clock: Clock;
  readonly authMethods: ReadonlyMap<string, AuthMethod>;
  readonly router = new TopicRouter();
  readonly retained = new RetainedStore();
  /** Every session, connected or not, by Client ID. */
  readonly sessions = new Map<string, Session>();
  /** The connected channel of each Client ID. */
  readonly connected = new Map<string, Channel>();
  /** Changes whenever a client connects or disconnects: connections remembered under another value are stale. */
  private connectedVersion = 0;
  /** Every open channel, including those still waiting for CONNECT. */
  readonly channels = new Set<Channel>();
  private readonly pendingWills = new Map<string, PendingWill>();
  /** Offline sessions that will expire (those with a finite expiry). */
  private readonly expiring = new Set<Session>();
  /**
   * Deadlines: each channel's connect timeout or keep alive, each offline session's expiry. A tick looks at
   * those due, not at every connection: with 19.5k idle connections, a tick that checked them all took
   * ~2 ms every 250 ms (docs/performance.md).
   */
  private readonly channelTimers: TimerWheel<Channel>;
  private readonly sessionTimers: TimerWheel<Session>;
  /** Channels that need a look at every tick: output over the high-water mark, or messages queued. */
  private readonly watched = new Set<Channel>();
  /** Next member index per shared subscription group (round robin). */
  private readonly shareCursor = new Map<string, number>();
  /** Member last chosen per shared group (sticky strategy). */
  private readonly stickyMember = new Map<string, string>();
  private readonly idPrefix = `petrel-${randomBytes(4).toString('hex')}-`;
  private idCounter = 0;
  private plainCredentialsWarned = false;
  /** The message being fanned out by publish(), and its encodings by (version, QoS, retain) slot (see Channel.writePublish). */
  fanOutMessage: Message | undefined;
  readonly fanOutEncodings: (Buffer | undefined)[] = new Array(12).fill(undefined);
  /** Messages dropped for a subscriber (queue full, too large for it, expired), for metrics. */
  droppedMessages = 0;
  /** Bytes, packets and sessions counted for $SYS (sys-topics.ts) and embedders. */
  readonly stats = newStats();
  /** Publishes the $SYS topics; undefined when sysInterval is 0. */
  readonly sysTopics: SysTopics | undefined;
  /** Retained messages on new topics not kept because maxRetainedMessages topics had one. */
  retainedRefused = 0;
  private retainedFull = false;
  closing = false;

  constructor(options: CoreOptions = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.hooks = options.hooks ?? {};
    this.events = options.events ?? {};
    this.clock = options.clock ?? systemClock;
    this.authMethods = new Map((options.authMethods ?? []).map((m) => [m.name, m]));
    this.channelTimers = new TimerWheel(TIMER_SLOT_MS, this.clock.now());
    this.sessionTimers = new TimerWheel(TIMER_SLOT_MS, this.clock.now());
    if (this.limits.sysInterval > 0) {
      this.sysTopics = new SysTopics(this, this.limits.sysInterval * 1000, { version: `petrel version ${PETREL_VERSION}`, ...options.sys });
    }
  }

  /** A new connection from a transport. The channel reports back through `output`. */
  openChannel(output: ChannelOutput, transport: TransportInfo): Channel {
    const channel = new Channel(this, output, transport);
    this.channels.add(channel);
    channel.tick(channel.openedAt); // files its connect timeout
    return channel;
  }

  /** Runs the timers: connect timeout, keep alive, slow consumers, will delay, session expiry. Call it often (the adapter does, every ~250 ms). */
  tick(): void {
    const now = this.clock.now();
    for (const channel of this.watched) {
      if (!channel.tickWatched(now)) this.watched.delete(channel);
    }
    this.channelTimers.expire(now, (channel) => channel.tick(now));
    this.retained.sweep(now);
    if (this.sysTopics !== undefined && now >= this.sysTopics.due) this.sysTopics.publish(now);
    for (const [clientId, will] of this.pendingWills) {
      if (will.publishAt <= now) {
        this.pendingWills.delete(clientId);
        this.publishWill(will.will, will.client);
      }
    }
    this.sessionTimers.expire(now, (session) => {
      if (session.expiresAt === undefined || !this.expiring.has(session)) return; // resumed or ended meanwhile
      if (session.expiresAt <= now) {
        this.stats.sessionsExpired++;
        this.endSession(session);
      }
      else this.sessionTimers.schedule(session, session.expiresAt);
    });
  }

  /** `channel` wants its tick() at `at` (the timer is filed again by the channel each time it runs). */
  wakeAt(channel: Channel, at: number): void {
    this.channelTimers.schedule(channel, at);
  }

  /** `channel` wants tickWatched() at every tick until it returns false. */
  watch(channel: Channel): void {
    this.watched.add(channel);
  }

  /** A unique Client ID for a client that sent an empty one. */
  assignClientId(): string {
    return this.idPrefix + (this.idCounter++).toString(36);
  }

  warnPlainCredentials(client: { listener: string; remoteAddress: string }): void {
    if (this.plainCredentialsWarned) return;
    this.plainCredentialsWarned = true;
    this.events.warning?.('a password arrived over a plain-text listener; use mqtts:// or wss:// so credentials are encrypted', {
      listener: client.listener,
      remoteAddress: client.remoteAddress,
    });
  }

  // ---- sessions ----

  /**
   * Binds a session to a newly accepted connection: kicks a connection holding the same Client ID
   * (takeover), ends or resumes the stored session. Synchronous, so races between connections
   * with the same ID are decided here in arrival order.
   */
  attach(channel: Channel, clientId: string, clean: boolean, expiryInterval: number): { session: Session; present: boolean } {
    const previous = this.connected.get(clientId);
    // The connection taken over schedules its will (delayed, if it has a Will Delay).
    if (previous && previous !== channel) previous.takeOver();
    let session = this.sessions.get(clientId);
    if (session && clean) {
      // Clean Start ends the old session: endSession publishes a delayed will now.
      this.endSession(session);
      session = undefined;
    }
    // [MQTT-3.1.3-9] a new connection to the session before the Will Delay passed cancels the will.
    this.pendingWills.delete(clientId);
    const present = session !== undefined;
    if (!session) {
      session = new Session(clientId, expiryInterval);
      this.sessions.set(clientId, session);
    }
    session.client = channel.info;
    session.expiryInterval = expiryInterval;
    session.expiresAt = undefined;
    this.expiring.delete(session);
    this.sessionTimers.cancel(session);
    this.connected.set(clientId, channel);
    this.connectedVersion++;
    return { session, present };
  }

  /** The connection of `session` ended: keep the session for its expiry interval or end it now. */
  detach(channel: Channel, session: Session): void {
    if (this.connected.get(session.clientId) === channel) {
      this.connected.delete(session.clientId);
      this.connectedVersion++;
    }
    if (this.sessions.get(session.clientId) !== session) return; // already replaced
    this.redistributeShared(session);
    if (session.expiryInterval === 0) {
      this.endSession(session);
    } else if (session.expiryInterval !== NEVER_EXPIRES) {
      session.expiresAt = this.clock.now() + session.expiryInterval * 1000;
      this.expiring.add(session);
      this.sessionTimers.schedule(session, session.expiresAt);
    }
  }

  /** Ends a session: its subscriptions go, and a will still waiting for its delay is published now. */
  endSession(session: Session): void {
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
    this.expiring.delete(session);
    this.sessionTimers.cancel(session);
    this.redistributeShared(session);
    if (session.subscriptionCount > 0) {
      for (const entry of session.subscriptions.values()) this.removeSubscription(entry);
      session.subscriptions.clear();
    }
    const will = this.pendingWills.get(session.clientId);
    if (will) {
      this.pendingWills.delete(session.clientId);
      this.publishWill(will.will, will.client);
    }
  }

  // ---- wills ----

  /** Handles the will of a connection that ended without a normal DISCONNECT. */
  scheduleWill(will: WillMessage, client: ClientInfo, session: Session | undefined): void {
    const delay = will.properties?.willDelayInterval ?? 0;
    const sessionLives = session !== undefined && this.sessions.get(session.clientId) === session;
    if (delay > 0 && sessionLives) {
      // Published when the delay passes or the session ends, whichever is first (3.1.3.2.2).
      this.pendingWills.set(client.clientId, { will, client, publishAt: this.clock.now() + delay * 1000 });
    } else {
      this.publishWill(will, client);
    }
  }

  /** Publishes a will now: its Message Expiry Interval is its lifetime from this moment (3.1.3.2.4). */
  private publishWill(will: WillMessage, client: ClientInfo): void {
    const message = createMessage(will, client.clientId, this.clock.now());
    const authorize = this.hooks.authorizePublish;
    if (!authorize) {
      this.publish(message, client);
      return;
    }
    Promise.resolve()
      .then(() => authorize(client, message))
      .then(
        (ok) => {
          if (ok === true) this.publish(message, client);
          else this.events.warning?.('will message not authorized; dropped', { clientId: client.clientId, topic: message.topic });
        },
        () => this.events.warning?.('authorizePublish hook failed for a will; dropped', { clientId: client.clientId }),
      );
  }

  // ---- publish ----

  /**
   * Routes an application message to every matching subscription, stores it when retained.
   * Returns the number of subscriptions it was delivered or queued to. `payloadOwned`: the caller made the
   * message with its own payload (createMessage's copyPayload), so it is not copied again. `memo`: the
   * publisher's last route (TopicRouter.matchRemembered).
   */
  publish(message: Message, publisher?: ClientInfo, payloadOwned = false, memo?: RouteMemo): number {
    if (!payloadOwned && (message.qos > 0 || message.retain)) message = detach(message);
    if (message.retain && this.limits.retainAvailable) this.retain(message);
    const match = memo === undefined ? this.router.match(message.topic) : this.router.matchRemembered(message.topic, memo);
    const { entries, groups } = match;
    // A publish inside another one's fan-out (a will, when a subscriber's failed write closes it) must not
    // use that fan-out's encodings.
    if (this.fanOutMessage !== undefined) this.endFanOut();
    // Encodings are shared only when there may be more than one recipient; a single subscriber's PUBLISH
    // is encoded with its packet id at once instead of encoded and then copied for the id.
    if (entries.length + groups.length > 1) this.fanOutMessage = message;
    let count = 0;
    try {
      if (match.overlapping) {
        count += this.fanOutMerged(entries, message);
      } else if (entries.length > 0) {
        count += this.fanOut(entries, this.recipientsOf(match), message);
      }
      for (const group of groups) {
        if (this.deliverShared(group.key, group.members, message)) count++;
      }
    } finally {
      // Even if a delivery throws, no encoding of this message may serve the next one.
      if (this.fanOutMessage !== undefined) this.endFanOut();
    }
    this.events.published?.(message, publisher);
    return count;
  }

  /** Keeps a retained message, within maxRetainedMessages (the message is delivered either way). */
  private retain(message: Message): void {
    const limit = this.limits.maxRetainedMessages;
    if (this.retained.set(message, limit)) {
      if (this.retainedFull && this.retained.limitedSize < limit) this.retainedFull = false;
      return;
    }
    this.retainedRefused++;
    if (this.retainedFull) return;
    // Once each time the store fills up, not once per message.
    this.retainedFull = true;
    this.events.warning?.('retained store full: retained messages on new topics are delivered but not kept', { maxRetainedMessages: limit, topic: message.topic });
  }

  private endFanOut(): void {
    this.fanOutMessage = undefined;
    this.fanOutEncodings.fill(undefined);
  }

  /**
   * The live connection of each entry's client, kept with the match until a client connects or disconnects:
   * a message then needs no lookup by Client ID per subscriber.
   */
  private recipientsOf(match: MatchResult): (Channel | undefined)[] {
    let recipients = match.recipients as (Channel | undefined)[] | undefined;
    if (recipients === undefined || match.recipientsVersion !== this.connectedVersion) {
      const entries = match.entries;
      recipients = match.recipients = new Array<Channel | undefined>(entries.length);
      for (let i = 0; i < entries.length; i++) recipients[i] = this.connected.get(entries[i]!.clientId);
      match.recipientsVersion = this.connectedVersion;
    }
    return recipients;
  }

  /** Every entry is another client: one delivery each, in the router's order. */
  private fanOut(entries: readonly SubscriptionEntry[], recipients: readonly (Channel | undefined)[], message: Message): number {
    let count = 0;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.noLocal && e.clientId === message.from) continue;
      const qos = Math.min(message.qos, e.qos) as QoS;
      const retain = e.retainAsPublished && message.retain;
      const channel = recipients[i];
      if (channel !== undefined) channel.deliver(message, qos, retain, e.subscriptionIds);
      else this.deliver(e.clientId, message, qos, retain, e.subscriptionIds);
      count++;
    }
    return count;
  }

  /** Overlapping subscriptions of one client get one copy at the highest QoS, with every subscription identifier (3.3.4). */
  private fanOutMerged(entries: readonly SubscriptionEntry[], message: Message): number {
    const merged = new Map<string, { qos: QoS; retain: boolean; ids: readonly number[] | undefined }>();
    for (const e of entries) {
      if (e.noLocal && e.clientId === message.from) continue;
      const qos = Math.min(message.qos, e.qos) as QoS;
      const retain = e.retainAsPublished && message.retain;
      const m = merged.get(e.clientId);
      if (!m) {
        merged.set(e.clientId, { qos, retain, ids: e.subscriptionIds });
      } else {
        if (qos > m.qos) m.qos = qos;
        m.retain ||= retain;
        if (e.subscriptionIds) m.ids = m.ids ? [...m.ids, ...e.subscriptionIds] : e.subscriptionIds;
      }
    }
    for (const [clientId, m] of merged) this.deliver(clientId, message, m.qos, m.retain, m.ids);
    return merged.size;
  }

  /** One member of a shared group gets the message, chosen by the configured strategy among connected members. */
  private deliverShared(key: string, members: readonly SubscriptionEntry[], message: Message, exclude?: string): boolean {
    const chosen = this.pickMember(key, members, exclude);
    if (!chosen) return false;
    // Retain As Published holds for shared subscriptions too (3.8.3.1 makes no exception).
    this.deliver(chosen.clientId, message, Math.min(message.qos, chosen.qos) as QoS, chosen.retainAsPublished && message.retain, chosen.subscriptionIds, key);
    return true;
  }

  private pickMember(key: string, members: readonly SubscriptionEntry[], exclude: string | undefined): SubscriptionEntry | undefined {
    const n = members.length;
    const usable = (m: SubscriptionEntry) => m.clientId !== exclude && this.connected.has(m.clientId);
    const strategy = this.limits.sharedSubscriptionStrategy;
    if (strategy === 'sticky') {
      const last = this.stickyMember.get(key);
      const current = last !== undefined ? members.find((m) => m.clientId === last && usable(m)) : undefined;
      if (current) return current;
    }
    const start = strategy === 'random' ? Math.floor(Math.random() * n) : (this.shareCursor.get(key) ?? 0) % n;
    for (let i = 0; i < n; i++) {
      const m = members[(start + i) % n]!;
      if (usable(m)) {
        this.shareCursor.set(key, (start + i + 1) % n);
        if (strategy === 'sticky') this.stickyMember.set(key, m.clientId);
        return m;
      }
    }
    // Nobody connected: an offline persistent member queues it.
    return members.find((m) => m.clientId !== exclude);
  }

  /**
   * After the ACL changed: the subscriptions `allowed` no longer grants are removed from every session,
   * connected or not (the client is not told: MQTT has no UNSUBSCRIBE from the server). Returns them by session.
   */
  revokeSubscriptions(allowed: (client: ClientInfo, filter: string) => boolean): { session: Session; filters: string[] }[] {
    const revoked: { session: Session; filters: string[] }[] = [];
    for (const session of this.sessions.values()) {
      const client = session.client;
      if (client === undefined || session.subscriptionCount === 0) continue;
      const filters: string[] = [];
      for (const [key, entry] of session.subscriptions) {
        if (allowed(client, key)) continue;
        session.subscriptions.delete(key);
        this.removeSubscription(entry);
        filters.push(key);
      }
      if (filters.length > 0) revoked.push({ session, filters });
    }
    return revoked;
  }

  /** Takes a subscription out of the router; a shared group left without members forgets its turn state. */
  removeSubscription(entry: SubscriptionEntry): void {
    this.router.remove(entry.clientId, entry.filter, entry.shareGroup);
    if (entry.shareGroup === undefined) return;
    if (this.router.groupMembers(entry.shareGroup, entry.filter).length === 0) {
      const key = `${entry.shareGroup}/${entry.filter}`;
      this.shareCursor.delete(key);
      this.stickyMember.delete(key);
    }
  }

  /**
   * A member left its shared groups (disconnected or its session ended): the messages it got through
   * them and has not acknowledged (in flight, not yet PUBREC'd) or not yet received (queued) go to
   * another member, so none is stuck with a client that is gone.
   */
  private redistributeShared(session: Session): void {
    if (session.inflightCount === 0 && session.queuedCount === 0) return;
    // A message moves only where another member can take it; with none, it stays in this session as it
    // was (same packet id, QoS and Subscription Identifiers) and is resent when the member comes back.
    const others = new Map<string, readonly SubscriptionEntry[] | undefined>();
    const otherMembers = (key: string) => {
      if (!others.has(key)) {
        const slash = key.indexOf('/');
        const members = this.router.groupMembers(key.slice(0, slash), key.slice(slash + 1));
        others.set(key, members.some((m) => m.clientId !== session.clientId) ? members : undefined);
      }
      return others.get(key);
    };
    const moved: { key: string; message: Message }[] = [];
    for (const m of session.inflightInOrder()) {
      if (m.shareKey !== undefined && m.state === 'publish' && otherMembers(m.shareKey) !== undefined) {
        moved.push({ key: m.shareKey, message: m.message });
        session.releaseInflight(m.packetId);
      }
    }
    if (session.queuedCount > 0) {
      const leaving = session.removeQueuedWhere((item) => item.shareKey !== undefined && otherMembers(item.shareKey) !== undefined);
      for (const q of leaving) moved.push({ key: q.shareKey!, message: q.message });
    }
    for (const { key, message } of moved) this.deliverShared(key, otherMembers(key)!, message, session.clientId);
  }

  /** Sends to the client's live connection, or queues for its offline persistent session. */
  deliver(clientId: string, message: Message, qos: QoS, retain: boolean, ids?: readonly number[], shareKey?: string): void {
    const channel = this.connected.get(clientId);
    if (channel) {
      channel.deliver(message, qos, retain, ids, shareKey);
      return;
    }
    const session = this.sessions.get(clientId);
    if (!session || (qos === 0 && !this.limits.queueQos0)) return;
    const before = session.dropped;
    const now = this.clock.now();
    session.enqueue({ message, qos, retain, subscriptionIds: ids, queuedAt: now, shareKey }, this.limits, now);
    this.droppedMessages += session.dropped - before;
  }

  /** Whether a queued message is past its expiry (5.0 Message Expiry or offlineMessageExpiry). */
  isExpired(message: Message, queuedAt: number | undefined, now: number): boolean {
    return messageExpired(message, queuedAt, now, this.limits.offlineMessageExpiry * 1000);
  }

  /**
   * Ends a session on an operator's request: its live connection is closed (5.0: DISCONNECT 0x98, will
   * published) and the session ends whatever its expiry. False when there is no such session or connection.
   */
  removeSession(clientId: string): boolean {
    const channel = this.connected.get(clientId);
    channel?.serverDisconnect(0x98, 'session removed by the server');
    const session = this.sessions.get(clientId);
    if (session !== undefined) this.endSession(session);
    return channel !== undefined || session !== undefined;
  }

  /** Server shutdown: every connection gets DISCONNECT 0x8B (5.0) and is closed. */
  shutdown(): void {
    this.closing = true;
    for (const channel of [...this.channels]) channel.serverDisconnect(0x8b, 'server shutting down');
    // Wills still waiting out their Will Delay go now, as Mosquitto's do at shutdown: the sessions they wait
    // on end with the broker.
    for (const [clientId, will] of this.pendingWills) {
      this.pendingWills.delete(clientId);
      this.publishWill(will.will, will.client);
    }
  }

  removeChannel(channel: Channel): void {
    this.channels.delete(channel);
    this.watched.delete(channel);
    this.channelTimers.cancel(channel);
  }
}
