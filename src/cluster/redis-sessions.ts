// Persistent sessions in Redis (store/types.ts SessionStore): the third implementation after memory and SQLite,
// and the base for resuming a session on any node of a cluster. A write-behind journal of every persistent
// session's changes (redis-sessions-journal.ts), sent as one MULTI/EXEC per event-loop turn
// (redis-sessions-writer.ts); open() reads every stored session before the broker starts, fetch() one session
// later (a client resuming here after another node held it). The working copy stays in the broker's Session
// objects: this store only records.
import type { Redis, RedisOptions } from 'ioredis';
import type { ClientInfo } from '../broker/hooks.js';
import type { QueuedMessage, SessionStore, StoredSession, StoredWill, SubscriptionEntry } from '../broker/store/types.js';
import { fromJson } from '../storage/codec.js';
import { RedisSessionJournal, sessionKeys, type InflightRecord, type LoadedRows, type QueueRecord } from './redis-sessions-journal.js';
import { decodeMessage, RedisSessionWriter } from './redis-sessions-writer.js';
import { getEach, scanKeys } from './redis-forms.js';
import { NOT_CONNECTED } from './types.js';

export { sessionKeys } from './redis-sessions-journal.js';

/** Session Expiry Interval that never expires (registry.ts NEVER_EXPIRES). */
const NEVER_EXPIRES = 0xffffffff;

/** Sessions read per round trip at start-up. */
const LOAD_BATCH = 200;

export interface RedisSessionStoreOptions {
  /** Key prefix (config `cluster.prefix`); default `petrel`. */
  prefix?: string;
  /** Time source (the broker's clock). */
  clock?: { now(): number };
  /** Where failed commits are reported (once per cause). */
  warn?: (message: string, context: Record<string, unknown>) => void;
  /** Quit the client at close() (the factory sets it for the client it made). */
  ownsClient?: boolean;
  /** Commands kept for a retry while Redis is away past which they are kept as their net effect. */
  maxKept?: number;
  /** Backoff between retries of failed commits (ms). */
  retryMs?: { first: number; max: number };
}

/**
 * Client options for a connection carrying session writes: a command is not queued while Redis is unreachable
 * nor resent after a reconnect, so a commit fails at once (the broker refuses what it cannot store, with a
 * reason code) rather than hanging or being applied twice.
 */
export const SESSION_CLIENT_OPTIONS: RedisOptions = { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 1 };

/** Escapes glob characters for SCAN MATCH. */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

type Fields = Record<string, string>;

export class RedisSessionStore implements SessionStore {
  readonly durable = true;
  readonly writer: RedisSessionWriter;
  readonly prefix: string;
  private readonly clock: { now(): number };
  /** Sessions read by open(), given by load() once. */
  private stored: StoredSession[] = [];
  /** The existing records of sessions read, handed to their journals. */
  private readonly loaded = new Map<string, LoadedRows>();
  private closing: Promise<void> | undefined;

  private constructor(
    private connection: Redis,
    private readonly options: RedisSessionStoreOptions,
  ) {
    this.prefix = options.prefix ?? 'petrel';
    this.clock = options.clock ?? { now: () => Date.now() };
    this.writer = new RedisSessionWriter(connection, { prefix: this.prefix, warn: options.warn, maxKept: options.maxKept, retryMs: options.retryMs });
    if (connection !== NOT_CONNECTED) this.watch(connection);
  }

  /** Failed commits are sent again as soon as the connection is back (not only at the end of a backoff). */
  private readonly ready = (): void => this.writer.connectionReady();
  /** Commits in flight on a connection that closed never get their reply: they are sent again. */
  private readonly closed = (): void => this.writer.connectionClosed();

  private watch(redis: Redis): void {
    // Several stores may share one client (tests, embedding): not a listener leak.
    if (redis.listenerCount('close') + 1 > redis.getMaxListeners()) redis.setMaxListeners(redis.listenerCount('close') + 10);
    redis.on('ready', this.ready);
    redis.on('close', this.closed);
  }

