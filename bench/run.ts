// Broker benchmark: Petrel side by side with Mosquitto and Aedes on the same short scenarios.
// Run: npm run bench [-- --scenarios fanin-q0,conn --duration 4 --brokers petrel,aedes --json out.json]
//
// Every broker runs as its own child process on 127.0.0.1, started fresh for every scenario and
// pinned to CPU 0 (taskset, when there are 2+ CPUs); the load generator (`runBench` of
// `petrel bench`, in a child process of this script, `--role load`) is pinned to CPU 1. The
// generator is Node.js too and can be the limit for a fast broker: its CPU use is reported next to
// the broker's. For precise numbers use ../shared/bench/baseline.sh (a C generator); see
// docs/performance.md.
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runBench } from '../src/bench/index.js';
import type { BenchProgress, BenchSummary } from '../src/bench/index.js';
import { resolveOptions } from '../src/client/options.js';
import type { QoS } from '../src/protocol/index.js';
import type { BrokerEnv, BrokerName } from './brokers.js';
import { ALL_BROKERS, findMosquitto, killAllChildren, pinning, processCpuSeconds, processRss, runLoadChild, serveAedes, startBroker, unavailable } from './brokers.js';

// ------------------------------------------------------------------ scenarios

interface PubSubScenario {
  kind: 'pubsub';
  describe: string;
  subs: number;
  pubs: number;
  qos: QoS;
  /** Topic filter of the subscribers and topic of the publishers (%i: client index), under a per-run prefix. */
  subTopic: string;
  pubTopic: string;
  /** Copies each published message should reach. */
  fanout: number;
  /** Messages per second per publisher; 0 or absent: as fast as the socket takes them. */
  rate?: number;
}

interface ConnScenario {
  kind: 'conn' | 'idle';
  describe: string;
  clients: number;
}

type Scenario = PubSubScenario | ConnScenario;

const PAYLOAD = 64;
const QOS1_INFLIGHT = 32;
const CONNECTIONS = 2000;
/** Offered connect rate: a burst far above what the generator completes only overflows listen backlogs. */
const CONNECT_RATE = 10_000;
const IDLE_CONNECTIONS = 5000;
/** Seconds the idle connections are held (all up) before RSS is read. */
const IDLE_HOLD = 2;

const SCENARIOS: Record<string, Scenario> = {
  'fanin-q0': { kind: 'pubsub', describe: '10 publishers → 1 subscriber (fanin/+), QoS 0, 64 B, max rate', subs: 1, pubs: 10, qos: 0, subTopic: 'fanin/+', pubTopic: 'fanin/%i', fanout: 1 },
  'fanin-q1': { kind: 'pubsub', describe: `10 publishers → 1 subscriber, QoS 1 (${QOS1_INFLIGHT} in flight per publisher), 64 B`, subs: 1, pubs: 10, qos: 1, subTopic: 'fanin/+', pubTopic: 'fanin/%i', fanout: 1 },
  'fanout-q0': { kind: 'pubsub', describe: '1 publisher → 50 subscribers on one topic, QoS 0, 64 B', subs: 50, pubs: 1, qos: 0, subTopic: 'fanout', pubTopic: 'fanout', fanout: 50 },
  'pairs-q0': { kind: 'pubsub', describe: '100 publisher/subscriber pairs on 100 topics, QoS 0, 64 B', subs: 100, pubs: 100, qos: 0, subTopic: 'pair/%i', pubTopic: 'pair/%i', fanout: 1 },
  'fanin-q1-10k': { kind: 'pubsub', describe: '10 publishers × 1000 msg/s → 1 subscriber, QoS 1: latency below saturation', subs: 1, pubs: 10, qos: 1, rate: 1000, subTopic: 'fanin/+', pubTopic: 'fanin/%i', fanout: 1 },
  conn: { kind: 'conn', describe: `open ${CONNECTIONS} connections (CONNECT → CONNACK) at up to ${CONNECT_RATE}/s, fresh broker`, clients: CONNECTIONS },
  idle: { kind: 'idle', describe: `RSS per idle connection: hold ${IDLE_CONNECTIONS} connections for ${IDLE_HOLD} s, fresh broker`, clients: IDLE_CONNECTIONS },
};

// ------------------------------------------------------------------ the load generator (child process)

interface LoadSpec {
  scenario: Scenario;
  name: string;
  port: number;
  brokerPid: number;
  duration: number;
  prefix: string;
}

