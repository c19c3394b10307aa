// The offline sessions of a node that died. Their state is in Redis (redis-sessions.ts), but nobody serves
// their subscriptions: messages published for them after the death would be lost until their client came
// back. When a node's heartbeat expires, one survivor (SET NX lock) takes over every session whose owner
// record still names the dead node: one Lua script per Client ID moves the record to the survivor with the
// next epoch (so a client reconnecting anywhere meanwhile wins: the script only takes what the dead node
// still holds), and the survivor serves those sessions as its own offline sessions from then on.
//
// What the dead node had not committed is replayed (inbox-replay.ts): the entries of its inbox after its
// committed read position (`inboxpos`, set with each of its session commits) were acknowledged to their
// publishers but never reached these sessions' queues in Redis (the position is not held back for what the dead
// node handed on to sessions leaving it: that is their new nodes' to replay, from the `inboxhandon` positions).
// The survivor delivers them to the adopted sessions (and a shared group's to a local member of the group),
// waits until Redis has what they queued, then deletes the inbox and the positions (membership.ts gave the
// inbox a TTL for the meantime).
//
// Until the sessions are served here, every node goes on sending their messages to the dead node's inbox (it
// keeps the dead node's routes: cluster.ts), so none is lost in between. In the turn the survivor restores
// them, it announces their routes and then `~dead\nsurvivor`: each node drops the dead node's routes and puts a
// marker in its inbox after the last message it sent there (Forwarder.switched). Meanwhile what reaches the
// adopted sessions, from the replay or directly, is held (adoption-hold.ts: one copy per message, each origin's
// order) until the replay has read every live node's marker (or SWITCH_WAIT_MS passed).
import type { Redis } from 'ioredis';
import type { Message } from '../broker/message.js';
import type { RemoteDelivery, StoredSession } from '../broker/store/types.js';
import { AdoptionHold } from './adoption-hold.js';
import type { MessageId } from './forward-codec.js';
import { MARK_SWITCHED, type RedisCaller } from './forwarder.js';
import { handOnPositionKey, inboxPositionKey, nextId, replayInbox, type ReplayOptions } from './inbox-replay.js';
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

/**
 * Drops the replayed entries (ARGV[1]: the first id kept) of a dead node's inbox and deletes it when nothing
 * came after them. Returns the entries left, or -1 when the inbox has no TTL any more: its node is back
 * (membership.ts PERSISTs it) and reads it itself.
 */
const FINISH_SCRIPT = `
if redis.call('PTTL', KEYS[1]) == -1 then return -1 end
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
local left = redis.call('XLEN', KEYS[1])
if left == 0 then redis.call('DEL', KEYS[1]) end
return left`;

/** Rounds of replay for entries that reached the dead inbox while it was replayed (nodes not yet aware of the death). */
const FINISH_ROUNDS = 3;

/** How long the lock on a dead node's sessions is held (ms): the adoption is one pass. */
const LOCK_MS = 60_000;

/**
 * How long the dead inbox and its position stay after the death is seen, at least (ms). A session that was moving
 * off the dead node when it died is not adopted (its owner is its new node), but its new node reads the dead
 * inbox for it (handover-replay.ts) within about 4.5 s of its claim, which came before the death: the wait for
 * the release (2 s), PENDINGS_WAIT_MS (2 s), a barrier (0.5 s).
 */
export const MOVE_READ_MS = 5000;

/** How long the adopted sessions' messages are held waiting for every node's switch marker (ms). */
export const SWITCH_WAIT_MS = 2000;
/** How often the dead inbox is read again while markers are awaited (ms). */
const SWITCH_POLL_MS = 5;

type Divert = (message: Message, shareKey: string | undefined) => boolean;

export interface AdoptionContext {
  readonly redis: Redis;
  readonly prefix: string;
  /** This node. */
  readonly node: string;
  readonly sessions: RedisSessionStore;
  ownerKey(clientId: string): string;
  /** Puts the adopted sessions in this node's registry (offline, their wills left to the survivors' wills). */
  restore(sessions: StoredSession[]): void;
  /** The key of a node's inbox (Forwarder.inboxKey). */
  inboxKey(node: string): string;
  /** Delivers a message on this node (BrokerCore.publishRemote). */
  deliver(message: Message, remote: RemoteDelivery): void;
  /** What the offline session `clientId` is delivered goes to `divert` (false from it: to its queue); false: no such session. */
  hold(clientId: string, divert: Divert): boolean;
  /** Session `clientId` takes deliveries again, unless something else diverts them since (a hand-over). */
  unhold(clientId: string, divert: Divert): void;
  /** Delivers `message` to the local session `clientId` only. */
  deliverTo(clientId: string, message: Message): void;
  /** The identity of a message being dispatched here (Forwarder.identityOf). */
  identityOf(message: Message): MessageId;
  /**
   * This node serves `dead`'s sessions now (their routes just announced): the dead node's routes go and every
   * node is told (ClusterPlane.switchDead). Returns the nodes whose switch marker to wait for.
   */
  switchDead(dead: string): string[];
  warn(message: string, context: object): void;
}

export interface Adoption {
  /** Sessions taken over, and messages of the dead node's inbox replayed (inbox-replay.ts). */
  sessions: number;
  replayed: number;
}

