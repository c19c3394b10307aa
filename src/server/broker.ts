// The embeddable broker: the sans-I/O core plus listeners, a timer and a logger.
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { ReasonCode, reasonName, type QoS } from '../protocol/constants.js';
import type { Properties } from '../protocol/packets.js';
import { hasMoreLevels, isValidTopicName } from '../protocol/topic.js';
import { Security, type SecurityChanges, type SecurityOptions } from '../auth/security.js';
import type { ClientRateLimits } from '../auth/limits.js';
import { GRACEFUL_CLOSE_MS } from '../transport/batched-output.js';
import { startListener, type ListenerOptions, type RunningListener } from './listeners.js';
import { PemFileError } from '../transport/tls.js';
import { BrokerCore, systemClock, type Clock } from '../broker/core.js';
import { ResourceGuard, type OverloadOptions, type OverloadView, type ResourceSample } from '../broker/overload.js';
import { machineLimits } from './machine-limits.js';
import { ResourceMonitor } from './resource-monitor.js';
import type { BrokerEvents, BrokerHooks, ClientInfo, ConnectSeen, DisconnectInfo } from '../broker/hooks.js';
import type { HttpListenerOptions } from '../http/options.js';
import { createMessage, type Message } from '../broker/message.js';
import { DEFAULT_LIMITS, type BrokerLimits } from '../broker/options.js';
import type { AuthMethod } from '../broker/enhanced-auth.js';
import { LogThrottle } from '../broker/log-throttle.js';
import { BrokerInspector } from '../broker/inspect.js';
import { MemorySessionStore } from '../broker/store/memory.js';
import type { RetainedStore, SessionStore } from '../broker/store/types.js';
import { PETREL_VERSION } from '../version.js';
import { checkLimits, ConfigError, LIMIT_CHECKS, LOGIN_PROTECTION_CHECK, OVERLOAD_CHECK } from '../config/checks.js';
import { openStorage, storageOptionError, type OpenedStorage, type StorageOptions } from '../storage/open.js';
import { clusterOptionError, type ClusterOptions } from '../cluster/options.js';
import type { ClusterPlane } from '../cluster/cluster.js';
import { ClusterNode } from './cluster-node.js';

export type { ListenerOptions, HttpListenerOptions };

/** Listeners when neither `listeners` nor `port`/`host` is given: MQTT on TCP 1883 and WebSocket 8083. */
export const DEFAULT_LISTENERS: ListenerOptions[] = [
  { type: 'tcp', port: 1883 },
  { type: 'ws', port: 8083 },
];

export interface BrokerOptions extends Partial<BrokerLimits>, BrokerHooks, SecurityOptions, ClientRateLimits {
  /** Shorthand for one TCP listener (0.0.0.0:1883 by default) instead of DEFAULT_LISTENERS, when `listeners` is not given. */
  host?: string;
  port?: number;
  /** MQTT listeners (tcp, tls, ws, wss) and the HTTP listener (metrics, API, dashboard: src/http). */
  listeners?: (ListenerOptions | HttpListenerOptions)[];
  /** Directory for files the broker makes (the HTTP API token); default ./petrel-data. */
  dataDir?: string;
  /** A pino logger; default: silent when embedded (the CLI passes a real one). */
  logger?: Logger;
  /** Time source for the core (tests pass a fake clock). */
  clock?: Clock;
  /** 5.0 enhanced authentication methods (AUTH packets), e.g. `[scramSha256(lookup)]`. */
  authMethods?: AuthMethod[];
  /** How often the timers run (ms). */
  tickInterval?: number;
  /**
   * "client connected" and "client disconnected" lines written per second, each (default 100). Beyond it they
   * are counted, and one line per second gives the count. 0 writes every line.
   */
  connectionLogRate?: number;
  /**
   * Where sessions, queues, in-flight messages, retained messages and waiting wills are kept: SQLite in a
   * data directory (`{ type: 'sqlite', dir, durability }`), or memory (the default of createBroker()).
   */
  storage?: StorageOptions;
  /**
   * The overload guard (docs/security.md): above `memoryHighWater` new CONNECTs get 0x89 Server busy, QoS 0
   * is shed and retained growth refused; while the event loop lags by `eventLoopLagMs`, CONNECTs get 0x89.
   * `sample` replaces the process's figures (tests).
   */
  overload?: Partial<OverloadOptions> & { sample?: () => ResourceSample };
  /**
   * Run as a node of a cluster on Redis (docs/cluster.md): `{ redis: 'redis://host:6379', nodeName }`. Messages
   * reach subscribers on every node; without it the broker is alone and Redis is never loaded.
   */
  cluster?: ClusterOptions;
  /**
   * A cluster's stores (src/cluster/ownership.ts): a RetainedStore shared by every node, and a wrapper around
   * the session store (the wills of live connections recorded for survivors). Set by the `cluster` option.
   */
  clusterStores?: { retained?: RetainedStore; wrapSessionStore?(store: SessionStore): SessionStore };
  /**
   * For tests and embedding: a SessionStore of your own (e.g. a RedisSessionStore from
   * src/cluster/redis-sessions.ts, opened before), used instead of `storage`'s. The broker closes it.
   */
  sessionStore?: SessionStore;
}

