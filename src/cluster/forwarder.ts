// Messages between nodes over Redis Streams: one stream per node (`${p}:inbox:${node}`). The messages a node
// sends another in one event-loop turn go as one stream entry (a batch), so a busy node makes one XADD per
// target per turn, not one per message. A batch carries (origin, epoch, sequence): the receiver drops one it
// has seen (a command resent after a reconnect), so the hand-over is at least once with duplicates removed.
// One stream per (sender, receiver) order and in-order dispatch keep each publisher's order per topic.
//
// A publisher's PUBACK / PUBREC waits until Redis has taken the XADDs of its message: the core acknowledges
// through SessionStore.afterCommit when the store is durable, so ForwardingStore (below) wraps the session
// store, says it is durable, and runs `done` once the batches sent so far are in Redis (in order). While
// Redis is away, batches wait in a bounded buffer; beyond it a QoS 1/2 message is refused (5.0: PUBACK
// 0x97, 3.1.1: the connection closed), never acknowledged and dropped.
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import type { Message } from '../broker/message.js';
import type { RemoteDelivery, SessionJournal, SessionStore, StoredSession, StoredWill } from '../broker/store/types.js';
import { decodeBatch, encodeForward, type MessageId } from './forward-codec.js';
import { compareIds, parseEntry, replayInbox } from './inbox-replay.js';
import type { MessageSink } from './route-table.js';

/** What the forwarder needs of a Redis connection (ioredis' Redis or Cluster). */
export interface RedisCaller {
  call(command: string, ...args: (string | Buffer | number)[]): Promise<unknown>;
  callBuffer(command: string, ...args: (string | Buffer | number)[]): Promise<unknown>;
}

/** Marker kinds (payloads of an entry with an empty topic). */
const MARK_END = Buffer.from('E');
const MARK_BARRIER = Buffer.from('B');
/** Put in a dead node's inbox by each node once it sends there no more: its sessions' adopter waits for them (adoption.ts). */
export const MARK_SWITCHED = Buffer.from('S');

/**
 * Stream entries (batches) an inbox keeps at most: a cap on Redis memory for a node that stops reading
 * without dying. A live node trims what it has read and committed; a dead node's inbox is replayed by the
 * survivor that adopts its sessions (adoption.ts), then deleted (it expires if nobody does).
 */
const INBOX_MAX_ENTRIES = 100_000;

/** The commits an inbox read position goes with (RedisSessionWriter). */
export interface PositionWriter {
  /** Called as each commit is built: commands that go in it. */
  extraCommands: (() => (string | number | Buffer)[][]) | undefined;
  add(cmd: (string | number | Buffer)[]): unknown;
  afterCommit(done: () => void, failed?: (error: Error) => void): void;
}

interface Waiter {
  done: () => void;
  failed: (error: Error) => void;
}

/** The batches of one event-loop turn: its waiters are told once all of them are in Redis. */
interface FlushGroup {
  messages: number;
  remaining: number;
  flushed: boolean;
  /** In Redis (or refused by it: error), its waiters told. */
  drained: boolean;
  error: Error | undefined;
  waiters: Waiter[];
}

export interface ForwarderStats {
  /** Messages handed to Redis for other nodes, and the batches (XADDs) they went in. */
  sent: number;
  batchesSent: number;
  /** Messages and batches read from this node's inbox. */
  received: number;
  batchesReceived: number;
  /** Batches dropped as already seen. */
  duplicates: number;
  /** Messages handed on to another node for sessions that moved there, and those dropped there as already delivered. */
  relayed: number;
  relayDuplicates: number;
  /** Messages refused because the buffer for Redis was full (QoS 0 dropped, QoS 1/2 refused to the publisher). */
  refused: number;
}

/** A hand-on position hash outlives its last change by this much at most (a node restarted under its name leaves its earlier life's). */
const HAND_ON_TTL_MS = 10 * 60_000;

interface PositionKeys {
  writer: PositionWriter;
  effects: string;
  handOn: string;
}

/** The relays (hand-ons) of one flush group of messages read from the inbox: per session, the entry before the first. */
interface RelayHold {
  group: FlushGroup;
  before: Map<string, string>;
}

