// Client IDs cluster-wide (MQTT 3.1.4: a second connection with a Client ID takes it over, whatever node it
// reaches). Each CONNECT claims its Client ID in Redis before its CONNACK (the core's claimClientId hook): one
// Lua script reads the owner `${p}:client:${id}` ("node epoch"), writes this node with the next epoch, and
// publishes a kick to the previous owner's channel `${p}:kick:${node}`. Redis runs scripts one at a time, so
// the claims of one Client ID are totally ordered by epoch and the newest claim wins: a node that hears of a
// claim with a higher epoch than its own connection's closes that connection (5.0: DISCONNECT 0x8E) and lets
// the session go; a claim of its own that comes back older than one it has heard of is refused (0x89 Server
// busy: another connection with that Client ID won the race). So 100 simultaneous CONNECTs with one Client ID
// over 3 nodes end with exactly one connection. Redis unreachable: the takeover is local only (a warning once).
import type { Redis } from 'ioredis';
import type { BrokerCore } from '../broker/core.js';
import type { ClaimRequest, ClientInfo } from '../broker/hooks.js';
import type { RetainedStore, SessionStore } from '../broker/store/types.js';
import { DeadWills } from './dead-wills.js';
import { RedisRetainedStore } from './redis-retained.js';
import { redisRunId, setEachNX, whenRedisBack } from './redis-forms.js';
import { NOT_CONNECTED, script, StateWarning, type ClusterContext, type NodeLiveness } from './types.js';

/**
 * Reads the owner, writes this node with the next epoch, kicks the previous owner node ("epoch clean node
 * clientId": `node` is the claiming node, which the kicked node answers once it let the session go).
 * Returns the epoch and the previous owner node ('' when none).
 */
const CLAIM_SCRIPT = `
local prev = redis.call('GET', KEYS[1])
local epoch = 1
local node = nil
if prev then
  local sp = string.find(prev, ' ', 1, true)
  node = string.sub(prev, 1, sp - 1)
  epoch = tonumber(string.sub(prev, sp + 1)) + 1
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. epoch)
if node and node ~= ARGV[1] then redis.call('PUBLISH', ARGV[2] .. node, epoch .. ' ' .. ARGV[3] .. ' ' .. ARGV[1] .. ' ' .. ARGV[4]) end
return {epoch, node or ''}`;

/** The connection ended: the owner record stays (its epoch orders later claims) but expires, if still ours. */
const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

/** 0x89 Server busy: the claim lost to a newer CONNECT with the same Client ID. */
const SERVER_BUSY = 0x89;

/** How long an owner record outlives its connection beyond the session's expiry (ms). */
const RELEASED_TTL_MS = 60_000;

/**
 * How long a CONNECT waits for the node that held its Client ID to let the session go (ms). That node answers
 * once what it recorded is committed (milliseconds); one that does not answer in time is treated as gone. Well
 * under the default hookTimeout (5 s), which bounds the whole claim.
 */
export const HANDOVER_TIMEOUT_MS = 2_000;

/** The Redis key of the owner record of `clientId` ("node epoch"). */
export function ownerKey(prefix: string, clientId: string): string {
  return `${prefix}:client:${clientId}`;
}

/** What ownership needs of the broker: its core and its connection events (the Broker facade has both). */
export interface OwnershipHost {
  readonly core: BrokerCore;
  on(event: 'clientConnected', listener: (client: ClientInfo) => void): unknown;
  on(event: 'clientDisconnected', listener: (client: ClientInfo | undefined) => void): unknown;
}

interface LocalClaim {
  epoch: number;
  sessionExpiry: number;
  /** The connection that claimed (its ClientInfo object, the same one its events carry). */
  info: ClientInfo;
  /** Its CONNECT was accepted (clientConnected). */
  connected: boolean;
}

/** A claim whose CONNECT never got accepted (the client left while it waited) is forgotten after this (ms). */
const UNACCEPTED_MS = 30_000;