export interface BrokerEventMap {
  connectReceived: [remoteAddress: string, connect: ConnectSeen];
  clientConnected: [client: ClientInfo, details: { sessionPresent: boolean; clean: boolean; keepAlive: number }];
  clientDisconnected: [client: ClientInfo | undefined, info: DisconnectInfo & { remoteAddress: string }];
  clientRefused: [info: { remoteAddress: string; clientId?: string; reasonCode: number; reason: string }];
  subscribed: [client: ClientInfo, subscriptions: { topicFilter: string; qos: number }[]];
  unsubscribed: [client: ClientInfo, topicFilters: string[]];
  published: [message: Message, client: ClientInfo | undefined];
}

export class Broker extends EventEmitter<BrokerEventMap> {
  readonly core: BrokerCore;
  /** Read-only views of connections, sessions, subscriptions and retained messages (src/broker/inspect.ts). */
  readonly inspect: BrokerInspector;
  readonly logger: Logger;
  private readonly listenerOptions: (ListenerOptions | HttpListenerOptions)[];
  /** The options given (the HTTP API shows them, secrets hidden). */
  readonly options: Readonly<BrokerOptions>;
  /** starting: listen() not finished; listening: every listener up; closed: close() was called. */
  private lifecycle: 'new' | 'starting' | 'listening' | 'closed' = 'new';
  private readonly running: RunningListener[] = [];
  private ticker: NodeJS.Timeout | undefined;
  private listenCalled = false;
  private readonly tickInterval: number;
  /** Password file, ACL, ban list and listener admission, composed with the hooks given. */
  readonly security: Security;
  private readonly rateLimits: ClientRateLimits;
  private readonly connectionLogRate: number;
  private readonly connectedLines: LogThrottle;
  private readonly disconnectedLines: LogThrottle;
  /** The SQLite stores, when `storage` asks for them. */
  private readonly storage: OpenedStorage | undefined;
  /** Samples memory and event-loop lag for the core's overload guard while listening. */
  private readonly monitor: ResourceMonitor;
  /** The `cluster` option's parts, made with the core (no Redis yet) and connected in listen(). */
  private readonly cluster: ClusterNode | undefined;

