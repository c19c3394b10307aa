// Persistence benchmark: persistent-session traffic through Petrel on SQLite, Petrel in memory and
// Mosquitto with `persistence true`, in the same run; then kill -9 in the middle of a run and the
// acknowledged messages lost by each; then start-up with 100k stored sessions and 100k retained messages.
// Every broker is a child process on 127.0.0.1; the load generator is this process (raw MQTT 3.1.1).
// Run: npm run bench:persistence   (BENCH_MESSAGES=20000 for a short run; BENCH_STARTUP=100000)
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { PacketDecoder } from '../src/protocol/decoder.js';
import { encodePacket } from '../src/protocol/encoder.js';
import type { ConnectPacket, Packet, PublishPacket } from '../src/protocol/packets.js';
import { SqliteSessionStore } from '../src/storage/sqlite-store.js';
import { findMosquitto, freePort, killAllChildren, processCpuSeconds, processRss, spawnTracked } from './brokers.js';

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 100_000);
const STARTUP = Number(process.env.BENCH_STARTUP ?? 100_000);
const WINDOW = 64;
/** Scenarios to run, by a word of their name (BENCH_ONLY=fan-in,pairs; BENCH_ONLY=queueing: the offline queue); all by default. */
const ONLY = process.env.BENCH_ONLY?.split(',');
/** Brokers to compare (BENCH_KINDS=sqlite,memory). */
const KINDS = process.env.BENCH_KINDS?.split(',');
const MOSQUITTO = findMosquitto();
const BIN = fileURLToPath(new URL('../../bin/petrel.js', import.meta.url));

type Kind = 'sqlite' | 'memory' | 'mosquitto';

interface Running {
  port: number;
  kill(signal: NodeJS.Signals): Promise<void>;
  rssMB(): number;
  pid: number;
}

const rssOf = (pid: number): number => Math.round((processRss(pid) ?? NaN) / 1048576);

/** A raw MQTT 3.1.1 connection: the load generator's side, as small as it can be. */
class Peer {
  closed = false;
  private readonly decoder = new PacketDecoder({ protocolVersion: 4, role: 'client' });
  private handler: ((p: Packet) => void) | undefined;
  /** Packets that came before a handler was set (those in the CONNACK's chunk). */
  private backlog: Packet[] = [];
  private readonly closeWaiters: (() => void)[] = [];

