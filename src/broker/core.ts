// The broker core, sans I/O: what every connection shares, put together from its parts (EMQX's split):
// the session registry (registry.ts), dispatch (dispatch.ts), shared groups (shared-groups.ts), wills
// (wills.ts), the subscription index (router.ts) and the stores (store/). Transports hand it connections
// (`openChannel`); time comes from a Clock and `tick()`, randomness from a `random` source.
import { Channel, type ChannelHost, type ChannelOutput, type TransportInfo } from './channel.js';
import type { AuthMethod } from './enhanced-auth.js';
import type { BrokerEvents, BrokerHooks, ClientInfo } from './hooks.js';
import type { Message } from './message.js';
import type { WillMessage } from '../protocol/packets.js';
import { DEFAULT_LIMITS, type BrokerLimits } from './options.js';
import { ResourceGuard } from './overload.js';
import { Dispatcher } from './dispatch.js';
import { SessionRegistry } from './registry.js';
import { MemoryRetainedStore } from './retained.js';
import { TopicRouter, type RouteMemo } from './router.js';
import type { Session } from './session/session.js';
import { SharedGroups } from './shared-groups.js';
import { MemorySessionStore, SingleNodeRoutes } from './store/memory.js';
import type { RemoteDelivery, RetainedStore, RouteTable, SessionStore } from './store/types.js';
import { newStats, SysTopics, type SysTopicsOptions } from './sys-topics.js';
import { TimerWheel } from './timer-wheel.js';
import { Wills } from './wills.js';

export { NEVER_EXPIRES } from './registry.js';

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
  /** A number in [0, 1) (Math.random by default): assigned Client IDs, the random shared-subscription strategy. */
  random?: () => number;
  /** Where sessions and retained messages are kept (in memory by default). */
  sessionStore?: SessionStore;
  retainedStore?: RetainedStore;
  /** Which other nodes want which topics (a cluster); a single node by default. */
  routes?: RouteTable;
  /** What the $SYS topics say about the process (version, heap); see sys-topics.ts. */
  sys?: Partial<SysTopicsOptions>;
  /** The overload guard (overload.ts) the facade's resource monitor feeds; one that stays normal by default. */
  guard?: ResourceGuard;
}

/** Sizes of the core's structures (BrokerCore.footprint). */
export interface Footprint {
  channels: number;
  connected: number;
  sessions: number;
  subscriptions: number;
  /** The subscription index still holds a level (false once every filter is gone). */
  trieLevels: boolean;
  routeCache: number;
  retained: number;
  retainedLevels: boolean;
  pendingWills: number;
  expiring: number;
  watched: number;
  channelTimers: number;
  closedChannelsFiled: number;
  sessionTimers: number;
  endedSessionsFiled: number;
  sharedCursors: number;
  sharedSticky: number;
}

/** Width of a timer slot: connect timeouts, keep alives and hook deadlines are seen at most this much late. */
const TIMER_SLOT_MS = 100;

export class BrokerCore implements ChannelHost {
  readonly limits: BrokerLimits;
  readonly hooks: BrokerHooks;
  readonly events: BrokerEvents;
  readonly clock: Clock;
  readonly authMethods: ReadonlyMap<string, AuthMethod>;
  readonly store: SessionStore;
  readonly retained: RetainedStore;
  readonly routes: RouteTable;
  /** Memory and event-loop state: what is refused or shed now (overload.ts). */
  readonly guard: ResourceGuard;
  readonly router = new TopicRouter<Session>();
  readonly registry: SessionRegistry<Channel>;
  readonly dispatch: Dispatcher;
  readonly wills: Wills;
  private readonly shared: SharedGroups;
  /** Every open channel, including those still waiting for CONNECT. */
  readonly channels = new Set<Channel>();
  /**
   * Deadlines of the channels: connect timeout, keep alive, hook answers. A tick looks at those due, not at
   * every connection: with 19.5k idle connections, a tick that checked them all took ~2 ms every 250 ms.
   */
  private readonly channelTimers: TimerWheel<Channel>;
  /** Channels that need a look at every tick: output over the high-water mark, or messages queued. */
  private readonly watched = new Set<Channel>();
  private plainCredentialsWarned = false;
  /** Bytes, packets, sessions and drops counted for $SYS (sys-topics.ts), metrics and embedders. */
  readonly stats = newStats();
  /** Publishes the $SYS topics; undefined when sysInterval is 0. */
  readonly sysTopics: SysTopics | undefined;
  closing = false;

  constructor(options: CoreOptions = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.hooks = options.hooks ?? {};
    this.events = options.events ?? {};
    this.clock = options.clock ?? systemClock;
    const random = options.random ?? Math.random;
    this.authMethods = new Map((options.authMethods ?? []).map((m) => [m.name, m]));
    this.store = options.sessionStore ?? new MemorySessionStore();
    this.retained = options.retainedStore ?? new MemoryRetainedStore();
    this.routes = options.routes ?? new SingleNodeRoutes();
    this.guard = options.guard ?? new ResourceGuard();
    const shared = (this.shared = new SharedGroups(this.router, this.limits, random));
    this.dispatch = new Dispatcher(this.router, this.retained, shared, this.limits, this.stats, this.events, this.hooks, this.guard);
    if (this.routes.forward !== undefined) this.dispatch.routes = this.routes;
    if (this.hooks.authorizeReceive !== undefined) shared.mayReceive = (session, topic) => this.dispatch.mayReceive(session, topic);
    this.wills = new Wills(this.clock, this.hooks, this.events, (message, client) => this.dispatch.publish(message, client, true));
    this.registry = new SessionRegistry(this, this.store, this.router, this.routes, shared, this.wills, random);
    this.wills.journalOf = (clientId) => this.registry.sessions.get(clientId)?.journal;
    this.registry.restore(this.store.load());
    this.channelTimers = new TimerWheel(TIMER_SLOT_MS, this.clock.now());
    if (this.limits.sysInterval > 0) {
      this.sysTopics = new SysTopics(this, this.limits.sysInterval * 1000, { version: 'petrel', ...options.sys });
    }
  }

