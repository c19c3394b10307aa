// compact() (src/cluster/redis-sessions-compact.ts): random lists of session commands applied one by one and as
// their net effect leave a real Redis in the same state, from the same start; the stored messages' pseudo-commands
// (message, incr, release) too, and a message stored and let go within the list is not written at all.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { Redis } from 'ioredis';
import type { Cmd } from '../../../src/cluster/redis-sessions-commit.js';
import { compact } from '../../../src/cluster/redis-sessions-compact.js';
import { RedisServer, noRedis } from '../../helpers/redis.js';
import { seededRandom } from '../../helpers/seeded.js';
import { describeOrSkip } from '../../helpers/skip.js';

const RELEASE = "if redis.call('HINCRBY', KEYS[1], 'refs', -tonumber(ARGV[1])) <= 0 then redis.call('DEL', KEYS[1]) end return 0";

/** Runs `cmds` (keys written `P:...`) under `prefix`, one by one, the pseudo-commands as the guard makes them. */
async function apply(redis: Redis, prefix: string, cmds: readonly Cmd[]): Promise<void> {
  for (const cmd of cmds) {
    const [name, ...rest] = cmd.map((x) => (typeof x === 'string' && x.startsWith('P:') ? `${prefix}:${x.slice(2)}` : x));
    if (name === 'message') await redis.hset(String(rest[0]), 'm', rest[1]!);
    else if (name === 'incr') await redis.hincrby(String(rest[0]), 'refs', Number(rest[1]));
    else if (name === 'release') await redis.eval(RELEASE, 1, String(rest[0]), Number(rest[1]));
    else await redis.call(String(name), ...(rest as (string | number)[]));
  }
}

async function dump(redis: Redis, prefix: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const key of (await redis.keys(`${prefix}:*`)).sort()) {
    const type = await redis.type(key);
    out[key.slice(prefix.length)] = type === 'hash' ? await redis.hgetall(key) : type === 'set' ? (await redis.smembers(key)).sort() : await redis.get(key);
  }
  return out;
}

describeOrSkip('cluster sessions: compaction of kept commands', noRedis, () => {
  let server: RedisServer;
  let redis: Redis;
  before(async () => {
    server = await RedisServer.start();
    redis = new Redis(server.url);
  });
  after(async () => {
    redis?.disconnect();
    await server?.close();
  });

  it('random hash and set commands: the net effect leaves the same state, in far fewer commands', async () => {
    for (let round = 0; round < 20; round++) {
      const random = seededRandom(100 + round);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
      const hashes = ['P:h1', 'P:h2', 'P:h3'];
      // The start, the same under both prefixes.
      const start: Cmd[] = [['hset', 'P:h1', 'f0', 'a', 'f1', 'b'], ['hset', 'P:h2', 'f2', 'c'], ['sadd', 'P:s1', '1', '2']];
      // Which fields exist as the list goes (a creating HSET only for a field that does not).
      const exists = new Map<string, Set<string>>([['P:h1', new Set(['f0', 'f1'])], ['P:h2', new Set(['f2'])], ['P:h3', new Set()]]);
      const creating = new WeakSet<Cmd>();
      const cmds: Cmd[] = [];
      for (let i = 0; i < 120; i++) {
        const r = random();
        const key = pick(hashes);
        const f = `f${Math.floor(random() * 6)}`;
        if (r < 0.45) {
          const cmd: Cmd = ['hset', key, f, `v${i}`];
          if (!exists.get(key)!.has(f) && random() < 0.7) creating.add(cmd);
          exists.get(key)!.add(f);
          cmds.push(cmd);
        } else if (r < 0.8) {
          cmds.push(['hdel', key, f, `f${Math.floor(random() * 6)}`]);
          exists.get(key)!.delete(f);
        } else if (r < 0.81 && round % 2 === 0) {
          // Rare (and in half the rounds only): a delete makes what came before moot.
          cmds.push(['del', key]);
          exists.set(key, new Set());
        } else if (r < 0.98 || round % 2 === 1) cmds.push([random() < 0.5 ? 'sadd' : 'srem', 'P:s1', String(Math.floor(random() * 4))]);
        else cmds.push(['del', 'P:s1']);
      }
      await apply(redis, `a${round}`, start);
      await apply(redis, `b${round}`, start);
      await apply(redis, `a${round}`, cmds);
      const compacted = compact(cmds, creating);
      await apply(redis, `b${round}`, compacted);
      assert.deepEqual(await dump(redis, `b${round}`), await dump(redis, `a${round}`), `round ${round}`);
      assert.ok(compacted.length <= 12, `${cmds.length} commands as ${compacted.length}`);
    }
  });

  it('stored messages: counts summed, a message stored and let go within the list not written at all', async () => {
    const start: Cmd[] = [['message', 'P:msg:old', 'OLD'], ['incr', 'P:msg:old', 2], ['message', 'P:msg:kept', 'KEPT'], ['incr', 'P:msg:kept', 1]];
    const cmds: Cmd[] = [
      ['release', 'P:msg:old', 1],
      ['message', 'P:msg:new', 'NEW'],
      ['incr', 'P:msg:new', 2],
      ['message', 'P:msg:gone', 'GONE'],
      ['incr', 'P:msg:gone', 1],
      ['incr', 'P:msg:kept', 1],
      ['release', 'P:msg:new', 1],
      ['release', 'P:msg:old', 1],
      ['release', 'P:msg:gone', 1],
    ];
    await apply(redis, 'ma', start);
    await apply(redis, 'mb', start);
    await apply(redis, 'ma', cmds);
    const compacted = compact(cmds, new WeakSet());
    await apply(redis, 'mb', compacted);
    assert.deepEqual(await dump(redis, 'mb'), await dump(redis, 'ma'));
    assert.deepEqual(await dump(redis, 'mb'), { ':msg:kept': { m: 'KEPT', refs: '2' }, ':msg:new': { m: 'NEW', refs: '1' } });
    assert.ok(!compacted.some((c) => c[1] === 'P:msg:gone'), 'never written');
  });
});