/** Node `dead` died: if this node wins the lock, it takes over its offline sessions and replays its inbox. */
export async function adoptSessions(ctx: AdoptionContext, dead: string): Promise<Adoption | undefined> {
  const seenDeadAt = Date.now();
  const won = await ctx.redis.set(`${ctx.prefix}:adopt:${dead}`, ctx.node, 'PX', LOCK_MS, 'NX');
  if (won === null) return undefined;
  const adopt = script(ctx, 'petrelAdopt', ADOPT_SCRIPT, 1);
  const held = await ctx.sessions.loadOwned(dead, (clientId) => ctx.ownerKey(clientId));
  const adopted: StoredSession[] = [];
  // All at once (pipelined): until they are restored, what is published for them goes to the dead inbox.
  const epochs = await Promise.all(held.map((session) => adopt(ctx.ownerKey(session.clientId), dead, ctx.node)));
  held.forEach((session, i) => {
    // Its client came back on some node meanwhile: that node reads the session, not this one.
    if (Number(epochs[i]) > 0) adopted.push({ ...session, will: undefined });
    else ctx.sessions.dropFetched(session.clientId);
  });
  const ids = adopted.map((s) => s.clientId);
  const redis = ctx.redis as unknown as RedisCaller;
  const inbox = ctx.inboxKey(dead);
  const positionKey = inboxPositionKey(ctx.sessions.prefix, dead);
  const hold = new AdoptionHold(ids);
  /** The identity of the replayed message being delivered now (the hold's divert reads it). */
  let replaying: MessageId | undefined;
  // A shared group's message is not held: another node sends it either to the dead inbox or here, never both.
  const diverts = new Map(ids.map((clientId) => [clientId, (message: Message, shareKey: string | undefined) => shareKey === undefined && hold.add(clientId, replaying ?? ctx.identityOf(message), message)]));
  let waiting = new Set<string>();
  let replayed = 0;
  let restored = false;
  const restore = (): string[] => {
    restored = true;
    ctx.restore(adopted);
    for (const [clientId, divert] of diverts) ctx.hold(clientId, divert);
    waiting = new Set(ctx.switchDead(dead));
    return ids;
  };
  const replay = (after: string, restoreOnce: () => string[]): Promise<{ messages: number; last: string }> => {
    const options: ReplayOptions = {
      redis,
      key: inbox,
      after,
      restore: restoreOnce,
      deliver: (message, remote, id) => {
        replaying = id;
        try {
          ctx.deliver(message, remote);
        } finally {
          replaying = undefined;
        }
      },
      onMarker: (origin, kind) => {
        if (kind.equals(MARK_SWITCHED)) waiting.delete(origin);
      },
      warn: ctx.warn,
    };
    return replayInbox(options);
  };
  let last: string;
  try {
    last = ((await redis.call('GET', positionKey)) as string | null) ?? '0-0';
    // The sessions are restored once the first part of the inbox is read, and it is delivered in that turn.
    const first = await replay(last, restore);
    replayed = first.messages;
    last = first.last;
    // Then what nodes sent the dead node until they switched, up to each one's marker.
    const deadline = Date.now() + SWITCH_WAIT_MS;
    while (waiting.size > 0 && Date.now() < deadline) {
      const more = await replay(last, () => ids);
      replayed += more.messages;
      if (more.last === last) await new Promise((r) => setTimeout(r, SWITCH_POLL_MS));
      last = more.last;
    }
    if (waiting.size > 0) ctx.warn('cluster: nodes did not confirm they stopped sending to a dead node; its sessions are served without waiting longer', { node: dead, nodes: [...waiting], ms: SWITCH_WAIT_MS });
  } catch (err) {
    // The sessions are served all the same; the inbox expires (its messages for them are lost).
    if (!restored) restore();
    release(ctx, diverts, hold);
    ctx.warn('cluster: the inbox of a dead node was not replayed', { node: dead, error: String(err) });
    return { sessions: adopted.length, replayed };
  }
  release(ctx, diverts, hold);
  // Not trimmed or deleted while the new node of a session that was moving off the dead node may read it.
  const keep = seenDeadAt + MOVE_READ_MS - Date.now();
  if (keep > 0) await new Promise((r) => setTimeout(r, keep).unref());
  try {
    for (let round = 0; ; round++) {
      // What the replay queued is in Redis before the entries go.
      await new Promise<void>((resolve, reject) => ctx.sessions.whenWritten(resolve, reject));
      const left = Number(await script(ctx, 'petrelInboxDone', FINISH_SCRIPT, 1)(inbox, nextId(last)));
      if (left === 0) await redis.call('DEL', positionKey, handOnPositionKey(ctx.sessions.prefix, dead));
      if (left <= 0 || round === FINISH_ROUNDS) break;
      // Stragglers (a node that missed the switch): delivered as they come.
      const more = await replay(last, () => ids);
      replayed += more.messages;
      last = more.last;
    }
  } catch (err) {
    // Delivered, but not known to be in Redis: the inbox is left to expire (its TTL), not deleted.
    ctx.warn('cluster: the replayed inbox of a dead node was not deleted', { node: dead, error: String(err) });
  }
  return { sessions: adopted.length, replayed };
}

/** The held messages go into their sessions (each origin's order), and the sessions take deliveries again. */
function release(ctx: AdoptionContext, diverts: Map<string, Divert>, hold: AdoptionHold): void {
  for (const [clientId, divert] of diverts) ctx.unhold(clientId, divert);
  if (hold.overflow > 0) ctx.warn('cluster: more messages arrived for adopted sessions than are held while their node\'s inbox is replayed; the newest were dropped', { dropped: hold.overflow });
  for (const [clientId, messages] of hold.release()) for (const m of messages) ctx.deliverTo(clientId, m);
}
