// `npm run bench:cluster`: Petrel's cluster side by side with Aedes' cluster, in the same run, on the same Redis.
// Per scenario: two Petrel nodes, then two Aedes nodes (`mqemitter-redis` + `aedes-persistence-redis`,
// bench/aedes-cluster-node.ts), each on a freshly flushed Redis, loaded by mqttload (../shared/bench) with the
// publishers on node 1 and the subscribers on node 2, so every message crosses between nodes; then one Petrel
// node alone, for the cost of clustering. Brokers and Redis pinned to CPU 0, the generator to CPU 1, MQTT 3.1.1,
// 64 B payloads (as ../shared/bench/README.md measured Aedes' cluster). Counts Redis commands and bytes per
// delivered message (INFO stats) and the messages lost (sent vs received, as mqttload reports them).
// Then a "Redis blip" phase: pairs at QoS 1 at a fixed rate while Redis is paused for ~1 s (CLIENT PAUSE), while
// every Redis client connection is dropped (CLIENT KILL), and while Redis is restarted (down ~1 s, its data
// lost: no persistence), and while the subscribers' node alone is cut from Redis for 1 s (a TCP relay between
// node 2 and Redis resets its connections and refuses new ones): the messages each broker loses.
//
// Environment: DURATION (s per scenario, default 5), SCENARIOS (comma list of pairs-q1, pairs-q0, fanin-q1,
// fanin-q1-10k), BROKERS (comma list of petrel, aedes, alone; default all three), BLIP (comma list of pause,
// drop, restart, partition, or "off"; default all four), BLIP_RATE (msg/s in the blip phase, default 1000: below Aedes' limit on a loaded machine), BENCH_BUILD (where
// mqttload is built, default /tmp/mqttload-build), SHARED_BENCH (default ../shared/bench from the project root).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');
const shared = process.env.SHARED_BENCH ?? resolve(root, '../shared/bench');
const build = process.env.BENCH_BUILD ?? '/tmp/mqttload-build';
const duration = Number(process.env.DURATION ?? 5);
const scenarios = list('SCENARIOS', 'pairs-q1,pairs-q0,fanin-q1,fanin-q1-10k', ['pairs-q1', 'pairs-q0', 'fanin-q1', 'fanin-q1-10k']);
const setups = list('BROKERS', 'petrel,aedes,alone', ['petrel', 'aedes', 'alone']) as Setup[];
const blips = process.env.BLIP === 'off' ? [] : (list('BLIP', 'pause,drop,restart,partition', ['pause', 'drop', 'restart', 'partition']) as Blip[]);
const blipRate = Number(process.env.BLIP_RATE ?? 1000);
const hasTaskset = existsSync('/usr/bin/taskset');

type Setup = 'petrel' | 'aedes' | 'alone';
type Blip = 'pause' | 'drop' | 'restart' | 'partition';
const SETUP_LABEL: Record<Setup, string> = { petrel: 'Petrel, 2 nodes', aedes: 'Aedes, 2 nodes', alone: 'Petrel, 1 node alone' };

function list(name: string, fallback: string, allowed: string[]): string[] {
  const items = (process.env[name] ?? fallback).split(',').map((s) => s.trim()).filter(Boolean);
  const bad = items.filter((s) => !allowed.includes(s));
  if (bad.length > 0) {
    console.error(`bench:cluster: ${name} has unknown ${bad.join(', ')} (allowed: ${allowed.join(', ')})`);
    process.exit(2);
  }
  return items;
}

const children = new Set<ChildProcess>();
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));

function pinned(cpu: number, cmd: string, args: string[]): [string, string[]] {
  return hasTaskset ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args];
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => res(port));
    });
  });
}

async function waitPort(port: number, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => (s.destroy(), res(true)));
      s.once('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await sleep(50);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function start(cmd: string, args: string[]): ChildProcess {
  const [c, a] = pinned(0, cmd, args);
  const child = spawn(c, a, { stdio: ['ignore', 'ignore', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

function redisCli(port: number, ...args: string[]): string {
  return execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' });
}

function redisStats(port: number): { commands: number; bytes: number } {
  const text = redisCli(port, 'INFO', 'stats');
  const get = (k: string) => Number(new RegExp(`${k}:(\\d+)`).exec(text)?.[1] ?? NaN);
  return { commands: get('total_commands_processed'), bytes: get('total_net_input_bytes') + get('total_net_output_bytes') };
}

interface Result {
  recv_rate: number;
  lat_p50_us: number;
  lat_p99_us: number;
  sent_total: number;
  expected: number;
  received: number;
  lost: number;
  dups: number;
  unacked: number;
  disconnects: number;
  ack_errors: number;
  ok: boolean;
}

/** Runs mqttload pinned to CPU 1; resolves with its JSON line (also when it reports a failed run: loss is data). */
function mqttload(scenario: string, pubPort: number, subPort: number, pid: number | undefined, extra: string[] = []): Promise<Result> {
  const [kind, q, rate] = scenario.split('-') as [string, string, string | undefined];
  const args = [kind, '--port', String(pubPort), '--sub-port', String(subPort), '--qos', q.slice(1), '--clients', kind === 'pairs' ? '100' : '10', '--duration', String(duration), '--quiet', ...extra];
  if (rate !== undefined) args.push('--rate', String(Number(rate.replace('k', '')) * 1000));
  if (pid !== undefined) args.push('--broker-pid', String(pid));
  const [c, a] = pinned(1, join(build, 'mqttload'), args);
  return new Promise((res, rej) => {
    // bounded: warmup 1 s + duration + drain (at most 10 s) + connecting; killed if it ever takes longer
    const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], timeout: (duration + 60) * 1000, killSignal: 'SIGKILL' });
    children.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => {
      children.delete(child);
      const line = out.trim().split('\n').pop() ?? '';
      if (line.startsWith('{')) res(JSON.parse(line) as Result);
      else rej(new Error(`mqttload ${args.join(' ')} failed (exit ${code}): ${err.trim().split('\n').slice(-3).join(' / ')}`));
    });
  });
}