  private constructor(readonly socket: Socket) {
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.closeWaiters.splice(0)) w();
    });
    socket.on('error', () => {});
  }

  static connect(port: number, fields: Partial<ConnectPacket> & { clientId: string }): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ port, host: '127.0.0.1' }, () => {
        const peer = new Peer(socket);
        const timer = setTimeout(() => reject(new Error(`no CONNACK for ${fields.clientId}`)), 10_000);
        socket.on('data', (chunk: Buffer) =>
          peer.decoder.feed(chunk, (p) => {
            if (p.type === 2) {
              clearTimeout(timer);
              resolve(peer);
            } else if (peer.handler !== undefined) peer.handler(p);
            else peer.backlog.push(p);
          }),
        );
        peer.send({ type: 1, protocolName: 'MQTT', protocolVersion: 4, clean: true, keepAlive: 0, ...fields } as ConnectPacket);
      });
      socket.once('error', reject);
    });
  }

  set onPacket(handler: (p: Packet) => void) {
    this.handler = handler;
    for (const p of this.backlog.splice(0)) handler(p);
  }

  send(p: Packet): void {
    if (!this.closed) this.socket.write(encodePacket(p, 4));
  }

  waitClosed(): Promise<void> {
    return this.closed ? Promise.resolve() : new Promise((r) => this.closeWaiters.push(r));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Connects until the broker answers (it is starting). */
async function connectWhenUp(port: number, clientId: string, child: ChildProcess, maxMs = 60_000): Promise<Peer> {
  const end = Date.now() + maxMs;
  for (;;) {
    try {
      return await Peer.connect(port, { clientId });
    } catch (err) {
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** `petrel broker` as a child on `dir`; its JSON log lines are kept (the start-up line says what was loaded). */
async function startPetrel(dir: string, args: string[], env: Record<string, string> = {}): Promise<Running & { lines: Record<string, unknown>[] }> {
  const port = await freePort();
  // BENCH_BROKER_PROF=dir: a CPU profile of each Petrel child, written when it exits (SIGTERM).
  const prof = process.env.BENCH_BROKER_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_BROKER_PROF}`] : [];
  const child = spawnTracked(process.execPath, [...prof, BIN, 'broker', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dir, ...args], { env: { ...process.env, ...env } });
  const lines: Record<string, unknown>[] = [];
  let rest = '';
  child.stdout!.on('data', (d: Buffer) => {
    rest += d.toString();
    let i: number;
    while ((i = rest.indexOf('\n')) >= 0) {
      try {
        lines.push(JSON.parse(rest.slice(0, i)) as Record<string, unknown>);
      } catch {
        // not JSON
      }
      rest = rest.slice(i + 1);
    }
  });
  child.stderr!.resume();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  (await connectWhenUp(port, 'probe', child)).destroy();
  return {
    port,
    pid: child.pid!,
    lines,
    rssMB: () => rssOf(child.pid!),
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

async function start(kind: Kind, dir: string): Promise<Running> {
  if (kind !== 'mosquitto') return startPetrel(dir, kind === 'memory' ? ['--storage', 'memory'] : [], { PETREL_MAX_QUEUED_MESSAGES: '1000000' });
  const port = await freePort();
  chmodSync(dir, 0o777);
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location ${dir}/\nmax_queued_messages 1000000\nmax_inflight_messages 64\nset_tcp_nodelay true\n`);
  const child = spawnTracked(MOSQUITTO!, ['-c', conf], { stdio: ['ignore', 'ignore', 'ignore'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  (await connectWhenUp(port, 'probe', child, 10_000)).destroy();
  return {
    port,
    pid: child.pid!,
    rssMB: () => rssOf(child.pid!),
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** A persistent QoS 1 subscriber: counts distinct payloads received. */
async function subscriber(port: number, clientId: string, filter: string, got: Set<string>, onMessage?: () => void): Promise<Peer> {
  const peer = await Peer.connect(port, { clientId, clean: false, keepAlive: 0 });
  let subacked: () => void = () => {};
  const suback = new Promise<void>((r) => (subacked = r));
  peer.onPacket = (p) => {
    if (p.type === 3) {
      const m = p as PublishPacket;
      got.add(m.payload.toString());
      if (m.qos === 1) peer.send({ type: 4, packetId: m.packetId! });
      onMessage?.();
    } else if (p.type === 9) subacked();
  };
  peer.send({ type: 8, packetId: 1, subscriptions: [{ topicFilter: filter, qos: 1 }] });
  await suback;
  return peer;
}

/** Publishes `count` QoS 1 messages with a window; resolves with the payloads acknowledged (until the connection dies). */
async function publisher(port: number, clientId: string, topic: string, count: number, prefix: string): Promise<Set<string>> {
  const peer = await Peer.connect(port, { clientId, clean: false, keepAlive: 0 });
  const acked = new Set<string>();
  const byId = new Map<number, string>();
  let inFlight = 0;
  let wake: (() => void) | undefined;
  peer.socket.on('close', () => wake?.());
  peer.onPacket = (p) => {
    if (p.type !== 4) return;
    const payload = byId.get(p.packetId);
    if (payload !== undefined) acked.add(payload);
    byId.delete(p.packetId);
    inFlight--;
    wake?.();
  };
  for (let n = 0; n < count && !peer.closed; n++) {
    while (inFlight >= WINDOW && !peer.closed) await new Promise<void>((r) => (wake = r));
    const packetId = (n % 65000) + 1;
    const payload = `${prefix}${n}`;
    byId.set(packetId, payload);
    inFlight++;
    peer.send({ type: 3, topic, payload: Buffer.from(payload.padEnd(64, '.')), qos: 1, retain: false, dup: false, packetId });
  }
  while (inFlight > 0 && !peer.closed) await new Promise<void>((r) => (wake = r));
  peer.destroy();
  return acked;
}

const until = async (check: () => boolean, maxMs: number) => {
  const end = Date.now() + maxMs;
  while (!check() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
};

/** Payloads are "<prefix><n>" padded with dots to 64 bytes: the key is the part before the dots. */
const key = (payload: string) => payload.replace(/\.+$/, '');

async function fanIn(kind: Kind, dir: string): Promise<number> {
  const b = await start(kind, dir);
  const got = new Set<string>();
  const sub = await subscriber(b.port, 'fanin-sub', 'fanin/#', got);
  const per = Math.floor(MESSAGES / 4);
  const t0 = performance.now();
  await Promise.all([0, 1, 2, 3].map((i) => publisher(b.port, `fanin-pub-${i}`, `fanin/${i}`, per, `p${i}-`)));
  await until(() => got.size >= per * 4, 60_000);
  const rate = got.size / ((performance.now() - t0) / 1000);
  sub.destroy();
  await b.kill('SIGTERM');
  return rate;
}

async function pairs(kind: Kind, dir: string): Promise<number> {
  const b = await start(kind, dir);
  const gots = [0, 1, 2, 3].map(() => new Set<string>());
  const subs = await Promise.all(gots.map((g, i) => subscriber(b.port, `pair-sub-${i}`, `pair/${i}`, g)));
  const per = Math.floor(MESSAGES / 4);
  const t0 = performance.now();
  await Promise.all([0, 1, 2, 3].map((i) => publisher(b.port, `pair-pub-${i}`, `pair/${i}`, per, `q${i}-`)));
  await until(() => gots.every((g) => g.size >= per), 60_000);
  const rate = gots.reduce((s, g) => s + g.size, 0) / ((performance.now() - t0) / 1000);
  for (const s of subs) s.destroy();
  await b.kill('SIGTERM');
  return rate;
}

/** The broker's CPU time (user + system) since `from`, in µs per message: steadier than msg/s on a shared machine. */
const cpuPerMessage = (pid: number, from: number, messages: number) => (((processCpuSeconds(pid) ?? NaN) - from) * 1e6) / messages;

async function offlineDrain(kind: Kind, dir: string): Promise<{ queue: number; drain: number; queueCpu: number; drainCpu: number }> {
  const b = await start(kind, dir);
  const got = new Set<string>();
  const sub = await subscriber(b.port, 'drain-sub', 'drain/#', got);
  sub.send({ type: 14 });
  await sub.waitClosed();
  const cpu0 = processCpuSeconds(b.pid) ?? NaN;
  const t0 = performance.now();
  await publisher(b.port, 'drain-pub', 'drain/x', MESSAGES, 'd');
  const queue = MESSAGES / ((performance.now() - t0) / 1000);
  const queueCpu = cpuPerMessage(b.pid, cpu0, MESSAGES);
  const cpu1 = processCpuSeconds(b.pid) ?? NaN;
  const t1 = performance.now();
  const back = await subscriber(b.port, 'drain-sub', 'drain/#', got);
  await until(() => got.size >= MESSAGES, 120_000);
  const drain = got.size / ((performance.now() - t1) / 1000);
  const drainCpu = cpuPerMessage(b.pid, cpu1, got.size);
  back.destroy();
  await b.kill('SIGTERM');
  return { queue, drain, queueCpu, drainCpu };
}

/** Fan-in, kill -9 after `afterMs`, restart, and count acknowledged messages the subscriber never gets. */
async function killLoss(kind: Kind, dir: string, afterMs: number): Promise<{ acked: number; lost: number }> {
  let b = await start(kind, dir);
  const got = new Set<string>();
  const sub = await subscriber(b.port, 'kill-sub', 'kill/#', got);
  sub.send({ type: 14 }); // offline: everything is queued
  await sub.waitClosed();
  const pubs = [0, 1].map((i) => publisher(b.port, `kill-pub-${i}`, `kill/${i}`, 1_000_000, `k${i}-`));
  await new Promise((r) => setTimeout(r, afterMs));
  await b.kill('SIGKILL');
  const acked = new Set<string>();
  for (const set of await Promise.all(pubs)) for (const p of set) acked.add(key(p));
  b = await start(kind, dir);
  let last = Date.now();
  const back = await subscriber(b.port, 'kill-sub', 'kill/#', got, () => (last = Date.now()));
  await until(() => Date.now() - last > 1500, 60_000);
  const received = new Set([...got].map(key));
  let lost = 0;
  for (const a of acked) if (!received.has(a)) lost++;
  back.destroy();
  await b.kill('SIGTERM');
  return { acked: acked.size, lost };
}

/** 100k sessions with a subscription and 100k retained messages in a data file, then the time to accept connections. */
async function startup(dir: string): Promise<{ ms: number; cpuS: number; rssMB: number; sessions: unknown; retained: unknown }> {
  SqliteSessionStore.open({ dir }).close();
  const db = new Database(join(dir, 'petrel.db'));
  const session = db.prepare('INSERT INTO sessions (client_id, expiry_interval, expires_at, client) VALUES (?, 4294967295, NULL, ?)');
  const sub = db.prepare('INSERT INTO subscriptions (client_id, key, entry) VALUES (?, ?, ?)');
  const retained = db.prepare('INSERT INTO retained (topic, payload, qos, properties, expires_at, from_client) VALUES (?, ?, 1, NULL, NULL, NULL)');
  const payload = Buffer.alloc(64, 0x61);
  db.transaction(() => {
    for (let i = 0; i < STARTUP; i++) {
      const id = `device-${i}`;
      session.run(id, JSON.stringify({ clientId: id, protocolVersion: 4, remoteAddress: '10.0.0.1:1', listener: 'tcp' }));
      const filter = `devices/${i}/cmd/#`;
      sub.run(id, filter, JSON.stringify({ clientId: id, filter, qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 }));
      retained.run(`devices/${i}/status`, payload);
    }
  })();
  db.close();
  const t0 = performance.now();
  const b = await startPetrel(dir, ['--log-level', 'info']);
  // Wall time to the first CONNACK, and the CPU the broker used by then (steadier on a shared machine).
  const ms = performance.now() - t0;
  const cpuS = processCpuSeconds(b.pid) ?? NaN;
  const rssMB = b.rssMB();
  const storageLine = () => b.lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('storage: sqlite'));
  await until(() => storageLine() !== undefined, 3000);
  const line = storageLine();
  await b.kill('SIGTERM');
  return { ms, cpuS, rssMB, sessions: line?.sessions, retained: line?.retained };
}

async function main(): Promise<void> {
  const kinds: Kind[] = ['sqlite', 'memory', ...(MOSQUITTO ? (['mosquitto'] as const) : [])];
  console.log(`persistence benchmark: ${MESSAGES} QoS 1 messages per scenario, 64-byte payloads, 3.1.1, window ${WINDOW}; ${kinds.join(', ')}`);
  const results: Record<string, Record<Kind, string>> = {};
  const scenario = async (name: string, run: (kind: Kind, dir: string) => Promise<string>) => {
    if (ONLY !== undefined && !ONLY.some((o) => name.includes(o))) return;
    results[name] = {} as Record<Kind, string>;
    for (const kind of kinds) {
      if (KINDS !== undefined && !KINDS.includes(kind)) continue;
      const dir = mkdtempSync(join(tmpdir(), `petrel-bench-${kind}-`));
      try {
        results[name]![kind] = await run(kind, dir);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      console.log(`  ${name.padEnd(34)} ${kind.padEnd(10)} ${results[name]![kind]}`);
    }
  };
  const rate = (r: number) => `${Math.round(r)} msg/s`;
  await scenario('fan-in 4 -> 1 persistent', async (k, d) => rate(await fanIn(k, d)));
  await scenario('4 pairs, persistent sessions', async (k, d) => rate(await pairs(k, d)));
  await scenario(`offline queue ${MESSAGES}: queueing, drain`, async (k, d) => {
    const r = await offlineDrain(k, d);
    return `queue ${Math.round(r.queue)} msg/s (broker ${r.queueCpu.toFixed(1)} cpu-µs/msg), drain ${Math.round(r.drain)} msg/s (${r.drainCpu.toFixed(1)} cpu-µs/msg)`;
  });
  await scenario('kill -9 after 1 s: acknowledged lost', async (k, d) => {
    if (k === 'memory') return '(not durable: everything queued is lost)';
    const r = await killLoss(k, d, 1000);
    return `${r.lost} of ${r.acked} acknowledged lost`;
  });
  if (ONLY !== undefined && !ONLY.includes('start-up')) return;
  const dir = mkdtempSync(join(tmpdir(), 'petrel-bench-startup-'));
  try {
    const s = await startup(dir);
    console.log(`  start-up with ${STARTUP} sessions + ${STARTUP} retained: first CONNACK after ${Math.round(s.ms)} ms (broker CPU ${s.cpuS.toFixed(2)} s), RSS ${s.rssMB} MB (loaded ${String(s.sessions)} sessions, ${String(s.retained)} retained)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    killAllChildren();
    process.exit(1);
  },
);