export class ClientOwnership {
  /** The claim of each Client ID connected here (or about to be). */
  private readonly claims = new Map<string, LocalClaim>();
  /** Claims in flight per Client ID, and the highest epoch another node claimed meanwhile. */
  private readonly pending = new Map<string, { count: number; floor: number }>();
  /** Claims granted and not yet taken up by an accepted CONNECT, oldest first, with when they were granted. */
  private readonly unaccepted = new Map<string, number>();
  private readonly down: StateWarning;
  private core: BrokerCore | undefined;
  readonly channel: string;
  /** Told when a Client ID left this node (its recorded will is dropped). */
  onMovedAway: (clientId: string) => void = () => {};
  /**
   * A claim was won: the session of a resuming client is made ready here (a cluster with sessions in Redis
   * fetches it) before the CONNECT goes on. After the node that held the Client ID let it go.
   */
  onClaimed: (clientId: string, clean: boolean, previous: string | undefined, epoch: number) => Promise<void> | void = () => {};
  /**
   * Claim `epoch` of node `claimant` took a Client ID held here: its connection is taken over and the session
   * leaves (a cluster with sessions in Redis hands it over: handover.ts). By default it is dropped at once.
   */
  onTaken: (clientId: string, clean: boolean, claimant: string, epoch: number) => void = (clientId, clean) => void this.core?.registry.movedAway(clientId, clean);
  /** The claim script gave this node the Client ID of a session held by node `previous` (not clean): it may hand messages on from now (handover.ts). */
  onClaiming: (clientId: string, previous: string) => void = () => {};
  /** Node `from` serves a session of claim `epoch` that left this node (handover.ts). */
  onRestored: (clientId: string, from: string, epoch: number) => void = () => {};
  /** The channel where other nodes say they let a session go that this node claimed. */
  readonly releasedChannel: string;
  /** Claims waiting for the previous owner node to let the session go: clientId -> (epoch, wake). */
  private readonly handovers = new Map<string, { epoch: number; done: () => void }>();
  private liveness: NodeLiveness | undefined;

  private readonly claimScript: (...args: (string | number)[]) => Promise<unknown>;
  private readonly releaseScript: (...args: (string | number)[]) => Promise<unknown>;

  constructor(private readonly ctx: ClusterContext) {
    this.channel = `${ctx.prefix}:kick:${ctx.node}`;
    this.releasedChannel = `${ctx.prefix}:released:${ctx.node}`;
    this.down = new StateWarning(ctx.warn);
    this.claimScript = script(ctx, 'petrelClaim', CLAIM_SCRIPT, 1);
    this.releaseScript = script(ctx, 'petrelRelease', RELEASE_SCRIPT, 1);
  }

  private keyOf(clientId: string): string {
    return ownerKey(this.ctx.prefix, clientId);
  }

  /** The core's claimClientId hook. */
  readonly claim = (client: ClientInfo, request: ClaimRequest): Promise<boolean | number> | boolean => {
    const clientId = client.clientId;
    const redis = this.ctx.redis;
    if (redis.status !== 'ready') return this.claimLocally(client, request);
    const pending = this.pending.get(clientId) ?? { count: 0, floor: 0 };
    pending.count++;
    this.pending.set(clientId, pending);
    const settled = () => {
      if (--pending.count === 0) this.pending.delete(clientId);
    };
    const result = this.claimScript(this.keyOf(clientId), this.ctx.node, `${this.ctx.prefix}:kick:`, request.clean ? '1' : '0', clientId) as Promise<[number, string]>;
    return result.then(
      async ([epoch, previous]) => {
        this.down.clear('Redis reachable again: Client IDs are claimed cluster-wide');
        try {
          return await this.afterClaim(client, request, epoch, previous, pending);
        } finally {
          // Counted as pending until decided, so a newer claim's kick meanwhile raises the floor.
          settled();
        }
      },
      (err: unknown) => {
        settled();
        this.down.set('Client ID claim failed in Redis: taken over on this node only', { error: String(err) });
        return this.claimLocally(client, request);
      },
    );
  };

  /** The claim got `epoch`; `previous` held the Client ID before. True when this CONNECT may go on. */
  private async afterClaim(client: ClientInfo, request: ClaimRequest, epoch: number, previous: string, pending: { floor: number }): Promise<boolean | number> {
    const clientId = client.clientId;
    if (previous !== '' && previous !== this.ctx.node && !request.clean) this.onClaiming(clientId, previous);
    // The node that held the Client ID commits what it recorded of the session and lets it go first, so the
    // session read here is whole and nothing that node writes later lands on top of this node's writes.
    if (previous !== '' && previous !== this.ctx.node && this.liveness?.isAlive(previous) !== false) await this.handedOver(clientId, epoch, previous);
    const won = () => {
      const mine = this.claims.get(clientId);
      return !(pending.floor > epoch || (mine !== undefined && mine.epoch > epoch));
    };
    if (!won()) return SERVER_BUSY;
    await this.onClaimed(clientId, request.clean, previous !== '' && previous !== this.ctx.node ? previous : undefined, epoch);
    if (!won()) return SERVER_BUSY; // a newer CONNECT claimed it meanwhile
    this.granted(client, { epoch, sessionExpiry: request.sessionExpiry, info: client, connected: false });
    return true;
  }

