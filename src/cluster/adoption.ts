// The offline sessions of a node that died. Their state is in Redis (redis-sessions.ts), but nobody serves
// their subscriptions: messages published for them after the death would be lost until their client came
// back. When a node's heartbeat expires, one survivor (SET NX lock) takes over every session whose owner
// record still names the dead node: one Lua script per Client ID moves the record to the survivor with the
// next epoch (so a client reconnecting anywhere meanwhile wins: the script only takes what the dead node
// still holds), and the survivor serves those sessions as its own offline sessions from then on.
import type { Redis } from 'ioredis';
import type { StoredSession } from '../broker/store/types.js';
import type { RedisSessionStore } from './redis-sessions.js';
import { script } from './types.js';

/** Moves the owner record from ARGV[1] (the dead node) to ARGV[2], keeping its expiry. Returns the epoch or 0. */
const ADOPT_SCRIPT = `
local prev = redis.call('GET', KEYS[1])
if not prev then return 0 end
local sp = string.find(prev, ' ', 1, true)
if string.sub(prev, 1, sp - 1) ~= ARGV[1] then return 0 end
local epoch = tonumber(string.sub(prev, sp + 1)) + 1
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. epoch, 'PX', ttl) else redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. epoch) end
return epoch`;

/** How long the lock on a dead node's sessions is held (ms): the adoption is one pass. */
const LOCK_MS = 60_000;

export interface AdoptionContext {
  readonly redis: Redis;
  readonly prefix: string;
  /** This node. */
  readonly node: string;
  readonly sessions: RedisSessionStore;
  ownerKey(clientId: string): string;
  /** Puts the adopted sessions in this node's registry (offline, their wills left to the survivors' wills). */
  restore(sessions: StoredSession[]): void;
}

/** Node `dead` died: if this node wins the lock, it takes over its offline sessions. Resolves with how many. */
export async function adoptSessions(ctx: AdoptionContext, dead: string): Promise<number> {
  const won = await ctx.redis.set(`${ctx.prefix}:adopt:${dead}`, ctx.node, 'PX', LOCK_MS, 'NX');
  if (won === null) return 0;
  const adopt = script(ctx, 'petrelAdopt', ADOPT_SCRIPT, 1);
  const held = await ctx.sessions.loadOwned(dead, (clientId) => ctx.ownerKey(clientId));
  const adopted: StoredSession[] = [];
  for (const session of held) {
    const epoch = Number(await adopt(ctx.ownerKey(session.clientId), dead, ctx.node));
    // Its client came back on some node meanwhile: that node reads the session, not this one.
    if (epoch > 0) adopted.push({ ...session, will: undefined });
    else ctx.sessions.dropFetched(session.clientId);
  }
  ctx.restore(adopted);
  return adopted.length;
}
