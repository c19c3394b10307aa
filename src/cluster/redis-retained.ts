// Retained messages cluster-wide (RetainedStore): every node keeps a full replica in memory, in the core's
// own topic tree (MemoryRetainedStore), so match(filter) visits only the branches a filter can reach and
// stays synchronous, as the core needs. Redis holds the truth: a hash `${p}:retained` (topic → message) and
// a pub/sub channel `${p}:retained` carrying every change. A change is written by one Lua script (HSET or
// HDEL, then PUBLISH), so the channel gives every node the changes in the hash's own order; each node applies
// every event in that order, its own included, and so every replica ends with the same message per topic.
// A node (re)loads the hash at start and after a Redis outage; events that arrive during the load are
// applied after it, in order. The broker's own $SYS topics stay per node and never reach Redis.
import { Buffer } from 'node:buffer';
import type { Message } from '../broker/message.js';
import { MemoryRetainedStore } from '../broker/retained.js';
import type { RetainedStore } from '../broker/store/types.js';
import { isSysTopic } from '../broker/sys-topics.js';
import { decodeMessage, encodeMessage } from './codec.js';
import { script, StateWarning, type ClusterContext } from './types.js';

/**
 * HSET or HDEL, then PUBLISH the change: one atomic step, so hash order = channel order. The event of a set
 * is the stored message itself (it names its topic); a delete publishes ARGV[4], the topic's empty message.
 */
const WRITE_SCRIPT = `
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('PUBLISH', ARGV[3], ARGV[4])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('PUBLISH', ARGV[3], ARGV[2])
end
return 1`;

/** Deletes an expired entry found while loading, unless it was replaced meanwhile. */
const DELETE_IF_SCRIPT = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0`;

export class RedisRetainedStore implements RetainedStore {
  /** The cluster's retained messages, as this node last heard them. */
  private replica = new MemoryRetainedStore();
  /** This node's $SYS topics. */
  private readonly local = new MemoryRetainedStore();
  /** Events received while a load is in progress, applied after it in order. */
  private buffered: string[] | undefined;
  /** Changes made here while Redis was unreachable (topic → encoded message, '' deleted), written back first. */
  private readonly unsynced = new Map<string, string>();
  private readonly down: StateWarning;
  readonly key: string;
  readonly channel: string;
  private readonly writeScript: (...args: (string | number)[]) => Promise<unknown>;
  private readonly deleteIfScript: (...args: (string | number)[]) => Promise<unknown>;

  constructor(private readonly ctx: ClusterContext) {
    this.key = `${ctx.prefix}:retained`;
    this.channel = `${ctx.prefix}:retained`;
    this.down = new StateWarning(ctx.warn);
    this.writeScript = script(ctx, 'petrelRetainedWrite', WRITE_SCRIPT, 1);
    this.deleteIfScript = script(ctx, 'petrelRetainedDeleteIf', DELETE_IF_SCRIPT, 1);
  }

  get size(): number {
    return this.replica.size + this.local.size;
  }

  get limitedSize(): number {
    return this.replica.limitedSize;
  }

  get(topic: string): Message | undefined {
    return isSysTopic(topic) ? this.local.get(topic) : this.replica.get(topic);
  }

  match(filter: string, now: number): Message[] {
    // A wildcard at the first level never matches a $ topic, so one store answers each filter.
    return filter.startsWith('$SYS') ? this.local.match(filter, now) : this.replica.match(filter, now);
  }

  sweep(now: number): void {
    this.local.sweep(now);
    this.replica.sweep(now);
  }

  /** Applied here at once (a subscriber on this node sees it now), then written to Redis for every node. */
  set(message: Message, limit?: number): boolean {
    if (isSysTopic(message.topic)) return this.local.set(message, limit);
    if (!this.replica.set(message, limit)) return false;
    const encoded = message.payload.length === 0 ? '' : encodeMessage(message);
    this.write(message.topic, encoded);
    return true;
  }

  private write(topic: string, encoded: string): void {
    const redis = this.ctx.redis;
    if (redis.status !== 'ready') {
      this.unsynced.set(topic, encoded);
      this.down.set('Redis unreachable: retained messages are kept on this node and written to the cluster when it is back', { topics: this.unsynced.size });
      return;
    }
    this.writeScript(this.key, topic, encoded, this.channel, encoded === '' ? deleteEvent(topic) : '').catch((err: unknown) => {
      this.unsynced.set(topic, encoded);
      this.down.set('retained message not written to Redis; kept on this node and written when Redis is back', { error: String(err) });
    });
  }

  /** A message of the channel (from the shared subscriber connection). */
  onEvent(text: string): void {
    if (this.buffered !== undefined) {
      this.buffered.push(text);
      return;
    }
    this.apply(text);
  }

  private apply(text: string): void {
    let message: Message;
    try {
      message = decodeMessage(text);
    } catch {
      return; // not ours: a channel shared by mistake must not break the node
    }
    // An empty payload deletes the topic's message, as in the core.
    if (typeof message.topic === 'string' && Buffer.isBuffer(message.payload)) this.replica.set(message);
  }

  /**
   * Loads the hash into a new replica (at start, and when Redis is back: the changes missed meanwhile are in
   * it). Call once the channel is subscribed. Changes made here during an outage are written back first;
   * `restarted`: Redis came back from a restart and may have lost the hash, so this node's messages are
   * offered back first (HSETNX: a message another node wrote since is kept).
   */
  async load(restarted: boolean): Promise<number> {
    this.buffered ??= [];
    try {
      if (restarted && this.replica.size > 0) {
        const now = this.ctx.now();
        const pipeline = this.ctx.redis.pipeline();
        for (const m of this.replica.match('#', now)) pipeline.hsetnx(this.key, m.topic, encodeMessage(m));
        await pipeline.exec();
      }
      for (const [topic, encoded] of [...this.unsynced]) {
        this.unsynced.delete(topic);
        await this.writeScript(this.key, topic, encoded, this.channel, encoded === '' ? deleteEvent(topic) : '');
      }
      const all = await this.ctx.redis.hgetall(this.key);
      const now = this.ctx.now();
      const replica = new MemoryRetainedStore();
      for (const [topic, encoded] of Object.entries(all)) {
        const message = decodeMessage(encoded);
        if (message.expiresAt !== undefined && message.expiresAt < now) {
          void this.deleteIfScript(this.key, topic, encoded).catch(() => {});
          continue;
        }
        replica.set(message);
      }
      this.replica = replica;
      this.down.clear('Redis reachable again: retained messages reloaded');
      return replica.size;
    } finally {
      const waiting = this.buffered;
      this.buffered = undefined;
      for (const text of waiting) this.apply(text);
    }
  }
}

/** The event that deletes `topic` on every node: its message with an empty payload. */
const deleteEvent = (topic: string): string => encodeMessage({ topic, payload: Buffer.alloc(0), qos: 0, retain: true });
