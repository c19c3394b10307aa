// The cost of one commit of the Redis session store (src/cluster/redis-sessions-writer.ts), alone: a local
// redis-server of its own, a store on it, and turns of typical changes (a message queued for 10 offline
// sessions, an older one taken from each queue into flight, one acknowledged). Two shapes:
//   serial:     one turn, wait for its commit, the next (ms per commit: the latency a PUBACK waits for)
//   pipelined:  turns back to back, commits in flight together (commits/s and records/s the writer sustains)
// Usage: npx tsc -p . && node dist/bench/redis-sessions-commit.js [turns]
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Message } from '../src/broker/message.js';
import type { QueuedMessage } from '../src/broker/store/types.js';
import { RedisSessionStore, SESSION_CLIENT_OPTIONS } from '../src/cluster/redis-sessions.js';

const turns = Number(process.argv[2] ?? 4000);
const SESSIONS = 10;

async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

const committed = (store: RedisSessionStore): Promise<void> => new Promise((resolve, reject) => store.afterCommit(resolve, reject));

async function main(): Promise<void> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'petrel-bench-redis-'));
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' });
  try {
    for (let i = 0; ; i++) {
      const up = await new Promise<boolean>((resolve) => net.connect({ port, host: '127.0.0.1' }).once('connect', function (this: net.Socket) { this.destroy(); resolve(true); }).once('error', () => resolve(false)));
      if (up) break;
      if (i > 100) throw new Error('redis-server did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
    const redis = new Redis({ port, host: '127.0.0.1', ...SESSION_CLIENT_OPTIONS, lazyConnect: true });
    await redis.connect();
    const admin = new Redis({ port, host: '127.0.0.1' });
    let run = 0;
    const shape = async (name: string, pipelined: boolean): Promise<void> => {
      const store = await RedisSessionStore.open(redis, { prefix: `b${run++}` });
      const journals = Array.from({ length: SESSIONS }, (_, i) => store.journal(`s${i}`));
      const queues: QueuedMessage[][] = journals.map(() => []);
      let packetId = 0;
      for (const j of journals) j.expiry(3600, Date.now() + 3_600_000);
      await committed(store);
      const before = { ...store.writer.stats };
      const cpu = async (): Promise<number> => {
        const info = await admin.info('cpu');
        return Number(/used_cpu_user:([\d.]+)/.exec(info)![1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)![1]);
      };
      const cpuBefore = await cpu();
      const payload = Buffer.alloc(100, 'x');
      const start = process.hrtime.bigint();
      const waits: Promise<void>[] = [];
      for (let t = 0; t < turns; t++) {
        const message: Message = { topic: `t/${t}`, payload, qos: 1, retain: false, properties: undefined, expiresAt: undefined, from: 'p' };
        journals.forEach((j, i) => {
          const item: QueuedMessage = { message, qos: 1, retain: false, queuedAt: t };
          j.queued(item);
          queues[i]!.push(item);
          if (queues[i]!.length > 20) {
            const old = queues[i]!.shift()!;
            j.dequeued(old);
            const id = (packetId++ % 60000) + 1;
            j.inflight({ packetId: id, message: old.message, qos: 1, state: 'publish', retain: false, shareKey: undefined, order: id });
            j.released(id);
          }
        });
        if (pipelined) {
          // The end of a turn: the writer's flush runs on setImmediate.
          waits.push(committed(store));
          if (t % 50 === 49) await Promise.all(waits.splice(0));
          else await new Promise((r) => setImmediate(r));
        } else await committed(store);
      }
      await Promise.all(waits);
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      const s = store.writer.stats;
      const commits = s.commits - before.commits;
      const usec = ((await cpu()) - cpuBefore) * 1e6;
      console.log(
        `${name.padEnd(10)} ${commits} commits in ${ms.toFixed(0)} ms: ${((commits / ms) * 1000).toFixed(0)} commits/s, ${(ms / commits).toFixed(3)} ms/commit, ` +
          `${(((turns * SESSIONS) / ms) * 1000).toFixed(0)} records/s, ${((s.commands - before.commands) / commits).toFixed(1)} commands/commit, Redis CPU ${(usec / commits).toFixed(0)} us/commit`,
      );
    };
    for (let round = 0; round < 2; round++) {
      await shape('serial', false);
      await shape('pipelined', true);
    }
    admin.disconnect();
    redis.disconnect();
  } finally {
    server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
