// The `cluster` option of a broker (docs/cluster.md): the parts made with the core, before any Redis (the
// route table, the forwarder, Client ID ownership, the Redis session store), and the plane connected in
// start(). Kept out of the facade (broker.ts) so that it stays about listeners and lifecycle.
import type { Logger } from 'pino';
import type { BrokerCore } from '../broker/core.js';
import type { BrokerHooks } from '../broker/hooks.js';
import type { Session } from '../broker/session/session.js';
import type { Message } from '../broker/message.js';
import { MemorySessionStore } from '../broker/store/memory.js';
import type { RemoteDelivery, RetainedStore, SessionStore, StoredSession } from '../broker/store/types.js';
import type { ClusterPlane } from '../cluster/cluster.js';
import { Forwarder, ForwardingStore, type RedisCaller } from '../cluster/forwarder.js';
import { identityKey } from '../cluster/forward-codec.js';
import { handOnPositionKey, inboxPositionKey } from '../cluster/inbox-replay.js';
import { resolveClusterOptions, type ClusterOptions, type ResolvedClusterOptions } from '../cluster/options.js';
import { adoptSessions } from '../cluster/adoption.js';
import { Handover, PENDINGS_WAIT_MS, SETTLE_MAX_MS } from '../cluster/handover.js';
import { replayForSession } from '../cluster/handover-replay.js';
import { ClusterOwnership, ownerKey, type OwnershipHost } from '../cluster/ownership.js';
import { RedisSessionStore, SESSION_CLIENT_OPTIONS } from '../cluster/redis-sessions.js';
import { duplicateWith } from '../cluster/redis-forms.js';
import { ClusterRouteTable } from '../cluster/route-table.js';

type Divert = NonNullable<Session['divert']>;

/** At most how long the nodes keep a dead node's routes waiting for the survivor that adopts its sessions (ms). */
const KEEP_DEAD_ROUTES_MS = 30_000;

export class ClusterNode {
  readonly options: ResolvedClusterOptions;
  readonly routes: ClusterRouteTable;
  readonly forwarder: Forwarder;
  readonly ownership: ClusterOwnership;
  /** Where persistent sessions live: Redis, unless the broker was given a sessionStore of its own. */
  readonly sessions: RedisSessionStore | undefined;
  /** Sessions moving between this node and others (with sessions in Redis). */
  readonly handover: Handover | undefined;
  private plane: ClusterPlane | undefined;
  /** Drops the wait for Redis that starts the ownership part of a node started without it. */
  private stopWaiting: (() => void) | undefined;
  private closed = false;

