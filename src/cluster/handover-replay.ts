// What a node's inbox holds for one session that left it, after the node's committed read position: the new
// node of a moving session reads it when the old node sent no end marker in time (stopped or SIGKILLed in the
// middle of the move, handover.ts). Those entries were acknowledged to their publishers (their XADD was in
// Redis) but the old node either never read them or read them and never handed them on: the hand-on position it
// commits for the session stays before an entry until the hand-on of what it read there is in Redis
// (Forwarder.relay), and without one its read position is after every entry handed on or applied. The
// adopter of a dead node replays its inbox too (inbox-replay.ts), but only for the sessions the dead node still
// held; a session that was moving is the new node's.
import { decodeBatch } from './forward-codec.js';
import type { RedisCaller } from './forwarder.js';
import type { Captured } from './handover.js';
import { InboxReader } from './inbox-replay.js';

/** Entries read at most (a bound on the time and memory of one session's replay). */
const MAX_ENTRIES = 20_000;

export interface SessionReplayOptions {
  redis: RedisCaller;
  /**
   * The old node's inbox, the key of its committed read position and of its hand-on positions (inbox-replay.ts
   * inboxPositionKey, handOnPositionKey).
   */
  inboxKey: string;
  positionKey: string;
  handOnKey: string;
  clientId: string;
  /**
   * Resolves once this node has read what other nodes sent it so far (ClusterPlane.barrier). A message a
   * publisher's node sent both to the old node and here is then known here (delivered directly, so skipped).
   */
  settle: () => Promise<void>;
  warn: (message: string, context: object) => void;
}

/**
 * The messages of the inbox after its committed position that go to session `clientId`: those sent to its node
 * for the subscriptions it had (plain), and those handed on to it for that session; markers and shared-group
 * messages are not (a moving session leaves its groups at once). In inbox order, each with its identity.
 */
export async function replayForSession(options: SessionReplayOptions): Promise<Captured[]> {
  const { redis, inboxKey, clientId } = options;
  // Up to the inbox's end now: what comes later was also sent here (its senders know this node's routes).
  const end = (await redis.call('XREVRANGE', inboxKey, '+', '-', 'COUNT', 1)) as [string, unknown][];
  if (end.length === 0) return [];
  const until = end[0]![0];
  await options.settle();
  // Before the first entry whose hand-on to this session Redis may not have; none: all up to the read position were.
  const handOn = (await redis.call('HGET', options.handOnKey, clientId)) as string | null;
  const position = handOn ?? ((await redis.call('GET', options.positionKey)) as string | null);
  const reader = new InboxReader(redis, inboxKey, position ?? '0-0', until);
  const out: Captured[] = [];
  for (let read = 0; !reader.done; ) {
    if (read >= MAX_ENTRIES) {
      options.warn('cluster: the inbox of the node a session left is longer than is replayed for it; the rest is not', { key: inboxKey, clientId, entries: MAX_ENTRIES });
      break;
    }
    const page = await reader.page();
    read += page.length;
    for (const { id, sentAt, entry } of reader.batches(page)) {
      // Expiry counts from when Redis took the entry, not from now.
      try {
        decodeBatch(entry.data, sentAt, entry.origin, entry.epoch, (message, remote, messageId) => {
          if (message.topic === '') return; // a marker
          const forSession = remote.only !== undefined ? remote.only.has(clientId) : remote.plain;
          if (forSession) out.push({ message, id: { ...messageId } });
        });
      } catch (err) {
        options.warn('cluster: a batch of the inbox of the node a session left could not be read; skipped', { key: inboxKey, id, error: String(err) });
      }
    }
  }
  return out;
}
