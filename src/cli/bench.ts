// `petrel bench pub|sub|conn`: load generator in the spirit of emqtt-bench.
//
// Cheap per message: each client encodes its PUBLISH once (a template); a batch of messages is
// one Buffer of template copies with the send timestamp (float64, ms since the epoch, in the
// first 8 payload bytes) and packet id patched in, written with one write(). Receivers read the
// timestamp back for end-to-end latency. Acknowledgements are 4-byte constants.
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { Command } from 'commander';
import { MqttClientError, TimeoutError, connackError, explainNetworkError, formatDuration } from '../client/errors.js';
import type { ResolvedOptions } from '../client/options.js';
import { protocolVersionName, resolveOptions } from '../client/options.js';
import { openTransport, writeBatched } from '../client/transport.js';
import { formatBrokerUrl, isSecure } from '../client/url.js';
import { PacketDecoder, encodePacket, encodePublish, publishPacketIdOffset } from '../protocol/index.js';
import type { ConnackPacket, ConnectPacket, Packet, ProtocolVersion, PublishPacket, QoS } from '../protocol/index.js';
import type { ConnectionFlags } from './common-client.js';
import { EXIT, UsageError, addConnectionOptions, clientOptionsFromFlags, parseDecimalFlag, parseNonNegativeInt, parseQos, parseSecondsFlag, runAction } from './common-client.js';

// ------------------------------------------------------------------ histogram

/** Log-bucketed latency histogram (1 % resolution from 1 µs to ~100 s): constant memory, O(1) record. */
export class LatencyHistogram {
  private static readonly BASE = Math.log(1.01);
  private readonly buckets = new Float64Array(2000);
  count = 0;
  sum = 0;
  max = 0;

  /** Records a latency in ms. */
  record(ms: number): void {
    if (!(ms >= 0)) return;
    const us = ms * 1000;
    const i = us < 1 ? 0 : Math.min(1999, 1 + Math.floor(Math.log(us) / LatencyHistogram.BASE));
    this.buckets[i]!++;
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  /** The latency (ms) below which `p` percent of the samples fall (bucket upper bound, capped at max). */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      seen += this.buckets[i]!;
      if (seen >= rank) return Math.min(this.max, i === 0 ? 0.001 : Math.pow(1.01, i) / 1000);
    }
    return this.max;
  }

  summary(): LatencySummary {
    return {
      count: this.count,
      mean: this.count ? this.sum / this.count : 0,
      p50: this.percentile(50),
      p95: this.percentile(95),
      p99: this.percentile(99),
      max: this.max,
    };
  }
}

export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

// ------------------------------------------------------------------ options and results

export type BenchMode = 'pub' | 'sub' | 'conn';

export interface BenchOptions {
  mode: BenchMode;
  /** Connection settings (URL, version, credentials, TLS, keep alive). clientId is the prefix. */
  connection: ResolvedOptions;
  clients: number;
  /** New connections per second. */
  connectRate: number;
  /** Messages per second per client (pub); 0 = as fast as the socket takes them. */
  rate: number;
  qos: QoS;
  /** Payload bytes (at least 8 carry the timestamp). */
  size: number;
  /** Topic pattern: %i client index (1-based), %c Client ID. */
  topic: string;
  /** Stop after this many messages in total (sent for pub, received for sub). */
  count?: number;
  /** Stop after this many seconds (from the first connection attempt). */
  duration?: number;
  /** QoS 1/2 messages in flight per client. */
  inflight: number;
  retain: boolean;
  /** Called every second with a progress line. */
  onProgress?: (line: string, snapshot: BenchProgress) => void;
  /** Stops the run early (SIGINT). */
  signal?: AbortSignal;
}

export interface BenchProgress {
  elapsed: number;
  connected: number;
  sentPerSecond: number;
  receivedPerSecond: number;
  sent: number;
  received: number;
}