  /** `core()` is called only once the broker made its core (the parts are made before it). */
  constructor(
    options: ClusterOptions,
    private readonly core: () => BrokerCore,
    private readonly logger: Logger,
    redisSessions: boolean,
  ) {
    const resolved = (this.options = resolveClusterOptions(options));
    const now = () => this.core().clock.now();
    const warn = (message: string, context?: object) => this.logger.warn(context ?? {}, message);
    this.routes = new ClusterRouteTable(resolved.nodeName);
    this.forwarder = new Forwarder(resolved.nodeName, resolved.prefix, resolved.maxBuffered, now, (message, remote) => this.core().publishRemote(message, remote), warn);
    this.routes.sink = this.forwarder;
    // On a Redis Cluster every key of the store gets one hash tag (the prefix in braces): a commit group is one
    // MULTI, which cannot span slots, and a message is shared by the queues of many sessions.
    const sessionPrefix = typeof resolved.redis === 'object' && 'nodes' in resolved.redis ? `{${resolved.prefix}}` : resolved.prefix;
    this.sessions = redisSessions ? RedisSessionStore.unbound({ prefix: sessionPrefix, clock: { now }, warn, ownsClient: true }) : undefined;
    // The inbox read position goes with the session commits: what a dead node had not committed is replayed.
    if (this.sessions !== undefined) {
      this.forwarder.commitPositionWith(this.sessions.writer, { effects: inboxPositionKey(sessionPrefix, resolved.nodeName), handOn: handOnPositionKey(sessionPrefix, resolved.nodeName) });
      // Queued messages keep their identity in Redis: a session coming back to a node that kept copies meanwhile.
      this.sessions.writer.identify = (message) => identityKey(this.forwarder.identityOf(message));
    }
    // Client IDs, retained messages and dead nodes' wills cluster-wide: bound to Redis in start().
    this.ownership = new ClusterOwnership({ node: resolved.nodeName, prefix: resolved.prefix, warn, now });
    if (this.sessions !== undefined) {
      const sessions = this.sessions;
      const owner = this.ownership.ownership;
      const forwarder = this.forwarder;
      const handover = (this.handover = new Handover({
        leave: (clientId, divert) => this.core().registry.leave(clientId, divert),
        drop: (clientId) => void this.core().registry.movedAway(clientId, false),
        deliverTo: (clientId, message) => this.deliverTo(clientId, message),
        identityOf: (message) => forwarder.identityOf(message),
        relay: (node, message, id, clientId) => forwarder.relay(node, message, id, [clientId]),
        relayEnd: (node, clientId) => forwarder.relayEnd(node, [clientId]),
        settle: (done) => (this.plane === undefined ? done() : this.plane.barrier(done, SETTLE_MAX_MS)),
        has: (clientId) => this.core().registry.sessions.has(clientId),
        replay: (node, clientId) =>
          this.plane === undefined
            ? Promise.resolve([])
            : replayForSession({
                redis: this.plane.commands as unknown as RedisCaller,
                inboxKey: forwarder.inboxKey(node),
                positionKey: inboxPositionKey(sessionPrefix, node),
                handOnKey: handOnPositionKey(sessionPrefix, node),
                clientId,
                settle: () => new Promise((resolve) => this.plane!.barrier(resolve, SETTLE_MAX_MS)),
                warn,
              }),
        hold: (clientId, divert) => this.divert(clientId, divert, true),
        sendRestored: (node, epoch, clientId) => owner.sendRestored(node, epoch, clientId),
        observe: (on) => (forwarder.observer = on),
        setTimer: (fn, ms) => {
          const timer = setTimeout(fn, ms);
          timer.unref();
          return () => clearTimeout(timer);
        },
        now,
        warn: (message, context) => warn(message, context),
      }));
      forwarder.acceptRelay = (id, only, message, from) => handover.accept(id, only, message, from);
      forwarder.onRelayEnd = (from, only) => handover.relayEnd(from, only);
      owner.onClaiming = (clientId, previous) => handover.claiming(clientId, previous);
      owner.onClaimed = (clientId, clean, previous, epoch) => this.resume(sessions, clientId, clean, previous, epoch);
      owner.onTaken = (clientId, clean, claimant, epoch) => {
        if (clean || !handover.leave(clientId, claimant, epoch)) this.core().registry.movedAway(clientId, clean);
      };
      owner.onRestored = (clientId, from, epoch) => handover.restored(clientId, from, epoch);
    }
  }

  /** The core's session store: sessions (Redis, or `local`), acknowledged once forwarded messages are in Redis. */
  sessionStore(local: SessionStore | undefined): SessionStore {
    return new ForwardingStore(this.sessions ?? local ?? new MemorySessionStore(), this.forwarder);
  }

  /** The claim hook and the cluster's stores, for the core. */
  get brokerOptions(): { claimClientId: NonNullable<BrokerHooks['claimClientId']>; clusterStores: { retained: RetainedStore; wrapSessionStore(store: SessionStore): SessionStore } } {
    return this.ownership.brokerOptions;
  }

  get membership(): ClusterPlane['membership'] | undefined {
    return this.plane?.membership;
  }

  sysValues(): ReturnType<ClusterPlane['sysValues']> {
    return this.plane?.sysValues() ?? [];
  }

