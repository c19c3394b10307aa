// The session registry (EMQX's emqx_cm): every session by Client ID, the live connection of each, takeover,
// resume, expiry; and subscriptions, changed here only, so the session, the subscription index and the
// route table always agree.
import type { ClientInfo } from './hooks.js';
import type { Message } from './message.js';
import { FilterChange, type TopicRouter } from './router.js';
import { Session, type SessionContext } from './session/session.js';
import type { SharedGroups } from './shared-groups.js';
import type { RouteTable, SessionStore, StoredSession, SubscriptionEntry } from './store/types.js';
import { TimerWheel } from './timer-wheel.js';
import type { Wills } from './wills.js';

/** A never-expiring session (Session Expiry Interval 0xFFFFFFFF). */
export const NEVER_EXPIRES = 0xffffffff;

/** Width of a timer slot: session expiries are seen at most this much late. */
const TIMER_SLOT_MS = 100;

/** What the registry needs of a live connection (the channel). */
export interface LiveConnection {
  readonly info: ClientInfo | undefined;
  /** Who the client is was proven by its certificate or an enhanced authentication exchange, not a password. */
  readonly identityProven: boolean;
  /** Another connection took this Client ID over. */
  takeOver(): void;
  serverDisconnect(reasonCode: number, reason: string): void;
}

export class SessionRegistry<C extends LiveConnection = LiveConnection> {
  /** Every session, connected or not, by Client ID. */
  readonly sessions = new Map<string, Session>();
  /** The connected connection of each Client ID. */
  readonly connected = new Map<string, C>();
  /** Offline sessions that will expire (those with a finite expiry). */
  private readonly expiring = new Set<Session>();
  private readonly timers: TimerWheel<Session>;
  private readonly idPrefix: string;
  private idCounter = 0;

  constructor(
    private readonly context: SessionContext,
    private readonly store: SessionStore,
    private readonly router: TopicRouter<Session>,
    private readonly routes: RouteTable,
    private readonly shared: SharedGroups,
    private readonly wills: Wills,
    random: () => number,
  ) {
    this.timers = new TimerWheel(TIMER_SLOT_MS, context.clock.now());
    this.idPrefix = `petrel-${Math.floor(random() * 0x1_0000_0000).toString(16).padStart(8, '0')}-`;
  }

  /** Offline sessions counting down, filed timer entries, and those filed for sessions that ended (leak checks). */
  timerFootprint(): { expiring: number; filed: number; stale: number } {
    const filed = this.timers.filed();
    return { expiring: this.expiring.size, filed: filed.length, stale: filed.filter((s) => this.sessions.get(s.clientId) !== s).length };
  }

  /** A unique Client ID for a client that sent an empty one. */
  assignClientId(): string {
    return this.idPrefix + (this.idCounter++).toString(36);
  }

  private newSession(clientId: string, expiryInterval: number): Session {
    // Only a session that outlives its connection is worth recording.
    const journal = expiryInterval > 0 ? this.store.journal(clientId) : undefined;
    const session = new Session(clientId, expiryInterval, this.context, journal);
    this.sessions.set(clientId, session);
    return session;
  }

  /**
   * Binds a session to a newly accepted connection: kicks a connection holding the same Client ID
   * (takeover), ends or resumes the stored session. Synchronous, so races between connections with the
   * same ID are decided here in arrival order.
   */
  attach(connection: C, clientId: string, clean: boolean, expiryInterval: number, client: ClientInfo): { session: Session; present: boolean } {
    const previous = this.connected.get(clientId);
    // The connection taken over schedules its will (delayed, if it has a Will Delay).
    if (previous && previous !== connection) previous.takeOver();
    let session = this.sessions.get(clientId);
    if (session && clean) {
      // Clean Start ends the old session: endSession publishes a delayed will now.
      this.endSession(session);
      session = undefined;
    }
    this.wills.resumed(clientId);
    const present = session !== undefined;
    session ??= this.newSession(clientId, expiryInterval);
    session.client = client;
    session.setExpiry(expiryInterval, undefined);
    this.expiring.delete(session);
    this.timers.cancel(session);
    this.connected.set(clientId, connection);
    return { session, present };
  }