export class Forwarder implements MessageSink {
  /** This node's life: a restarted node's sequences start again under a new epoch. */
  readonly epoch = randomBytes(6).toString('hex');
  readonly stats: ForwarderStats = { sent: 0, batchesSent: 0, received: 0, batchesReceived: 0, duplicates: 0, relayed: 0, relayDuplicates: 0, refused: 0 };
  private pending = new Map<string, Buffer[]>();
  private open: FlushGroup | undefined;
  private readonly groups: FlushGroup[] = [];
  /** Messages not yet in Redis (pending or in flight). */
  private buffered = 0;
  private refusedSinceCommit = false;
  private fullWarned = false;
  private readonly seq = new Map<string, number>();
  /** Last (epoch, sequence) seen per origin node. */
  private readonly seen = new Map<string, { epoch: string; seq: number }>();
  private redis: RedisCaller | undefined;
  private closed = false;
  /** The last inbox entry read (undefined until the reader started). */
  lastId: string | undefined;
  /** Number of the last message sent (its identity is (self, epoch, no)), and that message. */
  private no = 0;
  private lastSent: Message | undefined;
  /** The message being delivered from the inbox now, and its identity. */
  private receiving: Message | undefined;
  private receivingId: MessageId | undefined;
  /**
   * Told the identity of each message this node delivers from its inbox or sends to another node, while set
   * (handover.ts: what sessions that just moved here got directly).
   */
  observer: ((id: MessageId) => void) | undefined;
  /** Whether a handed-on message (from node `from`) is delivered to the sessions it names (false: they had it already; 'kept': delivered later). */
  acceptRelay: ((id: MessageId, only: ReadonlySet<string>, message: Message, from: string) => boolean | 'kept') | undefined;
  /** Node `from` has handed on everything it held for sessions `only` (handover.ts). */
  onRelayEnd: ((from: string, only: ReadonlySet<string>) => void) | undefined;
  /** Node `from` put barrier `token` in this node's inbox (barrier()). */
  onBarrier: ((from: string, token: string) => void) | undefined;
  /** Where the read positions are committed (commitPositionWith()), the last ones put in a commit, and trimmed at. */
  private position: PositionKeys | undefined;
  private sentPosition: string | undefined;
  /** The hand-on positions last put in a commit; undefined: not known to be in Redis (written whole again). */
  private sentHandOn: Map<string, string> | undefined = new Map();
  private trimmedAt: string | undefined;
  /** The position stays where it is while an earlier life's entries wait for replayOwn(). */
  private holdPosition = false;
  private trimming = false;
  private unreplayed: { after: string; until: string } | undefined;
  /** The entry read before the one being delivered now. */
  private receivingAfter: string | undefined;
  /**
   * Inbox entries whose messages were handed on (relay()), per session handed on for: the hand-on position of
   * that session stays before each until its relay is in Redis, so the session's new node replays it should this
   * node die first (the effects position goes on: this node's other sessions have their copies committed).
   */
  private readonly relayHolds: RelayHold[] = [];

  constructor(
    private readonly self: string,
    private readonly prefix: string,
    private readonly maxBuffered: number,
    private readonly now: () => number,
    /** Delivers a message from another node locally (BrokerCore.publishRemote). */
    private readonly deliver: (message: Message, remote: RemoteDelivery) => void,
    private readonly warn: (message: string, context: object) => void,
  ) {}

  inboxKey(node: string): string {
    return `${this.prefix}:inbox:${node}`;
  }

  /** Messages waiting for Redis. */
  get backlog(): number {
    return this.buffered;
  }

  /** From here on, batches go through `redis` (a connection that queues commands while it reconnects). */
  connect(redis: RedisCaller): void {
    this.redis = redis;
    if (this.open === undefined && this.pending.size > 0) this.scheduleFlush();
  }

  send(node: string, message: Message, plain: boolean, groups: readonly string[] | undefined): void {
    if (this.buffered >= this.maxBuffered || this.closed) {
      this.stats.refused++;
      if (message.qos > 0) this.refusedSinceCommit = true;
      if (!this.fullWarned) {
        this.fullWarned = true;
        this.warn('cluster: messages for other nodes are refused: Redis has not taken the buffered ones (QoS 0 dropped, QoS 1/2 refused to their publishers)', { buffered: this.buffered, maxBuffered: this.maxBuffered });
      }
      return;
    }
    // One number per message, whatever the number of nodes it goes to (they get it one after the other).
    if (this.number(message)) this.observer?.({ origin: this.self, epoch: this.epoch, no: this.no });
    this.enqueue(node, encodeForward(message, this.no, plain, groups, this.now()));
    this.stats.sent++;
  }