  /** Connects the plane; ownership and sessions start now, or once Redis is there (a warning meanwhile). */
  async start(host: OwnershipHost): Promise<void> {
    // ioredis is loaded only for a cluster.
    const { ClusterPlane } = await import('../cluster/cluster.js');
    const plane = (this.plane = new ClusterPlane(this.options, this.routes, this.forwarder, this.logger));
    // A dead node's sessions are adopted by a survivor: its routes stay until then (nothing published meanwhile is lost).
    if (this.sessions !== undefined) plane.keepDeadRoutesMs = KEEP_DEAD_ROUTES_MS;
    await plane.start();
    const attach = async () => {
      await this.ownership.attach(host, { redis: plane.commands, liveness: plane.membership });
      if (this.sessions !== undefined) await this.bindSessions(this.sessions, plane);
    };
    // Without Redis yet, Client IDs are claimed locally (one warning) until it is there.
    if (plane.commands.status === 'ready') await attach();
    else {
      const later = () => void attach().catch((err: unknown) => this.logger.warn({ error: String(err) }, 'cluster: Client ID ownership and retained messages not started'));
      plane.commands.once('ready', later);
      this.stopWaiting = () => plane.commands.off('ready', later);
    }
  }

  /**
   * The session store gets a connection of its own (no offline queue: a write that cannot be made fails at
   * once and its PUBLISH is refused), and the sessions this node held before it stopped come back.
   */
  private async bindSessions(sessions: RedisSessionStore, plane: ClusterPlane): Promise<void> {
    const connection = duplicateWith(plane.commands, SESSION_CLIENT_OPTIONS);
    connection.on('error', () => {}); // failed writes are reported once by the store, not per retry
    sessions.bind(connection);
    await connection.connect();
    if (this.closed) return;
    const self = plane.membership.self;
    const owner = (clientId: string) => ownerKey(this.options.prefix, clientId);
    const held = await sessions.loadOwned(self, owner);
    let restored = 0;
    // What an earlier life of this node name left unread or uncommitted in its inbox, for these sessions.
    const replayed = await this.forwarder.replayOwn(plane.commands as unknown as RedisCaller, () => {
      restored = this.restore(sessions, held);
      return held.map((s) => s.clientId);
    });
    // The offline sessions of a node that dies are served on by one survivor (adoption.ts).
    plane.membership.on('node-down', (dead) => {
      if (dead === self || this.closed) return;
      const ctx = {
        redis: connection,
        prefix: this.options.prefix,
        node: self,
        sessions,
        ownerKey: owner,
        restore: (list: StoredSession[]) => this.restore(sessions, list),
        inboxKey: (node: string) => this.forwarder.inboxKey(node),
        deliver: (message: Message, remote: RemoteDelivery) => this.core().publishRemote(message, remote),
        hold: (clientId: string, divert: Divert) => this.divert(clientId, divert, false),
        unhold: (clientId: string, divert: Divert) => {
          const session = this.core().registry.sessions.get(clientId);
          if (session?.divert === divert) session.divert = undefined;
        },
        deliverTo: (clientId: string, message: Message) => this.deliverTo(clientId, message),
        identityOf: (message: Message) => this.forwarder.identityOf(message),
        switchDead: (node: string) => plane.switchDead(node),
        warn: (message: string, context: object) => this.logger.warn(context, message),
      };
      adoptSessions(ctx, dead).then(
        (done) =>
          done !== undefined &&
          (done.sessions > 0 || done.replayed > 0) &&
          this.logger.warn({ node: dead, sessions: done.sessions, replayed: done.replayed }, `cluster: this node serves the ${done.sessions} offline sessions of dead node ${dead} (${done.replayed} messages of its inbox replayed)`),
        (err: unknown) => this.logger.warn({ node: dead, error: String(err) }, 'cluster: the sessions of a dead node were not taken over'),
      );
    });
    const retained = this.ownership.retained.size;
    this.logger.info(
      { storage: 'redis', sessions: restored, retained, replayed },
      `storage: persistent sessions and retained messages in the cluster's Redis (local storage is not used); read back ${restored} sessions this node held and ${retained} retained messages`,
    );
  }

