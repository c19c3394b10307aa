// Redis in its two high-availability forms, for the tests of the cluster on them (test/cluster/redis-ha-*.test.ts):
// a Sentinel group (a master, a replica and one sentinel) and a Redis Cluster of three masters. Each process
// runs on free loopback ports in a temp dir of the group, saves nothing to disk, is waited for, and is killed
// by close() (or when the test process exits). The single server of the other tests is test/helpers/redis.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { ClusterRedis } from '../../src/cluster/options.js';
import { REDIS_SERVER, redisCommand } from './redis.js';
import { freePort } from './servers.js';
import { delay } from './wait.js';
import { killWithTest } from './children.js';

/** The redis-cli binary (REDIS_CLI=/path chooses another), if installed: it creates the Redis Cluster. */
export const REDIS_CLI: string | undefined = (() => {
  if (process.env.REDIS_CLI !== undefined) return existsSync(process.env.REDIS_CLI) ? process.env.REDIS_CLI : undefined;
  const candidates = ['/usr/bin/redis-cli', '/usr/local/bin/redis-cli', ...(process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, 'redis-cli'))];
  return candidates.find((p) => existsSync(p));
})();

/** A reason to skip the Sentinel / Redis Cluster tests, or false. */
export const noRedisHa: string | false = REDIS_SERVER === undefined ? 'redis-server not installed' : REDIS_CLI === undefined ? 'redis-cli not installed (it creates the Redis Cluster)' : false;


/** Polls `check` (async) every 50 ms until true; throws naming `what` after `timeoutMs`. */
async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not answering yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(50);
  }
}

/** One redis-server process (a data node or a sentinel) on `port`. */
class RedisProcess {
  private process: ChildProcess | undefined;

  constructor(
    readonly port: number,
    private readonly args: string[],
  ) {}

  async start(): Promise<void> {
    if (REDIS_SERVER === undefined) throw new Error('redis-server not installed');
    const p = spawn(REDIS_SERVER, this.args, { stdio: 'ignore' });
    this.process = p;
    killWithTest(p);
    await until(async () => {
      if (p.exitCode !== null) throw new Error(`redis-server on port ${this.port} exited (${p.exitCode})`);
      return (await redisCommand(this.port, 'PING')).startsWith('+PONG');
    }, 10_000, `redis-server on port ${this.port}`).catch((err: unknown) => {
      throw p.exitCode !== null ? new Error(`redis-server on port ${this.port} exited at start (${p.exitCode}): ${this.args.join(' ')}`) : err;
    });
  }

  /** SIGKILL, and waits until it is gone. */
  async stop(): Promise<void> {
    const p = this.process;
    this.process = undefined;
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }
}

/** Arguments of a data node that keeps nothing on disk, in `dir`. */
const dataArgs = (port: number, dir: string): string[] => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'];

/** `field:value` of an INFO reply. */
const infoField = (info: string, field: string): string | undefined => new RegExp(`^${field}:(.*)\\r?$`, 'm').exec(info)?.[1]?.trim();

/**
 * A master, one replica of it and one sentinel watching them as group `name` (quorum 1, a master is down after
 * 1 s without answering). `config` is the `cluster.redis` option for it.
 */
export class SentinelGroup {
  readonly name = 'petrel-test';
  readonly dir = mkdtempSync(join(tmpdir(), 'petrel-sentinel-'));
  /** The data nodes, by port: which one is the master changes with a failover. */
  private readonly data = new Map<number, RedisProcess>();

  private sentinel!: RedisProcess;

  private constructor() {}

  get config(): ClusterRedis {
    return { sentinels: [{ host: '127.0.0.1', port: this.sentinel.port }], name: this.name };
  }