  /** The connection of `session` ended: keep the session for its expiry interval or end it now. */
  detach(connection: C, session: Session): void {
    const current = this.connected.get(session.clientId);
    if (current === connection) this.connected.delete(session.clientId);
    // Already replaced, or already taken up by another live connection: nothing of the session changes.
    else if (current !== undefined) return;
    if (this.sessions.get(session.clientId) !== session) return;
    this.shared.redistribute(session);
    if (session.expiryInterval === 0) {
      this.endSession(session);
    } else if (session.expiryInterval !== NEVER_EXPIRES) {
      session.setExpiry(session.expiryInterval, this.context.clock.now() + session.expiryInterval * 1000);
      this.expiring.add(session);
      this.timers.schedule(session, session.expiresAt!);
    }
  }

  /** Ends a session: its subscriptions go, and a will still waiting for its delay is published now. */
  endSession(session: Session): void {
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
    this.expiring.delete(session);
    this.timers.cancel(session);
    this.shared.redistribute(session);
    if (session.subscriptionCount > 0) {
      for (const key of [...session.subscriptions.keys()]) this.unsubscribe(session, key);
    }
    session.journal?.deleted();
    this.wills.sessionEnded(session.clientId);
  }

  /** Ends the sessions whose expiry has passed (from the core's tick). */
  expire(now: number): void {
    this.timers.expire(now, (session) => {
      if (session.expiresAt === undefined || !this.expiring.has(session)) return; // resumed or ended meanwhile
      if (session.expiresAt <= now) {
        this.context.stats.sessionsExpired++;
        this.endSession(session);
      } else {
        this.timers.schedule(session, session.expiresAt);
      }
    });
  }

  /**
   * Ends a session on an operator's request: its live connection is closed (5.0: DISCONNECT 0x98, will
   * published) and the session ends whatever its expiry. False when there is no such session or connection.
   */
  remove(clientId: string): boolean {
    const connection = this.connected.get(clientId);
    connection?.serverDisconnect(0x98, 'session removed by the server');
    const session = this.sessions.get(clientId);
    if (session !== undefined) this.endSession(session);
    return connection !== undefined || session !== undefined;
  }

  /**
   * A cluster: a connection on another node took the Client ID up and resumes the session there. As in
   * movedAway() (not clean), the connection here is taken over and nothing more of the session is recorded
   * here, but the session stays subscribed until the other node serves it: what it is delivered meanwhile goes
   * to `divert` (cluster/handover.ts), not its queue. Its shared subscriptions leave at once (a group's messages
   * go to its other members). movedAway() ends it. False when this node held no session of the Client ID.
   */
  leave(clientId: string, divert: (message: Message) => void): boolean {
    this.connected.get(clientId)?.takeOver();
    const session = this.sessions.get(clientId);
    if (session === undefined) {
      this.wills.resumed(clientId);
      return false;
    }
    // The store is the other node's from now on: nothing below is journaled.
    session.journal?.movedAway?.();
    this.expiring.delete(session);
    this.timers.cancel(session);
    this.shared.redistribute(session);
    for (const [key, entry] of [...session.subscriptions]) {
      if (entry.shareGroup === undefined) continue;
      session.deleteSubscription(key);
      this.unroute(entry);
    }
    this.wills.resumed(clientId);
    session.divert = divert;
    return true;
  }