  get redis(): Redis {
    return this.connection;
  }

  /**
   * A store whose connection comes later (bind()): a cluster node's, made with the broker before Redis is
   * connected. It loads nothing by itself; the node fetches sessions as their clients come (fetch()) and
   * reads back the ones it held before a restart (loadOwned()).
   */
  static unbound(options: RedisSessionStoreOptions): RedisSessionStore {
    return new RedisSessionStore(NOT_CONNECTED, options);
  }

  /** Gives an unbound store its connection. */
  bind(redis: Redis): void {
    if (this.connection !== NOT_CONNECTED) throw new Error('the Redis session store is bound already');
    this.connection = redis;
    this.writer.redis = redis;
    this.watch(redis);
    // Changes recorded before the connection: written once it is ready.
    if (redis.status === 'ready') this.writer.connectionReady();
  }

  /** The Client IDs of every stored session (SCAN over the session keys). */
  private async storedIds(): Promise<string[]> {
    const ids: string[] = [];
    const head = `${this.prefix}:session:{`.length;
    // The pattern also matches a client id holding '}:subs' etc.: only keys ending in '}' are session hashes.
    for (const key of await scanKeys(this.connection, `${globEscape(this.prefix)}:session:{*}`)) if (key.endsWith('}')) ids.push(key.slice(head, -1));
    return ids;
  }

  /**
   * The stored sessions whose Client ID node `node` owns (`ownerKey(id)` holds "node epoch"): what a cluster
   * node held when it stopped, read back when it starts again, so their subscriptions are served again.
   */
  async loadOwned(node: string, ownerKey: (clientId: string) => string): Promise<StoredSession[]> {
    const ids = await this.storedIds();
    const sessions: StoredSession[] = [];
    for (let i = 0; i < ids.length; i += LOAD_BATCH) {
      const batch = ids.slice(i, i + LOAD_BATCH);
      const owners = await getEach(this.connection, batch.map(ownerKey));
      const mine = batch.filter((_, n) => owners[n]?.startsWith(`${node} `) === true);
      if (mine.length > 0) for (const s of await this.read(mine)) sessions.push(s);
    }
    return sessions;
  }

  /** A store on `redis` with every stored session read (SCAN over the session keys, pipelined reads). */
  static async open(redis: Redis, options: RedisSessionStoreOptions = {}): Promise<RedisSessionStore> {
    const store = new RedisSessionStore(redis, options);
    const ids = await store.storedIds();
    for (let i = 0; i < ids.length; i += LOAD_BATCH) {
      for (const s of await store.read(ids.slice(i, i + LOAD_BATCH))) store.stored.push(s);
    }
    return store;
  }

  /** Sessions read by open(); those whose expiry passed are deleted (the registry publishes their wills). */
  load(): Iterable<StoredSession> {
    const out = this.stored;
    this.stored = [];
    return out;
  }

  /**
   * Session `clientId` as Redis has it now (for a client resuming on this node), or undefined when there is
   * none or it expired (then it is deleted). Its records are handed to the next journal(clientId).
   */
  async fetch(clientId: string): Promise<StoredSession | undefined> {
    const [session] = await this.read([clientId]);
    if (session === undefined) return undefined;
    if (session.expiresAt !== undefined && session.expiresAt <= this.clock.now()) return undefined;
    return session;
  }

  /**
   * The cluster identities of the queued and in-flight messages of a session just fetched (call before its
   * journal is taken): a node it comes back to drops its own copies of them (handover.ts returned()).
   */
  identitiesOf(clientId: string): Set<string> {
    const ids = new Set<string>();
    const rows = this.loaded.get(clientId);
    if (rows === undefined) return ids;
    for (const row of rows.queue.values()) if (row.ref.identity !== undefined) ids.add(row.ref.identity);
    for (const row of rows.inflight.values()) if (row.ref.identity !== undefined) ids.add(row.ref.identity);
    return ids;
  }