interface LoadResult {
  /** pubsub: delivered msg/s; conn: connections/s; idle: bytes per connection. */
  value: number;
  unit: 'msg/s' | 'conn/s' | 'B/conn';
  p50?: number;
  p99?: number;
  /** pubsub: messages published per second, and received / (sent × fan-out). */
  published?: number;
  deliveredRatio?: number;
  brokerCpu?: number;
  generatorCpu?: number;
  rssBefore?: number;
  rssAfter?: number;
  connected?: number;
  /** conn: SYNs the kernel dropped because a listen backlog was full (TcpExt ListenOverflows, machine-wide). */
  listenOverflows?: number;
  errors: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const genCpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

function connection(port: number, clientId: string) {
  return resolveOptions({ host: '127.0.0.1', port, protocolVersion: 4, clientId, reconnect: false, keepAlive: 60, connectTimeout: 10_000 });
}

interface Tick {
  t: number;
  count: number;
  brokerCpu: number | undefined;
  genCpu: number;
}

/** Rate of `count` between the first and last tick inside [from, to], with the CPU shares over the same span. */
function windowRate(ticks: Tick[], from: number, to: number): { rate: number; brokerCpu?: number; genCpu: number } | undefined {
  const inside = ticks.filter((k) => k.t >= from && k.t <= to);
  if (inside.length < 2) return undefined;
  const a = inside[0]!;
  const b = inside[inside.length - 1]!;
  const dt = (b.t - a.t) / 1000;
  const brokerCpu = a.brokerCpu !== undefined && b.brokerCpu !== undefined ? (b.brokerCpu - a.brokerCpu) / dt : undefined;
  return { rate: (b.count - a.count) / dt, ...(brokerCpu !== undefined ? { brokerCpu } : {}), genCpu: (b.genCpu - a.genCpu) / dt };
}

async function loadPubSub(spec: LoadSpec, sc: PubSubScenario): Promise<LoadResult> {
  const tag = `pb${process.pid}`;
  const subTicks: Tick[] = [];
  const pubTicks: Tick[] = [];
  const tick = (into: Tick[]) => (_line: string, s: BenchProgress) =>
    into.push({ t: performance.now(), count: into === subTicks ? s.received : s.sent, brokerCpu: processCpuSeconds(spec.brokerPid), genCpu: genCpuSeconds() });
  const stopSubs = new AbortController();
  // Subscribers first (one second to connect and subscribe), then the publishers for `duration` + 0.5 s.
  // Both report every second; rates and CPU shares are taken between the sub's ticks from 1 s after the
  // publishers started to the end of publishing, so connecting and ramp-up are left out.
  const subRun = runBench({
    mode: 'sub',
    connection: connection(spec.port, `${tag}s`),
    clients: sc.subs,
    connectRate: 5000,
    rate: 0,
    qos: sc.qos,
    size: PAYLOAD,
    topic: spec.prefix + sc.subTopic,
    inflight: 100,
    retain: false,
    signal: stopSubs.signal,
    onProgress: tick(subTicks),
  });
  await sleep(1000);
  const pubStart = performance.now();
  const pub = await runBench({
    mode: 'pub',
    connection: connection(spec.port, `${tag}p`),
    clients: sc.pubs,
    connectRate: 5000,
    rate: sc.rate ?? 0,
    qos: sc.qos,
    size: PAYLOAD,
    topic: spec.prefix + sc.pubTopic,
    duration: spec.duration + 0.5,
    inflight: QOS1_INFLIGHT,
    retain: false,
    onProgress: tick(pubTicks),
  });
  const pubEnd = pubStart + (spec.duration + 0.5) * 1000;
  // What is still queued (broker, socket buffers) may arrive: it counts for "delivered", not for the
  // rate. Wait until the broker has been idle for 200 ms (or 3 s at most).
  const drainEnd = performance.now() + 3000;
  let last = processCpuSeconds(spec.brokerPid);
  let quiet = 0;
  while (performance.now() < drainEnd && quiet < 2) {
    await sleep(100);
    const now = processCpuSeconds(spec.brokerPid);
    quiet = last === undefined || now === undefined ? quiet + 1 : now - last < 0.01 ? quiet + 1 : 0;
    last = now;
  }
  await sleep(100);
  stopSubs.abort();
  const sub = await subRun;
  const delivered = windowRate(subTicks, pubStart + 900, pubEnd - 50);
  const published = windowRate(pubTicks, pubStart + 900, pubEnd - 50);
  const expected = pub.sent * sc.fanout;
  return {
    value: delivered?.rate ?? 0,
    unit: 'msg/s',
    p50: sub.latency.p50,
    p99: sub.latency.p99,
    ...(published ? { published: published.rate } : {}),
    deliveredRatio: expected ? sub.received / expected : 0,
    ...(delivered?.brokerCpu !== undefined ? { brokerCpu: delivered.brokerCpu } : {}),
    ...(delivered ? { generatorCpu: delivered.genCpu } : {}),
    connected: sub.clients.connected + pub.clients.connected,
    errors: [...sub.errors.map((e) => `sub: ${e}`), ...pub.errors.map((e) => `pub: ${e}`), ...(delivered ? [] : ['too short to measure a rate'])],
  };
}

/** TcpExt ListenOverflows of the whole machine, or undefined without /proc. */
function listenOverflows(): number | undefined {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
    const names = lines[0]!.split(/\s+/);
    const values = lines[1]!.split(/\s+/);
    const i = names.indexOf('ListenOverflows');
    return i > 0 ? Number(values[i]) : undefined;
  } catch {
    return undefined;
  }
}