  /**
   * The identity of `message`, being dispatched on this node now: the one it came with from the inbox, the one
   * it was sent to other nodes with, or a new number (it went to no other node).
   */
  identityOf(message: Message): MessageId {
    if (message === this.receiving) return { ...this.receivingId! };
    this.number(message);
    return { origin: this.self, epoch: this.epoch, no: this.no };
  }

  /** Gives `message` the next number unless it has the current one; true when it got a new one. */
  private number(message: Message): boolean {
    if (message === this.lastSent) return false;
    this.lastSent = message;
    this.no = (this.no + 1) >>> 0;
    return true;
  }

  /**
   * Hands `message` (identity `id`) on to `node` for its sessions `only` (they moved there). Not tied to any
   * PUBACK (the publisher was answered when the message reached this node), so a full buffer drops it, counted.
   */
  relay(node: string, message: Message, id: MessageId, only: readonly string[]): boolean {
    if (this.buffered >= this.maxBuffered || this.closed) {
      this.stats.refused++;
      // A publisher on this node is refused (its message went nowhere durable); one from the inbox is replayed.
      if (message.qos > 0 && this.receiving === undefined) this.refusedSinceCommit = true;
      return false;
    }
    this.enqueue(node, encodeForward(message, id.no, true, undefined, this.now(), { id, only }));
    this.stats.relayed++;
    if (this.receiving !== undefined && this.receivingAfter !== undefined) {
      let last = this.relayHolds[this.relayHolds.length - 1];
      if (last === undefined || last.group !== this.open) this.relayHolds.push((last = { group: this.open!, before: new Map() }));
      for (const clientId of only) if (!last.before.has(clientId)) last.before.set(clientId, this.receivingAfter);
    }
    return true;
  }

  /**
   * The hand-on positions: per session something read from the inbox was handed on for and is not yet in Redis,
   * the entry before the first such (the holds drained are dropped).
   */
  private handOnPositions(): Map<string, string> {
    while (this.relayHolds.length > 0 && this.relayHolds[0]!.group.drained) this.relayHolds.shift();
    const out = new Map<string, string>();
    for (const hold of this.relayHolds) for (const [clientId, before] of hold.before) if (!out.has(clientId)) out.set(clientId, before);
    return out;
  }

  /** The earliest position anybody may replay from: before the first entry whose relay is not in Redis, else the last read. */
  private safePosition(): string | undefined {
    let at = this.lastId;
    for (const before of this.handOnPositions().values()) if (at === undefined || compareIds(before, at) < 0) at = before;
    return at;
  }

  /** Tells `node`, after what was handed on to it so far, that nothing more is held here for `only`. */
  relayEnd(node: string, only: readonly string[]): void {
    this.marker(node, MARK_END, only);
  }

  /**
   * Puts barrier `token` in `node`'s inbox after every message sent to it so far (a node that handed a
   * session on waits for one from each node: then it has read what they sent before they saw the new routes).
   */
  barrier(node: string, token: string): void {
    this.marker(node, MARK_BARRIER, [token]);
  }

  /**
   * Puts a marker in dead node `dead`'s inbox after everything sent to it so far: this node sends it nothing more
   * (its routes dropped), `adopter` serves its sessions (adoption.ts reads these markers).
   */
  switched(dead: string, adopter: string): void {
    this.marker(dead, MARK_SWITCHED, [adopter]);
  }

  /** A marker: no message has an empty topic; the payload says which (MARK_*), `only` what it is about. */
  private marker(node: string, kind: Buffer, only: readonly string[]): void {
    if (this.closed) return;
    const marker: Message = { topic: '', payload: kind, qos: 0, retain: false };
    this.enqueue(node, encodeForward(marker, 0, true, undefined, this.now(), { id: { origin: this.self, epoch: this.epoch, no: 0 }, only }));
  }