  /** A session fetched and then not used (the node had it already): this node's hold on its messages goes. */
  dropFetched(clientId: string): void {
    const rows = this.loaded.get(clientId);
    if (rows === undefined) return;
    this.loaded.delete(clientId);
    for (const row of rows.queue.values()) this.writer.disown(row.ref);
    for (const row of rows.inflight.values()) this.writer.disown(row.ref);
  }

  /** Reads sessions (pipelined), their messages, and adopts their records. */
  private async read(ids: string[]): Promise<StoredSession[]> {
    const pipeline = this.redis.pipeline();
    for (const id of ids) {
      const k = sessionKeys(this.prefix, id);
      pipeline.hgetall(k.main).hgetall(k.subs).hgetall(k.queue).hgetall(k.inflight).smembers(k.qos2);
    }
    const replies = (await pipeline.exec()) ?? [];
    const result = (i: number): unknown => {
      const [err, value] = replies[i] ?? [new Error('no reply'), undefined];
      if (err) throw err;
      return value;
    };
    type Raw = { id: string; main: Fields; subs: Fields; queue: [number, QueueRecord][]; inflight: [number, InflightRecord][]; qos2: string[] };
    const raws: Raw[] = [];
    const messageIds = new Set<string>();
    ids.forEach((id, n) => {
      const main = result(n * 5) as Fields;
      if (main.expiry === undefined) return;
      const queue = Object.entries(result(n * 5 + 2) as Fields).map(([seq, text]) => [Number(seq), JSON.parse(text) as QueueRecord] as [number, QueueRecord]);
      const inflight = Object.entries(result(n * 5 + 3) as Fields).map(([pid, text]) => [Number(pid), JSON.parse(text) as InflightRecord] as [number, InflightRecord]);
      for (const [, r] of queue) messageIds.add(r.m);
      for (const [, r] of inflight) messageIds.add(r.m);
      raws.push({ id, main, subs: result(n * 5 + 1) as Fields, queue, inflight, qos2: result(n * 5 + 4) as string[] });
    });
    // The messages they refer to, read once each.
    const texts = new Map<string, string>();
    const wanted = [...messageIds];
    if (wanted.length > 0) {
      const mp = this.redis.pipeline();
      for (const id of wanted) mp.hget(this.writer.messageKey(id), 'm');
      const mr = (await mp.exec()) ?? [];
      wanted.forEach((id, i) => {
        const text = mr[i]?.[1];
        if (typeof text === 'string') texts.set(id, text);
      });
    }
    const now = this.clock.now();
    const sessions: StoredSession[] = [];
    for (const raw of raws) {
      const clientId = raw.id;
      const expiryInterval = Number(raw.main.expiry);
      let expiresAt = raw.main.expiresAt === undefined || raw.main.expiresAt === '' ? undefined : Number(raw.main.expiresAt);
      let will = fromJson<StoredWill>(raw.main.will ?? null);
      // Connected when its node stopped without closing it: offline from now (written back, so a second
      // start before the client returns does not move the deadline).
      if (expiresAt === undefined && expiryInterval !== NEVER_EXPIRES) {
        expiresAt = now + expiryInterval * 1000;
        this.writer.add(['hset', sessionKeys(this.prefix, clientId).main, 'expiresAt', expiresAt]);
      }
      if (will !== undefined && will.publishAt === undefined) will = { ...will, publishAt: now + (will.will.properties?.willDelayInterval ?? 0) * 1000 };
      const session: StoredSession = { clientId, expiryInterval, expiresAt, client: fromJson<ClientInfo>(raw.main.client ?? null), subscriptions: [], queue: [], inflight: [], incomingQos2: [], will };
      for (const [key, text] of Object.entries(raw.subs)) session.subscriptions.push([key, fromJson<SubscriptionEntry>(text)!]);
      const rows: LoadedRows = { queue: new Map(), inflight: new Map(), nextSeq: 0 };
      raw.queue.sort((a, b) => a[0] - b[0]);
      for (const [seq, r] of raw.queue) {
        const ref = this.adopt(r.m, texts);
        if (ref === undefined) continue;
        const item: QueuedMessage = { message: ref.message, qos: r.q, retain: r.r === 1, subscriptionIds: r.i, queuedAt: r.t, shareKey: r.s };
        session.queue.push(item);
        rows.queue.set(item, { seq, ref, turn: -1, op: undefined, inserted: false });
      }
      rows.nextSeq = raw.queue.length > 0 ? raw.queue[raw.queue.length - 1]![0] + 1 : 0;
      for (const [packetId, r] of raw.inflight) {
        const ref = this.adopt(r.m, texts);
        if (ref === undefined) continue;
        session.inflight.push({ packetId, message: ref.message, qos: r.q, state: r.st === 'pubrel' ? 'pubrel' : 'publish', subscriptionIds: r.i, retain: r.r === 1, shareKey: r.s, order: r.o });
        rows.inflight.set(packetId, { ref, turn: -1, op: undefined, inserted: false });
      }
      session.inflight.sort((x, y) => x.order - y.order);
      for (const id of raw.qos2) session.incomingQos2.push(Number(id));
      this.loaded.set(clientId, rows);
      // Expired while no node held it: gone, as it would have gone had a node run (its will is published).
      if (expiresAt !== undefined && expiresAt <= now) this.journal(clientId).deleted();
      sessions.push(session);
    }
    return sessions;
  }