  constructor(options: BrokerOptions = {}) {
    super();
    checkOptions(options);
    this.options = options;
    this.logger = options.logger ?? pino({ level: 'silent' });
    this.connectionLogRate = options.connectionLogRate ?? 100;
    this.connectedLines = new LogThrottle(this.connectionLogRate, (skipped) => this.skippedLines('client connected', skipped));
    this.disconnectedLines = new LogThrottle(this.connectionLogRate, (skipped) => this.skippedLines('client disconnected', skipped));
    this.tickInterval = options.tickInterval ?? 250;
    this.listenerOptions =
      options.listeners ??
      (options.port !== undefined || options.host !== undefined
        ? [{ type: 'tcp', host: options.host ?? '0.0.0.0', port: options.port ?? 1883 }]
        : DEFAULT_LISTENERS);
    const limits: Partial<BrokerLimits> = {};
    for (const [key, value] of Object.entries(options)) {
      if (key in DEFAULT_LIMITS && value !== undefined) (limits as Record<string, unknown>)[key] = value;
    }
    // Memory limits nobody set come from the machine (server/machine-limits.ts); 0 set on purpose stays "no limit".
    const machine = machineLimits();
    for (const key of ['maxRetainedBytes', 'maxQueuedBytes', 'maxSubscriptionsPerClient'] as const) limits[key] ??= machine[key];
    const { sample, ...overload } = options.overload ?? {};
    const guard = new ResourceGuard({ ...overload, memoryLimit: overload.memoryLimit || machine.memoryLimit }, (options.clock ?? systemClock).now());
    this.monitor = new ResourceMonitor(guard, this.logger, () => this.core.clock.now(), sample);
    const hooks: BrokerHooks = {
      authenticate: options.authenticate,
      authorizePublish: options.authorizePublish,
      authorizeSubscribe: options.authorizeSubscribe,
      authorizeReceive: options.authorizeReceive,
    };
    this.security = new Security(options, hooks, {
      logger: this.logger,
      disconnect: (client, code, reason) => this.disconnectClient(client, code, reason),
      reloaded: (changes) => this.applySecurityChanges(changes, options.acl?.disconnectOnDenied ?? false),
      now: () => this.core.clock.now(),
    });
    this.rateLimits = { maxPublishRate: options.maxPublishRate, publishBurst: options.publishBurst, maxBytesRate: options.maxBytesRate };
    // A cluster keeps persistent sessions in its Redis (so a client resumes on any node): no local storage.
    const clusterSessions = options.cluster !== undefined && options.sessionStore === undefined;
    this.storage = clusterSessions ? undefined : openStorage(options.storage, (message, context) => this.logger.warn(context, message), options.clock);
    let sessionStore = this.storage?.sessionStore ?? options.sessionStore;
    if (options.cluster !== undefined) {
      this.cluster = new ClusterNode(options.cluster, () => this.core, this.logger, clusterSessions);
      sessionStore = this.cluster.sessionStore(sessionStore);
    }
    const clusterOwnership = this.cluster?.brokerOptions;
    const claimClientId = options.claimClientId ?? clusterOwnership?.claimClientId;
    try {
      const cluster = options.clusterStores ?? clusterOwnership?.clusterStores;
      this.core = new BrokerCore({
        limits,
        // The cluster's claim of a Client ID comes after the security hooks (authentication first).
        hooks: claimClientId ? { ...this.security.hooks, claimClientId } : this.security.hooks,
        events: this.coreEvents(),
        clock: options.clock,
        authMethods: options.authMethods,
        sys: { version: `petrel version ${PETREL_VERSION}`, heapUsed: () => process.memoryUsage().heapUsed, extra: options.cluster && (() => this.cluster?.sysValues() ?? []) },
        sessionStore: cluster?.wrapSessionStore ? cluster.wrapSessionStore(sessionStore ?? new MemorySessionStore()) : sessionStore,
        retainedStore: cluster?.retained ?? this.storage?.retainedStore,
        guard,
        routes: this.cluster?.routes,
      });
    } catch (err) {
      this.storage?.sessionStore.close();
      this.security.close();
      throw err;
    }
    this.inspect = new BrokerInspector(this.core);
  }

  /**
   * A reload takes effect for clients already connected and subscribed, as in Mosquitto: a client whose
   * password file entry was removed or changed is disconnected (5.0: DISCONNECT 0x87), and subscriptions the
   * new ACL does not grant are removed from every session (`unsubscribed` is emitted for them).
   */
  private applySecurityChanges(changes: SecurityChanges, disconnectOnDenied: boolean): void {
    const acl = changes.acl;
    if (acl !== undefined) {
      for (const { session, filters } of this.core.registry.revokeSubscriptions((client, filter) => acl.canSubscribe(client, filter))) {
        const client = session.client!;
        this.logger.info({ clientId: client.clientId, username: client.username, filters }, 'subscriptions revoked: the reloaded ACL does not allow them');
        this.core.events.unsubscribed?.(client, filters);
        if (disconnectOnDenied) this.disconnectClient(client, ReasonCode.NotAuthorized, 'subscription revoked by the ACL');
      }
    }
    if (changes.users.length > 0) {
      const changed = new Set(changes.users);
      for (const channel of [...this.core.registry.connected.values()]) {
        const username = channel.info?.username;
        if (username === undefined || !changed.has(username) || channel.identityProven) continue;
        this.logger.info({ clientId: channel.info!.clientId, username }, 'client disconnected: its password file entry was removed or changed');
        channel.serverDisconnect(ReasonCode.NotAuthorized, 'password file entry removed or changed');
      }
    }
  }

  /** Disconnects the live connection of `client`, if it is still that connection. */
  private disconnectClient(client: ClientInfo, reasonCode: number, reason: string): void {
    const channel = this.core.registry.connected.get(client.clientId);
    if (channel && channel.info === client) channel.serverDisconnect(reasonCode, reason);
  }