  /** Resolves once `previous` said it let the session of claim `epoch` go, or after HANDOVER_TIMEOUT_MS. */
  private handedOver(clientId: string, epoch: number, previous: string): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (this.handovers.get(clientId) !== waiting) return;
        this.handovers.delete(clientId);
        this.ctx.warn('cluster: the node that held a Client ID did not let its session go in time; going on', { clientId, node: previous, ms: HANDOVER_TIMEOUT_MS });
        resolve();
      }, HANDOVER_TIMEOUT_MS);
      const waiting = {
        epoch,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      // A newer claim of the same Client ID here replaces an older wait: the older one is released at once.
      this.handovers.get(clientId)?.done();
      this.handovers.set(clientId, waiting);
    });
  }

  /** Another node let a session go that this node claimed: "epoch clientId". */
  onReleased(text: string): void {
    const space = text.indexOf(' ');
    const epoch = Number(text.slice(0, space));
    const clientId = text.slice(space + 1);
    const waiting = this.handovers.get(clientId);
    if (waiting === undefined || waiting.epoch > epoch) return;
    this.handovers.delete(clientId);
    waiting.done();
  }

  /** Redis unreachable: this node decides alone (the connection on another node is not closed). */
  private claimLocally(client: ClientInfo, request: ClaimRequest): true {
    this.down.set('Redis unreachable: Client IDs are taken over on this node only until it is back', { clientId: client.clientId });
    this.granted(client, { epoch: 0, sessionExpiry: request.sessionExpiry, info: client, connected: false });
    return true;
  }

  /** A claim won; claims granted long ago whose CONNECT never went through are released meanwhile. */
  private granted(client: ClientInfo, claim: LocalClaim): void {
    const now = this.ctx.now();
    for (const [clientId, at] of this.unaccepted) {
      if (at > now - UNACCEPTED_MS) break;
      this.unaccepted.delete(clientId);
      const stale = this.claims.get(clientId);
      if (stale !== undefined && !stale.connected) this.release(stale);
    }
    this.claims.set(client.clientId, claim);
    this.unaccepted.delete(client.clientId);
    this.unaccepted.set(client.clientId, now);
  }

  /** This node no longer holds the claim: the owner record stays for later epochs but expires, if still ours. */
  private release(claim: LocalClaim): void {
    const clientId = claim.info.clientId;
    this.claims.delete(clientId);
    if (claim.epoch === 0 || this.ctx.redis.status !== 'ready') return;
    const ttl = claim.sessionExpiry >= 0xffffffff ? 0x7fffffff : Math.min(claim.sessionExpiry * 1000 + RELEASED_TTL_MS, 0x7fffffff);
    this.releaseScript(this.keyOf(clientId), `${this.ctx.node} ${claim.epoch}`, ttl).catch(() => {});
  }

  /** Tells `node` that this node serves a session it let go: "R epoch node clientId" on its kick channel. */
  sendRestored(node: string, epoch: number, clientId: string): void {
    if (this.ctx.redis.status === 'ready') this.ctx.redis.publish(`${this.ctx.prefix}:kick:${node}`, `R ${epoch} ${this.ctx.node} ${clientId}`).catch(() => {});
  }

  /**
   * A message on this node's kick channel: a kick, "epoch clean node clientId" (node: the one that claimed),
   * or "R epoch node clientId": that node serves a session that left this node.
   */
  onKick(text: string): void {
    if (text.startsWith('R ')) {
      const second = text.indexOf(' ', 2);
      const third = text.indexOf(' ', second + 1);
      this.onRestored(text.slice(third + 1), text.slice(second + 1, third), Number(text.slice(2, second)));
      return;
    }
    const first = text.indexOf(' ');
    const epoch = Number(text.slice(0, first));
    const clean = text.charAt(first + 1) === '1';
    const third = text.indexOf(' ', first + 3);
    const claimant = text.slice(first + 3, third);
    const clientId = text.slice(third + 1);
    const pending = this.pending.get(clientId);
    if (pending !== undefined) pending.floor = Math.max(pending.floor, epoch);
    const mine = this.claims.get(clientId);
    // A newer claim of ours: that kick came late (the claimant is told, so it does not wait for nothing).
    if (mine === undefined || mine.epoch < epoch) {
      this.claims.delete(clientId);
      this.unaccepted.delete(clientId);
      this.onTaken(clientId, clean, claimant, epoch);
      this.onMovedAway(clientId);
    }
    // Once what this node recorded of the session is in the store, the claimant may read it.
    const answer = () => {
      if (this.ctx.redis.status === 'ready') this.ctx.redis.publish(`${this.ctx.prefix}:released:${claimant}`, `${epoch} ${clientId}`).catch(() => {});
    };
    if (this.core === undefined) answer();
    else this.core.store.afterCommit(answer, answer);
  }

  /** Follows the connections of `host`: a claim is taken up at clientConnected, released at its disconnect. */
  start(host: OwnershipHost, liveness?: NodeLiveness): void {
    this.core = host.core;
    this.liveness = liveness;
    host.on('clientConnected', (client) => {
      const mine = this.claims.get(client.clientId);
      if (mine === undefined || mine.info !== client) return;
      mine.connected = true;
      this.unaccepted.delete(client.clientId);
    });
    host.on('clientDisconnected', (client) => {
      if (client === undefined) return;
      const mine = this.claims.get(client.clientId);
      if (mine !== undefined && mine.info === client) this.release(mine); // else taken over, here or elsewhere
    });
  }

  /**
   * Redis restarted without its data: the epochs it hands out start again at 1, so the claims held here count
   * as older than any new one (as claims made while it was unreachable do), and are written back with epoch 0.
   */
  async redisRestarted(): Promise<void> {
    const entries: [string, string][] = [];
    for (const [clientId, claim] of this.claims) {
      claim.epoch = 0;
      // Written back unless a claim came first, so the next claim elsewhere kicks this node (epoch 1 > 0).
      if (claim.connected) entries.push([this.keyOf(clientId), `${this.ctx.node} 0`]);
    }
    await setEachNX(this.ctx.redis, entries);
  }

  /** How many Client IDs this node holds (for tests and inspection). */
  get size(): number {
    return this.claims.size;
  }

  /** The Client IDs this node holds, with their epoch and whether their CONNECT was accepted. */
  held(): { clientId: string; epoch: number; connected: boolean }[] {
    return [...this.claims].map(([clientId, c]) => ({ clientId, epoch: c.epoch, connected: c.connected }));
  }
}