  private adopt(id: string, texts: Map<string, string>): ReturnType<RedisSessionWriter['adopt']> {
    return this.writer.adopt(id, () => {
      const text = texts.get(id);
      return text === undefined ? undefined : decodeMessage(text);
    }, 1);
  }

  journal(clientId: string): RedisSessionJournal {
    const loaded = this.loaded.get(clientId);
    if (loaded !== undefined) this.loaded.delete(clientId);
    return new RedisSessionJournal(this.writer, clientId, loaded);
  }

  afterCommit(done: () => void, failed?: (error: Error) => void): void {
    this.writer.afterCommit(done, failed);
  }

  /** Runs `done` once every change recorded so far is in Redis (RedisSessionWriter.whenWritten). */
  whenWritten(done: () => void, failed?: (error: Error) => void): void {
    this.writer.whenWritten(done, failed);
  }

  /** Why commits fail now, or undefined while they work. */
  get writeProblem(): string | undefined {
    return this.writer.writeProblem;
  }

  /** Sends what is pending (the broker's close() calls it); whenClosed() tells when Redis has it. */
  close(): void {
    if (this.closing !== undefined) return;
    this.closing = this.writer.close().then(async () => {
      this.redis.off?.('ready', this.ready);
      this.redis.off?.('close', this.closed);
      if (this.options.ownsClient !== true || this.redis === NOT_CONNECTED) return;
      // QUIT when connected (after what was sent); otherwise stop reconnecting.
      if (this.redis.status === 'ready') await this.redis.quit().catch(() => undefined);
      this.redis.disconnect();
    });
  }

  /** Resolves once the last commit has its reply (and an owned client is closed). */
  whenClosed(): Promise<void> {
    return this.closing ?? Promise.resolve();
  }
}

/** A store on its own connection to `url` (closed with the store), every stored session read. */
export async function openRedisSessionStore(url: string, options: Omit<RedisSessionStoreOptions, 'ownsClient'> = {}): Promise<RedisSessionStore> {
  // ioredis is loaded only when a Redis store is used (a broker's cluster imports this module).
  const { Redis } = await import('ioredis');
  const redis = new Redis(url, { ...SESSION_CLIENT_OPTIONS, lazyConnect: true });
  // Connection errors surface as failed commits (reported once by the writer), not as unhandled events.
  redis.on('error', () => {});
  try {
    await redis.connect();
    return await RedisSessionStore.open(redis, { ...options, ownsClient: true });
  } catch (err) {
    redis.disconnect();
    throw err;
  }
}