  /** Core events → log lines and EventEmitter events. */
  private coreEvents(): BrokerEvents {
    const log = this.logger;
    return {
      connectReceived: (remoteAddress, connect) => {
        if (this.listenerCount('connectReceived') > 0) this.notify('connectReceived', remoteAddress, connect);
      },
      clientConnected: (client, details) => {
        // Log fields are built only when the line is written: at 10k+ connections/s the garbage counts.
        if (log.isLevelEnabled('info') && this.connectedLines.admit(this.core.clock.now())) {
          log.info(
            { clientId: client.clientId, version: versionName(client.protocolVersion), address: client.remoteAddress, username: client.username, ...details },
            'client connected',
          );
        }
        if (this.listenerCount('clientConnected') > 0) this.notify('clientConnected', client, details);
      },
      clientDisconnected: (client, remoteAddress, info) => {
        if (log.isLevelEnabled(client ? 'info' : 'debug') && (!client || this.disconnectedLines.admit(this.core.clock.now()))) {
          const fields = { clientId: client?.clientId, version: client ? versionName(client.protocolVersion) : undefined, address: remoteAddress, reason: info.reason, code: info.reasonCode ? codeName(info.reasonCode) : undefined, will: info.willPublished || undefined };
          if (client) log.info(fields, 'client disconnected');
          else log.debug(fields, 'connection closed before CONNECT');
        }
        if (this.listenerCount('clientDisconnected') > 0) this.notify('clientDisconnected', client, { ...info, remoteAddress });
      },
      clientRefused: (remoteAddress, clientId, reasonCode, reason) => {
        log.info({ clientId, address: remoteAddress, code: reasonName(reasonCode), reason }, 'connection refused');
        this.notify('clientRefused', { remoteAddress, clientId, reasonCode, reason });
      },
      subscribed: (client, subscriptions) => {
        log.debug({ clientId: client.clientId, subscriptions }, 'subscribed');
        this.notify('subscribed', client, subscriptions);
      },
      unsubscribed: (client, topicFilters) => this.notify('unsubscribed', client, topicFilters),
      published: (message, client) => {
        if (this.listenerCount('published') > 0) this.notify('published', message, client);
      },
      warning: (message, context) => log.warn(context ?? {}, message),
    };
  }

  private skippedLines(line: string, skipped: number): void {
    this.logger.info({ skipped, connectionLogRate: this.connectionLogRate }, `${skipped} "${line}" lines over connectionLogRate (${this.connectionLogRate}/s) not written`);
  }

  /** Emits an event; a listener that throws is logged and does not break the connection that caused the event. */
  private notify<K extends keyof BrokerEventMap>(event: K, ...args: BrokerEventMap[K]): void {
    try {
      (this.emit as (event: K, ...args: BrokerEventMap[K]) => boolean)(event, ...args);
    } catch (err) {
      this.logger.error({ event, error: err instanceof Error ? err.message : String(err) }, 'a broker event listener threw; the broker goes on');
    }
  }

  /**
   * This node's view of the cluster's members (`on('node-down')`, `nodes()`, `isAlive()`), once listen() has
   * connected it; undefined without `cluster`.
   */
  get clusterMembership(): ClusterPlane['membership'] | undefined {
    return this.cluster?.membership;
  }

  /** Opens every listener. Resolves when all are listening. */
  async listen(): Promise<void> {
    if (this.listenCalled) throw new Error('the broker is already listening (listen() was called before)');
    this.listenCalled = true;
    this.lifecycle = 'starting';
    this.logger.info({ version: PETREL_VERSION, node: process.version }, 'petrel broker starting');
    this.logStorage();
    await this.cluster?.start(this);
    for (const [index, options] of this.listenerOptions.entries()) {
      let listener: RunningListener;
      try {
        // The HTTP listener (and fastify) is loaded only when configured.
        listener =
          options.type === 'http'
            ? await (await import('../http/server.js')).startHttpListener(this, options)
            : await startListener(this.core, options, { logger: this.logger, security: this.security, rateLimits: this.rateLimits });
      } catch (err) {
        // A certificate file that cannot be read is named by its place in the configuration.
        if (err instanceof PemFileError) throw new Error(`listeners[${index}].${err.message}`, { cause: err });
        throw err;
      }
      this.running.push(listener);
      const { address, port } = listener.address();
      this.logger.info({ listener: listener.name, host: address, port, sockets: listener.sockets, acceptHandles: listener.acceptHandles }, 'listening');
    }
    this.ticker = setInterval(() => {
      try {
        this.core.tick();
        const now = this.core.clock.now();
        this.connectedLines.tick(now);
        this.disconnectedLines.tick(now);
      } catch (err) {
        // A bug in one timer rule must not take the process (and every other client) down.
        this.logger.error({ error: err instanceof Error ? err.stack : String(err) }, 'timer sweep failed');
      }
    }, this.tickInterval);
    this.ticker.unref();
    this.monitor.start();
    if (this.lifecycle === 'starting') this.lifecycle = 'listening';
  }