export interface BenchSummary {
  mode: BenchMode;
  url: string;
  protocolVersion: string;
  qos: QoS;
  payloadSize: number;
  clients: { target: number; connected: number; failed: number; disconnected: number };
  connectLatency: LatencySummary;
  durationSeconds: number;
  sent: number;
  acknowledged: number;
  received: number;
  sendRate: number;
  receiveRate: number;
  /** pub QoS 1/2: publish → PUBACK / PUBCOMP. */
  ackLatency: LatencySummary;
  /** sub: end-to-end, from the timestamp in the payload. */
  latency: LatencySummary;
  errors: string[];
}

// ------------------------------------------------------------------ one connection

const PINGREQ = Buffer.from([0xc0, 0x00]);
const DISCONNECT = Buffer.from([0xe0, 0x00]);

function ack(type: number, flags: number, id: number): Buffer {
  return Buffer.from([(type << 4) | flags, 2, id >> 8, id & 0xff]);
}

const epochNow = () => performance.timeOrigin + performance.now();

class BenchConnection {
  readonly decoder: PacketDecoder;
  lastWrite = performance.now();
  outstanding = 0;
  nextId = 1;
  sent = 0;
  /** When publishing started (rate control). */
  publishStart = 0;
  receiveMaximum = 65535;
  closed = false;
  corked = false;
  template: Buffer | undefined;
  payloadOffset = -1;
  idOffset = -1;
  readonly sendTimes: Float64Array | undefined;

  constructor(
    readonly index: number,
    readonly clientId: string,
    readonly stream: Duplex,
    readonly version: ProtocolVersion,
    withAckTimes: boolean,
  ) {
    this.decoder = new PacketDecoder({ protocolVersion: version, role: 'client' });
    this.sendTimes = withAckTimes ? new Float64Array(65536) : undefined;
  }

  write(buf: Buffer): boolean {
    if (this.closed) return false;
    this.lastWrite = performance.now();
    return writeBatched(this, buf);
  }
}