  static async start(): Promise<SentinelGroup> {
    const group = new SentinelGroup();
    const [masterPort, replicaPort, sentinelPort] = [await freePort(), await freePort(), await freePort()];
    // Sentinel rewrites its config file (what it learns of the group): one of its own, in the group's dir.
    const conf = join(group.dir, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        `port ${sentinelPort}`,
        'bind 127.0.0.1',
        `dir ${group.dir}`,
        'loglevel warning',
        `sentinel monitor ${group.name} 127.0.0.1 ${masterPort} 1`,
        `sentinel down-after-milliseconds ${group.name} 1000`,
        `sentinel failover-timeout ${group.name} 5000`,
        `sentinel parallel-syncs ${group.name} 1`,
        '',
      ].join('\n'),
    );
    group.sentinel = new RedisProcess(sentinelPort, [conf, '--sentinel']);
    try {
      const master = new RedisProcess(masterPort, dataArgs(masterPort, mkdtempSync(join(group.dir, 'm'))));
      const replica = new RedisProcess(replicaPort, [...dataArgs(replicaPort, mkdtempSync(join(group.dir, 'r'))), '--replicaof', '127.0.0.1', String(masterPort)]);
      group.data.set(masterPort, master).set(replicaPort, replica);
      await master.start();
      await replica.start();
      await until(async () => infoField(await redisCommand(replicaPort, 'INFO', 'replication'), 'master_link_status') === 'up', 10_000, 'the replica in sync');
      await group.sentinel.start();
      // A failover needs the sentinel to know the replica (it learns it from the master's INFO).
      await until(async () => (await redisCommand(sentinelPort, 'SENTINEL', 'REPLICAS', group.name)).includes(String(replicaPort)), 15_000, 'the sentinel to see the replica');
      return group;
    } catch (err) {
      await group.close();
      throw err;
    }
  }

  /** The port of the master, as the sentinel names it. */
  async masterPort(): Promise<number> {
    const reply = await redisCommand(this.sentinel.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.name);
    const port = /\$\d+\r\n(\d+)\r\n$/.exec(reply)?.[1];
    if (port === undefined) throw new Error(`sentinel: no master for ${this.name}: ${JSON.stringify(reply)}`);
    return Number(port);
  }

  /** SENTINEL FAILOVER: resolves once the sentinel names the replica as the new master (its port). */
  async promote(): Promise<number> {
    const before = await this.masterPort();
    const reply = await redisCommand(this.sentinel.port, 'SENTINEL', 'FAILOVER', this.name);
    if (!reply.startsWith('+OK')) throw new Error(`SENTINEL FAILOVER: ${reply.trim()}`);
    let after = before;
    await until(async () => (after = await this.masterPort()) !== before, 15_000, 'the sentinel to name a new master');
    await until(async () => infoField(await redisCommand(after, 'INFO', 'replication'), 'role') === 'master', 10_000, 'the new master to be a master');
    this.formerMaster = before;
    return after;
  }

  private formerMaster: number | undefined;

  /** After promote(): resolves once the old master is a replica of the new one (the failover is over). */
  async settled(): Promise<void> {
    const master = await this.masterPort();
    if (this.formerMaster === undefined) return;
    await until(async () => infoField(await redisCommand(this.formerMaster!, 'INFO', 'replication'), 'master_port') === String(master), 20_000, 'the old master to follow the new one');
  }

  /** The names of the connections to the data node on `port` (CLIENT SETNAME / ioredis connectionName). */
  async clientNames(port: number): Promise<string[]> {
    return [...(await redisCommand(port, 'CLIENT', 'LIST')).matchAll(/ name=(\S+)/g)].map((m) => m[1]!);
  }

  /** Whether `key` is in the group's data (on the master). */
  async keyExists(key: string): Promise<boolean> {
    return (await redisCommand(await this.masterPort(), 'EXISTS', key)).startsWith(':1');
  }

  async close(): Promise<void> {
    await this.sentinel?.stop();
    await Promise.all([...this.data.values()].map((p) => p.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Three masters of one Redis Cluster (no replicas), every slot served. `config` is the `cluster.redis` option. */
export class RedisClusterGroup {
  readonly dir = mkdtempSync(join(tmpdir(), 'petrel-rediscluster-'));
  private readonly nodes: RedisProcess[] = [];

  get ports(): number[] {
    return this.nodes.map((n) => n.port);
  }

  get config(): ClusterRedis {
    return { nodes: this.ports.map((port) => ({ host: '127.0.0.1', port })) };
  }

  static async start(size = 3): Promise<RedisClusterGroup> {
    if (REDIS_CLI === undefined) throw new Error('redis-cli not installed');
    const group = new RedisClusterGroup();
    try {
      for (let i = 0; i < size; i++) {
        // The cluster bus gets a free port of its own (cluster-port, Redis >= 7), not port + 10000.
        const [port, busPort] = [await freePort(), await freePort()];
        const dir = mkdtempSync(join(group.dir, `n${i}-`));
        const node = new RedisProcess(port, [...dataArgs(port, dir), '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-port', String(busPort), '--cluster-node-timeout', '2000']);
        group.nodes.push(node);
        await node.start();
      }
      await runCli(['--cluster', 'create', ...group.ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
      await group.ready();
      return group;
    } catch (err) {
      await group.close();
      throw err;
    }
  }

  /** Whether `key` is in the cluster (the node serving its slot says :1, the others -MOVED). */
  async keyExists(key: string): Promise<boolean> {
    const replies = await Promise.all(this.ports.map((p) => redisCommand(p, 'EXISTS', key)));
    return replies.some((r) => r.startsWith(':1'));
  }

  /** Every node killed and started again (same ports, same cluster config, no data): the whole cluster restarted empty. */
  async restart(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
    for (const n of this.nodes) await n.start();
    await this.ready();
  }

  private async ready(): Promise<void> {
    for (const port of this.ports) {
      await until(async () => infoField(await redisCommand(port, 'CLUSTER', 'INFO'), 'cluster_state') === 'ok', 15_000, `cluster_state:ok on ${port}`);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function runCli(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(REDIS_CLI!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`redis-cli ${args.join(' ')} exited ${code}: ${out.slice(-500)}`))));
  });
}