  /** True once every listener is up, until close(), while the store can write: what a readiness probe asks. */
  get ready(): boolean {
    return this.lifecycle === 'listening' && this.storageStatus().problem === undefined;
  }

  /** Where sessions and retained messages are kept, and why writes fail now, if they do. */
  storageStatus(): { type: 'memory' | 'sqlite' | 'redis'; file?: string; problem?: string } {
    const s = this.storage;
    const cluster = this.cluster?.storageStatus();
    if (cluster !== undefined) return cluster;
    if (s === undefined) return { type: 'memory' };
    const problem = (s.sessionStore as { storage?: { writeProblem?: string } }).storage?.writeProblem;
    return problem === undefined ? { type: 'sqlite', file: s.file } : { type: 'sqlite', file: s.file, problem };
  }

  /** The running listeners: name, type, address and open connections. */
  runningListeners(): { name: string; type: string; host: string; port: number; connections: number }[] {
    return this.running.map((l) => ({ name: l.name, type: l.type, host: l.address().address, port: l.address().port, connections: l.connections() }));
  }

  /** Sums over every session, for metrics: outgoing messages in flight, messages queued and their payload bytes. */
  sessionTotals(): { inflight: number; queued: number; queuedBytes: number } {
    return this.inspect.sessionTotals();
  }

  /**
   * Samples memory and event-loop lag now (the monitor does so every `overload.sampleIntervalMs` while
   * listening) and applies the guard's rules; gives the state after it.
   */
  sampleResources(): OverloadView {
    this.monitor.sampleNow();
    return this.inspect.overload();
  }

  /** Where data is kept and what was loaded from it. */
  private logStorage(): void {
    const s = this.storage;
    if (this.cluster?.sessions !== undefined) return; // said once connected (cluster-node.ts)
    if (s === undefined && this.options.sessionStore !== undefined) {
      this.logger.info({ storage: 'custom', sessions: this.core.registry.sessions.size }, `storage: sessions in the sessionStore given (durable: ${this.options.sessionStore.durable}); retained messages in memory`);
      return;
    }
    if (s === undefined) {
      this.logger.info({ storage: 'memory' }, 'storage: memory (sessions and retained messages are lost when the broker stops)');
      return;
    }
    const sessions = this.core.registry.sessions.size;
    this.logger.info(
      { storage: 'sqlite', file: s.file, durability: s.durability, sessions, retained: s.retainedLoaded, rssMB: Math.round(process.memoryUsage().rss / 1048576) },
      `storage: sqlite in ${s.file} (durability ${s.durability}); loaded ${sessions} sessions and ${s.retainedLoaded} retained messages`,
    );
  }

  /** Address of the first listener (or the one at `index`). */
  address(index = 0): AddressInfo {
    const l = this.running[index];
    if (!l) throw new Error('the broker is not listening');
    return l.address();
  }

  /** Re-reads the password file, the ACL file and the TLS certificates (also done when they change, and on SIGHUP in the CLI). */
  reload(): void {
    this.security.reload();
    for (const l of this.running) l.reload();
  }

  /**
   * Disconnects the live connection of `clientId` (5.0: DISCONNECT with `reasonCode`, 0x98 Administrative
   * action by default); its will is published, its session kept as its expiry says. False when not connected.
   */
  disconnect(clientId: string, reasonCode: number = ReasonCode.AdministrativeAction, reason = 'disconnected by the server'): boolean {
    const channel = this.core.registry.connected.get(clientId);
    if (!channel) return false;
    channel.serverDisconnect(reasonCode, reason);
    return true;
  }

  /**
   * Ends the session of `clientId` whatever its expiry: a live connection is closed first (5.0: DISCONNECT
   * 0x98), its will published. False when there was neither a session nor a connection.
   */
  deleteSession(clientId: string): boolean {
    return this.core.registry.remove(clientId);
  }