async function openBenchConnection(
  index: number,
  o: ResolvedOptions,
  withAckTimes: boolean,
): Promise<{ conn: BenchConnection; connack: ConnackPacket; latency: number }> {
  const started = performance.now();
  const clientId = `${o.clientId}_${index}`;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), o.connectTimeout);
  let stream: Duplex | undefined;
  try {
    const opened = await openTransport(o.address, { tls: o.tls, wsHeaders: o.wsHeaders, signal: abort.signal }).catch((err) => {
      throw abort.signal.aborted ? new TimeoutError('CONNECT_TIMEOUT', `timed out after ${formatDuration(o.connectTimeout)} opening the connection`) : explainNetworkError(err, { host: o.address.host, port: o.address.port, tls: isSecure(o.address.scheme), phase: 'handshake' });
    });
    stream = opened.stream;
    const conn = new BenchConnection(index, clientId, stream, o.protocolVersion, withAckTimes);
    const connect: ConnectPacket = {
      type: 1,
      protocolName: o.protocolVersion === 3 ? 'MQIsdp' : 'MQTT',
      protocolVersion: o.protocolVersion,
      clean: o.clean,
      keepAlive: o.keepAlive,
      clientId,
    };
    if (o.username !== undefined) connect.username = o.username;
    if (o.password !== undefined) connect.password = o.password;
    if (o.protocolVersion === 5 && o.sessionExpiry !== undefined) connect.properties = { sessionExpiryInterval: o.sessionExpiry };
    const s = stream;
    const connack = await new Promise<ConnackPacket>((resolve, reject) => {
      const onAbort = () => reject(new TimeoutError('CONNECT_TIMEOUT', `timed out waiting for CONNACK after ${formatDuration(o.connectTimeout)}`));
      abort.signal.addEventListener('abort', onAbort, { once: true });
      const onData = (chunk: Buffer) => {
        try {
          conn.decoder.feed(chunk, (p) => {
            if (p.type === 2) {
              s.off('data', onData);
              s.pause();
              resolve(p as ConnackPacket);
            }
          });
        } catch (err) {
          reject(err);
        }
      };
      s.on('data', onData);
      s.once('error', (err) => reject(explainNetworkError(err, { host: o.address.host, port: o.address.port })));
      s.once('close', () => reject(new MqttClientError('CONNECTION_CLOSED', 'connection closed by the server before CONNACK')));
      s.write(encodePacket(connect, o.protocolVersion));
    });
    if (connack.reasonCode !== 0) throw connackError(connack.reasonCode, o.protocolVersion, connack.properties?.reasonString);
    conn.receiveMaximum = connack.properties?.receiveMaximum ?? 65535;
    return { conn, connack, latency: performance.now() - started };
  } catch (err) {
    stream?.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

function expandTopic(pattern: string, index: number, clientId: string): string {
  return pattern.replace(/%i/g, String(index)).replace(/%c/g, clientId);
}

// ------------------------------------------------------------------ the run

export async function runBench(options: BenchOptions): Promise<BenchSummary> {
  const o = options.connection;
  const { mode, qos } = options;
  const connectHist = new LatencyHistogram();
  const ackHist = new LatencyHistogram();
  const latencyHist = new LatencyHistogram();
  const errors = new Map<string, number>();
  const noteError = (err: unknown) => {
    const msg = err instanceof MqttClientError ? err.message : err instanceof Error ? err.message : String(err);
    errors.set(msg, (errors.get(msg) ?? 0) + 1);
  };
  const conns: BenchConnection[] = [];
  let connected = 0;
  let failed = 0;
  let disconnected = 0;
  let sent = 0;
  let acknowledged = 0;
  let received = 0;
  let stopping = false;
  const started = performance.now();
  let connectStarted = 0;
  let pending = 0; // connection attempts in progress

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const stop = () => {
    if (stopping) return;
    stopping = true;
    resolveDone();
  };
  options.signal?.addEventListener('abort', stop, { once: true });
  const countReached = () => options.count !== undefined && (mode === 'pub' ? sent >= options.count : mode === 'sub' ? received >= options.count : false);

  const onPacket = (conn: BenchConnection, p: Packet) => {
    switch (p.type) {
      case 3: {
        const pub = p as PublishPacket;
        received++;
        if (pub.payload.length >= 8) {
          const lat = epochNow() - pub.payload.readDoubleLE(0);
          if (lat >= 0 && lat < 1e7) latencyHist.record(lat);
        }
        if (pub.qos === 1) conn.write(ack(4, 0, pub.packetId!));
        else if (pub.qos === 2) conn.write(ack(5, 0, pub.packetId!));
        if (countReached()) stop();
        return;
      }
      case 6: // PUBREL
        conn.write(ack(7, 0, (p as { packetId: number }).packetId));
        return;
      case 4: // PUBACK
      case 7: {
        // PUBCOMP
        const id = (p as { packetId: number }).packetId;
        conn.outstanding--;
        acknowledged++;
        if (conn.sendTimes) ackHist.record(performance.now() - conn.sendTimes[id]!);
        if (mode === 'pub' && options.rate === 0) schedulePump(conn);
        return;
      }
      case 5: // PUBREC
        conn.write(ack(6, 2, (p as { packetId: number }).packetId));
        return;
      case 14: {
        const code = (p as { reasonCode?: number }).reasonCode ?? 0;
        noteError(new MqttClientError('SERVER_DISCONNECT', `server sent DISCONNECT 0x${code.toString(16).padStart(2, '0')}`));
        return;
      }
    }
  };

  const attach = (conn: BenchConnection) => {
    const s = conn.stream;
    const handler = (p: Packet) => onPacket(conn, p);
    s.on('data', (chunk: Buffer) => {
      try {
        conn.decoder.feed(chunk, handler);
      } catch (err) {
        noteError(err);
        s.destroy();
      }
    });
    s.on('error', (err) => noteError(explainNetworkError(err, { host: o.address.host, port: o.address.port })));
    s.on('close', () => {
      if (!conn.closed) {
        conn.closed = true;
        if (!stopping) disconnected++;
      }
      // every client tried and none left: nothing more will happen
      if (connected + failed >= options.clients && conns.every((c) => c.closed)) stop();
    });
    s.resume();
  };

  const subscribeConn = (conn: BenchConnection) => {
    const topicFilter = expandTopic(options.topic, conn.index, conn.clientId);
    conn.write(encodePacket({ type: 8, packetId: 1, subscriptions: [{ topicFilter, qos }] }, o.protocolVersion));
  };

  const preparePublisher = (conn: BenchConnection) => {
    const topic = expandTopic(options.topic, conn.index, conn.clientId);
    const packet: PublishPacket = { type: 3, topic, payload: Buffer.alloc(options.size), qos, retain: options.retain, dup: false };
    if (qos > 0) packet.packetId = 1;
    const template = encodePublish(packet, o.protocolVersion);
    conn.template = Buffer.from(template);
    conn.payloadOffset = template.length - options.size;
    conn.idOffset = qos > 0 ? publishPacketIdOffset(template) : -1;
    conn.publishStart = performance.now();
  };

  const window = (conn: BenchConnection) => Math.min(options.inflight, conn.receiveMaximum);

  /** Writes up to n messages for conn as one buffer; returns how many. */
  const publishBatch = (conn: BenchConnection, wanted: number): number => {
    let n = wanted;
    if (options.count !== undefined) n = Math.min(n, options.count - sent);
    if (qos > 0) n = Math.min(n, window(conn) - conn.outstanding);
    if (n <= 0 || conn.closed || !conn.template) return 0;
    const t = conn.template;
    const len = t.length;
    const buf = Buffer.allocUnsafe(n * len);
    const ts = epochNow();
    const now = performance.now();
    for (let k = 0; k < n; k++) {
      const off = k * len;
      t.copy(buf, off);
      if (options.size >= 8) buf.writeDoubleLE(ts, off + conn.payloadOffset);
      if (qos > 0) {
        const id = conn.nextId;
        conn.nextId = id === 65535 ? 1 : id + 1;
        buf.writeUInt16BE(id, off + conn.idOffset);
        if (conn.sendTimes) conn.sendTimes[id] = now;
      }
    }
    conn.outstanding += qos > 0 ? n : 0;
    conn.sent += n;
    sent += n;
    conn.write(buf);
    if (countReached()) stop();
    return n;
  };

  // as fast as possible: fill the socket until it pushes back, then wait for 'drain'
  const pumping = new Set<BenchConnection>();
  const schedulePump = (conn: BenchConnection) => {
    if (pumping.has(conn) || stopping) return;
    pumping.add(conn);
    setImmediate(() => {
      pumping.delete(conn);
      if (stopping || conn.closed) return;
      let total = 0;
      while (!conn.stream.writableNeedDrain && total < 4096) {
        const n = publishBatch(conn, 64);
        if (n === 0) break;
        total += n;
      }
      if (conn.stream.writableNeedDrain) conn.stream.once('drain', () => schedulePump(conn));
      else if (total > 0 && (qos === 0 || conn.outstanding < window(conn))) schedulePump(conn);
    });
  };

  // connections, at connectRate per second
  let nextIndex = 1;
  const connectOne = () => {
    const index = nextIndex++;
    pending++;
    if (connectStarted === 0) connectStarted = performance.now();
    openBenchConnection(index, o, mode === 'pub' && qos > 0).then(
      ({ conn, latency }) => {
        pending--;
        if (stopping) {
          conn.stream.destroy();
          return;
        }
        connectHist.record(latency);
        connected++;
        conns.push(conn);
        attach(conn);
        if (mode === 'sub') subscribeConn(conn);
        if (mode === 'pub') {
          preparePublisher(conn);
          if (options.rate === 0) schedulePump(conn);
        }
        checkConnDone();
      },
      (err) => {
        pending--;
        failed++;
        noteError(err);
        checkConnDone();
      },
    );
  };
  const checkConnDone = () => {
    if (connected + failed < options.clients) return;
    if (mode === 'conn' && options.duration === undefined) stop();
    if (connected === 0) stop();
  };

  const tickMs = 10;
  const ticker = setInterval(() => {
    const now = performance.now();
    // connect more, at connectRate
    const dueConnections = Math.min(options.clients, Math.floor(((now - started) / 1000) * options.connectRate) + 1);
    while (nextIndex <= dueConnections) connectOne();
    // publish at the rate: the first message at once, then `rate` per second
    if (mode === 'pub' && options.rate > 0) {
      for (const conn of conns) {
        const due = Math.floor(((now - conn.publishStart) / 1000) * options.rate) + 1 - conn.sent;
        if (due > 0) publishBatch(conn, due);
      }
    }
    if (options.duration !== undefined && now - started >= options.duration * 1000) stop();
  }, tickMs);
  connectOne();

  // progress, every second
  let lastSent = 0;
  let lastReceived = 0;
  let lastProgress = performance.now();
  const progress = setInterval(() => {
    const now = performance.now();
    const dt = (now - lastProgress) / 1000;
    const snap: BenchProgress = {
      elapsed: (now - started) / 1000,
      connected: connected - disconnected,
      sentPerSecond: (sent - lastSent) / dt,
      receivedPerSecond: (received - lastReceived) / dt,
      sent,
      received,
    };
    lastSent = sent;
    lastReceived = received;
    lastProgress = now;
    // keep alive for quiet connections (subscribers, slow publishers)
    if (o.keepAlive > 0) {
      const idle = (o.keepAlive * 1000) / 2;
      for (const conn of conns) if (now - conn.lastWrite > idle) conn.write(PINGREQ);
    }
    const parts = [
      `${snap.elapsed.toFixed(0).padStart(4)} s`,
      `connected ${snap.connected}/${options.clients}${failed ? ` (${failed} failed)` : ''}`,
      `sent ${Math.round(snap.sentPerSecond)} msg/s`,
      `received ${Math.round(snap.receivedPerSecond)} msg/s`,
      `total sent ${sent} received ${received}`,
    ];
    options.onProgress?.(parts.join(' | '), snap);
  }, 1000);

  await done;
  clearInterval(ticker);
  clearInterval(progress);
  // QoS > 0 publisher: give outstanding acknowledgements a moment
  if (mode === 'pub' && qos > 0 && acknowledged < sent) {
    const deadline = performance.now() + 2000;
    while (acknowledged < sent && performance.now() < deadline && conns.some((c) => !c.closed)) await new Promise((r) => setTimeout(r, 10));
  }
  const elapsed = (performance.now() - started) / 1000;
  const activeSeconds = Math.max(elapsed - (connectStarted ? (connectStarted - started) / 1000 : 0), 1e-3);
  for (const conn of conns) {
    if (conn.closed) continue;
    conn.closed = true;
    conn.stream.end(DISCONNECT);
  }
  // let DISCONNECTs go out, then drop what is left
  await new Promise((r) => setTimeout(r, 50));
  for (const conn of conns) conn.stream.destroy();
  while (pending > 0) await new Promise((r) => setTimeout(r, 10));

  return {
    mode,
    url: formatBrokerUrl(o.address),
    protocolVersion: protocolVersionName(o.protocolVersion),
    qos,
    payloadSize: options.size,
    clients: { target: options.clients, connected, failed, disconnected },
    connectLatency: connectHist.summary(),
    durationSeconds: elapsed,
    sent,
    acknowledged,
    received,
    sendRate: sent / activeSeconds,
    receiveRate: received / activeSeconds,
    ackLatency: ackHist.summary(),
    latency: latencyHist.summary(),
    errors: [...errors].map(([m, n]) => (n > 1 ? `${m} (×${n})` : m)),
  };
}

// ------------------------------------------------------------------ CLI

interface BenchFlags extends ConnectionFlags {
  clients: string;
  connectRate: string;
  rate?: string;
  intervalOfMsg?: string;
  qos: string;
  size: string;
  topic?: string;
  count?: string;
  duration?: string;
  inflight: string;
  retain?: boolean;
  json?: boolean;
  quiet?: boolean;
  prefix?: string;
}

const EXAMPLES = `
Examples:
  petrel bench conn -c 1000 -R 200                      # connect 1000 clients, 200/s; connect latency
  petrel bench sub -c 10 -t 'bench/%i' -q 1             # 10 subscribers, each on its own topic
  petrel bench pub -c 10 -t 'bench/%i' -r 1000 -q 1 --duration 30
  petrel bench pub -c 4 -t bench/x -s 1024 --count 1000000   # as fast as possible, 1 KiB payloads

Topic patterns: %i is the client index (1..clients), %c the Client ID.
Latency: publishers put a timestamp in the first 8 payload bytes; subscribers report
end-to-end latency percentiles from it (both on this machine's clock). QoS 1/2 publishers
also report publish → acknowledgement latency.`;

function fmtMs(v: number): string {
  return v >= 100 ? `${v.toFixed(0)} ms` : v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`;
}

function latencyLine(l: LatencySummary): string {
  return `p50 ${fmtMs(l.p50)}  p95 ${fmtMs(l.p95)}  p99 ${fmtMs(l.p99)}  max ${fmtMs(l.max)}  (${l.count} samples)`;
}

export function formatSummary(s: BenchSummary): string {
  const lines = [
    `bench ${s.mode}: ${s.url}, MQTT ${s.protocolVersion}, ${s.clients.target} clients${s.mode === 'conn' ? '' : `, QoS ${s.qos}`}${s.mode === 'pub' ? `, ${s.payloadSize} B payload` : ''}, ${s.durationSeconds.toFixed(1)} s`,
    `  connected      ${s.clients.connected}/${s.clients.target}${s.clients.failed ? `, ${s.clients.failed} failed` : ''}${s.clients.disconnected ? `, ${s.clients.disconnected} dropped` : ''}`,
    `  connect time   ${latencyLine(s.connectLatency)}`,
  ];
  if (s.mode === 'pub') {
    lines.push(`  sent           ${s.sent} messages, ${Math.round(s.sendRate)} msg/s`);
    if (s.qos > 0) {
      lines.push(`  acknowledged   ${s.acknowledged}`);
      lines.push(`  ack latency    ${latencyLine(s.ackLatency)}`);
    }
  }
  if (s.mode === 'sub') {
    lines.push(`  received       ${s.received} messages, ${Math.round(s.receiveRate)} msg/s`);
    lines.push(`  latency        ${latencyLine(s.latency)}`);
  }
  for (const e of s.errors) lines.push(`  error          ${e}`);
  return lines.join('\n');
}

export function registerBenchCommand(program: Command): void {
  const bench = program.command('bench').description('load a broker: many clients publishing, subscribing or connecting (like emqtt-bench)');
  bench.helpOption('--help', 'display help for command');
  for (const mode of ['pub', 'sub', 'conn'] as const) {
    const cmd = bench.command(mode).description(
      mode === 'pub' ? 'N clients publishing at a rate' : mode === 'sub' ? 'N clients subscribing, measuring throughput and latency' : 'N clients connecting at a rate',
    );
    addConnectionOptions(cmd, { benchMode: true });
    cmd
      .option('-c, --clients <n>', 'number of clients', '1')
      .option('-R, --connect-rate <n>', 'new connections per second', '100')
      .option('--prefix <prefix>', 'Client ID prefix (IDs are prefix_index)')
      .option('--count <n>', mode === 'sub' ? 'stop after receiving this many messages in total' : 'stop after publishing this many messages in total')
      .option('--duration <seconds>', 'stop after this many seconds')
      .option('--json', 'print the summary as JSON')
      .option('--quiet', 'no progress line');
    if (mode !== 'conn') {
      cmd
        .option('-t, --topic <pattern>', 'topic (pub) or filter (sub); %i = client index, %c = Client ID', 'bench/%i')
        .option('-q, --qos <qos>', 'QoS 0, 1 or 2', '0');
    }
    if (mode === 'pub') {
      cmd
        .option('-r, --rate <n>', 'messages per second per client (0 = as fast as possible)')
        .option('-I, --interval-of-msg <ms>', 'milliseconds between messages per client (emqtt-bench style)')
        .option('-s, --size <bytes>', 'payload size (>= 8 to carry the timestamp)', '256')
        .option('--inflight <n>', 'QoS 1/2 messages in flight per client', '100')
        .option('--retain', 'publish retained messages');
    }
    cmd.addHelpText('after', EXAMPLES);
    cmd.action((flags: BenchFlags) => runAction(`bench ${mode}`, () => benchCommand(mode, flags)));
  }
}

async function benchCommand(mode: BenchMode, flags: BenchFlags): Promise<number> {
  const clients = parseNonNegativeInt(flags.clients, '--clients') ?? 1;
  if (clients < 1) throw new UsageError('--clients must be at least 1');
  const connectRate = parseDecimalFlag(flags.connectRate, '--connect-rate', 'connections per second', { minExclusive: true });
  let rate = 0;
  if (flags.rate !== undefined) {
    rate = parseDecimalFlag(flags.rate, '--rate', 'messages per second');
  } else if (flags.intervalOfMsg !== undefined) {
    const ms = parseDecimalFlag(flags.intervalOfMsg, '-I', 'milliseconds');
    rate = ms === 0 ? 0 : 1000 / ms;
  }
  const duration = flags.duration === undefined ? undefined : parseSecondsFlag(flags.duration, '--duration', { minExclusive: true });
  const clientOptions = clientOptionsFromFlags(flags);
  clientOptions.clientId = flags.prefix ?? flags.id ?? `petrel_bench_${process.pid}`;
  let connection: ResolvedOptions;
  try {
    connection = resolveOptions({ ...clientOptions, reconnect: false });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const tty = process.stderr.isTTY;
  try {
    const summary = await runBench({
      mode,
      connection,
      clients,
      connectRate,
      rate,
      qos: parseQos(flags.qos ?? '0'),
      size: parseNonNegativeInt(flags.size ?? '256', '--size') ?? 256,
      topic: flags.topic ?? 'bench/%i',
      ...(flags.count !== undefined ? { count: parseNonNegativeInt(flags.count, '--count')! } : {}),
      ...(duration !== undefined ? { duration } : {}),
      inflight: Math.max(1, parseNonNegativeInt(flags.inflight ?? '100', '--inflight') ?? 100),
      retain: Boolean(flags.retain),
      signal: abort.signal,
      ...(flags.quiet ? {} : { onProgress: (line: string) => process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`) }),
    });
    if (tty && !flags.quiet) process.stderr.write('\n');
    process.stdout.write(flags.json ? `${JSON.stringify(summary)}\n` : `${formatSummary(summary)}\n`);
    if (summary.clients.connected === 0) {
      const first = summary.errors[0] ?? 'no client connected';
      process.stderr.write(`petrel bench ${mode}: no client connected: ${first}\n`);
      return /refused by the server/.test(first) ? EXIT.REFUSED : EXIT.FAILED;
    }
    return EXIT.OK;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