  private enqueue(node: string, entry: Buffer): void {
    let list = this.pending.get(node);
    if (list === undefined) this.pending.set(node, (list = []));
    list.push(entry);
    this.buffered++;
    if (this.open === undefined) {
      this.open = { messages: 0, remaining: 0, flushed: false, drained: false, error: undefined, waiters: [] };
      this.groups.push(this.open);
      this.scheduleFlush();
    }
    this.open.messages++;
  }

  private scheduleFlush(): void {
    setImmediate(() => this.flush());
  }

  private flush(): void {
    const group = this.open;
    if (group === undefined || this.redis === undefined) return;
    this.open = undefined;
    const pending = this.pending;
    this.pending = new Map();
    for (const [node, list] of pending) {
      const seq = (this.seq.get(node) ?? 0) + 1;
      this.seq.set(node, seq);
      const data = list.length === 1 ? list[0]! : Buffer.concat(list);
      group.remaining++;
      this.stats.batchesSent++;
      this.redis
        .callBuffer('XADD', this.inboxKey(node), 'MAXLEN', '~', INBOX_MAX_ENTRIES, '*', 'o', this.self, 'e', this.epoch, 's', seq, 'd', data)
        .then(
          () => this.batchDone(group, undefined),
          (err: unknown) => this.batchDone(group, err instanceof Error ? err : new Error(String(err))),
        );
    }
    group.flushed = true;
    if (group.remaining === 0) this.drain();
  }

  private batchDone(group: FlushGroup, error: Error | undefined): void {
    if (error !== undefined) group.error ??= error;
    group.remaining--;
    if (group.remaining === 0) this.drain();
  }

  /** Tells the waiters of finished groups, in order (PUBACKs go out in the order the PUBLISHes came). */
  private drain(): void {
    while (this.groups.length > 0) {
      const g = this.groups[0]!;
      if (!g.flushed || g.remaining > 0) break;
      this.groups.shift();
      g.drained = true;
      this.buffered -= g.messages;
      if (g.error !== undefined) this.warn('cluster: a batch for another node was not taken by Redis', { error: g.error.message, messages: g.messages });
      for (const w of g.waiters) {
        if (g.error !== undefined) w.failed(g.error);
        else w.done();
      }
    }
    if (this.buffered < this.maxBuffered / 2) this.fullWarned = false;
  }

  /**
   * The batches of this turn so far (undefined: nothing sent this turn). Taken as a message has just been
   * dispatched: a message that went to no other node waits for no batch (local traffic goes on while Redis is away).
   */
  get turnGroup(): FlushGroup | undefined {
    return this.open;
  }

  /** Runs `done` once `group` and the ones before it are in Redis (at once for none). */
  afterGroup(group: FlushGroup | undefined, done: () => void, failed: (error: Error) => void): void {
    if (group === undefined) done();
    else if (!group.drained) group.waiters.push({ done, failed });
    else if (group.error !== undefined) failed(group.error);
    else done();
  }

  /** Whether a QoS 1/2 message was refused since the last call (then the publisher is told). */
  takeRefused(): boolean {
    const r = this.refusedSinceCommit;
    this.refusedSinceCommit = false;
    return r;
  }

  // ---- the inbox ----

  /**
   * This node's inbox read positions are committed with its session store's commits (cluster-node.ts): each
   * MULTI of `writer` also sets `keys.effects` to the last entry read (every entry up to it has its effects on
   * this node's sessions in that commit or an earlier one), so a survivor (adoption.ts) or this node after a
   * restart replays only what came after; and `keys.handOn`, a hash, names per leaving session the entry before
   * the first whose hand-on to its new node is not known to be in Redis (that node replays from there for it,
   * handover-replay.ts; a session not in it replays from the effects position).
   */
  commitPositionWith(writer: PositionWriter, keys: { effects: string; handOn: string }): void {
    this.position = { writer, ...keys };
    writer.extraCommands = () => this.positionCommands();
  }

