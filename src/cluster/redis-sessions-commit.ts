// One commit of the Redis session store, safe to send again: ONE MULTI/EXEC whose first command is a small Lua
// script (the guard) and whose other commands are idempotent (HSET, HDEL, DEL, SADD, SREM on session keys). The
// stored messages (their hash and reference count: not idempotent, and deleted at zero) are written by the
// guard, and only once per commit: the store's writer numbers its commits (1, 2, ...)
// and `${prefix}:applied:${writerId}` holds the last one applied, so a commit whose reply was lost (the
// connection dropped after Redis ran it) does not count twice when sent again, and counts never run ahead of
// an earlier commit that failed. The idempotent commands of failed commits are sent again in order, all of them,
// so they end where they would have. Every key the guard touches is in KEYS (they share the store's hash tag on
// a Redis Cluster).
import { createHash } from 'node:crypto';

export type Cmd = (string | number | Buffer)[];

/** How long Redis keeps the mark of a writer after its last commit (ms). */
export const APPLIED_TTL_MS = 7 * 24 * 3600 * 1000;

/**
 * KEYS[1] the writer's mark, KEYS[2..] messages; ARGV: sequence, force, mark TTL, then per message its count
 * change (up: HINCRBY; down: HINCRBY and DEL at zero) and its text to store ('' when stored already). `force` is 1 when every earlier commit of the writer is
 * known applied: a missing or older mark (Redis restarted without its data, a failover to a replica that lagged)
 * is then passed over instead of waiting for a commit that will never come. Replies 1 (applied) or 0 (applied
 * before: skipped); an error (PETRELGAP) when an earlier commit is missing. The mark is written first: Redis
 * refuses a script's first write under OOM or on a replica, so then nothing is written at all.
 */
export const GUARD_LUA = `
local seq = tonumber(ARGV[1])
local mark = redis.call('GET', KEYS[1])
if mark then
  mark = tonumber(mark)
  if mark >= seq then return 0 end
  if mark ~= seq - 1 and ARGV[2] ~= '1' then return redis.error_reply('PETRELGAP commit ' .. seq .. ' after ' .. mark) end
elseif ARGV[2] ~= '1' then
  return redis.error_reply('PETRELGAP commit ' .. seq .. ' with no mark')
end
redis.call('SET', KEYS[1], seq, 'PX', ARGV[3])
for i = 2, #KEYS do
  local d, m = tonumber(ARGV[2 * i]), ARGV[2 * i + 1]
  if m ~= '' then redis.call('HSET', KEYS[i], 'm', m) end
  if d ~= 0 and redis.call('HINCRBY', KEYS[i], 'refs', d) <= 0 and d < 0 then redis.call('DEL', KEYS[i]) end
end
return 1`;

export const GUARD_SHA = createHash('sha1').update(GUARD_LUA).digest('hex');

/**
 * Pseudo-commands of a commit for the guard: `['message', messageKey, text]` (store it), `['incr', messageKey,
 * n]`, `['release', messageKey, n]`.
 */
export function isGuarded(cmd: Cmd): boolean {
  return cmd[0] === 'incr' || cmd[0] === 'release' || cmd[0] === 'message';
}

/** The guard's arguments after the script: key count, KEYS, ARGV, for the messages among `cmds`. */
export function guardArgs(mark: string, seq: number, force: boolean, cmds: readonly Cmd[]): (string | number | Buffer)[] {
  // One entry per message (a commit has one change of each; summed anyway).
  const changes = new Map<string, { delta: number; text: string | number | Buffer }>();
  for (const cmd of cmds) {
    if (!isGuarded(cmd)) continue;
    const key = String(cmd[1]);
    let c = changes.get(key);
    if (c === undefined) changes.set(key, (c = { delta: 0, text: '' }));
    if (cmd[0] === 'message') c.text = cmd[2]!;
    else c.delta += cmd[0] === 'incr' ? Number(cmd[2]) : -Number(cmd[2]);
  }
  const args: (string | number | Buffer)[] = [changes.size + 1, mark, ...changes.keys(), seq, force ? 1 : 0, APPLIED_TTL_MS];
  for (const c of changes.values()) args.push(c.delta, c.text);
  return args;
}