  /** Deletes the retained message of `topic`; false when there was none. */
  deleteRetained(topic: string): boolean {
    if (this.core.retained.get(topic) === undefined) return false;
    this.core.retained.set(createMessage({ topic, payload: Buffer.alloc(0), qos: 0, retain: true }, undefined, this.core.clock.now()));
    return true;
  }

  /** Publishes a message from the application (no client). */
  publish(topic: string, payload: Buffer | string, options: { qos?: QoS; retain?: boolean; properties?: Properties } = {}): void {
    if (!isValidTopicName(topic)) throw new Error(`invalid topic name ${JSON.stringify(topic)}`);
    const maxLevels = this.core.limits.maxTopicLevels;
    if (hasMoreLevels(topic, maxLevels)) throw new Error(`topic has more than maxTopicLevels (${maxLevels}) levels`);
    const fields = { topic, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos: options.qos ?? 0, retain: options.retain ?? false, properties: options.properties };
    this.core.publish(createMessage(fields, undefined, this.core.clock.now()));
  }

  /** Stops listening, disconnects every client (5.0: DISCONNECT 0x8B) and stops the timers. */
  async close(): Promise<void> {
    this.lifecycle = 'closed';
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    this.monitor.stop();
    this.security.close();
    // Every will is published (an asynchronous authorizePublish waited for, up to hookTimeout) before any
    // connection closes; then each gets DISCONNECT 0x8B.
    await this.core.shutdown(this.core.limits.hookTimeout, (ms) => new Promise((resolve) => setTimeout(resolve, ms).unref()));
    // The wills just published reach the other nodes before this one leaves the cluster; the wills recorded
    // for survivors go, since this node published them itself.
    await this.cluster?.close();
    // Every connection is closing after its queued output and DISCONNECT 0x8B: give them the time the
    // transports allow a graceful close, then cut whatever is left.
    await Promise.all(this.running.splice(0).map((l) => l.close(GRACEFUL_CLOSE_MS)));
    this.logger.info('broker closed');
  }
}

/** Every option besides the limits (the type makes sure none is missing): a misspelled key is refused, not ignored. */
const OTHER_OPTIONS: Record<Exclude<keyof BrokerOptions, keyof BrokerLimits>, true> = {
  host: true,
  port: true,
  listeners: true,
  dataDir: true,
  logger: true,
  clock: true,
  authMethods: true,
  tickInterval: true,
  connectionLogRate: true,
  storage: true,
  overload: true,
  cluster: true,
  clusterStores: true,
  claimClientId: true,
  sessionStore: true,
  authenticate: true,
  authorizePublish: true,
  authorizeSubscribe: true,
  authorizeReceive: true,
  passwordFile: true,
  acl: true,
  bans: true,
  watchFiles: true,
  loginProtection: true,
  maxPublishRate: true,
  publishBurst: true,
  maxBytesRate: true,
};

/** createBroker() checks its limits as the config file does: one line naming the option. */
function checkOptions(options: BrokerOptions): void {
  for (const key of Object.keys(options)) {
    if (!Object.hasOwn(LIMIT_CHECKS, key) && !Object.hasOwn(OTHER_OPTIONS, key)) throw new ConfigError(`createBroker: ${key}: unknown option`);
  }
  try {
    checkLimits(options);
    if (options.loginProtection !== undefined) LOGIN_PROTECTION_CHECK(options.loginProtection, 'loginProtection');
    if (options.overload !== undefined) {
      const { sample, ...rest } = options.overload;
      if (sample !== undefined && typeof sample !== 'function') throw new ConfigError('overload.sample: must be a function');
      OVERLOAD_CHECK(rest, 'overload');
    }
  } catch (err) {
    throw new ConfigError(`createBroker: ${(err as Error).message}`);
  }
  if (options.storage !== undefined) {
    const problem = storageOptionError(options.storage);
    if (problem !== undefined) throw new ConfigError(`createBroker: ${problem}`);
    if (options.sessionStore !== undefined && options.storage.type !== 'memory') throw new ConfigError('createBroker: sessionStore: give either sessionStore or storage, not both');
  }
  if (options.cluster !== undefined) {
    const problem = clusterOptionError(options.cluster);
    if (problem !== undefined) throw new ConfigError(`createBroker: ${problem}`);
  }
}

export function createBroker(options: BrokerOptions = {}): Broker {
  return new Broker(options);
}

function versionName(v: number): string {
  return v === 3 ? '3.1' : v === 4 ? '3.1.1' : '5.0';
}

function codeName(code: number | undefined): string | undefined {
  return code === undefined ? undefined : reasonName(code);
}