  /** The commands that bring the committed positions up to date, for a commit being built (only what changed). */
  private positionCommands(): (string | number | Buffer)[][] {
    const p = this.position;
    const at = this.lastId;
    if (p === undefined || this.holdPosition || at === undefined) return [];
    const commands: (string | number | Buffer)[][] = [];
    if (at !== this.sentPosition) {
      this.sentPosition = at;
      commands.push(['set', p.effects, at]);
    }
    const sent = this.sentHandOn;
    // The common case, nothing handed on now or before: no map built for every commit.
    if (sent !== undefined && sent.size === 0 && this.relayHolds.length === 0) return commands;
    const handOn = this.handOnPositions();
    // After a failed commit, written whole (a field left stale would replay too much for its session).
    if (sent === undefined) commands.push(['del', p.handOn]);
    const gone = sent === undefined ? [] : [...sent.keys()].filter((clientId) => !handOn.has(clientId));
    const changed = [...handOn].filter(([clientId, before]) => sent?.get(clientId) !== before);
    if (gone.length > 0) commands.push(['hdel', p.handOn, ...gone]);
    if (changed.length > 0) commands.push(['hset', p.handOn, ...changed.flat()], ['pexpire', p.handOn, HAND_ON_TTL_MS]);
    this.sentHandOn = handOn;
    return commands;
  }

  /**
   * At start: reading begins at the inbox's end; the entries after the committed position (an earlier life
   * of this node name read them or not, but their effects never reached Redis) are kept for replayOwn().
   * Call before any route is announced, so nothing sent for the new routes is skipped.
   */
  async startPosition(redis: RedisCaller): Promise<void> {
    const key = this.inboxKey(this.self);
    const last = (await redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)) as [string, string[]][];
    this.lastId = last.length > 0 ? last[0]![0] : '0-0';
    if (this.position === undefined || this.lastId === '0-0') return;
    const committed = (await redis.call('GET', this.position.effects)) as string | null;
    if (committed !== null && compareIds(committed, this.lastId) >= 0) return;
    // Not written yet (the first commit of this node name): the whole inbox is unread.
    this.unreplayed = { after: committed ?? '0-0', until: this.lastId };
    this.holdPosition = true;
  }

  /**
   * Replays the entries an earlier life of this node left unread or uncommitted (startPosition()) for the
   * sessions it read back: `restore()` puts them in the registry and names them, in the same turn as the
   * replay's first part is delivered (their new messages come after). Resolves with the messages replayed.
   */
  async replayOwn(redis: RedisCaller, restore: () => Iterable<string>): Promise<number> {
    const range = this.unreplayed;
    this.unreplayed = undefined;
    let restored = false;
    const once = (): Iterable<string> => {
      restored = true;
      return restore();
    };
    try {
      if (range === undefined) return 0;
      const done = await replayInbox({ redis, key: this.inboxKey(this.self), after: range.after, until: range.until, restore: once, deliver: this.deliver, warn: this.warn });
      return done.messages;
    } catch (err) {
      this.warn('cluster: the entries an earlier life of this node left in its inbox were not replayed', { error: String(err) });
      return 0;
    } finally {
      if (!restored) once();
      // Its deliveries are recorded: the next commit carries them and the position after them.
      this.holdPosition = false;
    }
  }

  /** Reads this node's inbox until close(), on `reader` (a connection of its own: XREAD BLOCK holds it). */
  async readLoop(reader: RedisCaller, onError: (err: Error) => void): Promise<void> {
    const key = this.inboxKey(this.self);
    if (this.lastId === undefined) await this.startPosition(reader);
    while (!this.closed) {
      let reply: [Buffer, [Buffer, Buffer[]][]][] | null;
      try {
        reply = (await reader.callBuffer('XREAD', 'COUNT', 512, 'BLOCK', 1000, 'STREAMS', key, this.lastId!)) as typeof reply;
      } catch (err) {
        if (this.closed) return;
        onError(err instanceof Error ? err : new Error(String(err)));
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (reply === null) continue;
      for (const [, entries] of reply) for (const [id, fields] of entries) this.receive(id.toString(), fields);
    }
  }

  private receive(id: string, fields: Buffer[]): void {
    this.receivingAfter = this.lastId;
    this.lastId = id;
    const entry = parseEntry(fields);
    if (entry === undefined) return;
    const seen = this.seen.get(entry.origin);
    if (seen !== undefined && seen.epoch === entry.epoch && entry.seq <= seen.seq) {
      this.stats.duplicates++;
      return;
    }
    this.seen.set(entry.origin, { epoch: entry.epoch, seq: entry.seq });
    this.stats.batchesReceived++;
    try {
      decodeBatch(entry.data, this.now(), entry.origin, entry.epoch, (message, remote, messageId) => {
        this.stats.received++;
        if (remote.only !== undefined) {
          // No message has an empty topic: this one marks the end of what a node handed on.
          if (message.topic === '') {
            if (message.payload.equals(MARK_BARRIER)) for (const token of remote.only) this.onBarrier?.(entry.origin, token);
            // This node was taken for dead and is back under its name: the switch markers are not for it.
            else if (!message.payload.equals(MARK_SWITCHED)) this.onRelayEnd?.(entry.origin, remote.only);
            return;
          }
          const verdict = this.acceptRelay?.(messageId, remote.only, message, entry.origin) ?? true;
          if (verdict !== true) {
            if (verdict === false) this.stats.relayDuplicates++;
            return;
          }
        } else this.observer?.(messageId);
        this.receiving = message;
        this.receivingId = messageId;
        try {
          this.deliver(message, remote);
        } finally {
          this.receiving = undefined;
        }
      });
    } catch (err) {
      this.warn('cluster: a batch from another node could not be read; skipped', { origin: entry.origin, id, error: String(err) });
    }
  }

  /**
   * Drops what this node has read from its inbox: up to the committed position when there is one (entries
   * after it are a survivor's to replay should this node die now), else up to the last entry read. With a
   * committed position, also commits it when no session change carried it (nothing was queued meanwhile).
   */
  async trim(redis: RedisCaller): Promise<void> {
    const p = this.position;
    if (p === undefined) {
      if (this.lastId !== undefined && this.lastId !== '0-0') await redis.call('XTRIM', this.inboxKey(this.self), 'MINID', this.lastId);
      return;
    }
    // One at a time: a commit slower than the trim interval does not stack waiters.
    if (this.holdPosition || this.trimming || this.lastId === undefined || this.lastId === '0-0') return;
    this.trimming = true;
    try {
      await this.trimCommitted(redis, p);
    } finally {
      this.trimming = false;
    }
  }

  private async trimCommitted(redis: RedisCaller, p: PositionKeys): Promise<void> {
    for (const command of this.positionCommands()) p.writer.add(command);
    // Every entry a survivor or a leaving session's new node may replay is after this one.
    const at = this.safePosition()!;
    const sent = { position: this.sentPosition, handOn: this.sentHandOn };
    const committed = await new Promise<boolean>((resolve) => p.writer.afterCommit(() => resolve(true), () => resolve(false)));
    if (!committed) {
      // Written again at the next commit or trim.
      if (this.sentPosition === sent.position) this.sentPosition = undefined;
      if (this.sentHandOn === sent.handOn) this.sentHandOn = undefined;
      return;
    }
    if (at === this.trimmedAt) return;
    this.trimmedAt = at;
    await redis.call('XTRIM', this.inboxKey(this.self), 'MINID', at);
  }

  close(): void {
    this.closed = true;
  }
}

