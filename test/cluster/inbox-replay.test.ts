// A node killed with SIGKILL loses no message whose acknowledgement reached its publisher: what was in its
// inbox unread, or read but not yet committed to Redis with its sessions, is replayed by the survivor that
// adopts its sessions (src/cluster/adoption.ts, inbox-replay.ts), or by the node itself when it restarts under
// its name. The node runs as a child process (`petrel broker -c config`) so it can be stopped and killed.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import mqtt from 'mqtt';
import { noRedis, redisCommand, RedisServer } from '../helpers/redis.js';
import { describeOrSkip } from '../helpers/skip.js';
import { delay, eventually } from '../helpers/wait.js';
import { childNode, offlineSession } from './child-node.js';
import { inbox, startNode, startNodes } from './nodes.js';

let prefixes = 0;

async function xlen(redis: RedisServer, key: string): Promise<number> {
  return Number(/^:(\d+)/.exec(await redisCommand(redis.port, 'XLEN', key))![1]);
}

async function exists(redis: RedisServer, key: string): Promise<boolean> {
  return (await redisCommand(redis.port, 'EXISTS', key)) === ':1\r\n';
}

const v5 = { protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 600 } };
const v311 = { protocolVersion: 4 as const, clean: false };

describeOrSkip('cluster: a killed node\'s inbox is replayed', noRedis, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await redis.close();
  });

  it('a live node commits its read position (with the queued messages, or on its own when nothing was queued) and trims its inbox at it', async (t) => {
    const [a, b] = await startNodes(t, redis, ['a', 'b']);
    const key = `${a!.prefix}:inbox:a`;
    const position = async () => /^\$\d+\r\n(.*)\r\n$/.exec(await redisCommand(redis.port, 'GET', `${a!.prefix}:inboxpos:a`))?.[1];
    const lastEntry = async () => /(\d+-\d+)/.exec(await redisCommand(redis.port, 'XREVRANGE', key, '+', '-', 'COUNT', '1'))?.[1];
    const waitCommitted = async (what: string) => {
      for (let i = 0; ; i++) {
        const [pos, last, len] = [await position(), await lastEntry(), await xlen(redis, key)];
        if (pos !== undefined && pos === last && len <= 1) return;
        assert.ok(i < 80, `${what}: position ${pos}, last entry ${last}, ${len} entries`);
        await delay(50);
      }
    };
    await offlineSession(a!.port, 'kept', 'kept/#', v311);
    const live = await a!.mqtt('live');
    await live.subscribeAsync('live/#', { qos: 1 });
    await eventually(() => b!.view().remoteRoutes === 2, 5000, 'the routes of A on B');
    const pub = await b!.mqtt('publisher');
    for (let i = 0; i < 20; i++) await pub.publishAsync('kept/x', `k${i}`, { qos: 1 });
    await waitCommitted('queued for the offline session');
    for (let i = 0; i < 20; i++) await pub.publishAsync('live/x', `l${i}`, { qos: 1 });
    await waitCommitted('delivered to a clean session only (no session change to carry it)');
  });

  it('messages acknowledged while the node was stopped (unread in its inbox) reach the session on the survivor: every one, once, in order', async (t) => {
    const prefix = `replay${process.pid}x${prefixes++}`;
    const cluster = { prefix, heartbeatTimeout: 2, heartbeatInterval: 100 };
    const a = await childNode(t, redis, 'a', cluster);
    const b = await startNode(t, redis, 'b', cluster);
    await eventually(() => b.view().nodes.length === 2, 5000, 'B to see A');
    await offlineSession(a.port, 'sleeper', 'r/#', v5);
    await eventually(() => b.view().remoteRoutes === 1, 5000, 'the route of A on B');
    // A stops reading its inbox; its heartbeat and routes stay until they expire.
    a.child.kill('SIGSTOP');
    const pub = await b.mqtt('publisher', { protocolVersion: 5 });
    const sent = Array.from({ length: 12 }, (_, i) => `m${i}`);
    for (const m of sent) await pub.publishAsync(`r/${Number(m.slice(1)) % 3}`, m, { qos: 1 });
    assert.equal(b.view().nodes.length, 2, 'published (PUBACK received) before A was seen down: they went to its inbox');
    assert.ok((await xlen(redis, `${prefix}:inbox:a`)) > 0, 'unread entries in A\'s inbox');
    await a.kill('SIGKILL');
    await eventually(() => b.view().nodes.length === 1, 5000, 'A seen down');
    await eventually(() => b.broker.inspect.hasSession('sleeper'), 5000, 'B to adopt the session');
    // The adopter deletes the inbox and the position once the replayed messages are committed.
    for (let i = 0; await exists(redis, `${prefix}:inbox:a`); i++) {
      assert.ok(i < 200, 'A\'s inbox deleted after the replay (kept MOVE_READ_MS after the death)');
      await delay(50);
    }
    assert.equal(await exists(redis, `${prefix}:inboxpos:a`), false, 'the position deleted with it');
    assert.equal(b.broker.inspect.session('sleeper')?.queued, 12, 'queued on B');
    const { sessionPresent, got } = await b.session('sleeper', v5);
    assert.equal(sessionPresent, true);
    await eventually(() => got.length >= 12, 5000, 'the twelve messages on B');
    await delay(200);
    assert.deepEqual(
      got.map((p) => p.payload.toString()),
      sent,
    );
    assert.ok(got.every((p) => p.qos === 1));
  });

  it('a burst acknowledged just before the kill (A reading and committing as it dies): none of them missing on the survivor, none twice, in order [MQTT-4.6.0-6]', async (t) => {
    const prefix = `replay${process.pid}x${prefixes++}`;
    const cluster = { prefix, heartbeatTimeout: 1, heartbeatInterval: 100 };
    const a = await childNode(t, redis, 'a', cluster);
    const b = await startNode(t, redis, 'b', cluster);
    await eventually(() => b.view().nodes.length === 2, 5000, 'B to see A');
    await offlineSession(a.port, 'burst', 'burst/#', v311);
    await eventually(() => b.view().remoteRoutes === 1, 5000, 'the route of A on B');
    const pub = await b.mqtt('publisher');
    const n = 400;
    // Many in flight at once: A reads them in batches while it is killed.
    await Promise.all(Array.from({ length: n }, (_, i) => pub.publishAsync('burst/x', `b${i}`, { qos: 1 })));
    await a.kill('SIGKILL');
    await eventually(() => b.broker.inspect.hasSession('burst'), 5000, 'B to adopt the session');
    for (let i = 0; await exists(redis, `${prefix}:inbox:a`); i++) {
      assert.ok(i < 200, 'A\'s inbox deleted after the replay (kept MOVE_READ_MS after the death)');
      await delay(50);
    }
    const { got } = await b.session('burst', v311);
    await eventually(() => got.length >= n, 8000, `the ${n} messages on B (${got.length} so far)`);
    await delay(200);
    const payloads = got.map((p) => p.payload.toString());
    const missing = Array.from({ length: n }, (_, i) => `b${i}`).filter((m) => !payloads.includes(m));
    assert.deepEqual(missing, [], 'no acknowledged message missing');
    assert.equal(new Set(payloads).size, payloads.length, 'none twice');
    assert.deepEqual(payloads, Array.from({ length: n }, (_, i) => `b${i}`), 'in order');
  });

  it('a node restarted under its name replays its own inbox for the sessions it reads back, before newer messages', async (t) => {
    const prefix = `replay${process.pid}x${prefixes++}`;
    // Long enough that B does not take A for dead during its restart: nobody adopts, A comes back itself.
    const cluster = { prefix, heartbeatTimeout: 10, heartbeatInterval: 100 };
    const a1 = await childNode(t, redis, 'a', cluster);
    const b = await startNode(t, redis, 'b', cluster);
    await eventually(() => b.view().nodes.length === 2, 5000, 'B to see A');
    await offlineSession(a1.port, 'phoenix', 'p/#', v5);
    await eventually(() => b.view().remoteRoutes === 1, 5000, 'the route of A on B');
    a1.child.kill('SIGSTOP');
    const pub = await b.mqtt('publisher');
    for (let i = 0; i < 5; i++) await pub.publishAsync('p/x', `before${i}`, { qos: 1 });
    await a1.kill('SIGKILL');
    const a2 = await childNode(t, redis, 'a', cluster);
    const downs: string[] = [];
    b.broker.clusterMembership!.on('node-down', (name) => downs.push(name));
    const client = mqtt.connect(`mqtt://127.0.0.1:${a2.port}`, { clientId: 'phoenix', reconnectPeriod: 0, ...v5 });
    t.after(() => client.end(true));
    const got = inbox(client);
    const connack = await new Promise<{ sessionPresent: boolean }>((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    });
    assert.equal(connack.sessionPresent, true, 'read back from Redis');
    await eventually(() => got.length >= 5, 5000, 'the five messages A had not read');
    await pub.publishAsync('p/x', 'after', { qos: 1 });
    await eventually(() => got.length >= 6, 5000, 'a message published after the restart');
    await delay(200);
    assert.deepEqual(
      got.map((p) => p.payload.toString()),
      ['before0', 'before1', 'before2', 'before3', 'before4', 'after'],
    );
    assert.deepEqual(downs, [], 'A was never taken for dead: it replayed its inbox itself');
  });

  it('a message asked of the dead node for a shared group goes to the group\'s member it held, now on the survivor', async (t) => {
    const prefix = `replay${process.pid}x${prefixes++}`;
    const cluster = { prefix, heartbeatTimeout: 2, heartbeatInterval: 100 };
    const a = await childNode(t, redis, 'a', cluster);
    const b = await startNode(t, redis, 'b', cluster);
    await eventually(() => b.view().nodes.length === 2, 5000, 'B to see A');
    await offlineSession(a.port, 'worker', '$share/workers/jobs/#', v5);
    await eventually(() => b.view().remoteRoutes === 1, 5000, 'the group\'s route of A on B');
    a.child.kill('SIGSTOP');
    const pub = await b.mqtt('publisher', { protocolVersion: 5 });
    for (let i = 0; i < 3; i++) await pub.publishAsync('jobs/x', `job${i}`, { qos: 1 });
    assert.equal(b.view().nodes.length, 2, 'published before A was seen down');
    await a.kill('SIGKILL');
    await eventually(() => b.broker.inspect.hasSession('worker'), 5000, 'B to adopt the member');
    for (let i = 0; await exists(redis, `${prefix}:inbox:a`); i++) {
      assert.ok(i < 200, 'A\'s inbox deleted after the replay (kept MOVE_READ_MS after the death)');
      await delay(50);
    }
    const { got } = await b.session('worker', v5);
    await eventually(() => got.length >= 3, 5000, 'the three jobs');
    await delay(200);
    assert.deepEqual(
      got.map((p) => p.payload.toString()),
      ['job0', 'job1', 'job2'],
    );
  });
});