export interface ClusterOwnershipOptions {
  /** ioredis connection for commands; pub/sub uses a duplicate. Or given to attach() (a broker's `cluster` option). */
  redis?: Redis;
  /** Which nodes are alive (the cluster plane's Membership). Or given to attach(). */
  liveness?: NodeLiveness;
  /** This node's name, when `liveness` comes only with attach(). */
  node?: string;
  /** Key prefix (default `petrel`). */
  prefix?: string;
  warn?: (message: string, context?: Record<string, unknown>) => void;
  now?: () => number;
}

/**
 * Client ID ownership, retained messages and dead nodes' wills for one node. `brokerOptions` go into
 * createBroker() (the claim hook and the stores); `attach(broker)` then starts them.
 */
export class ClusterOwnership {
  readonly ownership: ClientOwnership;
  readonly retained: RedisRetainedStore;
  readonly wills: DeadWills;
  private subscriber: Redis | undefined;
  private liveness: NodeLiveness | undefined;
  private readonly ctx: ClusterContext;
  private started = false;
  private closed = false;

  constructor(private readonly options: ClusterOwnershipOptions) {
    const node = options.liveness?.self ?? options.node;
    if (node === undefined) throw new Error('cluster ownership: a node name (liveness or node) is needed');
    this.liveness = options.liveness;
    this.ctx = {
      redis: options.redis ?? NOT_CONNECTED,
      prefix: options.prefix ?? 'petrel',
      node,
      warn: options.warn ?? (() => {}),
      now: options.now ?? Date.now,
    };
    this.ownership = new ClientOwnership(this.ctx);
    this.retained = new RedisRetainedStore(this.ctx);
    this.wills = new DeadWills(this.ctx);
    this.ownership.onMovedAway = (clientId) => this.wills.record(clientId, undefined, 0);
  }