async function loadConn(spec: LoadSpec, sc: ConnScenario): Promise<LoadResult> {
  const overflows0 = listenOverflows();
  const cpu0 = processCpuSeconds(spec.brokerPid);
  const gen0 = genCpuSeconds();
  const t0 = performance.now();
  // conn: as fast as the connections complete (runBench returns once all are connected, the time
  // to the last CONNACK is its durationSeconds). idle: at 5000/s, held for `duration` seconds.
  const idle = sc.kind === 'idle';
  const rssBefore = processRss(spec.brokerPid);
  let rssAfter: number | undefined;
  let heldConnected = 0;
  let allUpAt: number | undefined;
  const held = new AbortController();
  const summary: BenchSummary = await runBench({
    mode: 'conn',
    connection: connection(spec.port, `pb${process.pid}c`),
    clients: sc.clients,
    connectRate: CONNECT_RATE,
    rate: 0,
    qos: 0,
    size: PAYLOAD,
    topic: 'unused',
    inflight: 1,
    retain: false,
    // idle: bounded, but normally stopped once RSS is read
    ...(idle ? { duration: 30, signal: held.signal } : {}),
    onProgress: (_line, s) => {
      // idle: read RSS once every connection has been up for IDLE_HOLD seconds, then stop
      if (!idle || held.signal.aborted) return;
      if (s.connected < sc.clients) {
        allUpAt = undefined;
        return;
      }
      allUpAt ??= s.elapsed;
      if (s.elapsed - allUpAt >= IDLE_HOLD - 0.1) {
        rssAfter = processRss(spec.brokerPid);
        heldConnected = s.connected;
        held.abort();
      }
    },
  });
  const wall = (performance.now() - t0) / 1000;
  const cpu1 = processCpuSeconds(spec.brokerPid);
  const brokerCpu = cpu0 !== undefined && cpu1 !== undefined ? (cpu1 - cpu0) / wall : undefined;
  const generatorCpu = (genCpuSeconds() - gen0) / wall;
  const overflows1 = listenOverflows();
  const errors = [...summary.errors];
  if (summary.clients.failed) errors.unshift(`${summary.clients.failed} of ${sc.clients} connections failed`);
  if (idle) {
    if (rssBefore === undefined || rssAfter === undefined) errors.push(rssBefore === undefined ? 'no /proc: RSS not readable' : 'not every connection was up during the hold');
    return {
      value: rssBefore !== undefined && rssAfter !== undefined && heldConnected ? (rssAfter - rssBefore) / heldConnected : 0,
      unit: 'B/conn',
      ...(rssBefore !== undefined ? { rssBefore } : {}),
      ...(rssAfter !== undefined ? { rssAfter } : {}),
      connected: heldConnected,
      ...(brokerCpu !== undefined ? { brokerCpu } : {}),
      generatorCpu,
      errors,
    };
  }
  return {
    value: summary.clients.connected / summary.durationSeconds,
    unit: 'conn/s',
    p50: summary.connectLatency.p50,
    p99: summary.connectLatency.p99,
    connected: summary.clients.connected,
    ...(overflows0 !== undefined && overflows1 !== undefined ? { listenOverflows: overflows1 - overflows0 } : {}),
    ...(brokerCpu !== undefined ? { brokerCpu } : {}),
    generatorCpu,
    errors,
  };
}