const BLIP_LABEL: Record<Blip, string> = {
  pause: 'Redis paused 1 s (CLIENT PAUSE 1000 ALL)',
  drop: 'Redis connections dropped (CLIENT KILL)',
  restart: 'Redis restarted, down 1 s, data lost',
  partition: 'subscribers\' node cut from Redis for 1 s',
};

/** A TCP relay between one node and Redis that can cut the node off (connections reset, new ones refused). */
class RedisLink {
  private readonly pairs = new Set<net.Socket>();
  private cutUntil = 0;
  private readonly server = net.createServer((client) => {
    if (Date.now() < this.cutUntil) return void client.destroy();
    const upstream = net.connect({ port: this.redisPort, host: '127.0.0.1' });
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      this.pairs.add(a);
      a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => (this.pairs.delete(a), b.destroy()));
    }
  });
  constructor(private readonly redisPort: number) {}

  listen(): Promise<number> {
    return new Promise((res) => this.server.listen(0, '127.0.0.1', () => res((this.server.address() as net.AddressInfo).port)));
  }

  cut(ms: number): void {
    this.cutUntil = Date.now() + ms;
    for (const s of this.pairs) s.destroy();
  }

  close(): void {
    for (const s of this.pairs) s.destroy();
    this.server.close();
  }
}

class Bench {
  private readonly bin = join(root, 'bin/petrel.js');
  private readonly aedesNode = join(root, 'dist/bench/aedes-cluster-node.js');
  private readonly dir = mkdtempSync(join(tmpdir(), 'petrel-bench-cluster-'));
  private redis: ChildProcess | undefined;
  constructor(private readonly redisPort: number) {
    // also when the run dies (e.g. EPIPE on a closed pipe): the children are killed on 'exit' above
    process.on('exit', () => rmSync(this.dir, { recursive: true, force: true }));
  }