/**
 * The session store a cluster node runs with: the store it wraps (memory or SQLite) for sessions, and
 * acknowledgements that also wait for the messages forwarded to other nodes to be in Redis.
 */
export class ForwardingStore implements SessionStore {
  readonly durable = true;

  constructor(
    private readonly inner: SessionStore,
    private readonly forwarder: Forwarder,
  ) {}

  load(): Iterable<StoredSession> {
    return this.inner.load();
  }

  journal(clientId: string): SessionJournal | undefined {
    return this.inner.journal(clientId);
  }

  afterCommit(done: () => void, failed: (error: Error) => void = () => {}): void {
    // Whether this message was refused is known now, not once the inner commit is done.
    if (this.forwarder.takeRefused()) {
      failed(new Error('cluster buffer full'));
      return;
    }
    // The batches that may carry the message just dispatched: this turn's (none when it went to no other node).
    const group = this.forwarder.turnGroup;
    if (!this.inner.durable) this.forwarder.afterGroup(group, done, failed);
    else this.inner.afterCommit(() => this.forwarder.afterGroup(group, done, failed), failed);
  }

  liveWill(clientId: string, will: StoredWill | undefined): void {
    this.inner.liveWill?.(clientId, will);
  }

  close(): void {
    this.inner.close();
  }
}