async function loadRole(spec: LoadSpec): Promise<void> {
  const sc = spec.scenario;
  const result = sc.kind === 'pubsub' ? await loadPubSub(spec, sc) : await loadConn(spec, sc);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

// ------------------------------------------------------------------ options

interface Options {
  scenarios: string[];
  brokers: BrokerName[];
  duration: number;
  /** undefined: no JSON; '-': JSON on stdout (the table goes to stderr); else a file. */
  json?: string;
}

const USAGE = `usage: npm run bench -- [options]

  --scenarios a,b     scenarios to run (default: all): ${Object.keys(SCENARIOS).join(', ')}
  --brokers a,b       brokers to compare (default: petrel,mosquitto,aedes; a missing one is skipped)
  --duration s        seconds of publishing per pub/sub scenario (default 4, min 2; rates are measured
                      from 1 s in to the end)
  --json [file]       write the results as JSON to file (without file: JSON on stdout, table on stderr)
  --help

Scenarios:
${Object.entries(SCENARIOS)
  .map(([k, s]) => `  ${k.padEnd(10)} ${s.describe}`)
  .join('\n')}`;

function parseOptions(argv: string[]): Options {
  const o: Options = { scenarios: Object.keys(SCENARIOS), brokers: [...ALL_BROKERS], duration: 4 };
  const list = (v: string | undefined, flag: string) => {
    if (!v || v.startsWith('--')) throw new Error(`${flag} needs a value`);
    return v.split(',').map((s) => s.trim()).filter(Boolean);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case '--scenarios': {
        o.scenarios = list(value(), flag);
        const bad = o.scenarios.filter((s) => !(s in SCENARIOS));
        if (bad.length) throw new Error(`unknown scenario ${bad.join(', ')}: use ${Object.keys(SCENARIOS).join(', ')}`);
        break;
      }
      case '--brokers': {
        const names = list(value(), flag);
        const bad = names.filter((b) => !ALL_BROKERS.includes(b as BrokerName));
        if (bad.length) throw new Error(`unknown broker ${bad.join(', ')}: use ${ALL_BROKERS.join(', ')}`);
        o.brokers = names as BrokerName[];
        break;
      }
      case '--duration': {
        const d = Number(value());
        if (!(d >= 2 && d <= 120)) throw new Error('--duration must be between 2 and 120 seconds');
        o.duration = d;
        break;
      }
      case '--json': {
        const next = inline ?? argv[i + 1];
        if (next !== undefined && !next.startsWith('--')) {
          o.json = next;
          if (inline === undefined) i++;
        } else o.json = '-';
        break;
      }
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
      // falls through (never reached)
      default:
        throw new Error(`unknown option ${a}\n${USAGE}`);
    }
  }
  return o;
}

// ------------------------------------------------------------------ formatting

function fmtRate(v: number): string {
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return v.toFixed(0);
}
function fmtMs(v: number): string {
  return v >= 100 ? `${v.toFixed(0)} ms` : v >= 10 ? `${v.toFixed(1)} ms` : v >= 1 ? `${v.toFixed(2)} ms` : `${(v * 1000).toFixed(0)} µs`;
}
function fmtBytes(v: number): string {
  return v >= 10240 ? `${(v / 1024).toFixed(1)} KiB` : `${v.toFixed(0)} B`;
}
const fmtPct = (v: number) => `${(v * 100).toFixed(0)}%`;

interface Row {
  scenario: string;
  broker: BrokerName;
  result?: LoadResult;
  skipped?: string;
}