  async startRedis(): Promise<void> {
    this.redis = start('redis-server', ['--port', String(this.redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, '--loglevel', 'warning']);
    await waitPort(this.redisPort);
  }

  async close(): Promise<void> {
    if (this.redis) await stop(this.redis);
    rmSync(this.dir, { recursive: true, force: true });
  }

  private petrel(name: string, port: number, cluster: boolean, redisPort = this.redisPort): ChildProcess {
    const clusterArgs = cluster ? ['--cluster', `redis://127.0.0.1:${redisPort}`, '--node-name', name] : [];
    return start(process.execPath, [this.bin, 'broker', '--port', String(port), '--host', '127.0.0.1', '--storage', 'memory', '--log-level', 'warn', ...clusterArgs]);
  }

  private aedes(name: string, port: number, redisPort = this.redisPort): ChildProcess {
    return start(process.execPath, [this.aedesNode, '--port', String(port), '--redis-port', String(redisPort), '--id', name]);
  }

  /** Starts the setup's nodes on a flushed Redis (node 2 through `link` if given); returns [publisher port, subscriber port, nodes]. */
  async up(setup: Setup, link?: number): Promise<[number, number, ChildProcess[]]> {
    redisCli(this.redisPort, 'FLUSHALL');
    const [p1, p2] = [await freePort(), await freePort()];
    const nodes =
      setup === 'alone' ? [this.petrel('alone', p1, false)]
      : setup === 'petrel' ? [this.petrel('bench1', p1, true), this.petrel('bench2', p2, true, link)]
      : [this.aedes('aedes1', p1), this.aedes('aedes2', p2, link)];
    await Promise.all(setup === 'alone' ? [waitPort(p1)] : [waitPort(p1), waitPort(p2)]);
    await sleep(1000); // cluster membership / Redis subscriptions settle
    return [p1, setup === 'alone' ? p1 : p2, nodes];
  }

  async run(setup: Setup, scenario: string): Promise<Result & { commands: number; bytes: number }> {
    const [pub, sub, nodes] = await this.up(setup);
    try {
      const before = redisStats(this.redisPort);
      const r = await mqttload(scenario, pub, sub, nodes[0]!.pid);
      const after = redisStats(this.redisPort);
      return { ...r, commands: after.commands - before.commands, bytes: after.bytes - before.bytes };
    } finally {
      await Promise.all(nodes.map(stop));
    }
  }

  /** pairs at QoS 1 at a fixed rate; ~1 s into the measured window Redis is paused or drops every client. */
  async blip(setup: Setup, kind: Blip): Promise<Result> {
    const link = new RedisLink(this.redisPort);
    const [pub, sub, nodes] = await this.up(setup, await link.listen());
    try {
      const run = mqttload(`pairs-q1`, pub, sub, nodes[0]!.pid, ['--rate', String(blipRate)]);
      await sleep(2500); // connect + 1 s warmup + ~1 s measured
      if (kind === 'pause') redisCli(this.redisPort, 'CLIENT', 'PAUSE', '1000', 'ALL');
      else if (kind === 'drop') for (const type of ['pubsub', 'normal']) redisCli(this.redisPort, 'CLIENT', 'KILL', 'TYPE', type);
      else if (kind === 'partition') link.cut(1000);
      else {
        await stop(this.redis!);
        await sleep(1000);
        await this.startRedis();
      }
      return await run;
    } finally {
      await Promise.all(nodes.map(stop));
      link.close();
    }
  }
}

const k = (n: number) => `${(n / 1000).toFixed(1)}k`;
const ms = (us: number) => (us >= 1000 ? `${(us / 1000).toFixed(1)} ms` : `${Math.round(us)} µs`);
const lossText = (r: Result) => `${r.lost}${r.ok ? '' : ' (FAILED)'}`;

async function main(): Promise<void> {
  if (!existsSync(join(build, 'mqttload'))) execFileSync('make', ['-s', '-C', shared, `BIN=${build}`, `${build}/mqttload`], { stdio: 'inherit' });
  if (setups.includes('aedes') && !existsSync(join(root, 'node_modules/mqemitter-redis'))) throw new Error('mqemitter-redis is not installed (npm ci: it is a devDependency)');
  const bench = new Bench(await freePort());
  await bench.startRedis();
  const rows: string[] = [];
  const blipRows: string[] = [];
  try {
    for (const s of scenarios) {
      const got: Partial<Record<Setup, Result>> = {};
      for (const setup of setups) {
        const r = await bench.run(setup, s);
        got[setup] = r;
        const perMsg = (x: number) => (setup === 'alone' ? '-' : r.received > 0 ? (x / r.received).toFixed(2) : '-');
        rows.push(`| ${s} | ${SETUP_LABEL[setup]} | ${k(r.recv_rate)} | ${ms(r.lat_p50_us)} / ${ms(r.lat_p99_us)} | ${lossText(r)} | ${perMsg(r.commands)} | ${perMsg(r.bytes)} |  |`);
        console.error(rows.at(-1));
      }
      const [p, a] = [got.petrel, got.aedes];
      if (p && a) {
        const ratio = a.recv_rate > 0 ? `${(p.recv_rate / a.recv_rate).toFixed(1)}x` : '-';
        const row = rows.findIndex((r) => r.startsWith(`| ${s} | ${SETUP_LABEL.petrel} |`));
        rows[row] = rows[row]!.replace(/\|  \|$/, `| ${ratio} (${k(p.recv_rate)} / Aedes ${k(a.recv_rate)}) |`);
      }
    }
    for (const kind of blips) {
      for (const setup of setups.filter((s): s is Setup => s !== 'alone')) {
        const r = await bench.blip(setup, kind);
        blipRows.push(`| ${BLIP_LABEL[kind]} | ${SETUP_LABEL[setup]} | ${r.sent_total} | ${r.received} | ${lossText(r)} | ${r.unacked} | ${r.dups} | ${r.disconnects} | ${ms(r.lat_p99_us)} |`);
        console.error(blipRows.at(-1));
      }
    }
  } finally {
    await bench.close();
  }
  if (rows.length > 0) console.log(`\nmqttload, ${duration} s per scenario, 64 B, MQTT 3.1.1, brokers and Redis on CPU 0, generator on CPU 1; pairs: 100 pairs, fanin: 10 publishers -> 1 subscriber; publishers on node 1, subscribers on node 2; Redis flushed before each setup`);
  if (rows.length > 0) console.log('| scenario | setup | msg/s | latency p50 / p99 | lost | Redis commands / msg | Redis bytes / msg | Petrel / Aedes |\n|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  if (blipRows.length > 0) {
    console.log(`\nRedis blip: pairs-q1 (100 pairs) at ${blipRate} msg/s for ${duration} s, the blip ~1 s into the measured window; lost = sent - received, as mqttload counts it (QoS 1: FAILED if any); publishers do not reconnect, so a broker that disconnects them also loses what was in flight; mqttload keeps about 1000 messages outstanding end to end, so lost messages stall it and about 1000 is the most one run can count`);
    console.log('| blip | setup | sent | received | lost | of which never acknowledged | duplicates | MQTT disconnects | latency p99 |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const r of blipRows) console.log(r);
  }
}

await main();