  /** For createBroker(): `{ ...ownership.brokerOptions, port, ... }`. */
  get brokerOptions(): { claimClientId: ClientOwnership['claim']; clusterStores: { retained: RetainedStore; wrapSessionStore(store: SessionStore): SessionStore } } {
    return {
      claimClientId: this.ownership.claim,
      clusterStores: { retained: this.retained, wrapSessionStore: (store) => this.wills.wrap(store) },
    };
  }

  /** Subscribes to the kick and retained channels, loads the retained messages, follows the broker. */
  async attach(host: OwnershipHost, bind?: { redis: Redis; liveness: NodeLiveness }): Promise<void> {
    if (this.closed) return; // the broker closed before Redis came (attach waits for it)
    if (this.started) throw new Error('cluster ownership is already attached');
    this.started = true;
    if (bind !== undefined) {
      this.ctx.redis = bind.redis;
      this.liveness = bind.liveness;
    }
    const liveness = this.liveness;
    if (this.ctx.redis === NOT_CONNECTED || liveness === undefined) throw new Error('cluster ownership: attach needs a Redis connection and the node liveness');
    const sub = (this.subscriber = this.ctx.redis.duplicate({ lazyConnect: true }));
    sub.on('error', () => {}); // reported once through the state warnings, not per retry
    this.ownership.start(host, liveness);
    this.wills.start(host.core, liveness);
    sub.on('message', (channel: string, text: string) => {
      if (channel === this.ownership.channel) this.ownership.onKick(text);
      else if (channel === this.ownership.releasedChannel) this.ownership.onReleased(text);
      else if (channel === this.retained.channel) this.retained.onEvent(text);
    });
    await sub.connect();
    await sub.subscribe(this.ownership.channel, this.ownership.releasedChannel, this.retained.channel);
    this.runId = await this.redisRunId();
    await this.retained.load(false);
    if (this.closed) return;
    // After an outage: subscribed again (ioredis does it on reconnect), then what was missed is caught up.
    whenRedisBack(this.ctx.redis, sub, () => this.afterOutage(), () => this.closed, (err) => this.ctx.warn('cluster state not caught up after a Redis outage yet; tried again until it is', { error: String(err) }));
  }

  private runId: string | undefined;

  private async redisRunId(): Promise<string | undefined> {
    return redisRunId(this.ctx.redis);
  }

  /**
   * Redis is back: a Redis that restarted (another run_id) may have lost its data, so claims held here become
   * the oldest and this node's retained messages are offered back (HSETNX); the wills are written again.
   */
  private async afterOutage(): Promise<void> {
    await this.subscriber!.subscribe(this.ownership.channel, this.ownership.releasedChannel, this.retained.channel);
    const runId = await this.redisRunId();
    const restarted = runId !== this.runId;
    if (restarted) await this.ownership.redisRestarted();
    await this.wills.resync();
    await this.retained.load(restarted);
    // Only now: a catch-up that failed half-way (CLUSTERDOWN while the last nodes return) is done again whole.
    this.runId = runId;
  }

  /**
   * Stops listening; call it after broker.close(). A broker that closes publishes the wills of its live
   * connections itself, so the wills recorded for survivors are deleted: a heartbeat that expires after a
   * clean stop must not have them published twice. (The command connection is the caller's to close.)
   */
  async close(): Promise<void> {
    this.closed = true;
    this.wills.close();
    this.subscriber?.disconnect();
    if (this.ctx.redis.status !== 'ready') return;
    // Bounded: Redis may be going away at the same moment (the command then waits for a reconnect that never
    // comes, and the broker's close with it).
    let timer: NodeJS.Timeout | undefined;
    const deleted = this.ctx.redis.del(this.wills.key).catch(() => 0);
    await Promise.race([deleted, new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS)))]);
    clearTimeout(timer);
  }
}

/** How long a closing node waits for Redis to delete its wills record (ms). */
const CLOSE_WAIT_MS = 1000;

/** Creates the ownership part of node `liveness.self`; pass `brokerOptions` to createBroker, then attachOwnership. */
export function createClusterOwnership(options: ClusterOwnershipOptions): ClusterOwnership {
  return new ClusterOwnership(options);
}

/** Starts `ownership` on `broker` (made with `ownership.brokerOptions`). */
export function attachOwnership(broker: OwnershipHost, ownership: ClusterOwnership, bind?: { redis: Redis; liveness: NodeLiveness }): Promise<void> {
  return ownership.attach(broker, bind);
}