function table(rows: Row[], scenarios: string[], brokers: BrokerName[]): string {
  const get = (sc: string, b: BrokerName) => rows.find((r) => r.scenario === sc && r.broker === b);
  const hasM = brokers.includes('mosquitto') && brokers.includes('petrel');
  const hasA = brokers.includes('aedes') && brokers.includes('petrel');
  const head = ['scenario', 'metric', ...brokers, ...(hasM ? ['petrel/mosq'] : []), ...(hasA ? ['petrel/aedes'] : [])];
  const lines: string[][] = [];
  const ratio = (sc: string, other: BrokerName, pick: (r: LoadResult) => number | undefined) => {
    const p = get(sc, 'petrel')?.result;
    const o = get(sc, other)?.result;
    const a = p && pick(p);
    const b = o && pick(o);
    if (a === undefined || b === undefined || !(a > 0 && b > 0)) return '-';
    const q = a / b;
    return `${q >= 10 ? q.toFixed(1) : q >= 0.1 ? q.toFixed(2) : q.toPrecision(2)}x`;
  };
  const metric = (sc: string, label: string, pick: (r: LoadResult) => number | undefined, fmt: (v: number) => string, withRatio = true) => {
    const cells = brokers.map((b) => {
      const row = get(sc, b);
      if (!row) return '';
      if (row.skipped) return 'skipped';
      const v = row.result && pick(row.result);
      return v === undefined ? '-' : fmt(v);
    });
    lines.push([first ? sc : '', label, ...cells, ...(hasM ? [withRatio ? ratio(sc, 'mosquitto', pick) : ''] : []), ...(hasA ? [withRatio ? ratio(sc, 'aedes', pick) : ''] : [])]);
    first = false; // later rows of the same scenario leave the scenario cell blank
  };
  let first = true;
  for (const sc of scenarios) {
    first = true;
    const kind = SCENARIOS[sc]!.kind;
    if (kind === 'pubsub') {
      metric(sc, 'msg/s published', (r) => r.published, fmtRate, false);
      metric(sc, 'msg/s delivered', (r) => r.value, fmtRate);
      metric(sc, 'delivered/sent', (r) => r.deliveredRatio, fmtPct, false);
      metric(sc, 'latency p50', (r) => r.p50, fmtMs);
      metric(sc, 'latency p99', (r) => r.p99, fmtMs);
    } else if (kind === 'conn') {
      metric(sc, 'conn/s', (r) => r.value, fmtRate);
      metric(sc, 'connect p50', (r) => r.p50, fmtMs);
      metric(sc, 'connect p99', (r) => r.p99, fmtMs);
      metric(sc, 'listen overflows', (r) => r.listenOverflows, (v) => v.toFixed(0), false);
    } else {
      metric(sc, 'RSS/idle conn', (r) => r.value || undefined, fmtBytes);
    }
    metric(sc, 'CPU broker', (r) => r.brokerCpu, fmtPct, false);
    metric(sc, 'CPU generator', (r) => r.generatorCpu, fmtPct, false);
  }
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmtLine = (l: string[]) => l.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmtLine(head), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.map(fmtLine)].join('\n');
}

// ------------------------------------------------------------------ main

function versionOf(cmd: string, args: string[]): string | undefined {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]?.trim() || undefined;
}