  /** A new connection from a transport. The channel reports back through `output`. */
  openChannel(output: ChannelOutput, transport: TransportInfo): Channel {
    const channel = new Channel(this, output, transport);
    this.channels.add(channel);
    channel.tick(channel.openedAt); // files its connect timeout
    return channel;
  }

  /** Runs the timers: connect timeout, keep alive, hook deadlines, slow consumers, will delay, session expiry. Call it often (the facade does, every ~250 ms). */
  tick(): void {
    const now = this.clock.now();
    for (const channel of this.watched) {
      if (!channel.tickWatched(now)) this.watched.delete(channel);
    }
    this.channelTimers.expire(now, (channel) => channel.tick(now));
    this.retained.sweep(now);
    if (this.sysTopics !== undefined && now >= this.sysTopics.due) this.sysTopics.publish(now);
    this.wills.due(now);
    this.registry.expire(now);
  }

  /** `channel` wants its tick() at `at` (the timer is filed again by the channel each time it runs). */
  wakeAt(channel: Channel, at: number): void {
    this.channelTimers.schedule(channel, at);
  }

  /** `channel` wants tickWatched() at every tick until it returns false. */
  watch(channel: Channel): void {
    this.watched.add(channel);
  }

  removeChannel(channel: Channel): void {
    this.channels.delete(channel);
    this.watched.delete(channel);
    this.channelTimers.cancel(channel);
  }

  warnPlainCredentials(client: { listener: string; remoteAddress: string }): void {
    if (this.plainCredentialsWarned) return;
    this.plainCredentialsWarned = true;
    this.events.warning?.('a password arrived over a plain-text listener; use mqtts:// or wss:// so credentials are encrypted', {
      listener: client.listener,
      remoteAddress: client.remoteAddress,
    });
  }

  /**
   * Routes a message (see Dispatcher.publish). Messages from the embedding API and the broker itself come
   * in here; `payloadOwned`: the message has its own payload already.
   */
  publish(message: Message, publisher?: ClientInfo, payloadOwned = false, memo?: RouteMemo<Session>): number {
    return this.dispatch.publish(message, publisher, payloadOwned, memo);
  }

  /** A message another node of a cluster forwarded here, payload owned: delivered to local subscribers only. */
  publishRemote(message: Message, remote: RemoteDelivery): number {
    return this.dispatch.publish(message, undefined, true, undefined, remote);
  }

  /** A broker-made message (the $SYS topics) whose payload it owns. */
  publishOwn(message: Message): void {
    this.dispatch.publish(message, undefined, true);
  }

  /** The size of every per-client and per-topic structure: what a leak test checks comes back to empty. */
  footprint(): Footprint {
    const sessionTimers = this.registry.timerFootprint();
    const filedChannels = this.channelTimers.filed();
    const shared = this.shared.stateSize;
    const retained = this.retained as { holdsLevels?: boolean };
    return {
      channels: this.channels.size,
      connected: this.registry.connected.size,
      sessions: this.registry.sessions.size,
      subscriptions: this.router.size,
      trieLevels: this.router.holdsLevels,
      routeCache: this.router.cacheSize,
      retained: this.retained.size,
      retainedLevels: retained.holdsLevels ?? false,
      pendingWills: this.wills.pendingCount,
      expiring: sessionTimers.expiring,
      watched: this.watched.size,
      channelTimers: filedChannels.length,
      closedChannelsFiled: filedChannels.filter((c) => c.state === 'closed').length,
      sessionTimers: sessionTimers.filed,
      endedSessionsFiled: sessionTimers.stale,
      sharedCursors: shared.cursors,
      sharedSticky: shared.sticky,
    };
  }

  counts(): { connected: number; sessions: number; subscriptions: number; retained: number } {
    return { connected: this.registry.connected.size, sessions: this.registry.sessions.size, subscriptions: this.router.size, retained: this.retained.size };
  }

  /**
   * Server shutdown. A server-initiated disconnect publishes the will (3.1.2.5), so the wills of every live
   * connection and those waiting out a Will Delay are published first, while every connection is still open:
   * each subscriber connected at shutdown gets the same set (QoS 0 ones too), whichever connected first.
   * Then every connection gets DISCONNECT 0x8B (5.0) and is closed. New CONNECTs are refused meanwhile.
   * `hookWait`: how long an asynchronous authorizePublish may take for the wills (ms).
   */
  async shutdown(hookWait = this.limits.hookTimeout, deadline: (ms: number) => Promise<void> = () => new Promise(() => {})): Promise<void> {
    this.closing = true;
    const live: [WillMessage, ClientInfo][] = [];
    for (const channel of this.channels) {
      const will = channel.takeWill();
      if (will !== undefined) live.push(will);
    }
    // A hook that never answers holds the shutdown no longer than its own deadline would hold a client.
    await Promise.race([this.wills.publishAll(live), deadline(hookWait)]);
    for (const channel of [...this.channels]) channel.serverDisconnect(0x8b, 'server shutting down');
    this.store.close();
  }
}