  /**
   * A cluster: a connection on another node took the Client ID up. The live connection here is taken over
   * (5.0: DISCONNECT 0x8E) and the session leaves this node. With Clean Start it ends here (a will waiting out
   * its delay is published now); else it goes on over there, so a waiting will is cancelled as for a resume
   * [MQTT-3.1.3-9] and the local copy is dropped without a journal entry: the store now belongs to the other
   * node. False when this node held nothing of the Client ID.
   */
  movedAway(clientId: string, clean: boolean): boolean {
    const connection = this.connected.get(clientId);
    connection?.takeOver();
    const session = this.sessions.get(clientId);
    if (session === undefined || clean) {
      if (session !== undefined) this.endSession(session);
      else if (clean) this.wills.sessionEnded(clientId);
      else this.wills.resumed(clientId);
      return connection !== undefined || session !== undefined;
    }
    // Out of the registry first, so the will's cancellation is not journaled (journalOf finds no session).
    this.sessions.delete(clientId);
    this.expiring.delete(session);
    this.timers.cancel(session);
    this.shared.redistribute(session);
    for (const entry of session.subscriptions.values()) this.unroute(entry);
    this.wills.resumed(clientId);
    session.journal?.movedAway?.();
    return true;
  }

  // ---- subscriptions ----

  /** Adds or replaces subscription `key` of `session` ([MQTT-3.8.4-3]). True when it replaced one. */
  subscribe(session: Session, key: string, entry: SubscriptionEntry): boolean {
    const change = this.router.add(entry, session);
    session.putSubscription(key, entry);
    if (change === FilterChange.Filter) this.routes.addRoute(entry.filter);
    if (change !== FilterChange.None) this.routes.subscriptionChanged?.(entry, true);
    return change === FilterChange.None;
  }

  /** Removes subscription `key` of `session`; false when it had none. */
  unsubscribe(session: Session, key: string): boolean {
    const entry = session.deleteSubscription(key);
    if (entry === undefined) return false;
    this.unroute(entry);
    return true;
  }

  /** A subscription taken out of the router, the route table (a cluster's routes too) and its shared group. */
  private unroute(entry: SubscriptionEntry): void {
    const change = this.router.remove(entry.clientId, entry.filter, entry.shareGroup);
    if (change === FilterChange.Filter) this.routes.deleteRoute(entry.filter);
    if (change !== FilterChange.None) this.routes.subscriptionChanged?.(entry, false);
    if (entry.shareGroup !== undefined) this.shared.left(entry.shareGroup, entry.filter);
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
      const filters = [...session.subscriptions.keys()].filter((key) => !allowed(client, key));
      for (const key of filters) this.unsubscribe(session, key);
      if (filters.length > 0) revoked.push({ session, filters });
    }
    return revoked;
  }

  /** Sessions a store kept from an earlier run: back in the registry and the index, offline, counting down. */
  restore(stored: Iterable<StoredSession>): number {
    let count = 0;
    const now = this.context.clock.now();
    for (const s of stored) {
      if (s.expiresAt !== undefined && s.expiresAt <= now) {
        // Ended while the broker was down: a will it kept is published now.
        if (s.will !== undefined) this.wills.restore(s.clientId, s.will, false);
        continue;
      }
      const session = this.newSession(s.clientId, s.expiryInterval);
      session.client = s.client;
      // Stored while connected (the broker stopped without closing it): offline from now on, so its expiry
      // counts from now, unless the store knew better (when the broker was last alive).
      const expiresAt = s.expiresAt ?? (s.expiryInterval === NEVER_EXPIRES ? undefined : now + s.expiryInterval * 1000);
      session.expiresAt = expiresAt;
      for (const [key, entry] of s.subscriptions) {
        session.restoreSubscription(key, entry);
        const change = this.router.add(entry, session);
        if (change === FilterChange.Filter) this.routes.addRoute(entry.filter);
        if (change !== FilterChange.None) this.routes.subscriptionChanged?.(entry, true);
      }
      for (const item of s.queue) session.restoreQueued(item);
      for (const m of s.inflight) session.restoreInflight(m);
      for (const id of s.incomingQos2) session.restoreIncomingQos2(id);
      if (expiresAt !== undefined) {
        this.expiring.add(session);
        this.timers.schedule(session, expiresAt);
      }
      if (s.will !== undefined) this.wills.restore(s.clientId, s.will, true);
      count++;
    }
    return count;
  }
}