async function main(argv: string[]): Promise<number> {
  const o = parseOptions(argv);
  const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
  const root = resolve(here, '..', '..');
  const env: BrokerEnv = { root, runScript: join(here, 'run.js'), pin: pinning() };
  const out = o.json === '-' ? process.stderr : process.stdout;
  const log = (s: string) => process.stderr.write(`${s}\n`);

  const pkgVersion = (p: string) => {
    try {
      return (JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version;
    } catch {
      return undefined;
    }
  };
  const versions: Partial<Record<BrokerName, string>> = {
    petrel: pkgVersion(join(root, 'package.json')),
    aedes: pkgVersion(join(root, 'node_modules', 'aedes', 'package.json')),
  };
  const mosq = findMosquitto();
  if (mosq) versions.mosquitto = versionOf(mosq, ['-h'])?.replace(/^mosquitto version /, '');
  const machine = { cpus: cpus().length, model: cpus()[0]?.model ?? '?', kernel: release(), node: process.version };

  const skipped = new Map<BrokerName, string>();
  for (const b of o.brokers) {
    const why = unavailable(b, env);
    if (why) {
      skipped.set(b, why);
      log(`skipping ${b}: ${why}`);
    }
  }
  log(`petrel broker bench: ${o.scenarios.join(', ')} on ${o.brokers.filter((b) => !skipped.has(b)).join(', ')}; ${o.duration} s per scenario; MQTT 3.1.1, ${PAYLOAD} B payloads`);
  log(`machine: ${machine.cpus} CPUs (${machine.model}), Linux ${machine.kernel}, Node ${machine.node}; ${env.pin.note}`);

  const rows: Row[] = [];
  const prefix = `petrel-bench/${process.pid}/`;
  const total = o.scenarios.length * o.brokers.length;
  let n = 0;
  const started = performance.now();
  for (const sc of o.scenarios) {
    for (const b of o.brokers) {
      n++;
      const why = skipped.get(b);
      if (why) {
        rows.push({ scenario: sc, broker: b, skipped: why });
        continue;
      }
      process.stderr.write(`[${n}/${total}] ${sc} on ${b} ... `);
      let broker;
      try {
        broker = await startBroker(b, env);
        await new Promise((r) => setTimeout(r, 500)); // settle (the RSS baseline of `idle`)
        const spec: LoadSpec = { scenario: SCENARIOS[sc]!, name: sc, port: broker.port, brokerPid: broker.pid, duration: o.duration, prefix: `${prefix}${sc}/` };
        // a hard bound per run: the generator is killed if it overruns
        const overrun = new AbortController();
        const limit = setTimeout(() => overrun.abort(), (o.duration + 30) * 1000);
        const result = await runLoadChild<LoadResult>(env, spec, overrun.signal).finally(() => clearTimeout(limit));
        rows.push({ scenario: sc, broker: b, result });
        const main =
          result.unit === 'msg/s'
            ? `${fmtRate(result.value)} msg/s, p50 ${fmtMs(result.p50 ?? 0)}, p99 ${fmtMs(result.p99 ?? 0)}, delivered ${fmtPct(result.deliveredRatio ?? 0)}`
            : result.unit === 'conn/s'
              ? `${fmtRate(result.value)} conn/s, ${result.connected} connected, p50 ${fmtMs(result.p50 ?? 0)}, p99 ${fmtMs(result.p99 ?? 0)}, listen overflows ${result.listenOverflows ?? '?'}`
              : `${fmtBytes(result.value)} per idle connection (${result.connected} held, RSS ${((result.rssBefore ?? 0) / 1048576).toFixed(1)} → ${((result.rssAfter ?? 0) / 1048576).toFixed(1)} MiB)`;
        const cpu = `CPU broker ${result.brokerCpu !== undefined ? fmtPct(result.brokerCpu) : '?'}, generator ${result.generatorCpu !== undefined ? fmtPct(result.generatorCpu) : '?'}`;
        process.stderr.write(`${main}; ${cpu}\n`);
        for (const e of result.errors.slice(0, 3)) log(`    ${e}`);
      } catch (err) {
        process.stderr.write('failed\n');
        log(`    ${(err as Error).message}`);
        rows.push({ scenario: sc, broker: b, skipped: `failed: ${(err as Error).message}` });
      } finally {
        await broker?.stop();
      }
    }
  }
  const elapsed = (performance.now() - started) / 1000;

  const date = new Date().toISOString();
  out.write(`\nPetrel ${versions.petrel ?? '?'} vs ${o.brokers.filter((b) => b !== 'petrel').map((b) => `${b} ${versions[b] ?? '?'}`).join(', ')}; ${date}; ${machine.cpus} CPUs; ${env.pin.note}; ${elapsed.toFixed(0)} s\n`);
  out.write(`${table(rows, o.scenarios, o.brokers)}\n`);
  out.write(
    'Ratios: petrel/other; above 1 is better for msg/s and conn/s, below 1 for latency and RSS. ' +
      'The generator is a Node.js process on one CPU: when its CPU is near 100 %, it (not the broker) is the limit. ' +
      'Precise numbers: ../shared/bench/baseline.sh (docs/performance.md).\n',
  );
  for (const [b, why] of skipped) out.write(`${b} skipped: ${why}\n`);

  if (o.json) {
    const doc = { date, machine, pinning: env.pin.note, durationSeconds: o.duration, payloadBytes: PAYLOAD, protocol: '3.1.1', versions, scenarios: Object.fromEntries(o.scenarios.map((s) => [s, SCENARIOS[s]!.describe])), results: rows };
    const text = `${JSON.stringify(doc, null, 2)}\n`;
    if (o.json === '-') process.stdout.write(text);
    else {
      writeFileSync(o.json, text);
      log(`results written to ${o.json}`);
    }
  }
  return rows.some((r) => r.result) ? 0 : 1;
}

// ------------------------------------------------------------------ entry

process.on('exit', killAllChildren);
const args = process.argv.slice(2);
if (args[0] === '--role') {
  if (args[1] === 'aedes') await serveAedes(Number(args[3]));
  else if (args[1] === 'load') await loadRole(JSON.parse(args[3]!) as LoadSpec);
} else {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: stopping the brokers and the generator\n`);
      killAllChildren();
      process.exit(130);
    });
  }
  main(args).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`bench: ${(err as Error).message}\n`);
      killAllChildren();
      process.exit(1);
    },
  );
}