  /**
   * A client whose Client ID this node just claimed (claim `epoch`; `previous`: the other node that held it):
   * unless it starts clean, its session is read from Redis (after that node let it go), replacing a copy this
   * node kept that another node has held since; then that node hands on what it received meanwhile (handover.ts).
   */
  private async resume(sessions: RedisSessionStore, clientId: string, clean: boolean, previous: string | undefined, epoch: number): Promise<void> {
    const registry = this.core().registry;
    const handover = this.handover!;
    if (clean) return;
    // A session leaving this node whose client came back: read again (the other node may have changed it).
    const back = handover.comeBack(clientId);
    const stale = registry.sessions.get(clientId);
    if (stale !== undefined && !back && (previous === undefined || registry.connected.has(clientId))) return;
    // The copy here stays subscribed while the session is read: nothing arriving meanwhile is missed.
    const stored = await sessions.fetch(clientId);
    const deliver = (messages: Message[]) => {
      for (const m of messages) this.deliverTo(clientId, m);
    };
    if (registry.sessions.get(clientId) !== stale) {
      // Another CONNECT of this Client ID read it meanwhile.
      if (stored !== undefined) sessions.dropFetched(clientId);
      deliver(handover.returned(clientId));
      return;
    }
    if (stale !== undefined) registry.movedAway(clientId, false);
    if (stored === undefined) {
      handover.returned(clientId);
      handover.forget(clientId);
      return;
    }
    // What it holds already (queued or in flight on the node it comes from): not delivered again from copies kept here.
    const holds = sessions.identitiesOf(clientId);
    // The will it recorded is the survivors' to publish if its node died (cluster/dead-wills.ts), not this node's.
    registry.restore([{ ...stored, will: undefined }]);
    if (previous === undefined) {
      deliver(handover.returned(clientId, holds));
      return;
    }
    handover.arrivedHere(clientId, previous, epoch);
    const kept = handover.returned(clientId, holds);
    // What the old node handed on for the session is older than what reached this node for it; a dead node's
    // inbox is read for it at once (its adopter replays it only for the sessions it still held).
    await handover.pendingsFrom(clientId, previous, kept, this.plane?.membership.isAlive(previous) !== false ? PENDINGS_WAIT_MS : 0);
  }

  /**
   * What the local session `clientId` is delivered goes to `divert` (undefined: its queue again); false when there
   * is no such session, or (`replace` false) something else diverts its deliveries already.
   */
  private divert(clientId: string, divert: Divert | undefined, replace: boolean): boolean {
    const session = this.core().registry.sessions.get(clientId);
    if (session === undefined || (!replace && session.divert !== undefined)) return false;
    session.divert = divert;
    return true;
  }

  /** `message` to the local session `clientId` only, as its subscriptions say (a hand-over's messages). */
  private deliverTo(clientId: string, message: Message): void {
    this.core().publishRemote(message, { plain: true, groups: undefined, only: new Set([clientId]) });
  }

  /** Sessions read from Redis into the registry; a stale copy of one (its moves missed) is replaced. */
  private restore(sessions: RedisSessionStore, list: StoredSession[]): number {
    const registry = this.core().registry;
    const fresh: StoredSession[] = [];
    for (const s of list) {
      if (registry.connected.has(s.clientId)) sessions.dropFetched(s.clientId);
      else {
        if (registry.sessions.has(s.clientId)) registry.movedAway(s.clientId, false);
        fresh.push(s);
      }
    }
    return registry.restore(fresh);
  }

  /** Where sessions are kept, for the broker's storage status (readiness). */
  storageStatus(): { type: 'redis'; problem?: string } | undefined {
    if (this.sessions === undefined) return undefined;
    const problem = this.sessions.writeProblem;
    return problem === undefined ? { type: 'redis' } : { type: 'redis', problem };
  }

  /**
   * Leaves the cluster; call it after the core's shutdown, so the wills just published reach the other nodes
   * first (the wills recorded for survivors go: this node published them itself).
   */
  async close(): Promise<void> {
    this.closed = true;
    this.stopWaiting?.();
    this.handover?.close();
    await this.ownership.close();
    await this.plane?.close();
  }
}
