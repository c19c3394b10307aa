// What the cluster's ownership part (Client IDs, retained messages, wills of dead nodes) needs from the rest
// of the cluster, as interfaces: the membership of the cluster plane (membership.ts) satisfies NodeLiveness.
import type { Redis } from 'ioredis';

/** Which nodes of the cluster are alive, and news of one that died (its heartbeat expired). */
export interface NodeLiveness {
  /** This node's name. */
  readonly self: string;
  isAlive(name: string): boolean;
  on(event: 'node-down', listener: (name: string) => void): this;
}

/** What the ownership modules share: the Redis connection, the key prefix, this node and a logger. */
export interface ClusterContext {
  /**
   * Commands (ioredis). Pub/sub goes over a duplicate of it. Until a broker's cluster connects (listen()), a
   * stand-in whose status is never 'ready', so everything takes its Redis-unreachable path.
   */
  redis: Redis;
  /** Every key starts with `${prefix}:` (default `petrel`). */
  readonly prefix: string;
  readonly node: string;
  /** Something an operator should know (once per state change, never per message). */
  warn(message: string, context?: Record<string, unknown>): void;
  /** Time in ms (Date.now by default; the broker's clock). */
  now(): number;
}

/** Logs a state once until it clears: "Redis unreachable" is written when it starts, not per message. */
export class StateWarning {
  private on = false;
  constructor(private readonly warn: (message: string, context?: Record<string, unknown>) => void) {}

  set(message: string, context?: Record<string, unknown>): void {
    if (this.on) return;
    this.on = true;
    this.warn(message, context);
  }

  clear(message?: string): void {
    if (!this.on) return;
    this.on = false;
    if (message !== undefined) this.warn(message);
  }
}

/** The stand-in for a connection not made yet (ClusterContext.redis before the broker listens). */
export const NOT_CONNECTED = { status: 'wait' } as unknown as Redis;

/**
 * A Lua script as a command of `ctx.redis` (ioredis defineCommand: EVALSHA, the script text sent only once),
 * defined on first use, on the connection the context has then. The first `keys` arguments are keys (Redis
 * Cluster routes by them).
 */
export function script(ctx: { readonly redis: Redis }, name: string, lua: string, keys: number): (...args: (string | number)[]) => Promise<unknown> {
  return (...args) => {
    const redis = ctx.redis;
    const commands = redis as unknown as Record<string, (...args: (string | number)[]) => Promise<unknown>>;
    if (typeof commands[name] !== 'function') redis.defineCommand(name, { numberOfKeys: keys, lua });
    return commands[name]!(...args);
  };
}
