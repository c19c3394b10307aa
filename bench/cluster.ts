// `npm run bench:cluster`: two Petrel nodes of one cluster and one Redis on this machine, loaded by mqttload
// (../shared/bench) with the publishers on node 1 and the subscribers on node 2, so every message crosses
// between nodes; then one Petrel node alone, for the cost of clustering. Set up as the reference numbers of
// Aedes' cluster were measured (../shared/bench/README.md): brokers and Redis pinned to CPU 0, the generator
// to CPU 1, MQTT 3.1.1, 64 B payloads. Also counts Redis commands and bytes per message (INFO stats).
//
// Environment: DURATION (s per scenario, default 5), SCENARIOS (comma list of pairs-q1, pairs-q0, fanin-q1,
// fanin-q1-10k), BENCH_BUILD (where mqttload is built, default /tmp/mqttload-build), SHARED_BENCH (default
// ../shared/bench from the project root).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');
const shared = process.env.SHARED_BENCH ?? resolve(root, '../shared/bench');
const build = process.env.BENCH_BUILD ?? '/tmp/mqttload-build';
const duration = Number(process.env.DURATION ?? 5);
const scenarios = (process.env.SCENARIOS ?? 'pairs-q1,pairs-q0,fanin-q1,fanin-q1-10k').split(',');
const hasTaskset = existsSync('/usr/bin/taskset');

/** Aedes 1.2 with mqemitter-redis + aedes-persistence-redis, two nodes, same machine and setup (README). */
const AEDES: Record<string, string> = { 'pairs-q1': '7.5k', 'pairs-q0': '11.9k', 'fanin-q1': '9.8k', 'fanin-q1-10k': '-' };

const children: ChildProcess[] = [];
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
    await new Promise((r) => setTimeout(r, 50));
  }
}

function start(cmd: string, args: string[]): ChildProcess {
  const [c, a] = pinned(0, cmd, args);
  const child = spawn(c, a, { stdio: 'ignore' });
  children.push(child);
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

function redisStats(port: number): { commands: number; bytesIn: number; bytesOut: number } {
  const text = execFileSync('redis-cli', ['-p', String(port), 'INFO', 'stats'], { encoding: 'utf8' });
  const get = (k: string) => Number(new RegExp(`${k}:(\\d+)`).exec(text)?.[1] ?? NaN);
  return { commands: get('total_commands_processed'), bytesIn: get('total_net_input_bytes'), bytesOut: get('total_net_output_bytes') };
}

interface Result {
  recv_rate: number;
  lat_p50_us: number;
  lat_p99_us: number;
  lost: number;
  ok: boolean;
  received: number;
}

function mqttload(scenario: string, pubPort: number, subPort: number, pid: number | undefined): Result {
  const [kind, q, rate] = scenario.split('-') as [string, string, string | undefined];
  const args = [kind, '--port', String(pubPort), '--sub-port', String(subPort), '--qos', q.slice(1), '--clients', kind === 'pairs' ? '100' : '10', '--duration', String(duration), '--quiet'];
  if (rate !== undefined) args.push('--rate', String(Number(rate.replace('k', '')) * 1000));
  if (pid !== undefined) args.push('--broker-pid', String(pid));
  const [c, a] = pinned(1, join(build, 'mqttload'), args);
  const out = execFileSync(c, a, { encoding: 'utf8', maxBuffer: 1 << 24 });
  return JSON.parse(out.trim().split('\n').pop()!) as Result;
}

const k = (n: number) => `${(n / 1000).toFixed(1)}k`;
const ms = (us: number) => (us >= 1000 ? `${(us / 1000).toFixed(1)} ms` : `${Math.round(us)} µs`);

async function main(): Promise<void> {
  if (!existsSync(join(build, 'mqttload'))) execFileSync('make', ['-s', '-C', shared, `BIN=${build}`, `${build}/mqttload`], { stdio: 'inherit' });
  const dir = mkdtempSync(join(tmpdir(), 'petrel-bench-cluster-'));
  const redisPort = await freePort();
  const redis = start('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning']);
  await waitPort(redisPort);
  const bin = join(root, 'bin/petrel.js');
  const node = (name: string, port: number, cluster: boolean) =>
    start(process.execPath, [bin, 'broker', '--port', String(port), '--host', '127.0.0.1', '--storage', 'memory', '--log-level', 'warn', ...(cluster ? ['--cluster', `redis://127.0.0.1:${redisPort}`, '--node-name', name] : [])]);
  const rows: string[] = [];
  try {
    const [p1, p2] = [await freePort(), await freePort()];
    const n1 = node('bench1', p1, true);
    const n2 = node('bench2', p2, true);
    await Promise.all([waitPort(p1), waitPort(p2)]);
    await new Promise((r) => setTimeout(r, 1000));
    for (const s of scenarios) {
      const before = redisStats(redisPort);
      const r = mqttload(s, p1, p2, n1.pid);
      const after = redisStats(redisPort);
      const perMsg = (x: number) => (r.received > 0 ? (x / r.received).toFixed(2) : '-');
      rows.push(`| ${s} | 2 nodes | ${k(r.recv_rate)} | ${ms(r.lat_p50_us)} / ${ms(r.lat_p99_us)} | ${r.lost} | ${perMsg(after.commands - before.commands)} | ${perMsg(after.bytesIn - before.bytesIn + after.bytesOut - before.bytesOut)} | ${AEDES[s] ?? '-'} |`);
      console.error(rows.at(-1));
    }
    await Promise.all([stop(n1), stop(n2)]);
    const p3 = await freePort();
    const alone = node('alone', p3, false);
    await waitPort(p3);
    for (const s of scenarios) {
      const r = mqttload(s, p3, p3, alone.pid);
      rows.push(`| ${s} | 1 node, no cluster | ${k(r.recv_rate)} | ${ms(r.lat_p50_us)} / ${ms(r.lat_p99_us)} | ${r.lost} | - | - | - |`);
      console.error(rows.at(-1));
    }
    await stop(alone);
  } finally {
    await stop(redis);
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`\nmqttload, ${duration} s per scenario, 64 B, MQTT 3.1.1, brokers and Redis on CPU 0, generator on CPU 1; pairs: 100 pairs, fanin: 10 publishers -> 1 subscriber`);
  console.log('| scenario | setup | msg/s | latency p50 / p99 | lost | Redis commands / msg | Redis bytes / msg | Aedes cluster msg/s |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
}

await main();
