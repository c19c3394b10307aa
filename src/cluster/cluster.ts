// One node's part of the cluster plane on Redis: three connections (commands, pub/sub, the blocking inbox
// reader), the membership, the announcement of this node's routes and the learning of the others', the
// forwarder's transport, and what it tells operators ($SYS, broker.inspect.cluster(), the log). Loaded only
// when a broker runs with `cluster` (ioredis is not imported otherwise).
//
// Redis keys (prefix p): `${p}:node:${name}` heartbeat (PX TTL), `${p}:nodes` hash of node names and info,
// `${p}:routes:${name}` set of route keys, `${p}:inbox:${name}` stream of batches (its committed read position
// `${p}:inboxpos:${name}` goes with the session store's commits: inbox-replay.ts); channel `${p}:events`:
// `+node\nkey` / `-node\nkey` a route added or removed, `*node` read the node's routes again, `!node` left,
// `~dead\nadopter` the sessions of a dead node are served by `adopter` now (its routes go: adoption.ts).
import { randomBytes } from 'node:crypto';
import { Cluster as RedisCluster, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { Forwarder, RedisCaller } from './forwarder.js';
import { Membership, type NodeView } from './membership.js';
import { describeRedis, type ClusterRedis, type ResolvedClusterOptions } from './options.js';
import { whenRedisBack } from './redis-forms.js';
import type { ClusterRouteTable } from './route-table.js';

type Connection = Redis | RedisCluster;

/** A member of every announced routes set, never a route (no filter is empty): the set exists once announced. */
const ANNOUNCED = '';
/**
 * How long a route event outweighs a read of the node's routes set (ms): on a Redis Cluster the event's PUBLISH
 * and the set's SADD go to different masters, so a read made just after the event may not find the change yet.
 */
const RECENT_EVENTS_MS = 1000;

/** Drops the entries of `recent` (oldest first) heard before `since`. */
function forgetOlder(recent: Map<string, { at: number }>, since: number): void {
  for (const [key, e] of recent) {
    if (e.at >= since) break;
    recent.delete(key);
  }
}

export interface ClusterView {
  cluster: string;
  redis: string;
  node: string;
  connected: boolean;
  nodes: (NodeView & { routes: number })[];
  localRoutes: number;
  remoteRoutes: number;
  /** Messages waiting for Redis on their way to other nodes. */
  backlog: number;
  /**
   * Barriers (hand-overs' waits for what other nodes sent before they saw a moving session's new node) that ended
   * by their time limit, not by every node's answer: a slow node's messages may then come after newer ones.
   */
  barriersTimedOut: number;
  forwarded: Forwarder['stats'];
}

function open(redis: ClusterRedis, name: string): Connection {
  const common: RedisOptions = {
    // Commands wait through a reconnect (the forwarder bounds what waits), never fail after N retries.
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    lazyConnect: true,
    connectionName: name,
    retryStrategy: (times) => Math.min(50 * times, 1000),
  };
  if (typeof redis === 'string') return new Redis(redis, common);
  // failoverDetector: a connection moves to the new master when the sentinels announce it (+switch-master),
  // not seconds later when the old master is demoted: what is written to the old one meanwhile is lost.
  if ('sentinels' in redis) return new Redis({ ...common, sentinels: redis.sentinels, name: redis.name, password: redis.password, failoverDetector: true });
  // lazyConnect at the Cluster's level too: its duplicate() (the ownership part's subscriber) then waits for connect().
  return new RedisCluster(redis.nodes, { redisOptions: common, lazyConnect: true, enableOfflineQueue: true, clusterRetryStrategy: (times) => Math.min(50 * times, 1000) });
}

export class ClusterPlane {
  private readonly cmd: Connection;
  private readonly sub: Connection;
  private readonly reader: Connection;
  readonly membership: Membership;
  private connected = false;
  private everReady = false;
  private closed = false;
  private readonly channel: string;
  private readonly firstReady: Promise<void>;
  private resolveFirst!: () => void;
  private readerStarted = false;
  private trimTimer: NodeJS.Timeout | undefined;
  /**
   * How long a dead node's routes are kept (ms) when a survivor adopts its sessions: messages for them go on into
   * its inbox, which the adopter replays, until it says it serves them (`~`); 0: dropped at once.
   */
  keepDeadRoutesMs = 0;
  private readonly deadRoutes = new Map<string, NodeJS.Timeout>();
  /** Per node, the route events heard in the last RECENT_EVENTS_MS, oldest first (readRoutes). */
  private readonly recentEvents = new Map<string, Map<string, { added: boolean; at: number }>>();

  constructor(
    private readonly options: ResolvedClusterOptions,
    private readonly routes: ClusterRouteTable,
    private readonly forwarder: Forwarder,
    private readonly logger: Logger,
  ) {
    const self = options.nodeName;
    this.channel = `${options.prefix}:events`;
    this.cmd = open(options.redis, `petrel:${self}`);
    this.sub = open(options.redis, `petrel:${self}:events`);
    this.reader = open(options.redis, `petrel:${self}:inbox`);
    this.firstReady = new Promise((resolve) => (this.resolveFirst = resolve));
    const caller = this.cmd as unknown as RedisCaller;
    forwarder.onBarrier = (from, token) => {
      const b = this.barriers.get(token);
      if (b === undefined) return;
      b.waiting.delete(from);
      if (b.waiting.size === 0) b.done();
    };
    this.membership = new Membership(caller, { prefix: options.prefix, self, heartbeatTimeoutMs: options.heartbeatTimeoutMs, heartbeatIntervalMs: options.heartbeatIntervalMs, info: { startedAt: Date.now(), epoch: forwarder.epoch } }, () => {});
    this.membership.on('node-up', (name) => {
      this.logger.info({ cluster: options.prefix, node: name, nodes: this.membership.nodes().length }, `cluster: node ${name} is up`);
      void this.readRoutes(name);
    });
    this.membership.on('node-down', (name) => {
      if (this.keepDeadRoutesMs > 0 && this.routes.remoteRouteCount(name) > 0) {
        // Bounded: should no survivor say it took the sessions over (it died too), they go all the same.
        // A node back meanwhile (taken for dead) has announced fresh routes: they stay.
        const timer = setTimeout(() => !this.membership.isAlive(name) && this.forgetDead(name), this.keepDeadRoutesMs);
        timer.unref();
        clearTimeout(this.deadRoutes.get(name));
        this.deadRoutes.set(name, timer);
      } else this.routes.dropNode(name);
      this.logger.warn({ cluster: options.prefix, node: name, nodes: this.membership.nodes().length }, `cluster: node ${name} is down (no heartbeat for ${options.heartbeatTimeoutMs / 1000} s)`);
    });
    this.membership.on('node-left', (name) => {
      this.routes.dropNode(name);
      this.logger.info({ cluster: options.prefix, node: name, nodes: this.membership.nodes().length }, `cluster: node ${name} left`);
    });
    this.membership.on('rejoined', () => {
      this.logger.warn({ cluster: options.prefix, node: self }, 'cluster: this node was missing from the node list (taken for dead, or Redis lost it); announcing it again');
      void this.announce().catch(() => {});
    });
    routes.onLocalChange = (key, added) => {
      if (this.closed) return;
      const routesKey = this.routesKey(self);
      void (added ? caller.call('SADD', routesKey, key) : caller.call('SREM', routesKey, key)).catch(() => {});
      // Issued at once, not after the SADD's reply: events go out in the order they happen (a `~` or a barrier
      // request after a restore's route changes is heard after them). A node that reads the set meanwhile may
      // not find the change (on a Redis Cluster the set is on another master): readRoutes keeps recent events.
      void caller.call('PUBLISH', this.channel, `${added ? '+' : '-'}${self}\n${key}`).catch(() => {});
    };
    routes.viewer = () => this.view();
    this.sub.on('message', (_channel: string, text: string) => this.onEvent(text));
    for (const c of [this.cmd, this.sub, this.reader]) c.on('error', () => {}); // reported once through 'close' / 'ready'
    this.cmd.on('ready', () => void this.onReady());
    this.cmd.on('close', () => {
      if (!this.connected || this.closed) return;
      this.connected = false;
      this.logger.warn({ cluster: options.prefix, node: self, redis: describeRedis(options.redis) }, 'cluster: lost the connection to Redis; local traffic goes on, messages for other nodes wait (bounded) until it is back');
    });
    // Pub/sub reconnected: events may have been missed meanwhile, so every route is read again. On a Redis
    // Cluster this also follows a node coming back (restarted, it lost its slots' keys): routes announced again.
    whenRedisBack(
      this.cmd,
      this.sub,
      async () => {
        if (!this.everReady) return;
        if (this.cmd.isCluster) await this.announce();
        await this.readAllRoutes();
      },
      () => this.closed,
      (err) => this.logger.warn({ cluster: options.prefix, node: self, error: String(err) }, 'cluster: routes not announced again after a Redis outage yet; tried again until they are'),
    );
  }

  /** The command connection, shared with the ownership part (ownership.ts). */
  get commands(): Redis {
    return this.cmd as Redis;
  }

  private routesKey(node: string): string {
    return `${this.options.prefix}:routes:${node}`;
  }

  /** Connects (waiting up to `waitMs` for Redis: a node also starts without it, and joins once it is there). */
  async start(waitMs = 5000): Promise<void> {
    void this.cmd.connect().catch(() => {});
    void this.reader.connect().catch(() => {});
    // Queued until the connection is up (however late), and subscribed again after each reconnect.
    void this.sub.subscribe(this.channel).catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), waitMs)));
    const ok = await Promise.race([this.firstReady.then(() => true), timeout]);
    clearTimeout(timer);
    this.membership.start();
    this.trimTimer = setInterval(() => void this.forwarder.trim(this.cmd as unknown as RedisCaller).catch(() => {}), Math.max(1000, this.options.heartbeatIntervalMs));
    this.trimTimer.unref();
    const nodes = this.membership.nodes();
    if (ok) {
      this.logger.info(
        { cluster: this.options.prefix, redis: describeRedis(this.options.redis), node: this.options.nodeName, nodes: nodes.length, others: nodes.slice(1) },
        `cluster "${this.options.prefix}" on ${describeRedis(this.options.redis)}: node ${this.options.nodeName}, ${nodes.length} node${nodes.length === 1 ? '' : 's'} seen`,
      );
    } else {
      this.logger.warn({ cluster: this.options.prefix, redis: describeRedis(this.options.redis), node: this.options.nodeName }, 'cluster: Redis is not reachable yet; serving local clients and joining the cluster once it is');
    }
  }

  private async onReady(): Promise<void> {
    if (this.closed) return;
    const caller = this.cmd as unknown as RedisCaller;
    const first = !this.everReady;
    this.everReady = true;
    this.connected = true;
    if (!first) this.logger.info({ cluster: this.options.prefix, node: this.options.nodeName }, 'cluster: reconnected to Redis; routes announced again');
    this.membership.reconnected();
    try {
      // Entries left in our inbox by an earlier life of this node name are replayed for the sessions it read
      // back (cluster-node.ts), not read as new; the position is taken before any route is announced, so
      // nothing sent for the new routes is skipped.
      if (first) await this.forwarder.startPosition(caller);
      await this.announce();
      if (first) this.forwarder.connect(caller);
      await this.membership.beat();
      await this.readAllRoutes();
    } catch (err) {
      this.logger.warn({ error: String(err) }, 'cluster: announcing this node failed; retried at the next reconnect');
    }
    if (!this.readerStarted) {
      this.readerStarted = true;
      void this.forwarder.readLoop(this.reader as unknown as RedisCaller, () => {});
    }
    this.resolveFirst();
  }

  /** This node's routes, all of them (after a connect: Redis may have lost them in a restart). */
  private async announce(): Promise<void> {
    const caller = this.cmd as unknown as RedisCaller;
    const key = this.routesKey(this.options.nodeName);
    const keys = this.routes.localRoutes();
    // One transaction: a node reading the set never finds it empty half-way (it would drop every route of this
    // node until the next read, and the messages meant for it would go nowhere). ANNOUNCED is in the set even
    // when this node has no route: a missing set means "not announced since Redis lost it", not "no routes".
    // A route changed meanwhile is sent after this, in order (same connection, same key).
    const multi = this.cmd.multi().del(key).sadd(key, ANNOUNCED);
    for (let i = 0; i < keys.length; i += 1000) multi.sadd(key, ...keys.slice(i, i + 1000));
    const results = await multi.exec();
    const failed = results?.find(([err]) => err !== null)?.[0];
    if (results === null || failed) throw failed ?? new Error('the announcement of this node\'s routes was discarded');
    await caller.call('PUBLISH', this.channel, `*${this.options.nodeName}`);
  }

  /**
   * Reads `node`'s announced routes again and makes them the ones known. A set not there (Redis restarted empty
   * and the node has not announced again yet) changes nothing: its routes stay until it announces them, leaves
   * or is seen dead. Route events heard from RECENT_EVENTS_MS before the read on win over what it returns: the
   * read may have reached the set before the change the event tells of.
   */
  private async readRoutes(node: string): Promise<void> {
    if (node === this.options.nodeName) return;
    const asked = Date.now();
    let keys: string[];
    try {
      keys = (await (this.cmd as unknown as RedisCaller).call('SMEMBERS', this.routesKey(node))) as string[];
    } catch {
      return; // read again on the next event or reconnect
    }
    if (keys.length === 0 || this.closed) return;
    const next = new Set(keys);
    next.delete(ANNOUNCED);
    const recent = this.recentEvents.get(node);
    if (recent !== undefined) {
      forgetOlder(recent, asked - RECENT_EVENTS_MS);
      for (const [key, { added }] of recent) {
        if (added) next.add(key);
        else next.delete(key);
      }
    }
    this.routes.setRemote(node, next);
  }

  /** A route event of `node`: applied, and kept a while for the reads of its routes (readRoutes). */
  private routeEvent(node: string, key: string, added: boolean): void {
    if (added) this.routes.addRemote(node, key);
    else this.routes.deleteRemote(node, key);
    const at = Date.now();
    let recent = this.recentEvents.get(node);
    if (recent === undefined) this.recentEvents.set(node, (recent = new Map()));
    recent.delete(key); // to the end: the map stays oldest first
    recent.set(key, { added, at });
    forgetOlder(recent, at - RECENT_EVENTS_MS);
  }

  private async readAllRoutes(): Promise<void> {
    const listed = (await (this.cmd as unknown as RedisCaller).call('HKEYS', `${this.options.prefix}:nodes`)) as string[];
    await Promise.all(listed.map((n) => this.readRoutes(n)));
  }

  private onEvent(text: string): void {
    const op = text[0];
    const nl = text.indexOf('\n');
    const node = text.slice(1, nl < 0 ? undefined : nl);
    if (node === this.options.nodeName) return;
    if (op === '+' || op === '-') this.routeEvent(node, text.slice(nl + 1), op === '+');
    else if (op === '*') void this.readRoutes(node);
    else if (op === '?') this.forwarder.barrier(node, text.slice(nl + 1));
    else if (op === '!') {
      this.routes.dropNode(node);
      this.recentEvents.delete(node);
      this.membership.left(node);
    } else if (op === '~') {
      const adopter = text.slice(nl + 1);
      if (adopter !== this.options.nodeName) this.switchedAway(node, adopter);
    }
  }

  /**
   * `adopter` serves dead node `dead`'s sessions now: its routes go, and a marker goes in its inbox after every
   * message this node sent there (the adopter holds the sessions' messages until it has read them all). Unless
   * the node is alive: taken for dead (a Redis restart, a pause) and back since, its routes are fresh.
   */
  private switchedAway(dead: string, adopter: string): void {
    const drop = () => {
      if (this.closed) return;
      this.forgetDead(dead);
      this.forwarder.switched(dead, adopter);
    };
    if (!this.membership.isAlive(dead)) {
      drop();
      return;
    }
    // Alive as far as this node knows: back since, or dead and this node's heartbeat check is behind. Its key tells.
    (this.cmd as unknown as RedisCaller).call('PTTL', `${this.options.prefix}:node:${dead}`).then(
      (pttl) => (Number(pttl) > 0 ? this.forwarder.switched(dead, adopter) : drop()),
      () => this.forwarder.switched(dead, adopter),
    );
  }

  private forgetDead(node: string): void {
    clearTimeout(this.deadRoutes.get(node));
    this.deadRoutes.delete(node);
    this.recentEvents.delete(node);
    this.routes.dropNode(node);
  }

  /**
   * This node serves dead node `dead`'s sessions now (restored in this turn, their routes announced before this):
   * its routes go here and on every node, each of which puts a switch marker in its inbox after what it sent
   * there (this node too). Returns the nodes whose marker the adopter waits for.
   */
  switchDead(dead: string): string[] {
    const self = this.options.nodeName;
    // Back since it was taken for dead (its routes announced again): they stay.
    if (!this.membership.isAlive(dead)) this.forgetDead(dead);
    this.forwarder.switched(dead, self);
    // On the command connection, after the route announcements of the restore (same connection, in order).
    void (this.cmd as unknown as RedisCaller).call('PUBLISH', this.channel, `~${dead}\n${self}`).catch(() => {});
    return this.membership.nodes().filter((n) => n !== dead);
  }

  private barriersTimedOut = 0;
  /** Barriers this node asked for: token -> the nodes whose barrier has not been read yet. */
  private readonly barriers = new Map<string, { waiting: Set<string>; done: () => void }>();

  /**
   * Calls `done` once this node has read a barrier from every other live node, each put in its inbox after
   * what that node had sent it before it heard this request (so after the route changes it heard before), or
   * after `maxMs`. A node that handed a session on waits for it: what publishers sent it before they saw the
   * new node's routes is then read (handover.ts).
   */
  barrier(done: () => void, maxMs: number): void {
    const self = this.options.nodeName;
    const others = this.membership.nodes().filter((n) => n !== self);
    if (others.length === 0 || !this.connected || this.closed) {
      done();
      return;
    }
    const token = randomBytes(6).toString('hex');
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      this.barriers.delete(token);
      done();
    };
    const timer = setTimeout(() => {
      this.barriersTimedOut++;
      finish();
    }, maxMs);
    timer.unref();
    this.barriers.set(token, { waiting: new Set(others), done: finish });
    (this.cmd as unknown as RedisCaller).call('PUBLISH', this.channel, `?${self}\n${token}`).catch(finish);
  }

  /** $SYS/broker/cluster/... for this node. */
  sysValues(): [string, string][] {
    const v = this.view();
    const out: [string, string][] = [
      ['$SYS/broker/cluster/name', v.cluster],
      ['$SYS/broker/cluster/node', v.node],
      ['$SYS/broker/cluster/redis', v.connected ? 'connected' : 'disconnected'],
      ['$SYS/broker/cluster/nodes', String(v.nodes.length)],
      ['$SYS/broker/cluster/routes/local', String(v.localRoutes)],
      ['$SYS/broker/cluster/routes/remote', String(v.remoteRoutes)],
      ['$SYS/broker/cluster/messages/forwarded', String(v.forwarded.sent)],
      ['$SYS/broker/cluster/messages/received', String(v.forwarded.received)],
      ['$SYS/broker/cluster/messages/backlog', String(v.backlog)],
    ];
    for (const n of v.nodes) {
      out.push([`$SYS/broker/cluster/nodes/${n.name}/heartbeat age`, String(Math.round((n.heartbeatAgeMs ?? 0) / 1000))], [`$SYS/broker/cluster/nodes/${n.name}/routes`, String(n.routes)]);
    }
    return out;
  }

  view(): ClusterView {
    return {
      cluster: this.options.prefix,
      redis: describeRedis(this.options.redis),
      node: this.options.nodeName,
      connected: this.connected,
      nodes: this.membership.view().map((n) => ({ ...n, routes: n.name === this.options.nodeName ? this.routes.localRouteCount : this.routes.remoteRouteCount(n.name) })),
      localRoutes: this.routes.localRouteCount,
      remoteRoutes: this.routes.remoteRouteCount(),
      backlog: this.forwarder.backlog,
      barriersTimedOut: this.barriersTimedOut,
      forwarded: { ...this.forwarder.stats },
    };
  }

  /**
   * Leaves the cluster: what was forwarded is given up to `waitMs` to reach Redis (the wills published at
   * shutdown among it), then this node's entries are removed and the others told, and the connections close.
   */
  async close(waitMs = 2000): Promise<void> {
    const deadline = Date.now() + waitMs;
    while (this.forwarder.backlog > 0 && this.connected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    this.closed = true;
    for (const timer of this.deadRoutes.values()) clearTimeout(timer);
    this.forwarder.close();
    if (this.trimTimer !== undefined) clearInterval(this.trimTimer);
    const caller = this.cmd as unknown as RedisCaller;
    const leave = async () => {
      await this.membership.stop(true);
      await caller.call('PUBLISH', this.channel, `!${this.options.nodeName}`);
    };
    if (this.connected) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([leave().catch(() => {}), new Promise((r) => (timer = setTimeout(r, Math.max(100, deadline - Date.now()))))]);
      clearTimeout(timer);
    } else {
      await this.membership.stop(false);
    }
    this.reader.disconnect();
    this.sub.disconnect();
    this.cmd.disconnect();
  }
}
